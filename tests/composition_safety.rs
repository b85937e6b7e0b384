//! Composition safety (RELIABILITY.md "Fault matrix", composition): a
//! namespace's ImagePolicy documents can tighten what the cluster's
//! ClusterImagePolicy documents enforce, never loosen it; and wildcard
//! scopes are anchored exactly as in containers/image, which is shown by
//! comparing with skopeo's verdicts on real pushed images, not assumed.
//!
//! Everything goes through the library's own policy set
//! (`policyset::compile` + `PolicySet::build` + `documents_for`) and engine
//! (`Engine::verify_image`, the code the webhook runs), against the real
//! registry and lookaside of the harness, with real signatures.

mod harness;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Harness, keys, skopeo_message, tools};
use imagegate::engine::{Engine, ImageVerdict, Mode, PolicyDocument, VerifyContext};
use imagegate::policy::{FilesystemKeyResolver, ParseOptions, Policy};
use imagegate::policyset::{PolicySet, compile};
use imagegate::registry::Anonymous;
use imagegate::signature::registries_d::RegistryConfiguration;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

async fn verify(
    e: &Engine,
    image: &str,
    documents: &[Arc<PolicyDocument>],
    registries_d: &RegistryConfiguration,
) -> ImageVerdict {
    let keys = FilesystemKeyResolver::new();
    let ctx = VerifyContext {
        registries_d,
        keys: &keys,
        credentials: &Anonymous,
        // Fails closed on anything unreachable, and keeps a case short.
        deadline: Some(Instant::now() + Duration::from_secs(5)),
    };
    e.verify_image(image, documents, &ctx).await
}

/// What the generated documents are made of: hosts and scope keys around
/// the real registry (`R`, also reachable as `localhost:PORT`, `L`).
struct World {
    r: String,
    l: String,
    keys: Vec<String>,
    requirements: Vec<Value>,
    images: Vec<String>,
}

impl World {
    fn new(h: &Harness, signed_digest: &str) -> World {
        let r = h.registry();
        let l = format!("localhost:{}", h.registry_port());
        let k = keys();
        let signed_by = |key: &Path| json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": key.to_string_lossy()});
        World {
            keys: vec![
                r.clone(),
                l.clone(),
                format!("{r}/comp"),
                format!("{r}/comp/signed"),
                format!("{r}/comp/unsigned"),
                format!("{r}/comp/signed:v1"),
                format!("{l}/comp"),
                "*.0.0.1".into(),
                "*.1".into(),
                // Never matches R (a host scope needs the port).
                "127.0.0.1".into(),
                "*.example.com".into(),
                String::new(),
            ],
            requirements: vec![
                json!({"type": "reject"}),
                json!({"type": "insecureAcceptAnything"}),
                signed_by(&k.signer.public_armored),
                signed_by(&k.wrong.public_armored),
                json!({"type": "signedBy", "keyType": "GPGKeys",
                       "keyPath": k.signer.public_armored.to_string_lossy(),
                       "signedIdentity": {"type": "matchRepository"}}),
            ],
            images: vec![
                format!("{r}/comp/signed:v1"),
                format!("{r}/comp/signed@{signed_digest}"),
                format!("{r}/comp/unsigned:v1"),
                format!("{l}/comp/signed:v1"),
                format!("{r}/other/missing:v1"),
            ],
            r,
            l,
        }
    }

    /// A policy document: maybe a default, and up to 4 scopes each with 1–2
    /// requirements; sometimes (namespaces only) one that does not parse.
    fn document(&self, allow_broken: bool) -> impl Strategy<Value = Value> + use<> {
        let n_keys = self.keys.len();
        let n_reqs = self.requirements.len();
        let keys = self.keys.clone();
        let reqs = self.requirements.clone();
        (
            prop::option::of(0..n_reqs),
            prop::collection::btree_map(0..n_keys, prop::collection::vec(0..n_reqs, 1..3), 0..5),
            if allow_broken {
                prop::bool::weighted(0.1).boxed()
            } else {
                Just(false).boxed()
            },
        )
            .prop_map(move |(default, scopes, broken)| {
                if broken {
                    return json!({"default": [{"type": "acceptEverythingPlease"}]});
                }
                let mut doc = json!({"transports": {"docker": {}}});
                for (k, rs) in scopes {
                    doc["transports"]["docker"][&keys[k]] =
                        rs.iter().map(|&i| reqs[i].clone()).collect();
                }
                if let Some(d) = default {
                    doc["default"] = json!([reqs[d].clone()]);
                }
                doc
            })
    }
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop::sample::select(vec![Mode::Enforce, Mode::Enforce, Mode::Warn, Mode::Audit])
}

