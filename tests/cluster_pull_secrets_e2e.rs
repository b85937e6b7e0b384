//! Pull secrets end to end: a private `docker-registry` (htpasswd Basic
//! auth, or Bearer tokens from a token server) serves a signed image; the pod's imagePullSecrets, then its
//! ServiceAccount's, then imagegate's own pull secrets (read through the real
//! `kube` client from the fake API server) let the webhook's verifier resolve
//! the digest, and without them the image is denied, naming the registry's
//! refusal. skopeo, given the same credentials, decides the same, and the
//! lookaside never sees the registry credentials (c/image sends none there).

mod fake_apiserver;
mod harness;

use std::sync::Arc;

use base64::Engine as _;
use fake_apiserver::cluster::{ClusterOptions, ClusterVerifier};
use fake_apiserver::{FakeApiServer, Gvr, secret};
use harness::{Harness, Registry, keys};
use imagegate::admission::review::RequestContext;
use imagegate::controller::policies::ClusterCredentials;
use imagegate::controller::pull_secrets::{PullSecretResolver, PullSecretsConfig};
use imagegate::registry::Anonymous;
use serde_json::json;

const OWN_NS: &str = "imagegate-system";
const USER: &str = "puller";
const PASSWORD: &str = "s3cret-pull";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `kubernetes.io/dockerconfigjson` Secret for `host`.
fn pull_secret(
    namespace: &str,
    name: &str,
    host: &str,
    user: &str,
    password: &str,
) -> serde_json::Value {
    let config = json!({"auths": {host: {"auth": b64(format!("{user}:{password}"))}}});
    secret(
        namespace,
        name,
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", &serde_json::to_vec(&config).unwrap())],
    )
}

/// Everything the cases share: the harness (its registry holds the image),
/// the private registry serving the same storage, and the fake API server.
struct Setup {
    h: Harness,
    private: Registry,
    fake: FakeApiServer,
    digest: String,
}

#[derive(Clone, Copy)]
enum Auth {
    Htpasswd,
    Token,
}

async fn setup(auth: Auth) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h = Harness::start();
    let k = keys();
    // Pushed unsigned to the open registry; the private one serves the same
    // storage under another host, so the signature is made for the identity
    // a pod names, the private host's.
    let digest = h.push_unsigned(&h.build_image("private app"), "team/app:v1");
    let private = match auth {
        Auth::Htpasswd => Registry::start_with_htpasswd(h.dir(), USER, PASSWORD),
        Auth::Token => Registry::start_with_token_server(h.dir(), USER, PASSWORD),
    };
    let manifest = h.raw_manifest("team/app:v1");
    let identity = format!("{}/team/app:v1", private.host());
    let signature = h.standalone_sign(&manifest, &identity, &k.signer);
    h.put_signature("team/app", &digest, 1, &signature);
    // skopeo reads the private host's signatures from the same lookaside.
    std::fs::write(
        h.registries_d().join("private.yaml"),
        format!(
            "docker:\n  {}:\n    lookaside: {}\n",
            private.host(),
            h.lookaside_url()
        ),
    )
    .unwrap();

    let fake = FakeApiServer::start().await;
    let host = private.host();
    fake.insert(
        &Gvr::secrets(),
        pull_secret("team", "regcred", &host, USER, PASSWORD),
    );
    fake.insert(
        &Gvr::secrets(),
        pull_secret("team", "wrongcred", &host, USER, "not-the-password"),
    );
    fake.insert(
        &Gvr::secrets(),
        pull_secret("team", "sa-cred", &host, USER, PASSWORD),
    );
    fake.insert(
        &Gvr::secrets(),
        pull_secret(OWN_NS, "imagegate-pull", &host, USER, PASSWORD),
    );
    fake.insert(
        &Gvr::service_accounts(),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "builder", "namespace": "team"},
               "imagePullSecrets": [{"name": "sa-cred"}]}),
    );
    let key = std::fs::read(&k.signer.public_armored).unwrap();
    fake.insert(
        &Gvr::cluster_image_policies(),
        json!({"apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
        "metadata": {"name": "private"},
        "spec": {
            "mode": "Enforce",
            "policy": {"transports": {"docker": {format!("{host}/team"): [
                {"type": "signedBy", "keyType": "GPGKeys", "keyData": b64(key)}]}}},
            "lookaside": {"docker": {host.clone(): {"lookaside": h.lookaside_url()}}}
        }}),
    );
    Setup {
        h,
        private,
        fake,
        digest,
    }
}

/// A verifier with fresh caches (so no case sees another's cached digest),
/// reading pull secrets through the fake API; `own` are imagegate's own
/// pull secrets (`--pull-secret`).
async fn verifier(s: &Setup, own: &[&str]) -> ClusterVerifier {
    let resolver = PullSecretResolver::new(
        s.fake.client(),
        OWN_NS,
        PullSecretsConfig {
            secret_names: own.iter().map(|n| n.to_string()).collect(),
            ..PullSecretsConfig::default()
        },
    );
    let mut options = ClusterOptions::new(OWN_NS);
    options.credentials = Arc::new(ClusterCredentials {
        resolver: Arc::new(resolver),
        fallback: Arc::new(Anonymous),
    });
    ClusterVerifier::start(&s.fake, options).await
}

fn pod(secrets: &[&str], service_account: Option<&str>) -> RequestContext {
    RequestContext {
        namespace: Some("team".into()),
        image_pull_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        service_account: service_account.map(str::to_string),
    }
}

