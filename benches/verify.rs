//! In-process simple-signing verification throughput: `Keyring::verify`
//! on distinct signatures, per key type (RSA 2048/3072/4096, Ed25519).
//!
//! Sequoia keeps a process-wide cache of successful signature
//! verifications, so re-verifying one signature measures a cache lookup.
//! Every timed verification here therefore uses a signature made for it
//! alone (a distinct payload), signed outside the timed section; the run
//! checks Sequoia's cache counters to make sure no timed verification was
//! a cache hit. Signing RSA keys is slow, so the default measurement is
//! short: pass `--measurement-time`/`--warm-up-time` to change it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sequoia_openpgp as openpgp;

use imagegate::reference::Digest;
use imagegate::signature::mechanism::{Keyring, SigningKey};
use imagegate::signature::payload::UntrustedSignature;
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::packet::signature::cache::SignatureVerificationCache;
use openpgp::serialize::Serialize;
use openpgp::types::KeyFlags;

/// Makes a fresh simple-signing signature on every call.
struct SignatureSource {
    key: SigningKey,
    digest: Digest,
    counter: u64,
}

impl SignatureSource {
    fn next(&mut self) -> Vec<u8> {
        self.counter += 1;
        let mut payload = UntrustedSignature::new(
            self.digest.clone(),
            &format!("registry.example/bench/app:v{}", self.counter),
        );
        payload.timestamp = Some(1_750_000_000 + self.counter as i64);
        self.key.sign(&payload.to_json()).expect("signing")
    }
}

/// A key of the given suite whose primary signs, and a keyring trusting it.
fn setup(suite: CipherSuite) -> (Keyring, SignatureSource) {
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(suite)
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .add_userid("imagegate bench <bench@example.invalid>")
        .generate()
        .expect("key generation");
    let mut public = Vec::new();
    cert.serialize(&mut public).expect("serialize");
    let mut secret = Vec::new();
    cert.as_tsk().serialize(&mut secret).expect("serialize");
    let keyring = Keyring::from_blobs(&[public]);
    let key = SigningKey::from_bytes(&secret, None).expect("signing key");
    let digest = Digest::sha256_of(b"bench manifest");
    (
        keyring,
        SignatureSource {
            key,
            digest,
            counter: 0,
        },
    )
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    for (name, suite) in [
        ("rsa2048", CipherSuite::RSA2k),
        ("rsa3072", CipherSuite::RSA3k),
        ("rsa4096", CipherSuite::RSA4k),
        ("ed25519", CipherSuite::Cv25519),
    ] {
        let (keyring, mut source) = setup(suite);
        // Validates the certificate's self-signatures once, as a
        // long-running webhook would have done before its first admission.
        keyring.verify(&source.next()).expect("verifies");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let signatures: Vec<Vec<u8>> = (0..iters).map(|_| source.next()).collect();
                let hits = SignatureVerificationCache::cache_hits();
                let misses = SignatureVerificationCache::cache_misses();
                let start = Instant::now();
                for signature in &signatures {
                    black_box(keyring.verify(black_box(signature)).expect("verifies"));
                }
                let elapsed = start.elapsed();
                let new_misses = SignatureVerificationCache::cache_misses() - misses;
                assert!(
                    new_misses >= signatures.len(),
                    "a timed verification was served from Sequoia's cache \
                     ({new_misses} misses for {} signatures, {} hits)",
                    signatures.len(),
                    SignatureVerificationCache::cache_hits() - hits
                );
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
