//! In-process simple-signing verification throughput, per key type (RSA
//! 2048/3072/4096, Ed25519): what the engine does for one signature once
//! the blob is in memory, as `imagegate standalone-verify` does it —
//! `Keyring::verify` (OpenPGP message, signature, trusted key), then the
//! strict payload parse and the manifest digest check.
//!
//! Sequoia keeps a process-wide cache of successful signature
//! verifications, so re-verifying one signature measures a cache lookup.
//! Every timed verification here therefore uses a signature made for it
//! alone (a distinct payload), signed outside the timed section. A
//! calibration verification first records how many cache hits and misses
//! one fresh signature costs (the certificate's self-signatures are hits,
//! as in a long-running webhook; the message signature is a miss); every
//! timed batch must show exactly that many per signature, so a message
//! signature served from the cache fails the run instead of inflating it.
//!
//! Signing with RSA keys is slow and happens outside the timed section but
//! inside criterion's wall-clock budget, so the defaults are short; pass
//! `--measurement-time SECS` / `--warm-up-time SECS` after `--` to change
//! them (scripts/bench-engine.sh does).

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

/// A small OCI manifest, the kind of document the signatures are about.
const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

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
    (
        keyring,
        SignatureSource {
            key,
            digest: imagegate::manifest::digest(MANIFEST).expect("manifest digest"),
            counter: 0,
        },
    )
}

/// The timed unit: cryptographic verification, payload, digest.
fn check(keyring: &Keyring, signature: &[u8]) -> UntrustedSignature {
    let verified = keyring.verify(signature).expect("verifies");
    let payload = UntrustedSignature::parse(&verified.payload).expect("valid payload");
    assert!(
        imagegate::manifest::matches_digest(MANIFEST, &payload.docker_manifest_digest)
            .expect("digest"),
        "signed digest does not match the manifest"
    );
    payload
}

/// Sequoia cache (hits, misses) so far.
fn cache_counters() -> (usize, usize) {
    (
        SignatureVerificationCache::cache_hits(),
        SignatureVerificationCache::cache_misses(),
    )
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group
        .sampling_mode(SamplingMode::Flat)
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
        check(&keyring, &source.next());
        // What one fresh signature costs in cache lookups from now on.
        let calibration = source.next();
        let (h0, m0) = cache_counters();
        check(&keyring, &calibration);
        let (h1, m1) = cache_counters();
        let (hits_per, misses_per) = (h1 - h0, m1 - m0);
        assert!(
            misses_per >= 1,
            "a fresh signature was not looked up in Sequoia's cache"
        );
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let signatures: Vec<Vec<u8>> = (0..iters).map(|_| source.next()).collect();
                let (h0, m0) = cache_counters();
                let start = Instant::now();
                for signature in &signatures {
                    black_box(check(&keyring, black_box(signature)));
                }
                let elapsed = start.elapsed();
                let (h1, m1) = cache_counters();
                let n = signatures.len();
                assert!(
                    h1 - h0 == hits_per * n && m1 - m0 == misses_per * n,
                    "Sequoia's cache answered differently than for a fresh signature: \
                     {} hits and {} misses for {n} signatures, expected {} and {}",
                    h1 - h0,
                    m1 - m0,
                    hits_per * n,
                    misses_per * n
                );
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Set on the Criterion value, not the group: criterion applies the
    // command line over this config, but a group's own settings would
    // override the command line.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = verify
}
criterion_main!(benches);
