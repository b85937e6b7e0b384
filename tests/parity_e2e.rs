//! imagegate against containers/image, end to end: every case asks skopeo
//! (`skopeo copy --policy … docker://… dir:…`, c/image's own policy check)
//! and imagegate's engine the same question — same policy.json, same
//! registries.d, same registry, lookaside and signatures on 127.0.0.1 — and
//! asserts the same accept/reject.
//!
//! Debian's skopeo 1.9.3 carries c/image 5.23. Where current c/image (what
//! CRI-O vendors) differs, imagegate follows current c/image and the case
//! says so (`Divergence`): signatures by signing subkeys (accepted since
//! c/image maps subkeys to their primary), and lookaside errors under
//! `insecureAcceptAnything` (a copy fails reading signatures, the policy
//! verdict does not; DESIGN decision 1).

mod harness;

use std::path::Path;
use std::sync::Arc;

use harness::{CannedResponse, Harness, Key, PushOptions, keys};
use imagegate::engine::{Engine, EngineConfig, Mode, PolicyDocument, VerifyContext};
use imagegate::manifest::list::Platform;
use imagegate::policy::{FilesystemKeyResolver, ParseOptions, Policy};
use imagegate::registry::{Anonymous, RegistryOptions};
use imagegate::signature::registries_d::RegistryConfiguration;
use serde_json::json;

const AMD64: &str = "linux/amd64";

/// How a case is expected to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Both accept.
    Accept,
    /// Both reject.
    Reject,
    /// skopeo 1.9.3 and imagegate disagree for a documented reason:
    /// (skopeo accepts, imagegate accepts).
    Divergence(bool, bool),
}

struct Outcome {
    skopeo: (bool, String),
    imagegate: (bool, String),
}

async fn imagegate_verdict(
    policy: &Path,
    image: &str,
    platform: &str,
    registries_d: &Path,
) -> (bool, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = Policy::parse(&std::fs::read(policy).unwrap(), ParseOptions::POLICY_FILE)
        .expect("policy parses");
    let registries = RegistryConfiguration::load_dir(registries_d).expect("registries.d loads");
    let engine = Engine::new(
        EngineConfig {
            registry: RegistryOptions {
                tls_verify: false,
                ..RegistryOptions::default()
            },
            platforms: vec![Platform::parse(platform).unwrap()],
            ..EngineConfig::default()
        },
        None,
    )
    .unwrap();
    let document = Arc::new(PolicyDocument {
        name: "policy.json".into(),
        generation: 0,
        mode: Mode::Enforce,
        policy: Ok(policy),
    });
    let keys = FilesystemKeyResolver::new();
    let ctx = VerifyContext {
        registries_d: &registries,
        keys: &keys,
        credentials: &Anonymous,
        deadline: None,
    };
    let v = engine.verify_image(image, &[document], &ctx).await;
    (
        v.allowed(),
        v.documents[0].reason.clone().unwrap_or_default(),
    )
}

/// Runs one case on `platform` with `registries_d` and checks the expectation.
async fn case_with(
    h: &Harness,
    name: &str,
    policy: &Path,
    image: &str,
    platform: &str,
    registries_d: &Path,
    expect: Expect,
) -> Outcome {
    let skopeo = h.skopeo_verdict_with(policy, image, Some(platform), registries_d);
    let imagegate = imagegate_verdict(policy, image, platform, registries_d).await;
    let (want_skopeo, want_imagegate) = match expect {
        Expect::Accept => (true, true),
        Expect::Reject => (false, false),
        Expect::Divergence(s, i) => (s, i),
    };
    assert_eq!(
        (skopeo.0, imagegate.0),
        (want_skopeo, want_imagegate),
        "case {name:?}: {image}\n  skopeo:    {:?}\n  imagegate: {:?}",
        skopeo,
        imagegate
    );
    Outcome { skopeo, imagegate }
}

async fn case(h: &Harness, name: &str, policy: &Path, image: &str, expect: Expect) -> Outcome {
    case_with(h, name, policy, image, AMD64, h.registries_d(), expect).await
}

fn signed_by(key: &Key, identity: serde_json::Value) -> serde_json::Value {
    let mut r = json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": key.public_armored.to_string_lossy()});
    if !identity.is_null() {
        r["signedIdentity"] = identity;
    }
    r
}

