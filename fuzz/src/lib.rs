//! The fuzz drivers: one function per `cargo fuzz` target, each taking the
//! raw input bytes. They live in a library (not in the target files) so
//! that `tests/fuzz_regressions.rs` compiles this very file (`#[path]`) and
//! replays every recorded finding and seed through the same code path
//! under a plain `cargo nextest run`, without cargo-fuzz or nightly flags.
//!
//! Besides "must not panic, hang or allocate without bound", the drivers
//! check properties that hold by construction (re-parsing what a parser
//! printed, verifying what was just signed), so wrong answers show up too,
//! not only crashes. Everything here may use only imagegate's own
//! dependencies (the regression test has no others).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use imagegate::manifest::list::{
    ManifestList, Platform, instances_for_platforms, wanted_platforms,
};
use imagegate::policy::{ParseOptions, Policy};
use imagegate::reference::{Digest, ImageReference, Named};
use imagegate::signature::blob::{StoredSignature, from_blob};
use imagegate::signature::mechanism::{Keyring, SigningKey};
use imagegate::signature::payload::UntrustedSignature;
use imagegate::signature::registries_d::{ConfigMerger, RegistryConfiguration, go_url::GoUrl};

/// Inputs longer than this are not interesting for any target (every
/// parser here is linear-ish; long inputs only slow the fuzzer down).
/// libFuzzer's own `-max_len` is the real bound; this keeps the replay test
/// honest for files recorded with a larger one.
const MAX_INPUT: usize = 1 << 20;

fn text(data: &[u8]) -> Option<&str> {
    if data.len() > MAX_INPUT {
        return None;
    }
    std::str::from_utf8(data).ok()
}

/// References every target uses to exercise lookups on whatever it parsed.
fn sample_references() -> &'static [ImageReference] {
    static REFS: OnceLock<Vec<ImageReference>> = OnceLock::new();
    REFS.get_or_init(|| {
        [
            "busybox",
            "docker.io/library/busybox:latest",
            "quay.io/ns/repo:v1",
            "127.0.0.1:5000/demo/signed:v1",
            "localhost/a/b/c@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "registry.example.com:8443/x/y:tag",
        ]
        .iter()
        .map(|s| ImageReference::parse(s).expect("sample reference"))
        .collect()
    })
}

// ---------------------------------------------------------------- reference

/// Target 1: docker reference parsing (`src/reference.rs`), every entry
/// point, with docker/reference's round-trip properties: the canonical
/// string of a normalised reference parses canonically to the same
/// reference, and a pod image's policy identity re-parses to it.
pub fn reference(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = Digest::parse(s);
    let _ = imagegate::reference::is_valid_tag(s);
    let _ = ImageReference::parse(s);
    let _ = Named::parse_canonical(s);
    if let Ok(r) = ImageReference::from_pod_image(s) {
        let _ = r.policy_configuration_namespaces();
        let _ = r.image_name();
        let identity = r.policy_configuration_identity();
        let back = ImageReference::parse(&identity)
            .unwrap_or_else(|e| panic!("identity {identity:?} of {s:?} does not re-parse: {e}"));
        assert_eq!(
            back, r,
            "identity {identity:?} of {s:?} re-parses differently"
        );
    }
    if let Ok(named) = Named::parse_normalized(s) {
        let canonical = named.to_string();
        let again = Named::parse_canonical(&canonical).unwrap_or_else(|e| {
            panic!("canonical form {canonical:?} of {s:?} is not canonical: {e}")
        });
        assert_eq!(again, named, "canonical form {canonical:?} of {s:?}");
        // No round trip for the familiar form: as in Go, it is ambiguous
        // (`docker.io/a.b/c` is shown as `a.b/c`, a reference on host
        // `a.b`; `docker.io/library/<64 hex>` as a refused identifier).
        let _ = named.familiar_string();
        let _ = named.familiar_name();
        let _ = named.name();
        let _ = named.trimmed();
        let _ = imagegate::reference::docker_reference_namespaces(&named);
        if let Some(d) = named.digest() {
            assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(d));
            let _ = named.with_tag_and_digest(d.clone());
            let _ = named.with_digest_only(d.clone());
        }
    }
}

