//! `imagegate serve` called as kube-apiserver calls it — HTTPS verified
//! against the CA that would be the caBundle, AdmissionReview v1 bodies
//! wrapping real objects (the kubectl-generated fixtures) — with policies
//! from a directory, a real registry, lookaside server and signatures.

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{CannedResponse, Harness, keys};
use serde_json::{Value, json};

/// The harness's `imagegate serve`, with this suite's ways to call it.
use harness::webhook::WebhookServer as Webhook;

fn cluster_policy(h: &Harness, name: &str, mode: &str, policy: Value) -> String {
    let doc = json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": mode,
            "policy": policy,
            "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}}
        }
    });
    serde_json::to_string_pretty(&doc).unwrap()
}

fn namespace_policy(namespace: &str, name: &str, mode: &str, policy: Value) -> String {
    serde_json::to_string_pretty(&json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ImagePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mode": mode, "policy": policy}
    }))
    .unwrap()
}

fn signed_by(key_file: &Path) -> Value {
    json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key_file.to_string_lossy()}])
}

impl Webhook {
    fn start(h: &Harness, files: &[(&str, String)], extra_args: &[&str]) -> Webhook {
        let dir = h.dir().join(format!(
            "webhook-{}",
            h.unique_path("w").file_name().unwrap().to_string_lossy()
        ));
        Webhook::spawn(&dir, files, extra_args)
    }

    async fn post(&self, endpoint: &str, review: &Value) -> Value {
        let resp = self
            .client
            .post(self.url(endpoint))
            .json(review)
            .send()
            .await
            .expect("webhook answers");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response"]["uid"], review["request"]["uid"]);
        body["response"].clone()
    }