fn policy(h: &Harness, scopes: serde_json::Value) -> std::path::PathBuf {
    h.write_policy(&json!({"default": [{"type": "reject"}], "transports": {"docker": scopes}}))
}

#[tokio::test]
async fn requirement_types_and_signers() {
    let h = Harness::start();
    let k = keys();
    let signed = h.push_signed(&h.build_image("signed"), "e2e/signed:v1", &k.signer);
    h.push_unsigned(&h.build_image("unsigned"), "e2e/unsigned:v1");
    h.push_signed(&h.build_image("wrong"), "e2e/wrong:v1", &k.wrong);
    // Signed by both keys: signature-1 by `wrong`, then signature-2 by `signer`.
    h.push_signed(&h.build_image("both"), "e2e/both:v1", &k.wrong);
    h.copy(
        "e2e/both:v1",
        "e2e/both:v1",
        PushOptions::signed_by(&k.signer),
    );

    let trust_signer = policy(
        &h,
        json!({h.image("e2e"): [signed_by(&k.signer, json!(null))]}),
    );
    let o = case(
        &h,
        "signed",
        &trust_signer,
        &h.image("e2e/signed:v1"),
        Expect::Accept,
    )
    .await;
    assert!(o.imagegate.1.is_empty());
    case(
        &h,
        "signed by digest",
        &trust_signer,
        &h.image(&format!("e2e/signed@{signed}")),
        Expect::Accept,
    )
    .await;
    let o = case(
        &h,
        "unsigned",
        &trust_signer,
        &h.image("e2e/unsigned:v1"),
        Expect::Reject,
    )
    .await;
    assert_eq!(
        o.imagegate.1,
        "A signature was required, but no signature exists"
    );
    assert!(
        o.skopeo
            .1
            .ends_with("A signature was required, but no signature exists")
    );
    let o = case(
        &h,
        "wrong key",
        &trust_signer,
        &h.image("e2e/wrong:v1"),
        Expect::Reject,
    )
    .await;
    assert!(
        o.imagegate.1.starts_with("Key not found for key ID"),
        "{}",
        o.imagegate.1
    );
    case(
        &h,
        "second signature valid",
        &trust_signer,
        &h.image("e2e/both:v1"),
        Expect::Accept,
    )
    .await;

    let trust_wrong = policy(
        &h,
        json!({h.image("e2e"): [signed_by(&k.wrong, json!(null))]}),
    );
    case(
        &h,
        "trusting another key",
        &trust_wrong,
        &h.image("e2e/signed:v1"),
        Expect::Reject,
    )
    .await;

    let both_required = policy(
        &h,
        json!({h.image("e2e"): [signed_by(&k.signer, json!(null)), signed_by(&k.wrong, json!(null))]}),
    );
    case(
        &h,
        "two signedBy, both signatures",
        &both_required,
        &h.image("e2e/both:v1"),
        Expect::Accept,
    )
    .await;
    case(
        &h,
        "two signedBy, one signature",
        &both_required,
        &h.image("e2e/signed:v1"),
        Expect::Reject,
    )
    .await;

    let key_paths = policy(
        &h,
        json!({h.image("e2e"): [{"type": "signedBy", "keyType": "GPGKeys",
        "keyPaths": [k.wrong.public_binary.to_string_lossy(), k.signer.public_binary.to_string_lossy()]}]}),
    );
    case(
        &h,
        "keyPaths union",
        &key_paths,
        &h.image("e2e/signed:v1"),
        Expect::Accept,
    )
    .await;

    use base64::Engine as _;
    let key_data = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(&k.signer.public_binary).unwrap());
    let key_data = policy(
        &h,
        json!({h.image("e2e"): [{"type": "signedBy", "keyType": "GPGKeys", "keyData": key_data}]}),
    );
    case(
        &h,
        "keyData",
        &key_data,
        &h.image("e2e/signed:v1"),
        Expect::Accept,
    )
    .await;

    let accept_then_sign = policy(
        &h,
        json!({h.image("e2e"): [{"type": "insecureAcceptAnything"}, signed_by(&k.signer, json!(null))]}),
    );
    case(
        &h,
        "insecureAcceptAnything does not excuse signedBy",
        &accept_then_sign,
        &h.image("e2e/unsigned:v1"),
        Expect::Reject,
    )
    .await;

    let reject = policy(&h, json!({h.image("e2e"): [{"type": "reject"}]}));
    let o = case(
        &h,
        "reject",
        &reject,
        &h.image("e2e/signed:v1"),
        Expect::Reject,
    )
    .await;
    assert_eq!(
        o.imagegate.1,
        format!(
            "Running image docker://{} is rejected by policy.",
            h.image("e2e/signed:v1")
        )
    );

    let accept = policy(
        &h,
        json!({h.image("e2e"): [{"type": "insecureAcceptAnything"}]}),
    );
    case(
        &h,
        "insecureAcceptAnything",
        &accept,
        &h.image("e2e/unsigned:v1"),
        Expect::Accept,
    )
    .await;

    let unimplemented = policy(
        &h,
        json!({h.image("e2e"): [{"type": "signedBy", "keyType": "signedByGPGKeys", "keyPath": k.signer.public_armored.to_string_lossy()}]}),
    );
    case(
        &h,
        "keyType signedByGPGKeys",
        &unimplemented,
        &h.image("e2e/signed:v1"),
        Expect::Reject,
    )
    .await;

    let base_layer = policy(
        &h,
        json!({h.image("e2e"): [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchRepository"}}]}),
    );
    let o = case(
        &h,
        "signedBaseLayer",
        &base_layer,
        &h.image("e2e/signed:v1"),
        Expect::Reject,
    )
    .await;
    assert_eq!(o.imagegate.1, "signedBaseLayer not implemented yet!");
}

#[tokio::test]
async fn identity_matchers() {
    let h = Harness::start();
    let k = keys();
    let digest = h.push_signed(&h.build_image("id"), "e2e/app:v1", &k.signer);
    // Copies keep the signature, which still claims e2e/app:v1.
    h.copy("e2e/app:v1", "e2e/app:retag", PushOptions::unsigned());
    h.copy("e2e/app:v1", "mirror/app:v1", PushOptions::unsigned());
    let scope = |m: serde_json::Value| {
        policy(
            &h,
            json!({h.image("e2e"): [signed_by(&k.signer, m.clone())], h.image("mirror"): [signed_by(&k.signer, m)]}),
        )
    };
    let default = scope(json!(null));
    let o = case(
        &h,
        "default, other tag",
        &default,
        &h.image("e2e/app:retag"),
        Expect::Reject,
    )
    .await;
    assert_eq!(
        o.imagegate.1,
        format!(
            "Signature for identity {:?} is not accepted",
            h.image("e2e/app:v1")
        )
    );
    case(
        &h,
        "default, digest reference",
        &default,
        &h.image(&format!("e2e/app@{digest}")),
        Expect::Accept,
    )
    .await;
    case(
        &h,
        "default, other repository",
        &default,
        &h.image("mirror/app:v1"),
        Expect::Reject,
    )
    .await;

    let exact = scope(json!({"type": "matchExact"}));
    case(
        &h,
        "matchExact, same tag",
        &exact,
        &h.image("e2e/app:v1"),
        Expect::Accept,
    )
    .await;
    case(
        &h,
        "matchExact, digest reference",
        &exact,
        &h.image(&format!("e2e/app@{digest}")),
        Expect::Reject,
    )
    .await;

    let repository = scope(json!({"type": "matchRepository"}));
    case(
        &h,
        "matchRepository, other tag",
        &repository,
        &h.image("e2e/app:retag"),
        Expect::Accept,
    )
    .await;
    case(
        &h,
        "matchRepository, other repository",
        &repository,
        &h.image("mirror/app:v1"),
        Expect::Reject,
    )
    .await;

    let exact_reference =
        scope(json!({"type": "exactReference", "dockerReference": h.image("e2e/app:v1")}));
    case(
        &h,
        "exactReference from a mirror",
        &exact_reference,
        &h.image("mirror/app:v1"),
        Expect::Accept,
    )
    .await;
    let exact_reference_other =
        scope(json!({"type": "exactReference", "dockerReference": h.image("e2e/app:v2")}));
    case(
        &h,
        "exactReference, other tag signed",
        &exact_reference_other,
        &h.image("e2e/app:v1"),
        Expect::Reject,
    )
    .await;

    let exact_repository =
        scope(json!({"type": "exactRepository", "dockerRepository": h.image("e2e/app")}));
    case(
        &h,
        "exactRepository from a mirror",
        &exact_repository,
        &h.image("mirror/app:v1"),
        Expect::Accept,
    )
    .await;

    let remap = scope(
        json!({"type": "remapIdentity", "prefix": h.image("mirror"), "signedPrefix": h.image("e2e")}),
    );
    case(
        &h,
        "remapIdentity mirror to origin",
        &remap,
        &h.image("mirror/app:v1"),
        Expect::Accept,
    )
    .await;
    case(
        &h,
        "remapIdentity, prefix not matching",
        &remap,
        &h.image("e2e/app:retag"),
        Expect::Reject,
    )
    .await;
    let remap_boundary = scope(
        json!({"type": "remapIdentity", "prefix": h.image("mirr"), "signedPrefix": h.image("e2e")}),
    );
    case(
        &h,
        "remapIdentity matches whole path components",
        &remap_boundary,
        &h.image("mirror/app:v1"),
        Expect::Reject,
    )
    .await;
}

#[tokio::test]
async fn scope_order_and_wildcards() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("scoped"), "team/a/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("scoped-unsigned"), "team/a/unsigned:v1");
    let sign = signed_by(&k.signer, json!(null));
    let accept = json!([{"type": "insecureAcceptAnything"}]);
    let reject = json!([{"type": "reject"}]);

    // The identity beats the repository, which beats the namespace.
    let p = policy(
        &h,
        json!({h.image("team/a/unsigned:v1"): accept, h.image("team/a/unsigned"): reject, h.image("team"): [sign]}),
    );
    case(
        &h,
        "identity scope wins",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Accept,
    )
    .await;
    let p = policy(
        &h,
        json!({h.image("team/a/unsigned"): accept, h.image("team/a"): reject}),
    );
    case(
        &h,
        "repository scope wins",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Accept,
    )
    .await;
    let p = policy(
        &h,
        json!({h.image("team/a"): [sign], h.image("team"): accept}),
    );
    case(
        &h,
        "namespace scope, first match, no merge",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Reject,
    )
    .await;

    // A host scope must carry the port; wildcards strip it. The registry is 127.0.0.1:PORT.
    let p = policy(&h, json!({"127.0.0.1": accept}));
    case(
        &h,
        "host without port does not match",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Reject,
    )
    .await;
    let p = policy(&h, json!({"*.0.1": [sign]}));
    case(
        &h,
        "wildcard over an IP, port stripped",
        &p,
        &h.image("team/a/app:v1"),
        Expect::Accept,
    )
    .await;
    let p = policy(&h, json!({"*.0.1": accept, "*.0.0.1": reject}));
    case(
        &h,
        "more specific wildcard first",
        &p,
        &h.image("team/a/app:v1"),
        Expect::Reject,
    )
    .await;
    let p = policy(&h, json!({"*.0.1/team": accept}));
    case(
        &h,
        "wildcard with a path never matches",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Reject,
    )
    .await;
    let p = h.write_policy(
        &json!({"default": [{"type": "reject"}], "transports": {"docker": {"": accept}}}),
    );
    case(
        &h,
        "transport default",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Accept,
    )
    .await;
    let p = h.write_policy(
        &json!({"default": accept, "transports": {"docker": {"elsewhere.example.com": reject}}}),
    );
    case(
        &h,
        "global default",
        &p,
        &h.image("team/a/unsigned:v1"),
        Expect::Accept,
    )
    .await;
}

/// A payload as c/image writes it, for `identity` and `digest`, passed
/// through `edit` to break one rule.
fn crafted_payload(identity: &str, digest: &str, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut payload = json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "atomic container signature"
        },
        "optional": {"creator": "x", "timestamp": 1}
    });
    edit(&mut payload);
    payload.to_string().into_bytes()
}