// ------------------------------------------------------------------- policy

/// Target 2: containers-policy.json parsing (`src/policy/config.rs`) with
/// both parse options (a policy file, and `spec.policy` of a Kubernetes
/// document, also through `policyset::compile`), then lint, scope lookup
/// and composition of whatever parsed. A document that parses must print
/// (`to_json`) to one that parses to the same policy.
pub fn policy(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    for options in [ParseOptions::POLICY_FILE, ParseOptions::KUBERNETES] {
        let Ok(parsed) = Policy::parse(data, options) else {
            continue;
        };
        let printed = serde_json::to_vec(&parsed.to_json()).expect("policy JSON");
        match Policy::parse(&printed, options) {
            Ok(again) => assert_eq!(
                again,
                parsed,
                "printed policy re-parses differently: {}",
                String::from_utf8_lossy(&printed)
            ),
            Err(e) => panic!(
                "printed policy does not re-parse ({}): {}",
                e.with_path(),
                String::from_utf8_lossy(&printed)
            ),
        }
        let _ = imagegate::policy::lint(&parsed);
        for r in sample_references() {
            let _ = parsed.requirements_for(r).map(|m| m.json_path());
        }
        let _ = imagegate::policy::compose::compose(&[&parsed, &parsed]);
    }
    // The Kubernetes path as the controller and `serve --policies` take it:
    // an already decoded JSON value.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = imagegate::policyset::compile(
            "ClusterImagePolicy/fuzz".into(),
            None,
            imagegate::engine::Mode::Enforce,
            &value,
            None,
        );
    }
}

// ------------------------------------------------------------- registries.d

/// Target 3: registries.d YAML (`src/signature/registries_d.rs`): parse,
/// merge (with itself, which must be a duplicate error unless it is empty)
/// and look up lookaside URLs for a few images.
pub fn registries_d(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(config) = RegistryConfiguration::from_yaml(data) else {
        return;
    };
    let builtin = GoUrl::parse("file:///var/lib/containers/sigstore").expect("builtin URL");
    for r in sample_references() {
        let _ = config.use_sigstore_attachments(r);
        let _ = config.signature_top_level(r, false);
        let _ = config.signature_top_level(r, true);
        if let Ok(base) = config.lookaside_base_url(r, false, &builtin) {
            let _ = imagegate::signature::registries_d::signature_url(
                &base,
                &Digest::sha256_of(b""),
                0,
            );
        }
    }
    let mut merger = ConfigMerger::new();
    merger
        .add_yaml("a.yaml", data)
        .expect("a document that parsed alone merges into an empty configuration");
    let second = merger.add_yaml("b.yaml", data);
    let empty = config.default_docker.is_none() && config.docker.is_empty();
    assert_eq!(
        second.is_ok(),
        empty,
        "merging a document with itself must fail exactly when it defines something"
    );
    let _ = merger.finish();
}

// ---------------------------------------------------------------- signature

struct SignatureKeys {
    /// c/image's fixture key (the one that signed its fixture signatures)
    /// and a key generated here, as a signedBy requirement would hold them.
    keyring: Keyring,
    signer: SigningKey,
}

fn signature_keys() -> &'static SignatureKeys {
    static KEYS: OnceLock<SignatureKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
        use sequoia_openpgp::serialize::SerializeInto;
        let (cert, _revocation) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .add_userid("imagegate fuzz <fuzz@imagegate.invalid>")
            .add_signing_subkey()
            .generate()
            .expect("generate a signing key");
        let secret = cert.as_tsk().to_vec().expect("serialise the secret key");
        let public = cert.to_vec().expect("serialise the public key");
        let fixture = include_bytes!(
            "../../tests/fixtures/cimage/upstream/signature/fixtures/public-key.gpg"
        );
        SignatureKeys {
            keyring: Keyring::from_blobs(&[fixture.to_vec(), public]),
            signer: SigningKey::from_bytes(&secret, None).expect("load the generated key"),
        }
    })
}

