//! imagegate in a real cluster, as its users meet it: kube-apiserver v1.37
//! (scripts/cluster.sh) calls imagegate through the chart's Service, and
//! the tests type what people type (`kubectl apply`, `kubectl debug`,
//! `kubectl apply --dry-run=server`) and check what they see: kubectl's
//! exit code and its stderr, the stored object, Events, status, the audit
//! log. Images come from a real `docker-registry` with signatures made by
//! gpg and skopeo on a real lookaside server (the harness).
//!
//! Every test shares one control plane with imagegate installed
//! (`harness::cluster::shared`) and keeps to its own namespaces and its own
//! registry (a ClusterImagePolicy scoped to that registry).

mod harness;

use harness::cluster::{Cluster, shared, wait_for};
use harness::{Harness, keys};
use serde_json::{Value, json};

/// Base64 of a file, for `keyData`.
fn key_data(path: &std::path::Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("key file"))
}

/// A ClusterImagePolicy for this test's registry: everything under `scope`
/// (a repository namespace of `h`'s registry) must be signed by the test
/// signer; signatures come from `h`'s lookaside.
fn cluster_policy(h: &Harness, name: &str, mode: &str, scope: &str) -> Value {
    json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": mode,
            "policy": {"transports": {"docker": {h.image(scope): [{
                "type": "signedBy", "keyType": "GPGKeys",
                "keyData": key_data(&keys().signer.public_armored),
            }]}}},
            "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}},
        }
    })
}

fn pod(namespace: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}]},
    })
}

/// The name a test's ClusterImagePolicy gets: unique per registry.
fn policy_name(h: &Harness, what: &str) -> String {
    format!("{what}-{}", h.registry_port())
}

struct Setup {
    h: Harness,
    c: &'static Cluster,
    ns: String,
    policy: String,
}

