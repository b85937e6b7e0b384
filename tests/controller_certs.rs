//! Self-managed certificates: the races and clocks a real kube-apiserver
//! cannot be made to produce on demand, against `tests/fake_apiserver/`.
//! Creating the Secret, patching caBundle, rotating the serving certificate
//! and followers picking it up are tested through kube-apiserver in
//! `tests/kube_lifecycle.rs`. Kept here: a lost race (409 at the exact
//! moment between read and write) resolved by adopting the winner's work,
//! conflicting writers, and a CA already near expiry (the old CA staying
//! trusted), which a real cluster would need hours to reach.

mod fake_apiserver;

use std::time::Duration;

use base64::Engine as _;
use fake_apiserver::{FakeApiServer, Gvr, secret};
use http::Method;
use imagegate::certs::{generate_ca, issue_serving_cert};
use imagegate::controller::certs::{
    Assessment, BundleAction, CertConfig, CertManager, CertMaterial, SecretAction, assess,
};
use serde_json::{Value, json};

const NS: &str = "imagegate-system";

fn config(dir: &std::path::Path) -> CertConfig {
    let mut c = CertConfig::new("imagegate-tls", "imagegate", dir);
    c.validating_webhook = Some("imagegate".into());
    c.mutating_webhook = Some("imagegate-pin".into());
    c
}

fn webhook_config(kind: &str, name: &str, hooks: &[&str], bundle: Option<&str>) -> Value {
    let webhooks: Vec<Value> = hooks
        .iter()
        .map(|h| {
            let mut cc = json!({"service": {"name": "imagegate", "namespace": NS, "path": "/validate"}});
            if let Some(b) = bundle {
                cc["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
            json!({"name": h, "clientConfig": cc, "admissionReviewVersions": ["v1"], "sideEffects": "None"})
        })
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": webhooks,
    })
}

fn install_webhooks(fake: &FakeApiServer) {
    fake.insert(
        &Gvr::validating_webhooks(),
        webhook_config(
            "ValidatingWebhookConfiguration",
            "imagegate",
            &["pods.imagegate.dev", "workloads.imagegate.dev"],
            None,
        ),
    );
    fake.insert(
        &Gvr::mutating_webhooks(),
        webhook_config(
            "MutatingWebhookConfiguration",
            "imagegate-pin",
            &["pin.imagegate.dev"],
            Some("stale"),
        ),
    );
}

