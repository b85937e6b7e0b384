//! The webhook's transport, called as kube-apiserver calls it: HTTPS
//! verified against the CA that would be the caBundle, AdmissionReview v1
//! bodies. The verdicts here come from a fixed verifier; the suites with a
//! real registry and signatures are in `webhook_e2e.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use imagegate::admission::review::{ImageVerifier, RequestContext, ReviewOptions};
use imagegate::certs::{PemPair, generate_ca, issue_serving_cert};
use imagegate::engine::{DocumentVerdict, ImageVerdict, MatchedScope, Mode};
use imagegate::metrics::Metrics;
use imagegate::server::{self, AppState, ServerConfig, TlsFiles};

/// Rejects every image whose name contains "unsigned".
struct NameVerifier;

impl ImageVerifier for NameVerifier {
    fn verify<'a>(
        &'a self,
        images: &'a [String],
        _context: &'a RequestContext,
    ) -> Pin<Box<dyn Future<Output = Vec<ImageVerdict>> + Send + 'a>> {
        Box::pin(async move {
            images
                .iter()
                .map(|i| {
                    let ok = !i.contains("unsigned");
                    ImageVerdict {
                        image: i.clone(),
                        reference: None,
                        digest: None,
                        documents: vec![DocumentVerdict {
                            document: "ClusterImagePolicy/prod".into(),
                            mode: Mode::Enforce,
                            scope: Some(MatchedScope::Default),
                            allowed: ok,
                            reason: (!ok).then(|| {
                                "A signature was required, but no signature exists".into()
                            }),
                            instances: vec![],
                        }],
                    }
                })
                .collect()
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    tls: TlsFiles,
    ca: PemPair,
    running: Option<server::RunningServer>,
}

fn write_pair(tls: &TlsFiles, pair: &PemPair) {
    std::fs::write(&tls.cert, &pair.cert_pem).unwrap();
    std::fs::write(&tls.key, &pair.key_pem).unwrap();
}

async fn start() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = generate_ca("test CA", time::Duration::days(1)).unwrap();
    let leaf = issue_serving_cert(
        &ca,
        &["localhost".into(), "127.0.0.1".into()],
        time::Duration::days(1),
    )
    .unwrap();
    let tls = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    write_pair(&tls, &leaf);
    let state = AppState {
        verifier: Arc::new(NameVerifier),
        options: Arc::new(ReviewOptions::default()),
        metrics: Arc::new(Metrics::new()),
        ready: Arc::new(AtomicBool::new(true)),
        observer: None,
    };
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        tls: tls.clone(),
        body_limit: server::DEFAULT_BODY_LIMIT,
        tls_reload_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
    };
    let running = server::start(state, &config).await.unwrap();
    Fixture {
        _dir: dir,
        tls,
        ca,
        running: Some(running),
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.running.as_ref().unwrap().addr.port()
        )
    }

    /// A client that trusts only `ca`, as the API server trusts only the caBundle.
    fn client(ca: &PemPair) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap()])
            .resolve("localhost", "127.0.0.1:0".parse().unwrap())
            .build()
            .unwrap()
    }
}

fn review(image: &str) -> serde_json::Value {
    let mut pod: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/admission/pod.json")).unwrap();
    pod["spec"]["containers"][0]["image"] = image.into();
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1f2d4c8-3a5e-4f6a-9b7c-0d1e2f3a4b5c",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app",
            "namespace": "team",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

#[tokio::test]
async fn answers_reviews_over_verified_https() {
    let f = start().await;
    let client = Fixture::client(&f.ca);
    let resp = client
        .post(f.url("/validate"))
        .json(&review("registry.example.com/team/app:v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "b1f2d4c8-3a5e-4f6a-9b7c-0d1e2f3a4b5c"
    );
    assert_eq!(body["response"]["allowed"], true);

    let resp = client
        .post(f.url("/validate"))
        .json(&review("registry.example.com/team/unsigned:v1"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(
        body["response"]["status"]["message"],
        "image registry.example.com/team/unsigned:v1 rejected by ClusterImagePolicy/prod (default): \
         A signature was required, but no signature exists"
    );
    assert_eq!(body["response"]["auditAnnotations"]["decision"], "denied");

    assert_eq!(
        client.get(f.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client.get(f.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let metrics_url = format!(
        "http://{}/metrics",
        f.running.as_ref().unwrap().metrics_addr
    );
    let text = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("imagegate_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"denied\"} 1"), "{text}");
}

#[tokio::test]
async fn bad_requests_get_400_and_413_with_a_message() {
    let f = start().await;
    let client = Fixture::client(&f.ca);
    let resp = client
        .post(f.url("/validate"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("malformed AdmissionReview")
    );

    let mut wrong = review("registry.example.com/team/app:v1");
    wrong["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let resp = client
        .post(f.url("/validate"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("unsupported review type admission.k8s.io/v1beta1")
    );

    let no_request =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let resp = client
        .post(f.url("/validate"))
        .json(&no_request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let huge = vec![b' '; server::DEFAULT_BODY_LIMIT + 1];
    let resp = client
        .post(f.url("/validate"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // The server is still fine afterwards.
    let resp = client
        .post(f.url("/validate"))
        .json(&review("registry.example.com/team/app:v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rotated_certificates_are_served_without_restart() {
    let mut f = start().await;
    let old_client = Fixture::client(&f.ca);
    assert_eq!(
        old_client
            .get(f.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A new CA and serving certificate, written over the mounted files.
    let new_ca = generate_ca("rotated CA", time::Duration::days(1)).unwrap();
    let new_leaf =
        issue_serving_cert(&new_ca, &["localhost".into()], time::Duration::days(1)).unwrap();
    write_pair(&f.tls, &new_leaf);
    let new_client = Fixture::client(&new_ca);
    let mut rotated = false;
    for _ in 0..100 {
        // Fresh connections each time: reqwest would otherwise reuse the old session.
        if Fixture::client(&new_ca)
            .get(f.url("/healthz"))
            .send()
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "the new certificate was never served");
    assert_eq!(
        new_client
            .get(f.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        Fixture::client(&f.ca)
            .get(f.url("/healthz"))
            .send()
            .await
            .is_err(),
        "the old CA must no longer verify the server"
    );
    f.running
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}