/// A registry with `apps/signed:v1` (signed by the test signer),
/// `apps/unsigned:v1`, `apps/wrong-key:v1` (signed by another key) and
/// `apps/wrong-identity:v1` (a signature for `other/name:v1` copied to it);
/// a ClusterImagePolicy in `mode` requiring the signer for `apps`; and a
/// namespace.
fn setup(what: &str, mode: &str) -> Setup {
    let c = shared();
    let h = Harness::start();
    let k = keys();
    h.push_signed(
        &h.build_image(&format!("{what} signed")),
        "apps/signed:v1",
        &k.signer,
    );
    h.push_unsigned(
        &h.build_image(&format!("{what} unsigned")),
        "apps/unsigned:v1",
    );
    h.push_signed(
        &h.build_image(&format!("{what} wrong")),
        "apps/wrong-key:v1",
        &k.wrong,
    );
    // Signed as other/name:v1, then copied with its signature: the
    // signature's identity is not the reference's.
    h.push_signed(
        &h.build_image(&format!("{what} identity")),
        "other/name:v1",
        &k.signer,
    );
    h.copy(
        "other/name:v1",
        "apps/wrong-identity:v1",
        Default::default(),
    );
    let policy = policy_name(&h, what);
    c.apply_policy(&cluster_policy(&h, &policy, mode, "apps"));
    let ns = c.namespace(what);
    Setup { h, c, ns, policy }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self
            .c
            .kubectl(&["delete", "clusterimagepolicy", &self.policy, "--wait=false"]);
        let _ = self
            .c
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

#[test]
fn pods_signed_admitted_unsigned_wrong_key_and_wrong_identity_denied() {
    let s = setup("pods", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());

    let signed = h.image("apps/signed:v1");
    c.create(&pod(ns, "signed", &signed)).ok();

    for (name, reason) in [
        (
            "unsigned",
            "A signature was required, but no signature exists",
        ),
        ("wrong-key", "Key not found for key ID"),
        ("wrong-identity", "Signature for identity"),
    ] {
        let image = h.image(&format!("apps/{name}:v1"));
        let out = c.create(&pod(ns, name, &image));
        assert_denied(&out, &image, reason);
        let stderr = &out.stderr;
        assert!(
            stderr.contains(&format!("ClusterImagePolicy/{}", s.policy)),
            "{name}: the denial names the policy: {stderr}"
        );
        assert!(
            stderr.contains(&format!("scope {}", h.image("apps"))),
            "{name}: the denial names the scope: {stderr}"
        );
        // Nothing was stored.
        c.kubectl(&["-n", ns, "get", "pod", name]).failed();
    }
    let stored = c
        .kubectl(&["-n", ns, "get", "pod", "signed", "-o", "json"])
        .json();
    assert_eq!(stored["metadata"]["name"], "signed");
}

/// Asserts a kubectl failure is imagegate's denial of `image` for `reason`.
#[track_caller]
fn assert_denied(out: &harness::cluster::CommandResult, image: &str, reason: &str) {
    let stderr = out.failed();
    assert!(
        stderr.contains("imagegate.dev\" denied the request"),
        "not imagegate's denial: {stderr}"
    );
    assert!(stderr.contains(image), "the denial names {image}: {stderr}");
    assert!(
        stderr.contains(reason),
        "the denial says {reason:?}: {stderr}"
    );
}

#[test]
fn init_containers_and_image_volumes_are_checked() {
    let s = setup("kinds", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let signed = h.image("apps/signed:v1");
    let unsigned = h.image("apps/unsigned:v1");
    let with_init = |init: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "init", "namespace": ns},
               "spec": {"initContainers": [{"name": "setup", "image": init}],
                        "containers": [{"name": "app", "image": signed}]}})
    };
    assert_denied(
        &c.create(&with_init(&unsigned)),
        &unsigned,
        "no signature exists",
    );
    c.create(&with_init(&signed)).ok();

    // An image volume (GA in v1.36): its image is pulled like a container's.
    let with_volume = |name: &str, image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
               "spec": {"containers": [{"name": "app", "image": signed,
                                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                        "volumes": [{"name": "data", "image": {"reference": image, "pullPolicy": "IfNotPresent"}}]}})
    };
    assert_denied(
        &c.create(&with_volume("vol-bad", &unsigned)),
        &unsigned,
        "no signature exists",
    );
    c.create(&with_volume("vol-good", &signed)).ok();
}

