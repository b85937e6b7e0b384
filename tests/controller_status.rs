//! The status writer's write discipline, against `tests/fake_apiserver/`,
//! which counts every write: status written once per change and never
//! rewritten when it already says the right thing, and each generation
//! compiled once (a real apiserver cannot tell a no-op write apart).
//! Status conditions, key fingerprints, refused generations and Events are
//! tested through kube-apiserver in `tests/kube_admission.rs`.

mod fake_apiserver;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake_apiserver::{FakeApiServer, Gvr, cluster_policy, eventually, within};
use http::Method;
use imagegate::controller::{
    CompileReport, Controller, ControllerConfig, DocumentCompiler, PolicyDocumentSource,
};
use imagegate::crd::TrustedKey;
use serde_json::{Value, json};

/// Valid unless the policy has a `broken` member; trusts one key per
/// `keyData` string of `default`; warns with the strings of `warn`.
struct StubCompiler {
    calls: AtomicUsize,
}

impl DocumentCompiler for StubCompiler {
    fn compile(&self, doc: &PolicyDocumentSource) -> CompileReport {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if doc.policy.get("broken").is_some() {
            return CompileReport::invalid("$.broken", "Unknown key \"broken\"");
        }
        let keys = doc.policy["default"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["keyData"].as_str())
            .map(|k| TrustedKey {
                fingerprint: k.to_uppercase(),
                user_ids: vec![format!("Signer {k}")],
                algorithm: "EdDSA".into(),
                expires: None,
            })
            .collect();
        let warnings = doc.policy["warn"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(String::from))
            .collect();
        CompileReport::valid(keys, warnings)
    }
}

fn signed(key: &str) -> Value {
    json!({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": key}]})
}

fn start(fake: &FakeApiServer) -> (Controller, Arc<StubCompiler>) {
    let compiler = Arc::new(StubCompiler {
        calls: AtomicUsize::new(0),
    });
    let mut config = ControllerConfig::new("imagegate-system", "imagegate-0");
    config.lease = None;
    let controller = Controller::start(fake.client(), config, compiler.clone());
    (controller, compiler)
}

const BASE_STATUS: &str = "/apis/imagegate.dev/v1alpha1/clusterimagepolicies/base/status";
const OTHER_STATUS: &str = "/apis/imagegate.dev/v1alpha1/clusterimagepolicies/other/status";

fn status_of(fake: &FakeApiServer, name: &str) -> Value {
    fake.get(&Gvr::cluster_image_policies(), None, name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

fn ready(status: &Value) -> (String, String, String) {
    let c = &status["conditions"][0];
    (
        c["status"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
        c["message"].as_str().unwrap_or("").into(),
    )
}

#[tokio::test]
async fn status_written_once_per_change() {
    let fake = FakeApiServer::start().await;
    let mut policy = signed("aa11");
    policy["warn"] = json!(["scope docker:x can never match"]);
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("base", policy),
    );
    let (controller, _compiler) = start(&fake);

    eventually("status of base", || {
        status_of(&fake, "base")["observedGeneration"] == 1
    })
    .await;
    let s = status_of(&fake, "base");
    assert_eq!(ready(&s).0, "True");
    assert_eq!(ready(&s).1, "Valid");
    assert_eq!(s["servedGeneration"], 1);
    assert_eq!(s["keys"][0]["fingerprint"], "AA11");
    assert_eq!(s["warnings"], json!(["scope docker:x can never match"]));
    let patches = fake.requests_to(&Method::PATCH, BASE_STATUS);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );

    // A metadata-only change: a new event, the same desired status.
    fake.modify(&Gvr::cluster_image_policies(), None, "base", |o| {
        o["metadata"]["labels"] = json!({"team": "platform"});
    });
    // Another document's first status marks a full pass after that event.
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("other", signed("bb22")),
    );
    eventually("status of other", || {
        status_of(&fake, "other")["observedGeneration"] == 1
    })
    .await;
    assert_eq!(
        fake.requests_to(&Method::PATCH, BASE_STATUS).len(),
        1,
        "unchanged status is not rewritten"
    );

    // A spec change: generation 2, written once more; the stale warning is cleared.
    fake.modify(&Gvr::cluster_image_policies(), None, "base", |o| {
        o["spec"]["policy"] = signed("cc33");
    });
    eventually("generation 2 observed", || {
        status_of(&fake, "base")["observedGeneration"] == 2
    })
    .await;
    let s = status_of(&fake, "base");
    assert_eq!(s["keys"][0]["fingerprint"], "CC33");
    assert!(s.get("warnings").is_none(), "cleared: {s}");
    // Settle: touch `other` and wait for its rewrite to be done.
    fake.modify(&Gvr::cluster_image_policies(), None, "other", |o| {
        o["spec"]["policy"] = signed("dd44");
    });
    eventually("other generation 2", || {
        status_of(&fake, "other")["observedGeneration"] == 2
    })
    .await;
    assert_eq!(fake.requests_to(&Method::PATCH, BASE_STATUS).len(), 2);
    assert_eq!(fake.requests_to(&Method::PATCH, OTHER_STATUS).len(), 2);

    // Someone else overwrites the status: it is put right again.
    fake.modify(&Gvr::cluster_image_policies(), None, "base", |o| {
        o["status"] = json!({"observedGeneration": 99});
    });
    eventually("status repaired", || {
        status_of(&fake, "base")["observedGeneration"] == 2
    })
    .await;
    assert_eq!(fake.requests_to(&Method::PATCH, BASE_STATUS).len(), 3);
    controller.shutdown().await;
}

#[tokio::test]
async fn compiles_each_generation_once() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("base", signed("aa11")),
    );
    let (controller, compiler) = start(&fake);
    eventually("status of base", || {
        status_of(&fake, "base")["observedGeneration"] == 1
    })
    .await;
    for i in 0..3 {
        fake.modify(&Gvr::cluster_image_policies(), None, "base", |o| {
            o["metadata"]["labels"] = json!({"touch": i.to_string()});
        });
    }
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("other", signed("bb22")),
    );
    eventually("status of other", || {
        status_of(&fake, "other")["observedGeneration"] == 1
    })
    .await;
    assert_eq!(
        compiler.calls.load(Ordering::SeqCst),
        2,
        "one compile per (document, generation)"
    );
    within("shutdown", controller.shutdown()).await;
}