#[tokio::test]
async fn payload_strictness_with_crafted_signatures() {
    let h = Harness::start();
    let k = keys();
    let default = policy(
        &h,
        json!({h.image("crafted"): [signed_by(&k.signer, json!(null))]}),
    );
    let repository = policy(
        &h,
        json!({h.image("crafted"): [signed_by(&k.signer, json!({"type": "matchRepository"}))]}),
    );
    let mut n = 0;
    // Pushes a fresh unsigned image and stores one gpg-signed payload for it;
    // `make` gets the image reference, its repository and its digest.
    let mut crafted = |make: &dyn Fn(&str, &str, &str) -> Vec<u8>| -> String {
        n += 1;
        let repo = format!("crafted/img{n}");
        let digest = h.push_unsigned(
            &h.build_image(&format!("crafted {n}")),
            &format!("{repo}:v1"),
        );
        let image = h.image(&format!("{repo}:v1"));
        h.put_signature(
            &repo,
            &digest,
            1,
            &h.gpg_sign(&k.signer, &make(&image, &h.image(&repo), &digest)),
        );
        image
    };

    let img = crafted(&|i, _, d| crafted_payload(i, d, |_| {}));
    case(
        &h,
        "well-formed crafted payload",
        &default,
        &img,
        Expect::Accept,
    )
    .await;
    let img = crafted(&|i, _, d| crafted_payload(i, d, |p| p["critical"]["unexpected"] = json!(1)));
    let o = case(&h, "extra critical field", &default, &img, Expect::Reject).await;
    assert_eq!(o.imagegate.1, "Unknown key \"unexpected\"");
    let img = crafted(&|i, _, d| {
        crafted_payload(i, d, |p| {
            p["optional"]["unexpected"] = json!({"nested": [1, 2]})
        })
    });
    case(
        &h,
        "unknown optional field ignored",
        &default,
        &img,
        Expect::Accept,
    )
    .await;
    let img = crafted(&|i, _, d| {
        crafted_payload(i, d, |p| {
            p.as_object_mut().unwrap().remove("optional");
        })
    });
    let o = case(&h, "optional missing", &default, &img, Expect::Reject).await;
    assert_eq!(o.imagegate.1, "Key \"optional\" missing in a JSON object");
    let img =
        crafted(&|i, _, d| crafted_payload(i, d, |p| p["optional"]["timestamp"] = json!(1.5)));
    case(&h, "fractional timestamp", &default, &img, Expect::Reject).await;
    let img = crafted(&|i, _, d| {
        crafted_payload(i, d, |p| p["critical"]["type"] = json!("other signature"))
    });
    case(&h, "wrong signature type", &default, &img, Expect::Reject).await;
    let img = crafted(&|i, _, d| {
        crafted_payload(i, d, |p| {
            p["critical"]["image"]["docker-manifest-digest"] =
                json!(format!("sha512:{}", "a".repeat(128)))
        })
    });
    case(
        &h,
        "sha512 digest never matches",
        &default,
        &img,
        Expect::Reject,
    )
    .await;
    let img = crafted(&|i, _, d| {
        crafted_payload(i, d, |p| {
            p["critical"]["image"]["docker-manifest-digest"] =
                json!(format!("sha256:{}", "0".repeat(64)))
        })
    });
    let o = case(
        &h,
        "digest of another manifest",
        &default,
        &img,
        Expect::Reject,
    )
    .await;
    assert!(
        o.imagegate.1.starts_with("Signature for digest sha256:000"),
        "{}",
        o.imagegate.1
    );
    let img = crafted(&|_, repo, d| crafted_payload(repo, d, |_| {}));
    case(
        &h,
        "name-only identity, default matcher",
        &default,
        &img,
        Expect::Reject,
    )
    .await;
    case(
        &h,
        "name-only identity, matchRepository",
        &repository,
        &img,
        Expect::Accept,
    )
    .await;
    let img = crafted(&|_, _, _| b"This is not JSON\n".to_vec());
    let o = case(&h, "payload not JSON", &default, &img, Expect::Reject).await;
    assert_eq!(
        o.imagegate.1,
        "invalid character 'T' looking for beginning of value"
    );
}