#[test]
fn kubectl_debug_with_an_unsigned_image_is_denied() {
    let s = setup("debug", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    c.create(&pod(ns, "target", &h.image("apps/signed:v1")))
        .ok();
    let unsigned = h.image("apps/unsigned:v1");
    // kubectl debug patches pods/<name>/ephemeralcontainers; without -i it
    // does not wait for a kubelet.
    let out = c.kubectl(&[
        "-n",
        ns,
        "debug",
        "target",
        "--image",
        &unsigned,
        "--profile=general",
    ]);
    assert_denied(&out, &unsigned, "no signature exists");
    let stored = c
        .kubectl(&["-n", ns, "get", "pod", "target", "-o", "json"])
        .json();
    assert!(
        stored["spec"]["ephemeralContainers"].is_null(),
        "nothing was added: {stored}"
    );
    // A signed debug image is admitted.
    c.kubectl(&[
        "-n",
        ns,
        "debug",
        "target",
        "--image",
        &h.image("apps/signed:v1"),
        "--profile=general",
    ])
    .ok();
    let stored = c
        .kubectl(&["-n", ns, "get", "pod", "target", "-o", "json"])
        .json();
    assert_eq!(
        stored["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn warn_mode_prints_kubectl_warnings_and_admits() {
    let s = setup("warn", "Warn");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let unsigned = h.image("apps/unsigned:v1");
    let out = c.create(&pod(ns, "unsigned", &unsigned));
    out.ok();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Warning: "))
        .unwrap_or_else(|| panic!("no kubectl warning: {}", out.stderr));
    assert!(warning.contains(&unsigned), "{warning}");
    assert!(
        warning.contains(&format!("ClusterImagePolicy/{}", s.policy)),
        "{warning}"
    );
    assert!(warning.contains("no signature exists"), "{warning}");
    c.kubectl(&["-n", ns, "get", "pod", "unsigned"]).ok();
    // --warnings-as-errors turns it into a failure, as users of CI pipelines do.
    let out = c.kubectl_stdin(
        &["create", "--warnings-as-errors", "-f", "-"],
        &pod(ns, "strict", &unsigned).to_string(),
    );
    out.failed();
    // A signed image gets no warning.
    let out = c.create(&pod(ns, "signed", &h.image("apps/signed:v1")));
    out.ok();
    assert!(!out.stderr.contains("Warning:"), "{}", out.stderr);
}

#[test]
fn audit_mode_admits_and_the_audit_log_carries_the_verdict() {
    let s = setup("audit", "Audit");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let unsigned = h.image("apps/unsigned:v1");
    let out = c.create(&pod(ns, "unsigned", &unsigned));
    out.ok();
    assert!(
        !out.stderr.contains("Warning:"),
        "Audit mode is silent: {}",
        out.stderr
    );
    // The apiserver writes the webhook's audit annotations into the audit
    // event of the request, keyed by the webhook's name.
    let mut found = None;
    wait_for("the audit event of the Pod's creation", || {
        found = c.audit_events().into_iter().find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "pods"
                && e["objectRef"]["namespace"] == ns
                && e["objectRef"]["name"] == "unsigned"
                && e["stage"] == "ResponseComplete"
        });
        found.is_some()
    });
    let event = found.unwrap();
    let annotations = event["annotations"].as_object().expect("annotations");
    let decision = annotations
        .iter()
        .find(|(k, _)| k.starts_with("validate.imagegate.dev/") && k.ends_with("decision"))
        .unwrap_or_else(|| panic!("no imagegate decision in {annotations:?}"));
    assert_eq!(decision.1, "audited", "{annotations:?}");
    let verdicts = annotations
        .iter()
        .find(|(k, _)| k.starts_with("validate.imagegate.dev/") && k.ends_with("verdicts"))
        .unwrap_or_else(|| panic!("no imagegate verdicts in {annotations:?}"));
    let text = verdicts.1.as_str().unwrap();
    assert!(
        text.contains(&unsigned) && text.contains("\"allowed\":false"),
        "{text}"
    );
}

#[test]
fn server_side_dry_run_returns_the_verdict_and_stores_nothing() {
    let s = setup("dryrun", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let unsigned = h.image("apps/unsigned:v1");
    let out = c.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        &pod(ns, "unsigned", &unsigned).to_string(),
    );
    assert_denied(&out, &unsigned, "no signature exists");
    let signed = h.image("apps/signed:v1");
    let out = c.kubectl_stdin(
        &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
        &pod(ns, "signed", &signed).to_string(),
    );
    // The dry run shows the pinned image the real request would store.
    let shown = out.json();
    let image = shown["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.starts_with(&format!("{signed}@sha256:")), "{image}");
    c.kubectl(&["-n", ns, "get", "pod", "signed"]).failed();
    c.kubectl(&["-n", ns, "get", "pod", "unsigned"]).failed();
    // Dry runs leave no Event behind either.
    let events = c.kubectl(&["-n", ns, "get", "events", "-o", "json"]).json();
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
}

#[test]
fn pods_are_pinned_to_the_verified_digest_and_workloads_are_not() {
    let s = setup("pin", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let signed = h.image("apps/signed:v1");
    let digest = h.manifest_digest("apps/signed:v1");
    c.create(&pod(ns, "pinned", &signed)).ok();
    let image = c
        .kubectl(&[
            "-n",
            ns,
            "get",
            "pod",
            "pinned",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ])
        .ok()
        .to_string();
    assert_eq!(image, format!("{signed}@{digest}"));

    // Workload kinds are checked but, by default, not rewritten (GitOps
    // tools would see drift).
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": signed}]}}}
    });
    c.apply(&deployment).ok();
    let stored = c
        .kubectl(&[
            "-n",
            ns,
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .ok()
        .to_string();
    assert_eq!(stored, signed);
}

/// The workload kinds the chart checks by default, with `image` in their
/// pod template; `paused` makes them create no Pod yet (replicas 0,
/// suspended, or a DaemonSet selecting no node).
fn workloads(ns: &str, image: &str, paused: bool) -> Vec<Value> {
    let template = |app: &str| {
        json!({"metadata": {"labels": {"app": app}},
               "spec": {"containers": [{"name": "app", "image": image}], "restartPolicy": "Always"}})
    };
    let job_template = |app: &str| {
        json!({"metadata": {"labels": {"app": app}},
               "spec": {"containers": [{"name": "app", "image": image}], "restartPolicy": "Never"}})
    };
    let replicas = if paused { 0 } else { 1 };
    let mut ds_template = template("ds");
    if paused {
        ds_template["spec"]["nodeSelector"] = json!({"imagegate-e2e/daemonset": ns});
    }
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "deploy", "namespace": ns},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "deploy"}}, "template": template("deploy")}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "sts", "namespace": ns},
               "spec": {"replicas": replicas, "serviceName": "sts", "selector": {"matchLabels": {"app": "sts"}}, "template": template("sts")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds", "namespace": ns},
               "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": ds_template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job", "namespace": ns},
               "spec": {"suspend": paused, "template": job_template("job")}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron", "namespace": ns},
               "spec": {"schedule": "* * * * *", "suspend": paused,
                        "jobTemplate": {"spec": {"template": job_template("cron")}}}}),
    ]
}