/// Target 4: the signature blob (`src/signature/blob.rs`), OpenPGP
/// verification with a real keyring (`mechanism.rs`) and the simple-signing
/// payload parser (`payload.rs`).
///
/// The input is used three ways: as a stored blob (classified, then
/// verified as c/image would), as a bare OpenPGP message, and as a payload,
/// both parsed directly and signed with the generated key first, so that
/// arbitrary payloads also travel the whole verify → parse path (random
/// bytes almost never carry a valid signature). What was just signed must
/// verify, and yield exactly the bytes signed.
pub fn signature(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let keys = signature_keys();
    if let Ok(StoredSignature::SimpleSigning(message)) = from_blob(data)
        && let Ok(verified) = keys.keyring.verify(&message)
    {
        let _ = UntrustedSignature::parse(&verified.payload);
    }
    let _ = keys.keyring.verify(data);
    payload(data);

    let signed = keys.signer.sign(data).expect("signing never fails");
    let verified = keys
        .keyring
        .verify(&signed)
        .unwrap_or_else(|e| panic!("a message signed just now does not verify: {e}"));
    assert_eq!(
        verified.payload, data,
        "verified payload differs from the signed one"
    );
    assert_eq!(verified.primary_fingerprint, keys.signer.fingerprint());
    assert!(matches!(
        from_blob(&signed),
        Ok(StoredSignature::SimpleSigning(_))
    ));
}

/// The payload half of target 4: a payload that parses must print
/// (`to_json`, c/image's marshalling) to one that parses to the same value.
fn payload(data: &[u8]) {
    if let Ok(parsed) = UntrustedSignature::parse(data) {
        let printed = parsed.to_json();
        let again = UntrustedSignature::parse(&printed).unwrap_or_else(|e| {
            panic!(
                "printed payload does not re-parse ({}): {}",
                e.message,
                String::from_utf8_lossy(&printed)
            )
        });
        assert_eq!(again, parsed);
    }
}

// ----------------------------------------------------------------- manifest

const MEDIA_TYPES: &[&str] = &[
    imagegate::manifest::DOCKER_V2_LIST_MEDIA_TYPE,
    imagegate::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
    "",
];

fn platforms() -> &'static [Platform] {
    static P: OnceLock<Vec<Platform>> = OnceLock::new();
    P.get_or_init(|| {
        [
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "linux/arm",
            "windows/amd64",
            "linux/s390x",
        ]
        .iter()
        .map(|p| Platform::parse(p).expect("platform"))
        .collect()
    })
}

/// Target 5: manifests and lists (`src/manifest/`): digest (with the
/// schema1 signature-payload rule), MIME type guessing, list / index
/// parsing under each list media type, and instance selection for single
/// platforms and for the union over node platforms. A chosen instance is
/// always one of the list's entries.
pub fn manifest(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let _ = imagegate::manifest::guess_mime_type(data);
    if let Ok(d) = imagegate::manifest::digest(data) {
        assert_eq!(
            imagegate::manifest::matches_digest(data, &d).ok(),
            Some(true)
        );
    }
    for media_type in MEDIA_TYPES {
        let Ok(list) = ManifestList::parse(data, media_type) else {
            continue;
        };
        let entries: Vec<Digest> = list
            .entries
            .iter()
            .filter_map(|e| e.digest().ok())
            .collect();
        for p in platforms() {
            if let Ok(d) = list.choose_for_platform(p) {
                assert!(entries.contains(&d), "chose {d}, which is not an entry");
            }
            let _ = list.choose_instance(&wanted_platforms(p));
        }
        if let Ok(all) = instances_for_platforms(&list, platforms()) {
            for d in &all {
                assert!(entries.contains(d), "instance {d} is not an entry");
            }
        }
        for e in &list.entries {
            let _ = (e.is_zstd(), e.has_zstd_chunked_sentinel());
        }
    }
    if let Some(s) = text(data) {
        let _ = Platform::parse(s);
    }
}

// ---------------------------------------------------------------- admission

struct Webhook {
    runtime: tokio::runtime::Runtime,
    state: imagegate::server::AppState,
}

/// The policy the admission target serves: every kind of scope outcome
/// without real network. `127.0.0.1:1` refuses connections at once, so the
/// signedBy scope fails fast at the registry; the default rejects.
const ADMISSION_POLICY: &str = r#"{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "127.0.0.1:1/open": [{"type": "insecureAcceptAnything"}],
      "127.0.0.1:1/signed": [{"type": "signedBy", "keyType": "GPGKeys",
                              "keyData": "KEYDATA"}],
      "quay.io/rejected": [{"type": "reject"}],
      "docker.io/library": [{"type": "insecureAcceptAnything"}]
    }
  }
}"#;

