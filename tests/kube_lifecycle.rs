//! imagegate's availability and lifecycle in a real cluster, each test on a
//! control plane of its own (they stop, kill, restart and uninstall
//! things): failurePolicy Fail while the webhook is down, leader election
//! on a real Lease, self-managed certificates rotating under load, etcd
//! and kube-apiserver restarts, and `helm upgrade`, `rollback` and
//! `uninstall` with the chart's cleanup hook.

mod harness;

use std::collections::BTreeSet;

use harness::cluster::{Cluster, RELEASE, RELEASE_NAMESPACE, wait_for};
use harness::{Harness, keys};
use serde_json::{Value, json};

fn key_data(path: &std::path::Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("key file"))
}

fn pod(namespace: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}]},
    })
}

fn policy(h: &Harness, name: &str, scope: &str) -> Value {
    json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "policy": {"transports": {"docker": {h.image(scope): [{
                "type": "signedBy", "keyType": "GPGKeys",
                "keyData": key_data(&keys().signer.public_armored),
            }]}}},
            "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}},
        }
    })
}

/// A server-side dry run of a Pod: what the apiserver (and imagegate) say.
fn dry_run(c: &Cluster, ns: &str, image: &str) -> harness::cluster::CommandResult {
    c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &pod(ns, "probe", image).to_string(),
    )
}

fn lease_holder(c: &Cluster) -> String {
    c.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "get",
        "lease",
        "imagegate-leader",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .stdout
    .trim()
    .to_string()
}

/// The pods (by the `authentication.kubernetes.io/pod-name` of their bound
/// ServiceAccount token, from the audit log) that wrote the status of
/// ClusterImagePolicy `name`.
fn status_writers(c: &Cluster, name: &str) -> BTreeSet<String> {
    c.audit_events()
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "clusterimagepolicies"
                && e["objectRef"]["subresource"] == "status"
                && e["objectRef"]["name"] == name
                && matches!(e["verb"].as_str(), Some("patch" | "update"))
                && e["responseStatus"]["code"]
                    .as_i64()
                    .is_some_and(|c| c < 300)
        })
        .filter_map(|e| {
            e["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
                .as_str()
                .map(String::from)
        })
        .collect()
}

fn wait_status_ready(c: &Cluster, name: &str) {
    wait_for(&format!("status of {name}"), || {
        let s = c.kubectl(&["get", "clusterimagepolicy", name, "-o", "json"]);
        s.success() && s.json()["status"]["conditions"][0]["status"] == "True"
    });
}

#[test]
fn webhook_down_fails_closed_except_in_excluded_namespaces() {
    let c = Cluster::start();
    c.install(&[]);
    let ns = c.namespace("avail");
    let image = "registry.example.invalid/any/app:v1";
    dry_run(&c, &ns, image).ok();

    c.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "scale",
        "deployment",
        RELEASE,
        "--replicas=0",
    ])
    .ok();
    let mut out = dry_run(&c, &ns, image);
    wait_for("admission to fail with no webhook replica", || {
        out = dry_run(&c, &ns, image);
        !out.success()
    });
    let stderr = out.failed();
    assert!(
        stderr.contains("failed calling webhook") && stderr.contains("imagegate.dev"),
        "{stderr}"
    );
    // kube-system and imagegate's own namespace are excluded: the cluster
    // can still repair itself.
    for excluded in ["kube-system", RELEASE_NAMESPACE] {
        dry_run(&c, excluded, image).ok();
    }
    c.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "scale",
        "deployment",
        RELEASE,
        "--replicas=2",
    ])
    .ok();
    wait_for("admission to work again", || {
        dry_run(&c, &ns, image).success()
    });
}

#[test]
fn the_lease_moves_when_the_holder_dies_and_only_the_holder_writes_status() {
    let c = Cluster::start();
    c.install(&[]);
    let h = Harness::start();
    wait_for("a lease holder", || !lease_holder(&c).is_empty());
    let first = lease_holder(&c);
    c.apply_policy(&policy(&h, "before", "a"));
    wait_status_ready(&c, "before");
    assert_eq!(
        status_writers(&c, "before"),
        BTreeSet::from([first.clone()])
    );

    // The holder is killed (SIGKILL: it cannot release the Lease); another
    // replica takes over once the Lease expires.
    c.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "delete",
        "pod",
        &first,
        "--grace-period=0",
        "--force",
    ])
    .ok();
    wait_for("another lease holder", || {
        let holder = lease_holder(&c);
        !holder.is_empty() && holder != first
    });
    let second = lease_holder(&c);
    c.apply_policy(&policy(&h, "after", "b"));
    wait_status_ready(&c, "after");
    assert_eq!(status_writers(&c, "after"), BTreeSet::from([second]));
}