/// The `FailedCreate` Events of `kind/name` in `ns`, their messages.
fn failed_create_events(c: &Cluster, ns: &str, kind: &str, name: &str) -> Vec<String> {
    let events = c
        .kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            &format!("reason=FailedCreate,involvedObject.kind={kind},involvedObject.name={name}"),
            "-o",
            "json",
        ])
        .json();
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

#[test]
fn workloads_with_unsigned_images_are_denied_at_apply_and_their_pods_too() {
    let c = shared();
    let h = Harness::start();
    h.push_unsigned(&h.build_image("workloads unsigned"), "late/unsigned:v1");
    let unsigned = h.image("late/unsigned:v1");
    let ns = c.namespace("workloads");

    // Before any policy covers the image, paused workloads are admitted.
    for w in workloads(&ns, &unsigned, true) {
        c.apply(&w).ok();
    }
    let policy = policy_name(&h, "workloads");
    c.apply_policy(&cluster_policy(&h, &policy, "Enforce", "late"));

    // Now a new workload with that image is denied at `kubectl apply`.
    let later = c.namespace("workloads-apply");
    for w in workloads(&later, &unsigned, false) {
        let out = c.apply(&w);
        assert_denied(&out, &unsigned, "no signature exists");
    }

    // And the admitted ones, once they start making Pods, fail to: each
    // controller's FailedCreate Event carries imagegate's reason.
    c.kubectl(&["-n", &ns, "scale", "deployment/deploy", "--replicas=1"])
        .ok();
    c.kubectl(&["-n", &ns, "scale", "statefulset/sts", "--replicas=1"])
        .ok();
    c.kubectl(&[
        "-n",
        &ns,
        "patch",
        "job/job",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])
    .ok();
    c.kubectl(&[
        "-n",
        &ns,
        "patch",
        "cronjob/cron",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])
    .ok();
    c.kubectl(&[
        "label",
        "node",
        "node-1",
        &format!("imagegate-e2e/daemonset={ns}"),
    ])
    .ok();

    let rs = {
        let mut name = String::new();
        wait_for("the Deployment's ReplicaSet", || {
            let out = c.kubectl(&[
                "-n",
                &ns,
                "get",
                "replicasets",
                "-l",
                "app=deploy",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ]);
            name = out.stdout.trim().to_string();
            out.success() && !name.is_empty()
        });
        name
    };
    // The CronJob's Job is denied (Jobs are checked), so its Event is on
    // the CronJob; the next minute's schedule makes it.
    for (kind, name) in [
        ("ReplicaSet", rs.as_str()),
        ("StatefulSet", "sts"),
        ("DaemonSet", "ds"),
        ("Job", "job"),
        ("CronJob", "cron"),
    ] {
        wait_for(&format!("FailedCreate on {kind}/{name}"), || {
            failed_create_events(c, &ns, kind, name).iter().any(|m| {
                m.contains("imagegate.dev\" denied the request")
                    && m.contains(&unsigned)
                    && m.contains("no signature exists")
            })
        });
    }
    // No Pod was created.
    let pods = c.kubectl(&["-n", &ns, "get", "pods", "-o", "json"]).json();
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");

    c.kubectl(&["label", "node", "node-1", "imagegate-e2e/daemonset-"])
        .ok();
    let _ = c.kubectl(&["delete", "clusterimagepolicy", &policy, "--wait=false"]);
    for n in [&ns, &later] {
        let _ = c.kubectl(&["delete", "namespace", n, "--wait=false"]);
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The Events whose involved object is `kind/name` (any namespace).
fn events_about(c: &Cluster, kind: &str, name: &str) -> Vec<Value> {
    let events = c
        .kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("involvedObject.kind={kind},involvedObject.name={name}"),
            "-o",
            "json",
        ])
        .json();
    events["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_apiserver_validates_policy_objects_against_the_crds() {
    let c = shared();
    let name = format!("schema-{}", std::process::id());
    // An unknown mode: refused by the CRD's schema before imagegate sees it.
    let out = c.apply(&json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Sometimes", "policy": {"default": [{"type": "reject"}]}}
    }));
    let stderr = out.failed();
    assert!(
        stderr.contains("spec.mode") && stderr.contains("Unsupported value: \"Sometimes\""),
        "{stderr}"
    );
    // No policy at all.
    let out = c.apply(&json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": name}, "spec": {"mode": "Enforce"}
    }));
    let stderr = out.failed();
    assert!(stderr.contains("spec.policy: Required value"), "{stderr}");
    c.kubectl(&["get", "clusterimagepolicy", &name]).failed();

    // c/image's own default policy.json, pasted verbatim, is accepted by the
    // apiserver and by imagegate.
    let verbatim: Value =
        serde_json::from_str(include_str!("fixtures/cimage/upstream/default-policy.json")).unwrap();
    let object = json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": name}, "spec": {"policy": verbatim}
    });
    c.apply_policy(&object);
    let stored = c
        .kubectl(&["get", "clusterimagepolicy", &name, "-o", "json"])
        .json();
    assert_eq!(stored["spec"]["policy"], verbatim, "stored verbatim");
    assert_eq!(stored["spec"]["mode"], "Enforce", "the CRD's default");
    wait_for("Ready=True on the verbatim policy", || {
        let s = c
            .kubectl(&["get", "clusterimagepolicy", &name, "-o", "json"])
            .json();
        s["status"]["conditions"][0]["status"] == "True"
    });
    c.kubectl(&["delete", "clusterimagepolicy", &name]).ok();
}