fn webhook() -> &'static Webhook {
    static W: OnceLock<Webhook> = OnceLock::new();
    W.get_or_init(|| {
        use base64::Engine as _;
        let key = include_bytes!(
            "../../tests/fixtures/cimage/upstream/signature/fixtures/public-key.gpg"
        );
        let policy = ADMISSION_POLICY.replace(
            "KEYDATA",
            &base64::engine::general_purpose::STANDARD.encode(key),
        );
        let policy: serde_json::Value = serde_json::from_str(&policy).expect("policy JSON");
        let mut docs = vec![imagegate::policyset::compile(
            "ClusterImagePolicy/fuzz".into(),
            None,
            imagegate::engine::Mode::Enforce,
            &policy,
            None,
        )];
        // A namespaced document in Warn mode, for requests in `warned`.
        docs.push(imagegate::policyset::compile(
            "ImagePolicy/warned/fuzz".into(),
            Some("warned".into()),
            imagegate::engine::Mode::Warn,
            &serde_json::json!({"default": [{"type": "reject"}]}),
            None,
        ));
        for d in &docs {
            if let Err(e) = &d.policy {
                panic!("fuzz policy does not compile: {e}");
            }
        }
        let set = imagegate::policyset::PolicySet::build(&docs, &mut Default::default());
        let (_tx, policies) = tokio::sync::watch::channel(Arc::new(set));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let _guard = runtime.enter();
        // As `main` does: the HTTP clients are built without a default
        // rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(imagegate::metrics::Metrics::new());
        let engine = imagegate::engine::Engine::new(
            imagegate::engine::EngineConfig::default(),
            Some(metrics.clone()),
        )
        .expect("engine");
        let verifier = imagegate::admission::verifier::EngineVerifier {
            engine: Arc::new(engine),
            policies,
            keys: Arc::new(imagegate::policy::FilesystemKeyResolver::new()),
            credentials: Arc::new(imagegate::admission::verifier::StaticCredentials(Arc::new(
                imagegate::registry::Anonymous,
            ))),
            // Far above what a refused connection takes; an input that
            // needs it is a hang the fuzzer should report (-timeout).
            timeout: Duration::from_secs(5),
        };
        let state = imagegate::server::AppState {
            verifier: Arc::new(verifier),
            options: Arc::new(imagegate::admission::review::ReviewOptions::default()),
            metrics,
            ready: Arc::new(true.into()),
            observer: None,
        };
        Webhook { runtime, state }
    })
}

/// Target 6: the whole webhook handler, AdmissionReview bytes in, HTTP
/// response out (`server::handlers::{validate, mutate}`, which parse the
/// review and call `admission::review::review` with the engine), without a
/// socket. A review is answered 200 with a response for the same uid, or
/// refused 400; never a 500 and never a panic.
pub fn admission(data: &[u8]) {
    if data.len() > imagegate::server::DEFAULT_BODY_LIMIT {
        return;
    }
    let w = webhook();
    let uid = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.pointer("/request/uid").cloned());
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let body = axum::body::Bytes::copy_from_slice(data);
        let state = axum::extract::State(w.state.clone());
        let (status, bytes) = w.runtime.block_on(async {
            let response = match endpoint {
                Endpoint::Validate => imagegate::server::handlers::validate(state, body).await,
                Endpoint::Mutate => imagegate::server::handlers::mutate(state, body).await,
            };
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("response body");
            (status, bytes)
        });
        match status.as_u16() {
            400 => {}
            200 => {
                let review: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("a 200 answer is JSON");
                let response = review.get("response").expect("a 200 answer has a response");
                assert!(response["allowed"].is_boolean(), "allowed: {response}");
                if let Some(uid) = &uid {
                    assert_eq!(&response["uid"], uid, "the answer is for another uid");
                }
            }
            other => panic!(
                "{endpoint:?} answered {other}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Validate,
    Mutate,
}