#[tokio::test]
async fn manifest_lists_and_platforms() {
    let h = Harness::start();
    let k = keys();
    let index = h.build_index("multi", &["linux/amd64", "linux/arm64"]);
    h.push_signed(&index, "multi/app:v1", &k.signer);
    h.push(
        &h.build_index("v2s2", &["linux/amd64", "linux/arm64"]),
        "multi/docker:v1",
        PushOptions::signed_by(&k.signer).all().v2s2(),
    );
    let p = policy(
        &h,
        json!({h.image("multi"): [signed_by(&k.signer, json!(null))]}),
    );
    let rd = h.registries_d().to_path_buf();
    case_with(
        &h,
        "index, amd64 instance",
        &p,
        &h.image("multi/app:v1"),
        "linux/amd64",
        &rd,
        Expect::Accept,
    )
    .await;
    case_with(
        &h,
        "index, arm64 instance",
        &p,
        &h.image("multi/app:v1"),
        "linux/arm64",
        &rd,
        Expect::Accept,
    )
    .await;
    case_with(
        &h,
        "docker manifest list",
        &p,
        &h.image("multi/docker:v1"),
        "linux/arm64",
        &rd,
        Expect::Accept,
    )
    .await;
    let list_digest = h.manifest_digest("multi/app:v1");
    case_with(
        &h,
        "index by digest",
        &p,
        &h.image(&format!("multi/app@{list_digest}")),
        "linux/arm64",
        &rd,
        Expect::Accept,
    )
    .await;

    // Only the amd64 instance and the list signed: arm64 nodes would pull an unsigned image.
    let partial = h.build_index("partial", &["linux/amd64", "linux/arm64"]);
    h.push_unsigned(&partial, "multi/partial:v1");
    let identity = h.image("multi/partial:v1");
    for (platform, digest) in h.instance_digests("multi/partial:v1") {
        if platform == "linux/amd64" {
            let manifest = h.raw_manifest(&format!("multi/partial@{digest}"));
            h.put_signature(
                "multi/partial",
                &digest,
                1,
                &h.standalone_sign(&manifest, &identity, &k.signer),
            );
        }
    }
    let top = h.manifest_digest("multi/partial:v1");
    h.put_signature(
        "multi/partial",
        &top,
        1,
        &h.standalone_sign(&h.raw_manifest("multi/partial:v1"), &identity, &k.signer),
    );
    case_with(
        &h,
        "partially signed index, amd64",
        &p,
        &identity,
        "linux/amd64",
        &rd,
        Expect::Accept,
    )
    .await;
    case_with(
        &h,
        "partially signed index, arm64",
        &p,
        &identity,
        "linux/arm64",
        &rd,
        Expect::Reject,
    )
    .await;

    // Only the list signed: no instance is, so every node rejects.
    let top_only = h.build_index("top-only", &["linux/amd64", "linux/arm64"]);
    h.push_unsigned(&top_only, "multi/toponly:v1");
    let top = h.manifest_digest("multi/toponly:v1");
    h.put_signature(
        "multi/toponly",
        &top,
        1,
        &h.standalone_sign(
            &h.raw_manifest("multi/toponly:v1"),
            &h.image("multi/toponly:v1"),
            &k.signer,
        ),
    );
    let o = case(
        &h,
        "list-only signature",
        &p,
        &h.image("multi/toponly:v1"),
        Expect::Reject,
    )
    .await;
    assert_eq!(
        o.imagegate.1,
        "A signature was required, but no signature exists"
    );
}