/// Over generated cluster documents, namespace documents and images: the
/// webhook's set for a namespace (cluster ∪ namespace) never admits an
/// image the cluster documents alone deny, and every cluster document
/// decides each image exactly as it does alone.
#[test]
fn namespace_documents_never_loosen_the_cluster() {
    let h = Harness::start();
    let k = keys();
    let digest = h.push_signed(&h.build_image("comp signed"), "comp/signed:v1", &k.signer);
    h.push_unsigned(&h.build_image("comp unsigned"), "comp/unsigned:v1");
    let world = World::new(&h, &digest);
    let lookaside = json!({"docker": {
        world.r.clone(): {"lookaside": h.lookaside_url()},
        world.l.clone(): {"lookaside": h.lookaside_url()},
    }});
    let e = harness::engine(Default::default(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let strategy = (
        prop::collection::vec((world.document(false), mode_strategy()), 1..3),
        prop::collection::vec((world.document(true), mode_strategy()), 1..4),
        // Documents of another namespace: they must not apply at all.
        prop::collection::vec(world.document(true), 0..2),
        prop::sample::subsequence(world.images.clone(), 1..=3),
    );
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    // Coverage of the interesting space, checked at the end.
    let loosened_attempts = std::sync::atomic::AtomicUsize::new(0);
    let verified_admits = std::sync::atomic::AtomicUsize::new(0);
    let tightened = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |(cluster, namespaced, elsewhere, images)| {
            let mut loaded = Vec::new();
            for (i, (policy, mode)) in cluster.iter().enumerate() {
                // The first cluster document carries the lookaside map.
                let lookaside = (i == 0).then(|| lookaside.clone());
                loaded.push(compile(
                    format!("ClusterImagePolicy/c{i}"),
                    None,
                    *mode,
                    policy,
                    lookaside,
                ));
            }
            let cluster_only = PolicySet::build(&loaded, &mut HashMap::new());
            for (i, (policy, mode)) in namespaced.iter().enumerate() {
                loaded.push(compile(
                    format!("ImagePolicy/team/n{i}"),
                    Some("team".into()),
                    *mode,
                    policy,
                    None,
                ));
            }
            for (i, policy) in elsewhere.iter().enumerate() {
                loaded.push(compile(
                    format!("ImagePolicy/other/o{i}"),
                    Some("other".into()),
                    Mode::Enforce,
                    policy,
                    None,
                ));
            }
            let full = PolicySet::build(&loaded, &mut HashMap::new());
            let alone = cluster_only.documents_for(Some("team"));
            let union = full.documents_for(Some("team"));
            prop_assert_eq!(alone.len(), cluster.len());
            prop_assert_eq!(union.len(), cluster.len() + namespaced.len());
            rt.block_on(async {
                for image in &images {
                    let a = verify(&e, image, &alone, &cluster_only.registries_d).await;
                    let u = verify(&e, image, &union, &full.registries_d).await;
                    if !a.admitted() {
                        prop_assert!(
                            !u.admitted(),
                            "{image}: the cluster denies ({:?}) but cluster ∪ namespace admits",
                            a.rejection_messages()
                        );
                        if namespaced
                            .iter()
                            .any(|(p, _)| p.to_string().contains("insecureAcceptAnything"))
                        {
                            loosened_attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    // Each cluster document's own verdict is unchanged.
                    for (da, du) in a.documents.iter().zip(&u.documents) {
                        prop_assert_eq!(&da.document, &du.document);
                        prop_assert_eq!(da.allowed, du.allowed, "{}: {}", image, da.document);
                    }
                    // And the namespace cannot make the set accept more.
                    if u.admitted() {
                        prop_assert!(a.admitted());
                    }
                    if a.admitted() && a.verified() {
                        verified_admits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if a.admitted() && !u.admitted() {
                        tightened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let (loosened_attempts, verified_admits, tightened) = (
        loosened_attempts.into_inner(),
        verified_admits.into_inner(),
        tightened.into_inner(),
    );
    eprintln!(
        "composition: {loosened_attempts} cluster denials with an insecureAcceptAnything \
         namespace document, {verified_admits} admissions on verified signatures, \
         {tightened} namespace tightenings"
    );
    assert!(
        loosened_attempts > 0 && verified_admits > 0 && tightened > 0,
        "the generator missed part of the space"
    );
}

/// `*.trusted.example.com` against look-alike hosts, as c/image anchors it
/// (semantics §1.5: the port is stripped, then each leading label is
/// dropped in turn and `*.` + the rest is tried; the domain itself and
/// anything in the path never produce a wildcard key).
const WILDCARD: &str = "*.trusted.example.com";
const WILDCARD_CASES: &[(&str, bool)] = &[
    ("attacker.example.com/x.trusted.example.com/app:v1", false),
    ("trusted.example.com.attacker.com/app:v1", false),
    ("eviltrusted.example.com/app:v1", false),
    ("trusted.example.com/app:v1", false),
    ("a.trusted.example.com/app:v1", true),
    ("a.b.trusted.example.com:5000/app:v1", true),
];

fn wildcard_policy(inside: &str, outside: &str) -> Value {
    json!({"default": [{"type": outside}], "transports": {"docker": {WILDCARD: [{"type": inside}]}}})
}

fn document(policy: &Value, options: ParseOptions) -> Arc<PolicyDocument> {
    Arc::new(PolicyDocument {
        name: "policy.json".into(),
        generation: 1,
        mode: Mode::Enforce,
        policy: Ok(Policy::parse(policy.to_string().as_bytes(), options).unwrap()),
    })
}

#[tokio::test]
async fn wildcard_scopes_are_anchored_as_in_containers_image() {
    let e = harness::engine(Default::default(), None);
    let rd = RegistryConfiguration::default();
    let accept_inside = document(
        &wildcard_policy("insecureAcceptAnything", "reject"),
        ParseOptions::POLICY_FILE,
    );
    let reject_inside = document(
        &wildcard_policy("reject", "insecureAcceptAnything"),
        ParseOptions::POLICY_FILE,
    );
    for &(image, inside) in WILDCARD_CASES {
        let reference = imagegate::reference::ImageReference::parse(image).unwrap();
        let matched = accept_inside
            .policy
            .as_ref()
            .unwrap()
            .requirements_for(&reference)
            .map(|m| format!("{:?}", m.scope));
        assert_eq!(
            matched.as_deref().is_some_and(|s| s.contains(WILDCARD)),
            inside,
            "{image}: matched {matched:?}"
        );
        // Through the engine: no network for reject/insecureAcceptAnything.
        let a = verify(&e, image, std::slice::from_ref(&accept_inside), &rd).await;
        let r = verify(&e, image, std::slice::from_ref(&reject_inside), &rd).await;
        assert_eq!(a.allowed(), inside, "{image}");
        assert_eq!(r.allowed(), !inside, "{image}");
        assert_eq!(a.digest, None, "{image}: nothing was fetched");
    }
}

/// skopeo's verdict for `image` (a logical name) under `policy`, pulled
/// from the harness registry through a registries.conf mirror: c/image
/// evaluates the policy against the logical reference (semantics §5.6), so
/// look-alike host names can be tried on real pushed images.
fn skopeo_mirrored_verdict(h: &Harness, policy: &Path, image: &str) -> (bool, String) {
    let reference = imagegate::reference::ImageReference::parse(image).unwrap();
    let named = reference.docker_reference();
    let conf = h.unique_path("registries").with_extension("conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            named.domain(),
            h.registry()
        ),
    )
    .unwrap();
    let dest = h.unique_path("verdict");
    let output = tools::run(
        // `--registries-conf` is a hidden global option of skopeo 1.9.
        tools::command("skopeo")
            .arg("--registries-conf")
            .arg(&conf)
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg("--policy")
            .arg(policy)
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dest.display())),
        None,
    );
    let _ = std::fs::remove_dir_all(&dest);
    (
        output.status.success(),
        skopeo_message(&String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test]
async fn wildcard_verdicts_match_skopeo_on_real_images() {
    let h = Harness::start();
    let e = harness::engine(Default::default(), None);
    let rd = RegistryConfiguration::default();
    // Each look-alike's repository, pushed to the real registry (the
    // mirror of every logical host).
    for &(image, _) in WILDCARD_CASES {
        let reference = imagegate::reference::ImageReference::parse(image).unwrap();
        let named = reference.docker_reference();
        let repo_tag = format!("{}:{}", named.path(), named.tag().unwrap());
        if h.try_raw_manifest(&repo_tag).is_err() {
            h.push_unsigned(&h.build_image(&repo_tag), &repo_tag);
        }
    }
    let mut compared = 0;
    for (inside, outside) in [
        ("insecureAcceptAnything", "reject"),
        ("reject", "insecureAcceptAnything"),
    ] {
        let policy = wildcard_policy(inside, outside);
        let file = h.write_policy(&policy);
        let doc = document(&policy, ParseOptions::POLICY_FILE);
        for &(image, _) in WILDCARD_CASES {
            let (skopeo_ok, message) = skopeo_mirrored_verdict(&h, &file, image);
            assert!(
                skopeo_ok || message.contains("is rejected by policy"),
                "{image}: skopeo failed for another reason than policy: {message}"
            );
            let ours = verify(&e, image, std::slice::from_ref(&doc), &rd).await;
            assert_eq!(
                ours.allowed(),
                skopeo_ok,
                "{image} under {policy}: imagegate {:?}, skopeo {message:?}",
                ours.rejection_messages()
            );
            if !skopeo_ok {
                assert_eq!(
                    ours.documents[0].reason.as_deref(),
                    Some(message.trim_start_matches("Source image rejected: ")),
                    "{image}: the same words"
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * WILDCARD_CASES.len());

    // The same anchoring on the registry's own address, without a mirror
    // (an IP is a dotted name, the port is stripped before wildcarding):
    // `*.0.0.1` matches 127.0.0.1:PORT; `*.127.0.0.1` (the host itself),
    // `*.27.0.0.1` (a suffix that is not a label boundary), `*.127.0` (a
    // prefix) and `127.0.0.1` (no port) do not.
    h.push_unsigned(&h.build_image("ip"), "ip/app:v1");
    let image = h.image("ip/app:v1");
    let own_host = h.registry();
    for (key, matches) in [
        ("*.0.0.1", true),
        ("*.1", true),
        ("*.127.0.0.1", false),
        ("*.27.0.0.1", false),
        ("*.127.0", false),
        ("127.0.0.1", false),
        (own_host.as_str(), true),
    ] {
        let policy = json!({"default": [{"type": "reject"}],
            "transports": {"docker": {key: [{"type": "insecureAcceptAnything"}]}}});
        let (skopeo_ok, message) = h.skopeo_verdict(&h.write_policy(&policy), &image);
        let ours = verify(
            &e,
            &image,
            &[document(&policy, ParseOptions::POLICY_FILE)],
            &rd,
        )
        .await;
        assert_eq!(skopeo_ok, matches, "skopeo, scope {key}: {message}");
        assert_eq!(ours.allowed(), skopeo_ok, "scope {key}: {message}");
    }
}

/// A namespace's ImagePolicy cannot redirect signature reads: only
/// ClusterImagePolicy documents configure lookasides, so a `lookaside` in
/// an ImagePolicy file (pointing at a listener that counts connections) is
/// never contacted, and the image is still decided by the cluster's keys.
#[tokio::test]
async fn namespace_documents_cannot_configure_lookasides() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("ns lookaside"), "comp/app:v1", &k.signer);
    let trap = harness::faults::FaultProxy::start(&h.lookaside_url());
    let dir = h.unique_path("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let signed_by = |key: &Path| json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key.to_string_lossy()}]);
    std::fs::write(
        dir.join("cluster.yaml"),
        serde_json::to_string(&json!({
            "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
            "metadata": {"name": "prod"},
            "spec": {"policy": {"transports": {"docker": {h.image("comp"): signed_by(&k.signer.public_armored)}}},
                     "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}}}
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("team.yaml"),
        serde_json::to_string(&json!({
            "apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "mine", "namespace": "team"},
            "spec": {"policy": {"default": [{"type": "insecureAcceptAnything"}]},
                     "lookaside": {"docker": {h.registry(): {"lookaside": trap.url()}}}}
        }))
        .unwrap(),
    )
    .unwrap();
    let set = imagegate::policyset::DirectoryLoader::default()
        .load(&dir)
        .unwrap();
    let e = harness::engine(Default::default(), None);
    let docs = set.documents_for(Some("team"));
    let v = verify(&e, &h.image("comp/app:v1"), &docs, &set.registries_d).await;
    h.push_unsigned(&h.build_image("ns lookaside unsigned"), "comp/unsigned:v1");
    let u = verify(&e, &h.image("comp/unsigned:v1"), &docs, &set.registries_d).await;
    assert!(!u.admitted(), "{:?}", u.rejection_messages());
    // The ImagePolicy either loaded without its lookaside or was refused
    // (then it denies everything in its namespace): both are safe.
    if set.errors.is_empty() {
        assert!(v.admitted(), "{:?}", v.rejection_messages());
    }
    assert_eq!(trap.connections(), 0, "the namespace's lookaside was used");
    assert!(
        h.lookaside_requests()
            .iter()
            .any(|r| r.path.contains("comp/app@")),
        "the cluster's lookaside was used"
    );
}
