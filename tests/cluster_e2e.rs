//! imagegate in a cluster, end to end without a kube-apiserver: the real
//! `kube` client against the fake API server (real Kubernetes JSON), the
//! controller compiling ClusterImagePolicy objects whose keys come from a
//! Secret (`keyRef`), and the verifier deciding images from the real
//! registry and lookaside of the harness.

mod fake_apiserver;
mod harness;

use std::time::Duration;

use fake_apiserver::cluster::{ClusterOptions, ClusterVerifier};
use fake_apiserver::{FakeApiServer, Gvr, eventually, node, secret};
use harness::{Harness, keys};
use imagegate::admission::review::{ImageVerifier, RequestContext};
use serde_json::{Value, json};

const NAMESPACE: &str = "imagegate-system";

fn cluster_policy(h: &Harness, policy: Value) -> Value {
    json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "prod"},
        "spec": {
            "mode": "Enforce",
            "policy": policy,
            "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}}
        }
    })
}

fn requires_key_ref(h: &Harness) -> Value {
    json!({"transports": {"docker": {h.image("team"): [{"type": "signedBy", "keyType": "GPGKeys",
        "keyRef": {"secret": "signing-keys", "key": "signer.asc"}}]}}})
}

#[tokio::test]
async fn cluster_documents_with_key_refs_decide_admission() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h = Harness::start();
    let k = keys();
    let digest = h.push_signed(
        &h.build_index("cluster", &["linux/amd64", "linux/arm64"]),
        "team/app:v1",
        &k.signer,
    );
    h.push_unsigned(&h.build_image("cluster unsigned"), "team/unsigned:v1");

    let fake = FakeApiServer::start().await;
    fake.enable_status_subresource("clusterimagepolicies");
    fake.insert(
        &Gvr::secrets(),
        secret(
            NAMESPACE,
            "signing-keys",
            "Opaque",
            &[(
                "signer.asc",
                &std::fs::read(&k.signer.public_armored).unwrap(),
            )],
        ),
    );
    fake.insert(&Gvr::nodes(), node("arm-node", "linux", "arm64", None));
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy(&h, requires_key_ref(&h)),
    );

    let cluster = ClusterVerifier::start(&fake, ClusterOptions::new(NAMESPACE)).await;
    let (engine, policies, verifier) = (&cluster.engine, &cluster.policies, &cluster.verifier);
    let ctx = RequestContext {
        namespace: Some("team".into()),
        ..RequestContext::default()
    };
    // The nodes' platforms drive instance selection: an arm64 node only.
    assert_eq!(
        engine
            .platforms()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["linux/arm64"]
    );
    let images = vec![h.image("team/app:v1"), h.image("team/unsigned:v1")];
    let verdicts = verifier.verify(&images, &ctx).await;
    assert!(verdicts[0].allowed(), "{:?}", verdicts[0]);
    assert_eq!(verdicts[0].digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        verdicts[0].documents[0].instances[0].platform.as_deref(),
        Some("linux/arm64")
    );
    assert!(!verdicts[1].allowed());
    assert_eq!(verdicts[1].documents[0].document, "ClusterImagePolicy/prod");

    // Status: valid (keys are listed for inline and file keys; a keyRef is
    // read when the policy set is built, and a failure shows there).
    eventually("status Ready=True", || {
        fake.get(&Gvr::cluster_image_policies(), None, "prod")
            .is_some_and(|o| o["status"]["conditions"][0]["status"] == "True")
    })
    .await;

    // Key rotation: the Secret now holds another key; within the refresh
    // interval the image signed by the old key is refused.
    fake.modify(&Gvr::secrets(), Some(NAMESPACE), "signing-keys", |o| {
        use base64::Engine as _;
        o["data"]["signer.asc"] = json!(
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(&k.wrong.public_armored).unwrap())
        );
    });
    let mut rotated = false;
    for _ in 0..40 {
        if !verifier.verify(&images[..1], &ctx).await[0].allowed() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the rotated key was never used");
    fake.modify(&Gvr::secrets(), Some(NAMESPACE), "signing-keys", |o| {
        use base64::Engine as _;
        o["data"]["signer.asc"] = json!(
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(&k.signer.public_armored).unwrap())
        );
    });
    eventually("the original key is back", || {
        policies.borrow().errors.is_empty()
    })
    .await;
    let mut back = false;
    for _ in 0..40 {
        if verifier.verify(&images[..1], &ctx).await[0].allowed() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back);

    // A new version that fails c/image's rules: status says so, the last
    // valid version keeps deciding.
    fake.modify(&Gvr::cluster_image_policies(), None, "prod", |o| {
        o["spec"]["policy"]["transports"]["docker"][h.image("team")] = json!([]);
    });
    eventually("status Ready=False with the reason", || {
        fake.get(&Gvr::cluster_image_policies(), None, "prod")
            .is_some_and(|o| {
                o["status"]["conditions"][0]["status"] == "False"
                    && o["status"]["conditions"][0]["message"]
                        .as_str()
                        .is_some_and(|m| {
                            m.contains("List of verification policy requirements must not be empty")
                        })
            })
    })
    .await;
    let verdicts = verifier.verify(&images, &ctx).await;
    assert!(verdicts[0].allowed() && !verdicts[1].allowed());

    // The key Secret disappears: that version is refused, the last valid one
    // (with the key already read) still serves.
    fake.modify(&Gvr::cluster_image_policies(), None, "prod", |o| {
        o["spec"]["policy"] = requires_key_ref(&h);
        o["spec"]["mode"] = json!("Enforce");
    });
    fake.remove(&Gvr::secrets(), Some(NAMESPACE), "signing-keys");
    eventually("the missing key is reported", || {
        policies
            .borrow()
            .errors
            .iter()
            .any(|(id, e)| id == "ClusterImagePolicy/prod" && e.contains("signing-keys"))
    })
    .await;
    let verdicts = verifier.verify(&images, &ctx).await;
    assert!(verdicts[0].allowed() && !verdicts[1].allowed());

    // A namespace document tightens the cluster's for its namespace only.
    fake.insert(
        &Gvr::image_policies(),
        json!({"apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
               "metadata": {"name": "nothing", "namespace": "locked"},
               "spec": {"policy": {"default": [{"type": "reject"}]}}}),
    );
    eventually("the namespace document is in the set", || {
        policies.borrow().documents_for(Some("locked")).len() == 2
    })
    .await;
    let locked = RequestContext {
        namespace: Some("locked".into()),
        ..RequestContext::default()
    };
    assert!(!verifier.verify(&images[..1], &locked).await[0].allowed());
    assert!(verifier.verify(&images[..1], &ctx).await[0].allowed());
    cluster.shutdown().await;
}