fn bundles(obj: &Value) -> Vec<String> {
    obj["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let b = w["clientConfig"]["caBundle"].as_str().unwrap_or("");
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
        .collect()
}

fn secret_material(fake: &FakeApiServer) -> CertMaterial {
    let s = fake
        .get(&Gvr::secrets(), Some(NS), "imagegate-tls")
        .expect("secret");
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(s).unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    CertMaterial::from_secret(&s).expect("all four keys")
}

fn names() -> Vec<String> {
    vec![
        "imagegate.imagegate-system.svc".into(),
        "imagegate.imagegate-system.svc.cluster.local".into(),
    ]
}

fn material(ca_days: i64, leaf_days: i64) -> CertMaterial {
    let ca = generate_ca("other CA", time::Duration::days(ca_days)).unwrap();
    let leaf = issue_serving_cert(&ca, &names(), time::Duration::days(leaf_days)).unwrap();
    CertMaterial {
        ca_bundle: ca.cert_pem,
        ca_key: ca.key_pem,
        tls_crt: leaf.cert_pem,
        tls_key: leaf.key_pem,
    }
}

fn insert_material(fake: &FakeApiServer, m: &CertMaterial) {
    fake.insert(
        &Gvr::secrets(),
        secret(
            NS,
            "imagegate-tls",
            "kubernetes.io/tls",
            &[
                ("tls.crt", m.tls_crt.as_bytes()),
                ("tls.key", m.tls_key.as_bytes()),
                ("ca.crt", m.ca_bundle.as_bytes()),
                ("ca.key", m.ca_key.as_bytes()),
            ],
        ),
    );
}

const MONTH: Duration = Duration::from_secs(30 * 86400);

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn ca_near_expiry_is_replaced_and_the_old_one_stays_trusted() {
    let fake = FakeApiServer::start().await;
    install_webhooks(&fake);
    let old = material(20, 10);
    insert_material(&fake, &old);
    let dir = tempfile::tempdir().unwrap();
    let report = CertManager::new(fake.client(), NS, config(dir.path()))
        .reconcile()
        .await
        .unwrap();
    assert!(
        matches!(&report.secret, SecretAction::Updated(r) if r.contains("CA expires")),
        "{report:?}"
    );
    let m = secret_material(&fake);
    assert_ne!(m.ca_key, old.ca_key);
    assert!(
        m.ca_bundle.ends_with(&old.ca_bundle),
        "old CA kept after the new one"
    );
    assert!(!m.ca_bundle.starts_with(&old.ca_bundle));
    assert_eq!(assess(&m, &names(), MONTH, now()), Assessment::Valid);
    let mw = fake
        .get(&Gvr::mutating_webhooks(), None, "imagegate-pin")
        .unwrap();
    assert_eq!(bundles(&mw), std::slice::from_ref(&m.ca_bundle));
}

#[tokio::test]
async fn losing_the_race_adopts_the_winners_certificate() {
    let fake = FakeApiServer::start().await;
    install_webhooks(&fake);
    insert_material(&fake, &material(3650, 10));
    let winner = material(3650, 365);
    let w = winner.clone();
    // Another replica rotates between our read and our update.
    fake.before_next(
        Method::PUT,
        "/api/v1/namespaces/imagegate-system/secrets/imagegate-tls",
        move |f| {
            f.modify(&Gvr::secrets(), Some(NS), "imagegate-tls", |s| {
                let enc = |t: &str| json!(base64::engine::general_purpose::STANDARD.encode(t));
                s["data"]["tls.crt"] = enc(&w.tls_crt);
                s["data"]["tls.key"] = enc(&w.tls_key);
                s["data"]["ca.crt"] = enc(&w.ca_bundle);
                s["data"]["ca.key"] = enc(&w.ca_key);
            });
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let report = CertManager::new(fake.client(), NS, config(dir.path()))
        .reconcile()
        .await
        .unwrap();
    assert_eq!(report.conflicts, 1);
    assert_eq!(
        report.secret,
        SecretAction::Unchanged,
        "the winner's material is valid"
    );
    let puts = fake.requests_to(
        &Method::PUT,
        "/api/v1/namespaces/imagegate-system/secrets/imagegate-tls",
    );
    assert_eq!(puts.iter().map(|r| r.status).collect::<Vec<_>>(), [409]);
    assert_eq!(secret_material(&fake), winner);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        winner.tls_crt
    );
    let v = fake
        .get(&Gvr::validating_webhooks(), None, "imagegate")
        .unwrap();
    assert_eq!(bundles(&v)[0], winner.ca_bundle);
}

#[tokio::test]
async fn webhook_configuration_conflict_is_retried() {
    let fake = FakeApiServer::start().await;
    install_webhooks(&fake);
    fake.before_next(
        Method::PATCH,
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/imagegate",
        |f| {
            f.modify(&Gvr::validating_webhooks(), None, "imagegate", |o| {
                o["metadata"]["labels"] = json!({"touched": "by-someone-else"});
            });
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let report = CertManager::new(fake.client(), NS, config(dir.path()))
        .reconcile()
        .await
        .unwrap();
    assert_eq!(report.validating, Some(BundleAction::Patched));
    let v = fake
        .get(&Gvr::validating_webhooks(), None, "imagegate")
        .unwrap();
    assert_eq!(
        v["metadata"]["labels"]["touched"], "by-someone-else",
        "the other write survives"
    );
    assert_eq!(bundles(&v)[0], secret_material(&fake).ca_bundle);
    let statuses: Vec<u16> = fake
        .requests_to(
            &Method::PATCH,
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/imagegate",
        )
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [409, 200]);
}

#[tokio::test]
async fn concurrent_creation_yields_one_secret() {
    let fake = FakeApiServer::start().await;
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = CertManager::new(fake.client(), NS, config(a_dir.path()));
    let b = CertManager::new(fake.client(), NS, config(b_dir.path()));
    let (ra, rb) = tokio::join!(a.reconcile(), b.reconcile());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let created = [&ra, &rb]
        .iter()
        .filter(|r| r.secret == SecretAction::Created)
        .count();
    assert_eq!(created, 1, "{ra:?} {rb:?}");
    let m = secret_material(&fake);
    for d in [&a_dir, &b_dir] {
        assert_eq!(
            std::fs::read_to_string(d.path().join("tls.crt")).unwrap(),
            m.tls_crt
        );
    }
}

#[tokio::test]
async fn create_conflict_rereads_the_other_replicas_secret() {
    let fake = FakeApiServer::start().await;
    let winner = material(3650, 365);
    let w = winner.clone();
    fake.before_next(
        Method::POST,
        "/api/v1/namespaces/imagegate-system/secrets",
        move |f| {
            insert_material(f, &w);
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let report = CertManager::new(fake.client(), NS, config(dir.path()))
        .reconcile()
        .await
        .unwrap();
    assert_eq!(report.conflicts, 1);
    assert_eq!(report.secret, SecretAction::Unchanged);
    assert_eq!(secret_material(&fake), winner);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        winner.ca_bundle
    );
}