#[tokio::test]
async fn key_lifetimes_and_subkeys() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("expired"), "keys/expired:v1", &k.expired);
    h.push_signed(&h.build_image("revoked"), "keys/revoked:v1", &k.revoked);
    h.push_signed(&h.build_image("subkey"), "keys/subkey:v1", &k.subkey);
    let p = policy(
        &h,
        json!({
            h.image("keys/expired"): [signed_by(&k.expired, json!(null))],
            h.image("keys/revoked"): [signed_by(&k.revoked, json!(null))],
            h.image("keys/subkey"): [signed_by(&k.subkey, json!(null))],
        }),
    );
    case(
        &h,
        "key expired after signing",
        &p,
        &h.image("keys/expired:v1"),
        Expect::Reject,
    )
    .await;
    case(
        &h,
        "revoked key",
        &p,
        &h.image("keys/revoked:v1"),
        Expect::Reject,
    )
    .await;
    // c/image 5.23 (skopeo 1.9.3) refuses signing-subkey signatures; current
    // c/image, and CRI-O with it, accepts them for a trusted primary key.
    let o = case(
        &h,
        "signing subkey",
        &p,
        &h.image("keys/subkey:v1"),
        Expect::Divergence(false, true),
    )
    .await;
    assert!(o.skopeo.1.contains("is not accepted"), "{}", o.skopeo.1);
}