/// skopeo's policy verdict on the private image, with or without `creds`.
fn skopeo_accepts(s: &Setup, creds: Option<&str>) -> (bool, String) {
    let k = keys();
    let policy = s.h.signed_by_policy(
        &format!("{}/team", s.private.host()),
        &k.signer.public_armored,
    );
    let dest = s.h.unique_path("pulled");
    let mut cmd = std::process::Command::new("skopeo");
    cmd.env("GNUPGHOME", s.h.gnupghome())
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg("--policy")
        .arg(&policy)
        .arg("--registries.d")
        .arg(s.h.registries_d());
    if let Some(creds) = creds {
        cmd.arg("--src-creds").arg(creds);
    }
    let out = cmd
        .arg(format!("docker://{}/team/app:v1", s.private.host()))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_service_account_and_own_pull_secrets_reach_a_private_registry() {
    let s = setup(Auth::Htpasswd).await;
    let image = vec![format!("{}/team/app:v1", s.private.host())];

    // The reference: skopeo with the credentials accepts, without them the
    // registry refuses it.
    let (accepted, message) = skopeo_accepts(&s, Some(&format!("{USER}:{PASSWORD}")));
    assert!(accepted, "skopeo with credentials: {message}");
    let (accepted, message) = skopeo_accepts(&s, None);
    assert!(!accepted, "skopeo without credentials accepted");
    assert!(
        message.to_lowercase().contains("unauthorized")
            || message.contains("authentication required"),
        "{message}"
    );

    let open = verifier(&s, &[]).await;

    // No pull secret at all: the registry answers 401, the image is denied
    // with that reason (never admitted unverified).
    let verdict = &open.verify(&image, &pod(&[], None)).await[0];
    assert!(!verdict.allowed(), "{verdict:?}");
    let reason = denial_reason(verdict);
    assert!(reason.contains("ClusterImagePolicy/private"), "{reason}");
    assert!(
        reason.to_lowercase().contains("unauthorized") || reason.contains("401"),
        "{reason}"
    );

    // A pull secret with the wrong password: denied the same way.
    let verdict = &open.verify(&image, &pod(&["wrongcred"], None)).await[0];
    assert!(!verdict.allowed(), "{verdict:?}");

    // The pod's own imagePullSecrets.
    let with_pod_secret = verifier(&s, &[]).await;
    let verdict = &with_pod_secret
        .verify(&image, &pod(&["regcred"], None))
        .await[0];
    assert!(verdict.allowed(), "{verdict:?}");
    assert_eq!(verdict.digest.as_deref(), Some(s.digest.as_str()));

    // A stale secret first, a good one second: the kubelet tries each
    // matching credential in turn and pulls, so imagegate admits too.
    let stale_first = verifier(&s, &[]).await;
    let verdict = &stale_first
        .verify(&image, &pod(&["wrongcred", "regcred"], None))
        .await[0];
    assert!(verdict.allowed(), "{verdict:?}");

    // The pod has none, its ServiceAccount has one.
    let with_sa = verifier(&s, &[]).await;
    let verdict = &with_sa.verify(&image, &pod(&[], Some("builder"))).await[0];
    assert!(verdict.allowed(), "{verdict:?}");

    // Neither has one: imagegate's own configured pull secret.
    let with_own = verifier(&s, &["imagegate-pull"]).await;
    let verdict = &with_own.verify(&image, &pod(&[], None)).await[0];
    assert!(verdict.allowed(), "{verdict:?}");

    // The private registry did see authenticated requests, the lookaside
    // never saw an Authorization header (c/image sends registry credentials
    // to the registry only).
    let registry_log = std::fs::read_dir(s.h.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("registry-auth-")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(!registry_log.contains("panic"), "{registry_log}");
    let lookaside = s.h.lookaside_requests();
    assert!(!lookaside.is_empty());
    for request in lookaside {
        assert!(
            !request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization")),
            "lookaside request carried credentials: {request:?}"
        );
    }
    for c in [open, with_pod_secret, stale_first, with_sa, with_own] {
        c.shutdown().await;
    }
}

/// The Bearer flow (a token server, as Docker Hub, Harbor, Quay and GHCR
/// run): the pull secret's credentials buy a token for the repository scope;
/// without them the token server refuses and the image is denied.
#[tokio::test(flavor = "multi_thread")]
async fn pull_secrets_buy_bearer_tokens_from_a_token_server() {
    let s = setup(Auth::Token).await;
    let image = vec![format!("{}/team/app:v1", s.private.host())];

    let (accepted, message) = skopeo_accepts(&s, Some(&format!("{USER}:{PASSWORD}")));
    assert!(accepted, "skopeo with credentials: {message}");
    let (accepted, _) = skopeo_accepts(&s, None);
    assert!(!accepted, "skopeo without credentials accepted");

    let open = verifier(&s, &[]).await;
    let verdict = &open.verify(&image, &pod(&[], None)).await[0];
    assert!(!verdict.allowed(), "{verdict:?}");
    let reason = denial_reason(verdict);
    assert!(reason.contains("ClusterImagePolicy/private"), "{reason}");

    let with_pod_secret = verifier(&s, &[]).await;
    let verdict = &with_pod_secret
        .verify(&image, &pod(&["regcred"], None))
        .await[0];
    assert!(verdict.allowed(), "{verdict:?}");
    assert_eq!(verdict.digest.as_deref(), Some(s.digest.as_str()));

    // imagegate asked for the repository's pull scope, with the account.
    let requests = s.private.token_requests();
    assert!(
        requests.iter().any(|(query, granted)| *granted
            && query.contains("scope=repository%3Ateam%2Fapp%3Apull")
            && query.contains(&format!("account={USER}"))),
        "{requests:?}"
    );
    for c in [open, with_pod_secret] {
        c.shutdown().await;
    }
}

/// Every rejection message of `verdict`, joined.
fn denial_reason(verdict: &imagegate::engine::ImageVerdict) -> String {
    verdict
        .rejection_messages()
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join("; ")
}