    async fn validate(&self, review: &Value) -> Value {
        self.post("/validate", review).await
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An AdmissionReview v1 as the API server sends it.
fn review(
    kind: &str,
    namespace: &str,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> Value {
    let (group, version, resource) = match kind {
        "Pod" => ("", "v1", "pods"),
        "ReplicationController" => ("", "v1", "replicationcontrollers"),
        "Job" => ("batch", "v1", "jobs"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        "Deployment" => ("apps", "v1", "deployments"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        other => panic!("no resource for {other}"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", rand_suffix()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }, "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The fixture `file` with every image (containers of all kinds, image
/// volumes) set to `image`.
fn with_image(file: &str, image: &str) -> Value {
    let mut obj = fixture(file);
    let kind = obj["kind"].as_str().unwrap().to_string();
    let uses = imagegate::admission::images::images_of(&kind, &obj).unwrap();
    for u in uses {
        *obj.pointer_mut(&u.pointer).unwrap() = json!(image);
    }
    obj
}

fn pod(images: &[&str]) -> Value {
    let mut obj = fixture("pod.json");
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"name": format!("c{i}"), "image": im, "resources": {}}))
        .collect();
    obj["spec"]["containers"] = json!(containers);
    obj
}

struct Setup {
    h: Harness,
    signed: String,
    signed_digest: String,
    unsigned: String,
}

fn setup() -> Setup {
    let h = Harness::start();
    let k = keys();
    let signed_digest = h.push_signed(&h.build_image("webhook signed"), "e2e/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("webhook unsigned"), "e2e/unsigned:v1");
    Setup {
        signed: h.image("e2e/app:v1"),
        signed_digest,
        unsigned: h.image("e2e/unsigned:v1"),
        h,
    }
}

fn base_policy(s: &Setup) -> (&'static str, String) {
    let k = keys();
    (
        "cluster.yaml",
        cluster_policy(
            &s.h,
            "prod",
            "Enforce",
            json!({"transports": {"docker": {s.h.image("e2e"): signed_by(&k.signer.public_armored)}}}),
        ),
    )
}

#[tokio::test]
async fn allows_signed_and_denies_unsigned_in_every_kind_and_field() {
    let s = setup();
    let w = Webhook::start(&s.h, &[base_policy(&s)], &[]);
    let r = w
        .validate(&review("Pod", "team", "CREATE", &pod(&[&s.signed]), None))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["decision"], "allowed");

    let r = w
        .validate(&review(
            "Pod",
            "team",
            "CREATE",
            &pod(&[&s.signed, &s.unsigned]),
            None,
        ))
        .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        format!(
            "image {} rejected by ClusterImagePolicy/prod (scope {}): A signature was required, but no signature exists",
            s.unsigned,
            s.h.image("e2e")
        )
    );

    for file in [
        "deployment.json",
        "replicaset.json",
        "statefulset.json",
        "daemonset.json",
        "replicationcontroller.json",
        "job.json",
        "cronjob.json",
        "pod-all-kinds.json",
    ] {
        let kind = fixture(file)["kind"].as_str().unwrap().to_string();
        let ok = w
            .validate(&review(
                &kind,
                "team",
                "CREATE",
                &with_image(file, &s.signed),
                None,
            ))
            .await;
        assert_eq!(ok["allowed"], true, "{file}: {ok}");
        let bad = w
            .validate(&review(
                &kind,
                "team",
                "CREATE",
                &with_image(file, &s.unsigned),
                None,
            ))
            .await;
        assert_eq!(bad["allowed"], false, "{file}: {bad}");
    }

    // Each field of a Pod on its own: only that one holds the unsigned image.
    let base = with_image("pod-all-kinds.json", &s.signed);
    for pointer in [
        "/spec/initContainers/0/image",
        "/spec/containers/1/image",
        "/spec/ephemeralContainers/0/image",
        "/spec/volumes/0/image/reference",
    ] {
        let mut obj = base.clone();
        *obj.pointer_mut(pointer).unwrap() = json!(s.unsigned);
        let r = w
            .validate(&review("Pod", "team", "CREATE", &obj, None))
            .await;
        assert_eq!(r["allowed"], false, "{pointer}");
    }

    // Dry-run requests are evaluated the same way.
    let mut dry = review("Pod", "team", "CREATE", &pod(&[&s.unsigned]), None);
    dry["request"]["dryRun"] = json!(true);
    assert_eq!(w.validate(&dry).await["allowed"], false);

    // An image outside every scope: the document has no default, so no opinion.
    let r = w
        .validate(&review(
            "Pod",
            "team",
            "CREATE",
            &pod(&["quay.io/other/app:v1"]),
            None,
        ))
        .await;
    assert_eq!(r["allowed"], true);

    let metrics = reqwest::get(format!("http://{}/metrics", w.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("imagegate_admission_requests_total{kind=\"Deployment\",operation=\"CREATE\",decision=\"denied\"} 1"), "{metrics}");
    assert!(
        metrics.contains("imagegate_lookaside_requests_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn updates_subresources_and_pinning() {
    let s = setup();
    let w = Webhook::start(&s.h, &[base_policy(&s)], &[]);
    // An UPDATE that changes no image needs no work, even for an unsigned one.
    let old = pod(&[&s.unsigned]);
    let mut new = old.clone();
    new["metadata"]["labels"]["extra"] = json!("1");
    let r = w
        .validate(&review("Pod", "team", "UPDATE", &new, Some(&old)))
        .await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["auditAnnotations"]["decision"], "unchanged");
    // Adding an ephemeral debug container through pods/ephemeralcontainers.
    let mut debug = old.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": s.unsigned}]);
    let old_signed = pod(&[&s.signed]);
    let mut debug_signed = old_signed.clone();
    debug_signed["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": s.unsigned}]);
    let mut rv = review("Pod", "team", "UPDATE", &debug_signed, Some(&old_signed));
    rv["request"]["subResource"] = json!("ephemeralcontainers");
    rv["request"]["requestSubResource"] = json!("ephemeralcontainers");
    assert_eq!(w.validate(&rv).await["allowed"], false);

    // /mutate pins the verified tag to its digest; the pinned pod is left alone.
    let r = w
        .post(
            "/mutate",
            &review("Pod", "team", "CREATE", &pod(&[&s.signed]), None),
        )
        .await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch_bytes = match &r["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        other => panic!("patch {other}"),
    };
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    let mut pinned = pod(&[&s.signed]);
    json_patch::patch(&mut pinned, &patch).unwrap();
    assert_eq!(
        pinned["spec"]["containers"][0]["image"],
        format!("{}@{}", s.signed, s.signed_digest)
    );
    let again = w
        .post("/mutate", &review("Pod", "team", "CREATE", &pinned, None))
        .await;
    assert_eq!(again["allowed"], true);
    assert!(
        again.get("patch").is_none(),
        "repeated invocation is a no-op: {again}"
    );
    // The pinned reference still verifies (CRI-O evaluates it as repo@digest).
    assert_eq!(
        w.validate(&review("Pod", "team", "CREATE", &pinned, None))
            .await["allowed"],
        true
    );
    // Workloads are not pinned by default (GitOps sees no drift).
    let d = w
        .post(
            "/mutate",
            &review(
                "Deployment",
                "team",
                "CREATE",
                &with_image("deployment.json", &s.signed),
                None,
            ),
        )
        .await;
    assert!(d.get("patch").is_none());
}

#[tokio::test]
async fn modes_and_composition() {
    let s = setup();
    let k = keys();
    let files = [
        base_policy(&s),
        (
            "warn.yaml",
            namespace_policy(
                "warn-ns",
                "strict",
                "Warn",
                json!({"default": [{"type": "reject"}]}),
            ),
        ),
        (
            "audit.yaml",
            namespace_policy(
                "audit-ns",
                "strict",
                "Audit",
                json!({"default": [{"type": "reject"}]}),
            ),
        ),
        (
            "tight.yaml",
            namespace_policy(
                "tight",
                "other-key",
                "Enforce",
                json!({"transports": {"docker": {s.h.image("e2e"): signed_by(&k.wrong.public_armored)}}}),
            ),
        ),
        (
            "loose.yaml",
            namespace_policy(
                "loose",
                "anything",
                "Enforce",
                json!({"default": [{"type": "insecureAcceptAnything"}]}),
            ),
        ),
    ];
    let w = Webhook::start(&s.h, &files, &[]);
    let r = w
        .validate(&review(
            "Pod",
            "warn-ns",
            "CREATE",
            &pod(&[&s.signed]),
            None,
        ))
        .await;
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().expect("warnings");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("rejected by ImagePolicy/warn-ns/strict (default)"),
        "{r}"
    );
    let r = w
        .validate(&review(
            "Pod",
            "audit-ns",
            "CREATE",
            &pod(&[&s.signed]),
            None,
        ))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none());
    assert_eq!(r["auditAnnotations"]["decision"], "audited");
    // A namespace can tighten what the cluster enforces...
    let r = w
        .validate(&review("Pod", "tight", "CREATE", &pod(&[&s.signed]), None))
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ImagePolicy/tight/other-key")
    );
    // ... and never loosen it.
    let r = w
        .validate(&review(
            "Pod",
            "loose",
            "CREATE",
            &pod(&[&s.unsigned]),
            None,
        ))
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ClusterImagePolicy/prod")
    );
    let r = w
        .validate(&review("Pod", "loose", "CREATE", &pod(&[&s.signed]), None))
        .await;
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn deadline_and_policy_reload() {
    let s = setup();
    let k = keys();
    let w = Webhook::start(&s.h, &[base_policy(&s)], &["--admission-timeout", "2s"]);
    // A lookaside that does not answer within the deadline.
    s.h.lookaside().respond_all(Some(
        CannedResponse::status(404).delayed(Duration::from_secs(60)),
    ));
    let slow = s.h.image("e2e/slow:v1");
    s.h.push_unsigned(&s.h.build_image("slow"), "e2e/slow:v1");
    let r = w
        .validate(&review("Pod", "team", "CREATE", &pod(&[&slow]), None))
        .await;
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("deadline exceeded") && message.contains("signatures of sha256:"),
        "{message}"
    );
    s.h.lookaside().respond_all(None);

    // A new document is picked up without restart...
    let deny_all = cluster_policy(
        &s.h,
        "deny-quay",
        "Enforce",
        json!({"transports": {"docker": {"quay.io": [{"type": "reject"}]}}}),
    );
    std::fs::write(w.policies.join("deny.yaml"), deny_all).unwrap();
    let quay = review("Pod", "team", "CREATE", &pod(&["quay.io/app/x:v1"]), None);
    let mut picked_up = false;
    for _ in 0..50 {
        if w.validate(&quay).await["allowed"] == false {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(picked_up, "the new policy file was never applied");
    // ... a broken new version keeps the last good one ...
    std::fs::write(w.policies.join("deny.yaml"), "apiVersion: imagegate.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: deny-quay}\nspec:\n  policy: {transports: {docker: {quay.io: []}}}\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.validate(&quay).await["allowed"], false);
    let metrics = reqwest::get(format!("http://{}/metrics", w.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("imagegate_policy_load_errors{document=\"ClusterImagePolicy/deny-quay\"} 1"),
        "{metrics}"
    );
    // ... and a document that was never valid denies, naming itself.
    std::fs::write(w.policies.join("never.yaml"), "apiVersion: imagegate.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: never}\nspec:\n  policy: {default: [{type: bogus}]}\n").unwrap();
    let elsewhere = review("Pod", "team", "CREATE", &pod(&["ghcr.io/x/y:v1"]), None);
    let mut denied = None;
    for _ in 0..50 {
        let r = w.validate(&elsewhere).await;
        if r["allowed"] == false {
            denied = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let denied = denied.expect("the never-valid document never took effect");
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ClusterImagePolicy/never"),
        "{denied}"
    );
    let _ = k;
}

#[tokio::test]
async fn shutdown_drains_in_flight_reviews() {
    let s = setup();
    let w = Webhook::start(&s.h, &[base_policy(&s)], &[]);
    // The lookaside answers after 1.5 s, so the review is in flight when the
    // process is told to stop.
    s.h.lookaside().respond_all(Some(
        CannedResponse::status(404).delayed(Duration::from_millis(1500)),
    ));
    let slow = s.h.image("e2e/drain:v1");
    s.h.push_unsigned(&s.h.build_image("drain"), "e2e/drain:v1");
    let request = review("Pod", "team", "CREATE", &pod(&[&slow]), None);
    let in_flight = w.validate(&request);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let status = Command::new("kill")
            .args(["-TERM", &w.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (answer, ()) = tokio::join!(in_flight, stop);
    assert_eq!(
        answer["allowed"], false,
        "the in-flight review got its real answer: {answer}"
    );
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("A signature was required"),
        "{answer}"
    );
}

/// One JSON line per decision with what an auditor needs, written in
/// batches but never lost: what is buffered goes out when the server stops.
#[tokio::test]
async fn decision_log_lines() {
    let s = setup();
    let mut w = Webhook::start(&s.h, &[base_policy(&s)], &[]);
    let allowed = review("Pod", "team", "CREATE", &pod(&[&s.signed]), None);
    assert_eq!(w.validate(&allowed).await["allowed"], true);
    let uid = allowed["request"]["uid"].as_str().unwrap().to_string();
    let line = w
        .log_line(Duration::from_secs(10), |l| l["uid"] == uid.as_str())
        .expect("a decision line within the flush interval");
    assert_eq!(line["message"], "admission decision", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["namespace"], "team", "{line}");
    assert_eq!(line["kind"], "Pod", "{line}");
    assert_eq!(line["name"], "app", "{line}");
    assert_eq!(line["endpoint"], "validate", "{line}");
    assert_eq!(line["images"], s.signed.as_str(), "{line}");
    assert_eq!(line["decision"], "allowed", "{line}");
    assert_eq!(line["reason"], "", "{line}");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");

    // Two images, a denial, and the server stopped right after answering.
    let denied = review(
        "Pod",
        "team",
        "CREATE",
        &pod(&[&s.signed, &s.unsigned]),
        None,
    );
    assert_eq!(w.validate(&denied).await["allowed"], false);
    let uid = denied["request"]["uid"].as_str().unwrap().to_string();
    assert!(w.terminate(), "imagegate serve exits cleanly on SIGTERM");
    let line = w
        .log_line(Duration::ZERO, |l| l["uid"] == uid.as_str())
        .expect("the buffered decision line is written before exit");
    assert_eq!(line["decision"], "denied", "{line}");
    assert_eq!(
        line["images"],
        format!("{},{}", s.signed, s.unsigned).as_str(),
        "{line}"
    );
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "image {} rejected by ClusterImagePolicy/prod",
            s.unsigned
        )),
        "{reason}"
    );
}