#[tokio::test]
async fn lookaside_answers_and_registries_d_selection() {
    let h = Harness::start();
    let k = keys();
    let digest = h.push_signed(&h.build_image("look"), "look/app:v1", &k.signer);
    let p = policy(
        &h,
        json!({h.image("look"): [signed_by(&k.signer, json!(null))]}),
    );
    let image = h.image("look/app:v1");

    h.lookaside().respond(
        &h.signature_url_path("look/app", &digest, 1),
        Some(CannedResponse::status(500)),
    );
    let o = case(&h, "lookaside 500", &p, &image, Expect::Reject).await;
    assert!(o.imagegate.1.contains("status 500"), "{}", o.imagegate.1);
    let accept = policy(
        &h,
        json!({h.image("look"): [{"type": "insecureAcceptAnything"}]}),
    );
    // skopeo copy reads signatures to store them and fails; the policy verdict
    // (what CRI-O's create-time check and imagegate decide) needs none.
    case(
        &h,
        "lookaside 500 under insecureAcceptAnything",
        &accept,
        &image,
        Expect::Divergence(false, true),
    )
    .await;
    h.lookaside()
        .respond(&h.signature_url_path("look/app", &digest, 1), None);

    // An armoured blob first fails the whole read, even with a valid second one.
    let valid = h.signatures("look/app", &digest).remove(0);
    let armored = h.gpg_sign_with(
        &k.signer,
        &harness::Harness::payload(&image, &digest),
        &["--armor"],
    );
    h.put_signature("look/app", &digest, 1, &armored);
    h.put_signature("look/app", &digest, 2, &valid);
    let o = case(&h, "armoured blob", &p, &image, Expect::Reject).await;
    assert!(
        o.imagegate
            .1
            .contains("unrecognized signature format, starting with binary 0x2d"),
        "{}",
        o.imagegate.1
    );
    h.put_signature("look/app", &digest, 1, &valid);
    std::fs::remove_file(h.signature_dir("look/app", &digest).join("signature-2")).unwrap();
    case(&h, "valid again", &p, &image, Expect::Accept).await;

    // registries.d: a more specific entry without a lookaside falls through.
    let rd = h.dir().join("registries-fallthrough.d");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(
        rd.join("a.yaml"),
        format!(
            "default-docker:\n  lookaside: http://127.0.0.1:9/nowhere\ndocker:\n  {reg}/look/app:\n    use-sigstore-attachments: false\n  {reg}:\n    lookaside: {url}\n",
            reg = h.registry(),
            url = h.lookaside_url()
        ),
    )
    .unwrap();
    case_with(
        &h,
        "registries.d fall-through",
        &p,
        &image,
        AMD64,
        &rd,
        Expect::Accept,
    )
    .await;
    // default-docker only: it applies to every registry.
    let rd2 = h.dir().join("registries-default.d");
    std::fs::create_dir_all(&rd2).unwrap();
    std::fs::write(
        rd2.join("d.yaml"),
        format!("default-docker:\n  lookaside: {}\n", h.lookaside_url()),
    )
    .unwrap();
    case_with(
        &h,
        "registries.d default-docker",
        &p,
        &image,
        AMD64,
        &rd2,
        Expect::Accept,
    )
    .await;
    // A wildcard scope in registries.d pointing nowhere useful: no signatures found there.
    let rd3 = h.dir().join("registries-wild.d");
    std::fs::create_dir_all(&rd3).unwrap();
    std::fs::write(
        rd3.join("w.yaml"),
        format!(
            "docker:\n  '*.0.1':\n    lookaside: {}/elsewhere\n",
            h.lookaside_url()
        ),
    )
    .unwrap();
    case_with(
        &h,
        "registries.d wildcard to an empty store",
        &p,
        &image,
        AMD64,
        &rd3,
        Expect::Reject,
    )
    .await;
}