#[test]
fn status_events_and_a_never_valid_policy() {
    let s = setup("status", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let k = keys();
    // Status of a valid document: Ready, the served generation, the key.
    let mut status = Value::Null;
    wait_for("the status of the valid policy", || {
        status = c
            .kubectl(&["get", "clusterimagepolicy", &s.policy, "-o", "json"])
            .json()["status"]
            .clone();
        status["conditions"][0]["status"] == "True"
    });
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["reason"], "Valid");
    assert_eq!(status["servedGeneration"], 1);
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        status["keys"][0]["fingerprint"],
        k.signer.fingerprint.as_str(),
        "{status}"
    );
    // kubectl's columns show it too.
    let table = c
        .kubectl(&["get", "clusterimagepolicy", &s.policy])
        .ok()
        .to_string();
    assert!(table.contains(&s.policy), "{table}");

    // A policy.json that c/image would refuse (an unknown field): the CRD
    // keeps it (policy.json is free-form to the schema), imagegate reports
    // it in status and as an Event, and denies every image in its reach,
    // naming itself, because no valid version was ever served.
    let bad = format!("never-valid-{}", h.registry_port());
    c.apply(&json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": bad},
        "spec": {"policy": {"transports": {"docker": {h.image("broken"): [
            {"type": "signedBy", "keyType": "GPGKeys", "keyData": b64(b"x"), "bogus": 1}]}}}}
    }))
    .ok();
    let mut status = Value::Null;
    wait_for("Ready=False on the invalid policy", || {
        status = c
            .kubectl(&["get", "clusterimagepolicy", &bad, "-o", "json"])
            .json()["status"]
            .clone();
        status["conditions"][0]["status"] == "False"
    });
    assert_eq!(
        status["conditions"][0]["reason"], "InvalidPolicy",
        "{status}"
    );
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("bogus"),
        "names the offending field: {message}"
    );
    wait_for("the InvalidPolicy Event", || {
        events_about(c, "ClusterImagePolicy", &bad)
            .iter()
            .any(|e| e["reason"] == "InvalidPolicy" && e["type"] == "Warning")
    });
    h.push_signed(&h.build_image("broken scope"), "broken/app:v1", &k.signer);
    let image = h.image("broken/app:v1");
    let mut out = c.create(&pod(ns, "broken", &image));
    // Every replica must have seen the document before the answer is final.
    wait_for("the invalid document to reach every replica", || {
        out = c.create(&pod(ns, "broken", &image));
        !out.success()
    });
    assert_denied(&out, &image, &format!("ClusterImagePolicy/{bad}"));
    c.kubectl(&["delete", "clusterimagepolicy", &bad]).ok();
}