#[test]
fn certificates_rotate_without_a_failed_admission() {
    let c = Cluster::start();
    // A two-minute serving certificate renewed in its last minute, checked
    // every five seconds: one rotation a minute.
    c.install(&[
        "--set",
        "extraArgs={--tls-verify=false,--cert-validity=2m,--cert-renew-before=1m,--cert-check-interval=5s}",
    ]);
    let ns = c.namespace("certs");
    let secret_cert = || {
        c.kubectl(&[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "secret",
            "imagegate-tls",
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ])
        .ok()
        .to_string()
    };
    let first = secret_cert();
    assert!(!first.is_empty());
    let mut admissions = 0;
    let mut failures = Vec::new();
    wait_for("a certificate rotation", || {
        let out = dry_run(&c, &ns, "registry.example.invalid/any/app:v1");
        admissions += 1;
        if !out.success() {
            failures.push(out.stderr.clone());
        }
        secret_cert() != first
    });
    // Keep admitting until every replica serves the new certificate (the
    // followers copy it within their sync interval).
    for _ in 0..50 {
        let out = dry_run(&c, &ns, "registry.example.invalid/any/app:v1");
        admissions += 1;
        if !out.success() {
            failures.push(out.stderr.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {admissions} admissions failed: {failures:?}",
        failures.len()
    );
    // The caBundle is the Secret's CA bundle.
    let bundle = c
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "imagegate",
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ])
        .ok()
        .to_string();
    let ca = c
        .kubectl(&[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "secret",
            "imagegate-tls",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
        .ok()
        .to_string();
    assert_eq!(bundle, ca);
}

#[test]
fn etcd_and_apiserver_restarts_are_survived() {
    let c = Cluster::start();
    c.install(&[]);
    let h = Harness::start();
    let k = keys();
    h.push_unsigned(&h.build_image("restart unsigned"), "r/unsigned:v1");
    h.push_signed(&h.build_image("restart signed"), "r/signed:v1", &k.signer);
    let ns = c.namespace("restart");
    for component in ["etcd", "kube-apiserver"] {
        c.restart(component);
        // After recovery the controller has re-listed: a new policy reaches
        // every replica, its status is written, and admission decides with it.
        let name = format!("after-{component}");
        c.apply_policy(&policy(&h, &name, "r"));
        wait_status_ready(&c, &name);
        let out = dry_run(&c, &ns, &h.image("r/unsigned:v1"));
        assert!(
            out.failed().contains("no signature exists"),
            "{}",
            out.stderr
        );
        dry_run(&c, &ns, &h.image("r/signed:v1")).ok();
        c.kubectl(&["delete", "clusterimagepolicy", &name]).ok();
        c.wait_policy_served(&format!("ClusterImagePolicy/{name}"), 0);
    }
}

#[test]
fn helm_upgrade_rollback_and_uninstall() {
    let c = Cluster::start();
    c.install(&[]);
    let h = Harness::start();
    let k = keys();
    h.push_unsigned(&h.build_image("helm unsigned"), "helm/unsigned:v1");
    let unsigned = h.image("helm/unsigned:v1");
    let ns = c.namespace("helm");

    // A policy change through the chart's values.
    let values = h.write_file(
        "values.yaml",
        serde_json::to_string(&json!({"clusterImagePolicies": {"from-values": {
            "policy": {"transports": {"docker": {h.image("helm"): [{"type": "signedBy", "keyType": "GPGKeys",
                        "keyData": key_data(&k.signer.public_armored)}]}}},
            "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}}}}}))
        .unwrap(),
    );
    c.install(&["-f", values.to_str().unwrap()]);
    c.wait_policy_served("ClusterImagePolicy/from-values", 1);
    assert!(
        dry_run(&c, &ns, &unsigned)
            .failed()
            .contains("no signature exists")
    );

    // A values change: no mutating webhook.
    c.install(&[
        "-f",
        values.to_str().unwrap(),
        "--set",
        "mutation.enabled=false",
    ]);
    c.kubectl(&["get", "mutatingwebhookconfiguration", "imagegate"])
        .failed();

    // Rollback to the revision before: the mutating webhook is back.
    c.helm(&["-n", RELEASE_NAMESPACE, "rollback", RELEASE, "2", "--wait"])
        .ok();
    c.kubectl(&["get", "mutatingwebhookconfiguration", "imagegate"])
        .ok();
    let history = c
        .helm(&["-n", RELEASE_NAMESPACE, "history", RELEASE, "-o", "json"])
        .json();
    assert_eq!(history.as_array().map(Vec::len), Some(4), "{history}");

    // Uninstall: the post-delete hook Job runs (kubectl, as the hook's
    // ServiceAccount) and succeeds; no webhook is left behind, the CRDs stay.
    c.helm(&[
        "-n",
        RELEASE_NAMESPACE,
        "uninstall",
        RELEASE,
        "--wait",
        "--timeout",
        "3m",
    ])
    .ok();
    c.kubectl(&["get", "validatingwebhookconfiguration", "imagegate"])
        .failed();
    c.kubectl(&["get", "mutatingwebhookconfiguration", "imagegate"])
        .failed();
    c.kubectl(&["-n", RELEASE_NAMESPACE, "get", "lease", "imagegate-leader"])
        .failed();
    c.kubectl(&["get", "crd", "clusterimagepolicies.imagegate.dev"])
        .ok();
    // The hook did the Lease's deletion, as its own ServiceAccount.
    assert!(
        c.audit_events().iter().any(|e| e["verb"] == "delete"
            && e["objectRef"]["resource"] == "leases"
            && e["user"]["username"]
                == format!("system:serviceaccount:{RELEASE_NAMESPACE}:imagegate-cleanup")
            && e["responseStatus"]["code"] == 200),
        "the cleanup hook did not delete the Lease: {:?}",
        c.audit_events()
            .iter()
            .filter(|e| e["objectRef"]["resource"] == "leases" && e["verb"] == "delete")
            .collect::<Vec<_>>()
    );
    // A Pod with the unsigned image is admitted: nothing blocks the cluster.
    c.create(&pod(&ns, "after-uninstall", &unsigned)).ok();
}