/// `imagegate policy export --from-cluster` reads the documents (and their
/// keyRef keys) through a kubeconfig, and the files it writes make skopeo
/// decide as the webhook does.
#[tokio::test(flavor = "multi_thread")]
async fn export_from_cluster_gives_crio_the_same_policy() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("export signed"), "team/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("export unsigned"), "team/unsigned:v1");
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::secrets(),
        secret(
            NAMESPACE,
            "signing-keys",
            "Opaque",
            &[(
                "signer.asc",
                &std::fs::read(&k.signer.public_armored).unwrap(),
            )],
        ),
    );
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy(&h, requires_key_ref(&h)),
    );
    let kubeconfig = h.write_file(
        "kubeconfig",
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\ncurrent-context: c\n",
            fake.addr
        ),
    );
    let out_dir = h.dir().join("exported");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagegate"))
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "policy",
            "export",
            "--from-cluster",
            "--namespace",
            NAMESPACE,
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rd = out_dir.join("registries.d");
    let policy = out_dir.join("policy.json");
    assert!(
        h.skopeo_verdict_with(&policy, &h.image("team/app:v1"), None, &rd)
            .0
    );
    assert!(
        !h.skopeo_verdict_with(&policy, &h.image("team/unsigned:v1"), None, &rd)
            .0
    );
}

/// Denials and warnings become Events on the workload (not dry runs).
#[tokio::test]
async fn denials_become_events_on_the_workload() {
    use imagegate::admission::review::{DecisionObserver, ReviewSummary};
    use imagegate::controller::events::WorkloadEvents;
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};
    let fake = FakeApiServer::start().await;
    let events = WorkloadEvents::new(fake.client(), "imagegate-0");
    let request = |name: &str, dry_run: bool| -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": name, "namespace": "team", "operation": "CREATE", "userInfo": {},
                "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}}, "dryRun": dry_run}
        }))
        .unwrap();
        review.try_into().unwrap()
    };
    let denied = ReviewSummary {
        decision: "denied",
        images: vec!["registry.example.com/team/app:v1".into()],
        reason: Some("image registry.example.com/team/app:v1 rejected by ClusterImagePolicy/prod (default): A signature was required, but no signature exists".into()),
    };
    events.observe(&request("web", false), &denied);
    events.observe(&request("dry", true), &denied);
    events.observe(
        &request("ok", false),
        &ReviewSummary {
            decision: "allowed",
            images: vec![],
            reason: None,
        },
    );
    eventually("one Event on the denied Deployment", || {
        let list = fake.events_in("team");
        list.len() == 1
            && list[0]["regarding"]["name"] == "web"
            && list[0]["regarding"]["kind"] == "Deployment"
            && list[0]["reason"] == "ImageRejected"
            && list[0]["note"]
                .as_str()
                .is_some_and(|n| n.contains("A signature was required"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fake.events_in("team").len(),
        1,
        "no Event for dry runs or admissions"
    );
}