#[test]
fn a_namespace_can_tighten_the_cluster_policy_never_loosen_it() {
    let s = setup("tighten", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let k = keys();
    let other = c.namespace("tighten-other");
    let signed = h.image("apps/signed:v1");
    let unsigned = h.image("apps/unsigned:v1");

    // The team requires its own key (the "wrong" one) on top of the
    // cluster's, from a Secret in its namespace (keyRef).
    c.apply(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-keys", "namespace": ns},
                    "data": {"team.asc": key_data(&k.wrong.public_armored)}}))
        .ok();
    let tighten = json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
        "metadata": {"name": "team-key", "namespace": ns},
        "spec": {"policy": {"transports": {"docker": {h.image("apps"): [{
            "type": "signedBy", "keyType": "GPGKeys", "keyRef": {"secret": "team-keys", "key": "team.asc"}}]}}}}
    });
    c.apply_policy(&tighten);
    let out = c.create(&pod(ns, "signed", &signed));
    assert_denied(&out, &signed, &format!("ImagePolicy/{ns}/team-key"));
    // Another namespace is not affected.
    c.create(&pod(&other, "signed", &signed)).ok();

    // Trying to loosen: accept anything for the scope. The cluster's
    // document still denies.
    let loosen = json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
        "metadata": {"name": "team-key", "namespace": ns},
        "spec": {"policy": {"default": [{"type": "insecureAcceptAnything"}],
                            "transports": {"docker": {h.image("apps"): [{"type": "insecureAcceptAnything"}]}}}}
    });
    // How long a policy change takes to reach every replica (measured,
    // reported; BENCHMARKS.md has the figures).
    let start = std::time::Instant::now();
    c.apply_policy(&loosen);
    eprintln!(
        "policy change served by every replica after {} ms",
        start.elapsed().as_millis()
    );
    let out = c.create(&pod(ns, "unsigned", &unsigned));
    assert_denied(&out, &unsigned, &format!("ClusterImagePolicy/{}", s.policy));
    // And the signed image is admitted again: the tightening is gone.
    c.create(&pod(ns, "signed", &signed)).ok();
    let _ = c.kubectl(&["delete", "namespace", &other, "--wait=false"]);
}

