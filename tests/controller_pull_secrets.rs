//! Pull-secret resolution over Secret shapes, against
//! `tests/fake_apiserver/`: kubelet host matching, legacy `.dockercfg`,
//! malformed Secrets and the resolver's cache, each a table of Secrets no
//! cluster state is needed for. The order (pod, ServiceAccount, imagegate's
//! own) against private registries is tested through kube-apiserver in
//! `tests/kube_admission.rs`.

mod fake_apiserver;

use std::time::Duration;

use base64::Engine as _;
use fake_apiserver::{FakeApiServer, Gvr, secret, within};
use http::Method;
use imagegate::controller::pull_secrets::{
    PodPullContext, PullCredential, PullSecretError, PullSecretResolver, PullSecretsConfig,
};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::json;

const OWN_NS: &str = "imagegate-system";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn dockerconfigjson(entries: &[(&str, &str)]) -> Vec<u8> {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(host, user)| {
            (
                host.to_string(),
                json!({"auth": b64(&format!("{user}:pw-{user}"))}),
            )
        })
        .collect();
    serde_json::to_vec(&json!({ "auths": auths })).unwrap()
}

fn add_config_secret(fake: &FakeApiServer, ns: &str, name: &str, entries: &[(&str, &str)]) {
    fake.insert(
        &Gvr::secrets(),
        secret(
            ns,
            name,
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", &dockerconfigjson(entries))],
        ),
    );
}

fn users(c: &[PullCredential]) -> Vec<String> {
    c.iter().map(|c| c.username.clone()).collect()
}

fn resolver(fake: &FakeApiServer, own: &[&str], ttl: Duration) -> PullSecretResolver {
    PullSecretResolver::new(
        fake.client(),
        OWN_NS,
        PullSecretsConfig {
            secret_names: own.iter().map(|s| s.to_string()).collect(),
            cache_ttl: ttl,
            ..Default::default()
        },
    )
}

fn pod(ns: &str, secrets: &[&str], sa: Option<&str>) -> PodPullContext {
    let spec: PodSpec = serde_json::from_value(json!({
        "containers": [],
        "imagePullSecrets": secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
        "serviceAccountName": sa,
    }))
    .unwrap();
    PodPullContext::from_pod_spec(ns, &spec)
}

#[tokio::test]
async fn kubelet_host_matching_through_secrets() {
    let fake = FakeApiServer::start().await;
    add_config_secret(
        &fake,
        "app",
        "many",
        &[
            ("registry.example.com", "plain"),
            ("registry.example.com:5000", "port"),
            ("*.example.com", "wild"),
            ("https://registry.example.com/v2/team", "team"),
        ],
    );
    let r = resolver(&fake, &[], Duration::from_secs(30));
    let p = pod("app", &["many"], None);
    let look = |img: &'static str| {
        let r = &r;
        let p = &p;
        async move { users(&r.credentials(p, img).await.unwrap()) }
    };
    assert_eq!(
        look("registry.example.com/team/app").await,
        ["team", "plain", "wild"]
    );
    assert_eq!(
        look("registry.example.com/solo/app").await,
        ["plain", "wild"]
    );
    assert_eq!(look("registry.example.com:5000/team/app").await, ["port"]);
    assert_eq!(look("mirror.example.com/app").await, ["wild"]);
    assert!(look("example.com/app").await.is_empty());
    assert!(look("deep.mirror.example.com/app").await.is_empty());
}

#[tokio::test]
async fn legacy_dockercfg_and_other_secret_types() {
    let fake = FakeApiServer::start().await;
    let cfg = serde_json::to_vec(&json!({
        "https://legacy.example.com": {"auth": b64("old:timer"), "email": "x@example.com"}
    }))
    .unwrap();
    fake.insert(
        &Gvr::secrets(),
        secret(
            "app",
            "legacy",
            "kubernetes.io/dockercfg",
            &[(".dockercfg", &cfg)],
        ),
    );
    // Right key, wrong type: ignored, as the kubelet ignores it.
    fake.insert(
        &Gvr::secrets(),
        secret(
            "app",
            "opaque",
            "Opaque",
            &[(
                ".dockerconfigjson",
                &dockerconfigjson(&[("legacy.example.com", "opaque")]),
            )],
        ),
    );
    let r = resolver(&fake, &[], Duration::from_secs(30));
    let c = r
        .credentials(
            &pod("app", &["opaque", "legacy"], None),
            "legacy.example.com/a/b",
        )
        .await
        .unwrap();
    assert_eq!(users(&c), ["old"]);
    assert_eq!(c[0].password, "timer");
}

#[tokio::test]
async fn malformed_secret_is_an_error() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::secrets(),
        secret(
            "app",
            "bad",
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", b"{not json")],
        ),
    );
    let r = resolver(&fake, &[], Duration::from_secs(30));
    let err = r
        .credentials(&pod("app", &["bad"], None), "registry.example.com/x")
        .await
        .unwrap_err();
    let PullSecretError::Malformed { secret, reason } = &err;
    assert_eq!(secret, "secret app/bad");
    assert!(
        reason.starts_with(".dockerconfigjson: invalid JSON"),
        "{reason}"
    );
}

#[tokio::test]
async fn secrets_are_cached_then_reread() {
    let fake = FakeApiServer::start().await;
    add_config_secret(&fake, "app", "creds", &[("registry.example.com", "v1")]);
    let r = resolver(&fake, &[], Duration::from_secs(3600));
    let p = pod("app", &["creds"], None);
    for _ in 0..3 {
        assert_eq!(
            users(&r.credentials(&p, "registry.example.com/x").await.unwrap()),
            ["v1"]
        );
    }
    let reads = fake
        .requests_to(&Method::GET, "/api/v1/namespaces/app/secrets/creds")
        .len();
    assert_eq!(reads, 1, "read once, then served from the cache");
    assert_eq!(
        fake.requests_to(
            &Method::GET,
            "/api/v1/namespaces/app/serviceaccounts/default"
        )
        .len(),
        1
    );
    assert!(
        fake.requests().iter().all(|r| !r.is_watch()),
        "secrets are never watched"
    );

    fake.modify(&Gvr::secrets(), Some("app"), "creds", |s| {
        s["data"][".dockerconfigjson"] = json!(b64(std::str::from_utf8(&dockerconfigjson(&[(
            "registry.example.com",
            "v2"
        )]))
        .unwrap()));
    });
    assert_eq!(
        users(&r.credentials(&p, "registry.example.com/x").await.unwrap()),
        ["v1"]
    );
    r.invalidate();
    assert_eq!(
        users(&r.credentials(&p, "registry.example.com/x").await.unwrap()),
        ["v2"]
    );

    // With a short time to live, the change is picked up on its own.
    let short = resolver(&fake, &[], Duration::from_millis(50));
    assert_eq!(
        users(
            &short
                .credentials(&p, "registry.example.com/x")
                .await
                .unwrap()
        ),
        ["v2"]
    );
    fake.modify(&Gvr::secrets(), Some("app"), "creds", |s| {
        s["data"][".dockerconfigjson"] = json!(b64(std::str::from_utf8(&dockerconfigjson(&[(
            "registry.example.com",
            "v3"
        )]))
        .unwrap()));
    });
    within("the cache entry to expire", async {
        while users(
            &short
                .credentials(&p, "registry.example.com/x")
                .await
                .unwrap(),
        ) != ["v3"]
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
