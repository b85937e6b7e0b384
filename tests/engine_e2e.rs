//! The engine's behaviour beyond single verdicts, against the real
//! registry and lookaside: no network before policy, caches, and
//! concurrent requests for one image sharing one fetch.

mod harness;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{Harness, keys};
use imagegate::engine::{CacheSettings, Mode, PolicyDocument, VerifyContext};
use imagegate::metrics::Metrics;
use imagegate::policy::{FilesystemKeyResolver, ParseOptions, Policy};
use imagegate::registry::Anonymous;
use imagegate::signature::registries_d::RegistryConfiguration;
use serde_json::json;

fn document(policy: serde_json::Value) -> Arc<PolicyDocument> {
    Arc::new(PolicyDocument {
        name: "ClusterImagePolicy/test".into(),
        generation: 1,
        mode: Mode::Enforce,
        policy: Ok(Policy::parse(policy.to_string().as_bytes(), ParseOptions::KUBERNETES).unwrap()),
    })
}

/// A TCP listener that counts connections and never answers: anything that
/// contacts it is caught.
struct Tripwire {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Tripwire { port, connections }
    }
}

/// How long the cache test keeps rejections and signature lists.
const NEGATIVE_TTL: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn reject_and_accept_anything_scopes_contact_nothing() {
    let trip = Tripwire::start();
    let registry = format!("127.0.0.1:{}", trip.port);
    let rd = RegistryConfiguration::from_yaml(
        format!("default-docker: {{lookaside: 'http://{registry}/sigs'}}").as_bytes(),
    )
    .unwrap();
    let e = harness::engine(CacheSettings::default(), None);
    let docs = [
        document(
            json!({"transports": {"docker": {format!("{registry}/rejected"): [{"type": "reject"}]}}}),
        ),
        document(json!({"default": [{"type": "insecureAcceptAnything"}]})),
    ];
    let keys = FilesystemKeyResolver::new();
    let ctx = VerifyContext {
        registries_d: &rd,
        keys: &keys,
        credentials: &Anonymous,
        deadline: None,
    };
    let v = e
        .verify_image(&format!("{registry}/rejected/app:v1"), &docs, &ctx)
        .await;
    assert!(!v.allowed());
    assert_eq!(
        v.documents[0].reason.as_deref(),
        Some(
            format!("Running image docker://{registry}/rejected/app:v1 is rejected by policy.")
                .as_str()
        )
    );
    let v = e
        .verify_image(&format!("{registry}/other/app:v1"), &docs, &ctx)
        .await;
    assert!(v.allowed());
    assert!(v.digest.is_none(), "nothing was resolved");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        trip.connections.load(Ordering::SeqCst),
        0,
        "no connection for reject / insecureAcceptAnything"
    );

    // A scope that needs signatures does contact the registry (and only it).
    let docs = [document(
        json!({"transports": {"docker": {registry.clone(): [{"type": "signedBy", "keyType": "GPGKeys", "keyData": ""}]}}}),
    )];
    let ctx = VerifyContext {
        deadline: Some(std::time::Instant::now() + Duration::from_secs(2)),
        ..ctx
    };
    let v = e
        .verify_image(&format!("{registry}/signed/app:v1"), &docs, &ctx)
        .await;
    assert!(!v.allowed());
    assert!(trip.connections.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn verdicts_are_cached_and_concurrent_requests_share_one_fetch() {
    let h = Harness::start();
    let k = keys();
    let digest = h.push_signed(&h.build_image("cache"), "cache/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("cache unsigned"), "cache/unsigned:v1");
    let rd = RegistryConfiguration::load_dir(h.registries_d()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let e = Arc::new(harness::engine(
        CacheSettings {
            negative_ttl: NEGATIVE_TTL,
            signature_ttl: NEGATIVE_TTL,
            ..CacheSettings::default()
        },
        Some(metrics.clone()),
    ));
    let docs = Arc::new([document(
        json!({"transports": {"docker": {h.image("cache"): [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": k.signer.public_armored.to_string_lossy()}]}}}),
    )]);
    let keys_resolver = Arc::new(FilesystemKeyResolver::new());
    let rd = Arc::new(rd);

    // 50 concurrent verifications of one uncached image.
    let image = h.image("cache/app:v1");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (e, docs, rd, keys_resolver, image) = (
            e.clone(),
            docs.clone(),
            rd.clone(),
            keys_resolver.clone(),
            image.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ctx = VerifyContext {
                registries_d: &rd,
                keys: keys_resolver.as_ref(),
                credentials: &Anonymous,
                deadline: None,
            };
            e.verify_image(&image, docs.as_slice(), &ctx)
                .await
                .allowed()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let signature_1 = h.signature_url_path("cache/app", &digest, 1);
    let count = |path: &str| {
        h.lookaside_requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    assert_eq!(
        count(&signature_1),
        1,
        "one signature read for 50 concurrent reviews: {:?}",
        h.lookaside_requests()
    );
    let manifest_gets = || {
        std::fs::read_to_string(h.registry_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/cache/app/manifests/") && l.contains("imagegate/"))
            .count()
    };
    let before = manifest_gets();
    assert_eq!(before, 1, "one manifest fetch for 50 concurrent reviews");

    // Cached: no further registry or lookaside traffic.
    let ctx = VerifyContext {
        registries_d: &rd,
        keys: keys_resolver.as_ref(),
        credentials: &Anonymous,
        deadline: None,
    };
    assert!(
        e.verify_image(&image, docs.as_slice(), &ctx)
            .await
            .allowed()
    );
    assert_eq!(count(&signature_1), 1);
    assert_eq!(manifest_gets(), before);
    let text = metrics.encode();
    assert!(
        text.contains("imagegate_cache_requests_total{cache=\"verdict\",result=\"hit\"}"),
        "{text}"
    );
    // The 50 wake together when the shared signature read ends: one
    // computes the verdict, the others find it (one per runtime thread at
    // most could race; this runtime has one).
    assert!(
        text.contains("imagegate_cache_requests_total{cache=\"verdict\",result=\"miss\"} 1\n"),
        "the verdict is computed once, not once per waiting review: {text}"
    );

    // A rejection is remembered only briefly: signing the image is seen soon.
    let unsigned = h.image("cache/unsigned:v1");
    assert!(
        !e.verify_image(&unsigned, docs.as_slice(), &ctx)
            .await
            .allowed()
    );
    let rejected_at = std::time::Instant::now();
    h.copy(
        "cache/unsigned:v1",
        "cache/unsigned:v1",
        harness::PushOptions::signed_by(&k.signer),
    );
    // Only while the rejection is surely still in the cache (skopeo may
    // have taken longer than the TTL on a loaded machine): the cache, not
    // the clock, is what this checks.
    if rejected_at.elapsed() < NEGATIVE_TTL / 2 {
        assert!(
            !e.verify_image(&unsigned, docs.as_slice(), &ctx)
                .await
                .allowed(),
            "still cached"
        );
    }
    tokio::time::sleep(
        (rejected_at + NEGATIVE_TTL + Duration::from_millis(100))
            .saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    assert!(
        e.verify_image(&unsigned, docs.as_slice(), &ctx)
            .await
            .allowed(),
        "the new signature is seen"
    );
}