const PULL_USER: &str = "puller";
const PULL_PASSWORD: &str = "s3cret-pull";

/// A `kubernetes.io/dockerconfigjson` Secret for `host`.
fn pull_secret(ns: &str, name: &str, host: &str, password: &str) -> Value {
    let config = json!({"auths": {host: {"auth": b64(format!("{PULL_USER}:{password}"))}}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": ns},
           "data": {".dockerconfigjson": b64(config.to_string())}})
}

#[test]
fn pull_secrets_of_the_pod_its_service_account_and_imagegate_reach_private_registries() {
    use harness::cluster::{OWN_PULL_SECRET, RELEASE_NAMESPACE};
    let c = shared();
    let h = Harness::start();
    let k = keys();
    // Two private registries serve the harness's storage: one behind
    // htpasswd (Basic), one handing out Bearer tokens from a token server.
    // Signatures are made for the private hosts' references.
    let tags = ["none", "wrong", "pod", "sa", "own"];
    let digest = h.push_unsigned(&h.build_image("private app"), "team/app:v1");
    for tag in tags {
        h.copy(
            "team/app:v1",
            &format!("team/app:{tag}"),
            Default::default(),
        );
    }
    let basic = harness::Registry::start_with_htpasswd(h.dir(), PULL_USER, PULL_PASSWORD);
    let token = harness::Registry::start_with_token_server(h.dir(), PULL_USER, PULL_PASSWORD);
    let manifest = h.raw_manifest("team/app:v1");
    let mut n = 0;
    for host in [basic.host(), token.host()] {
        for tag in tags {
            n += 1;
            let identity = format!("{host}/team/app:{tag}");
            h.put_signature(
                "team/app",
                &digest,
                n,
                &h.standalone_sign(&manifest, &identity, &k.signer),
            );
        }
    }
    let name = format!("private-{}", basic.port());
    let signed_by = json!([{"type": "signedBy", "keyType": "GPGKeys", "keyData": key_data(&k.signer.public_armored)}]);
    c.apply_policy(&json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"policy": {"transports": {"docker": {
                    format!("{}/team", basic.host()): signed_by, format!("{}/team", token.host()): signed_by}}},
                 "lookaside": {"docker": {basic.host(): {"lookaside": h.lookaside_url()},
                                          token.host(): {"lookaside": h.lookaside_url()}}}}
    }));
    let ns = c.namespace("pull");
    let (b, t) = (basic.host(), token.host());
    c.apply(&pull_secret(&ns, "regcred", &b, PULL_PASSWORD))
        .ok();
    c.apply(&pull_secret(&ns, "tokencred", &t, PULL_PASSWORD))
        .ok();
    c.apply(&pull_secret(&ns, "wrongcred", &b, "not-the-password"))
        .ok();
    c.apply(&pull_secret(&ns, "sa-cred", &b, PULL_PASSWORD))
        .ok();
    c.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "builder", "namespace": ns},
                    "imagePullSecrets": [{"name": "sa-cred"}]}))
        .ok();
    let private_pod = |name: &str, image: &str, secrets: &[&str], sa: Option<&str>| {
        let mut p = pod(&ns, name, image);
        if !secrets.is_empty() {
            p["spec"]["imagePullSecrets"] = json!(
                secrets
                    .iter()
                    .map(|s| json!({"name": s}))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(sa) = sa {
            p["spec"]["serviceAccountName"] = json!(sa);
        }
        p
    };
    // No credentials, or wrong ones: the registry's refusal, in the denial.
    let image = format!("{b}/team/app:none");
    assert_denied(
        &c.create(&private_pod("none", &image, &[], None)),
        &image,
        "unauthorized: authentication required",
    );
    let image = format!("{b}/team/app:wrong");
    assert_denied(
        &c.create(&private_pod("wrong", &image, &["wrongcred"], None)),
        &image,
        "unauthorized",
    );
    let image = format!("{t}/team/app:none");
    assert_denied(
        &c.create(&private_pod("token-none", &image, &[], None)),
        &image,
        "unauthorized",
    );
    // The pod's imagePullSecrets, then its ServiceAccount's.
    c.create(&private_pod(
        "pod",
        &format!("{b}/team/app:pod"),
        &["regcred"],
        None,
    ))
    .ok();
    c.create(&private_pod(
        "sa",
        &format!("{b}/team/app:sa"),
        &[],
        Some("builder"),
    ))
    .ok();
    // Bearer tokens bought from the token server with the pod's secret.
    c.create(&private_pod(
        "token",
        &format!("{t}/team/app:pod"),
        &["tokencred"],
        None,
    ))
    .ok();
    assert!(
        token
            .token_requests()
            .iter()
            .any(|(_, authenticated)| *authenticated),
        "no authenticated token request"
    );
    // imagegate's own pull secret, last.
    c.apply(&pull_secret(
        RELEASE_NAMESPACE,
        OWN_PULL_SECRET,
        &b,
        PULL_PASSWORD,
    ))
    .ok();
    // (imagegate remembers a Secret, or its absence, for a short while.)
    let own = private_pod("own", &format!("{b}/team/app:own"), &[], None);
    wait_for("imagegate's own pull secret to be used", || {
        c.create(&own).success()
    });
    c.kubectl(&["-n", RELEASE_NAMESPACE, "delete", "secret", OWN_PULL_SECRET])
        .ok();
    // The lookaside never saw registry credentials (c/image sends none).
    assert!(
        h.lookaside_requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "lookaside requests carried credentials"
    );
    let _ = c.kubectl(&["delete", "clusterimagepolicy", &name, "--wait=false"]);
    let _ = c.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn policy_export_from_the_cluster_gives_crio_the_same_verdicts() {
    let s = setup("export", "Enforce");
    let (c, h, ns) = (s.c, &s.h, s.ns.as_str());
    let k = keys();
    let team = json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
        "metadata": {"name": "team-key", "namespace": ns},
        "spec": {"policy": {"transports": {"docker": {h.image("apps"): [{
            "type": "signedBy", "keyType": "GPGKeys", "keyData": key_data(&k.wrong.public_armored)}]}}}}
    });
    c.apply_policy(&team);
    let out_dir = h.dir().join("exported");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imagegate"))
        .env("KUBECONFIG", c.kubeconfig())
        .args([
            "policy",
            "export",
            "--from-cluster",
            "--namespace",
            harness::cluster::RELEASE_NAMESPACE,
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("run imagegate policy export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rd = out_dir.join("registries.d");
    let policy = out_dir.join("policy.json");
    // What CRI-O would decide with the exported files (skopeo: c/image),
    // equal to what the objects say.
    assert!(
        h.skopeo_verdict_with(&policy, &h.image("apps/signed:v1"), None, &rd)
            .0
    );
    assert!(
        !h.skopeo_verdict_with(&policy, &h.image("apps/unsigned:v1"), None, &rd)
            .0
    );
    // The namespace's file (signature_policy_dir) adds the team's key.
    let ns_policy = out_dir.join(format!("{ns}.json"));
    assert!(ns_policy.is_file(), "no {}", ns_policy.display());
    assert!(
        !h.skopeo_verdict_with(&ns_policy, &h.image("apps/signed:v1"), None, &rd)
            .0
    );
}
