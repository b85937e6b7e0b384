//! The fault matrix (RELIABILITY.md): the real `imagegate serve` binary,
//! called over HTTPS as kube-apiserver calls it, while the registry or the
//! lookaside misbehaves in one precise way at a time (a fault-injecting
//! proxy in front of the real `docker-registry` and lookaside server, or
//! the lookaside server's canned answers). For every fault, in Enforce
//! mode: the review is denied with a reason naming what failed, it is
//! answered within the admission deadline, nothing unverified is admitted,
//! and the process keeps serving (a correctly signed image is allowed as
//! soon as the fault is cleared) with bounded memory. Also: bounded network
//! reach through the webhook path, and admission while the Kubernetes API
//! watch is down.
//!
//! The serve process runs with 1 ms caches so that every review goes to
//! the network again: a cached verdict would hide the fault (and the
//! recovery).

mod fake_apiserver;
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::faults::{Fault, FaultProxy, Target};
use harness::{CannedResponse, Harness, keys};
use serde_json::{Value, json};

/// `--admission-timeout` of every serve process here.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What an answer may take beyond the deadline: the HTTPS round trip and
/// writing the response, on a loaded 2-core CI machine. A correctness
/// bound (the deadline is honoured), not a speed measurement.
const MARGIN: Duration = Duration::from_millis(1500);
/// More than c/image's 4 MiB limits.
const FIVE_MIB: usize = 5 << 20;

/// The harness's `imagegate serve`, with this suite's ways to call it.
use harness::webhook::WebhookServer as Webhook;

impl Webhook {
    /// Serves the policy documents `files` (name, YAML/JSON text) with the
    /// matrix's deadline, caches off so every review reaches the network
    /// (see the module comment), and one platform.
    fn start(dir: &Path, files: &[(&str, String)]) -> Webhook {
        let timeout = format!("{}ms", TIMEOUT.as_millis());
        Webhook::spawn(
            dir,
            files,
            &[
                "--platform",
                "linux/amd64",
                "--admission-timeout",
                &timeout,
                "--digest-cache-ttl",
                "1ms",
                "--verdict-cache-ttl",
                "1ms",
                "--negative-cache-ttl",
                "1ms",
            ],
        )
    }

    /// POSTs an AdmissionReview for a Pod in `namespace` running `images`
    /// to `/validate`; returns the response and how long it took.
    async fn review(&self, namespace: &str, images: &[&str]) -> (Value, Duration) {
        let review = pod_review(namespace, images);
        let started = Instant::now();
        let resp = self
            .client
            .post(self.url("/validate"))
            .json(&review)
            .send()
            .await
            .expect("the webhook answers");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(body["response"]["uid"], review["request"]["uid"]);
        (body["response"].clone(), elapsed)
    }

    /// The serve process's resident set size, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of imagegate serve");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Still running (not crashed).
    fn assert_alive(&mut self) {
        assert!(self.is_running(), "imagegate serve exited");
    }
}

fn pod_review(namespace: &str, images: &[&str]) -> Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    static UID: AtomicU64 = AtomicU64::new(1);
    let path = format!(
        "{}/tests/fixtures/admission/pod.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut pod: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    pod["spec"]["containers"] = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("fault-{}", UID.fetch_add(1, Ordering::Relaxed)),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn signed_by(key_file: &Path) -> Value {
    json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key_file.to_string_lossy()}])
}

fn cluster_policy(name: &str, policy: Value, lookaside: Value) -> String {
    serde_json::to_string_pretty(&json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Enforce", "policy": policy, "lookaside": lookaside}
    }))
    .unwrap()
}

/// The real registry and lookaside, each behind a fault proxy, a correctly
/// signed and an unsigned image named through the registry proxy, and a
/// webhook whose only document requires the signer's signature there.
struct Rig {
    h: Harness,
    registry: FaultProxy,
    lookaside: FaultProxy,
    webhook: Webhook,
    /// `PROXY/fault/app:v1`, signed for that identity.
    signed: String,
    /// `PROXY/fault/app@sha256:…`.
    signed_by_digest: String,
    signed_digest: String,
    /// `PROXY/fault/unsigned:v1`.
    unsigned: String,
    unsigned_digest: String,
}

impl Rig {
    fn start() -> Rig {
        let h = Harness::start();
        let k = keys();
        let registry = FaultProxy::start(&format!("http://{}", h.registry()));
        let lookaside = FaultProxy::start(&h.lookaside_url());
        // Pushed to the real registry; signed (skopeo standalone-sign) for
        // the name the webhook sees, the proxy's.
        let digest = h.push_unsigned(&h.build_image("fault signed"), "fault/app:v1");
        let identity = format!("{}/fault/app:v1", registry.host());
        let signature = h.standalone_sign(&h.raw_manifest("fault/app:v1"), &identity, &k.signer);
        h.put_signature("fault/app", &digest, 1, &signature);
        let unsigned_digest =
            h.push_unsigned(&h.build_image("fault unsigned"), "fault/unsigned:v1");
        let policy = cluster_policy(
            "prod",
            json!({"transports": {"docker": {
                format!("{}/fault", registry.host()): signed_by(&k.signer.public_armored)
            }}}),
            json!({"docker": {registry.host(): {"lookaside": lookaside.url()}}}),
        );
        let webhook = Webhook::start(&h.unique_path("webhook"), &[("prod.yaml", policy)]);
        Rig {
            signed: identity,
            signed_by_digest: format!("{}/fault/app@{digest}", registry.host()),
            signed_digest: digest,
            unsigned: format!("{}/fault/unsigned:v1", registry.host()),
            unsigned_digest,
            h,
            registry,
            lookaside,
            webhook,
        }
    }

    /// Answers `signature-1` of both images with `response` (`None`: serve
    /// the files again); `signature-2` stays a 404, so the read ends there.
    fn signature_1(&self, response: Option<CannedResponse>) {
        for (repo, digest) in [
            ("fault/app", &self.signed_digest),
            ("fault/unsigned", &self.unsigned_digest),
        ] {
            self.h.lookaside().respond(
                &self.h.signature_url_path(repo, digest, 1),
                response.clone(),
            );
        }
    }

    /// One row of the matrix: with the fault in place (`inject` has run), a
    /// pod running the signed and the unsigned image is denied, in time,
    /// with `words` in the reason for each image; then `clear` removes the
    /// fault and the signed image (by tag and by digest) is allowed again.
    async fn row(&mut self, fault: &str, words: &[&str], clear: impl FnOnce(&Rig)) -> Duration {
        let (r, elapsed) = self
            .webhook
            .review("team", &[&self.signed, &self.unsigned])
            .await;
        assert_eq!(
            r["allowed"], false,
            "{fault}: an image that could not be verified was admitted: {r}"
        );
        let message = r["status"]["message"].as_str().unwrap_or_default();
        // One denial per image, each on its own line (a reason may itself
        // hold a newline from a registry's error body, so split on the
        // start of the next denial).
        let denials: Vec<String> = message
            .split("\nimage ")
            .enumerate()
            .map(|(i, d)| {
                if i == 0 {
                    d.to_string()
                } else {
                    format!("image {d}")
                }
            })
            .collect();
        assert_eq!(denials.len(), 2, "{fault}: one denial per image: {message}");
        for (denial, image) in denials.iter().zip([&self.signed, &self.unsigned]) {
            assert!(
                denial.starts_with(&format!(
                    "image {image} rejected by ClusterImagePolicy/prod"
                )),
                "{fault}: {denial}"
            );
            for w in words {
                assert!(denial.contains(w), "{fault}: {w:?} not in {denial:?}");
            }
        }
        assert!(
            elapsed < TIMEOUT + MARGIN,
            "{fault}: answered after {elapsed:?}, deadline {TIMEOUT:?}"
        );
        eprintln!("fault {fault}: denied in {elapsed:?}: {}", denials[0]);
        clear(self);
        self.webhook.assert_alive();
        let (ok, _) = self
            .webhook
            .review("team", &[&self.signed, &self.signed_by_digest])
            .await;
        assert_eq!(
            ok["allowed"], true,
            "{fault}: the signed image after the fault was cleared: {ok}"
        );
        elapsed
    }
}

#[tokio::test]
async fn registry_faults_deny_in_time_and_recover() {
    let mut rig = Rig::start();
    let (ok, _) = rig
        .webhook
        .review("team", &[&rig.signed, &rig.signed_by_digest])
        .await;
    assert_eq!(ok["allowed"], true, "baseline: {ok}");
    let host = rig.registry.host();
    let manifest_url = format!("http://{host}/v2/fault/app/manifests/v1");

    rig.registry.inject(Fault::Down, Target::Everything);
    rig.row(
        "registry down",
        &[
            &format!("Get \"http://{host}/v2/fault/"),
            "Connection refused",
        ],
        |r| r.registry.clear(),
    )
    .await;

    rig.registry
        .inject(Fault::Slow(Duration::from_secs(60)), Target::Manifests);
    rig.row(
        "registry slower than the deadline",
        &[
            "verification deadline exceeded after ",
            &format!("no answer in time from registry {host} (manifest of {host}/fault/"),
        ],
        |r| r.registry.clear(),
    )
    .await;

    for status in [500, 503] {
        rig.registry
            .inject(Fault::Status(status), Target::Manifests);
        rig.row(
            &format!("registry {status}"),
            &[
                "reading manifest v1 in",
                &format!("received unexpected HTTP status: {status}"),
            ],
            |r| r.registry.clear(),
        )
        .await;
    }

    // Retry-After far beyond the deadline: answered at once, not after it.
    rig.registry.inject(
        Fault::TooManyRequests {
            retry_after_secs: 3600,
        },
        Target::Manifests,
    );
    let elapsed = rig
        .row(
            "registry 429 with Retry-After",
            &["reading manifest v1 in", "StatusCode: 429"],
            |r| r.registry.clear(),
        )
        .await;
    assert!(elapsed < TIMEOUT, "429 was waited on: {elapsed:?}");

    rig.registry
        .inject(Fault::MalformedManifest, Target::Manifests);
    rig.row(
        "malformed manifest",
        &["A signature was required, but no signature exists"],
        |r| r.registry.clear(),
    )
    .await;

    // Claiming to be an index: the list is parsed before anything else.
    rig.registry
        .inject(Fault::MalformedIndex, Target::Manifests);
    rig.row(
        "malformed index",
        &["unmarshaling OCI1Index: invalid character '<' looking for beginning of value"],
        |r| r.registry.clear(),
    )
    .await;

    rig.registry
        .inject(Fault::OversizedManifest(FIVE_MIB), Target::Manifests);
    rig.row(
        "oversized manifest (5 MiB)",
        &[
            "reading manifest v1 in",
            "exceeded maximum allowed size of 4194304 bytes",
        ],
        |r| r.registry.clear(),
    )
    .await;

    let manifest_gets = |rig: &Rig| {
        rig.registry
            .requests()
            .iter()
            .filter(|r| format!("http://{host}{}", r.path) == manifest_url)
            .count()
    };
    let before = manifest_gets(&rig);
    rig.registry.inject(Fault::RedirectLoop, Target::Manifests);
    rig.row(
        "registry redirect loop",
        &[
            &format!("Get \"http://{host}/v2/fault/"),
            "/manifests/v1\": too many redirects",
        ],
        |r| r.registry.clear(),
    )
    .await;
    // The review's own hops (the recovery review adds one or two GETs):
    // the client gives up after its redirect limit.
    let hops = manifest_gets(&rig) - before;
    assert!(
        (2..=16).contains(&hops),
        "the redirect loop was followed {hops} times"
    );
}

#[tokio::test]
async fn malformed_manifest_by_digest_is_denied() {
    let rig = Rig::start();
    // The signed image named by digest: the bytes served must hash to it.
    rig.registry
        .inject(Fault::MalformedManifest, Target::Manifests);
    let (r, elapsed) = rig.webhook.review("team", &[&rig.signed_by_digest]).await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "Manifest does not match provided manifest digest {}",
            rig.signed_digest
        )),
        "{message}"
    );
    assert!(elapsed < TIMEOUT + MARGIN, "{elapsed:?}");
    rig.registry.clear();
    let (ok, _) = rig.webhook.review("team", &[&rig.signed_by_digest]).await;
    assert_eq!(ok["allowed"], true, "{ok}");
    let _ = &rig.h;
}

#[tokio::test]
async fn lookaside_faults_deny_in_time_and_recover() {
    let mut rig = Rig::start();
    let (ok, _) = rig.webhook.review("team", &[&rig.signed]).await;
    assert_eq!(ok["allowed"], true, "baseline: {ok}");
    let lookaside = rig.lookaside.url();

    rig.lookaside.inject(Fault::Down, Target::Everything);
    rig.row(
        "lookaside down",
        &[
            &format!("reading signature from {lookaside}/fault/"),
            "Connection refused",
        ],
        |r| r.lookaside.clear(),
    )
    .await;

    rig.lookaside
        .inject(Fault::Slow(Duration::from_secs(60)), Target::Everything);
    rig.row(
        "lookaside slower than the deadline",
        &[
            "verification deadline exceeded after ",
            "no answer in time from signatures of sha256:",
        ],
        |r| r.lookaside.clear(),
    )
    .await;

    // Headers and the start of a body, then nothing.
    rig.h
        .lookaside()
        .respond_all(Some(CannedResponse::ok(b"\x89partial".to_vec()).stalled()));
    rig.row(
        "lookaside body stalls",
        &[
            "verification deadline exceeded after ",
            "signatures of sha256:",
        ],
        |r| r.h.lookaside().respond_all(None),
    )
    .await;

    rig.h
        .lookaside()
        .respond_all(Some(CannedResponse::status(500)));
    rig.row(
        "lookaside 500",
        &[
            &format!("reading signature from {lookaside}/fault/"),
            "status 500 (Internal Server Error)",
        ],
        |r| r.h.lookaside().respond_all(None),
    )
    .await;

    // With a Content-Length (refused up front) and streamed without one
    // (counted while reading).
    for (how, body) in [
        ("with length", CannedResponse::ok(vec![0x89; FIVE_MIB])),
        (
            "streamed",
            CannedResponse::ok(vec![0x89; FIVE_MIB]).without_content_length(),
        ),
    ] {
        rig.h.lookaside().respond_all(Some(body));
        rig.row(
            &format!("lookaside 5 MiB signature, {how}"),
            // c/image's words (iolimits.ReadAtMost), without the URL.
            &["exceeded maximum allowed size of 4194304 bytes"],
            |r| r.h.lookaside().respond_all(None),
        )
        .await;
    }

    // 128 signatures (every signature-N answers): c/image's "unreasonable".
    let real_signature = rig.h.signatures("fault/app", &rig.signed_digest)[0].clone();
    rig.h
        .lookaside()
        .respond_all(Some(CannedResponse::ok(real_signature)));
    rig.row(
        "lookaside 128 signatures",
        &["server provided 128 signatures, assuming that's unreasonable and a server error"],
        |r| r.h.lookaside().respond_all(None),
    )
    .await;

    rig.signature_1(Some(CannedResponse::ok(
        b"\x00\x01garbage\xff\xfe".to_vec(),
    )));
    rig.row(
        "lookaside garbage bytes",
        &[
            "parsing signature http://",
            "/signature-1: invalid signature format",
        ],
        |r| r.signature_1(None),
    )
    .await;

    let html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                <body><h1>Bad Gateway</h1></body></html>";
    rig.signature_1(Some(
        CannedResponse::ok(html.as_bytes().to_vec()).header("content-type", "text/html"),
    ));
    rig.row(
        "lookaside HTML error page (200)",
        &[
            "parsing signature http://",
            "/signature-1: unrecognized signature format, starting with binary 0x3c",
        ],
        |r| r.signature_1(None),
    )
    .await;

    let mut bad_gateway =
        CannedResponse::ok(html.as_bytes().to_vec()).header("content-type", "text/html");
    bad_gateway.status = 502;
    rig.h.lookaside().respond_all(Some(bad_gateway));
    rig.row(
        "lookaside HTML error page (502)",
        &["status 502 (Bad Gateway)"],
        |r| r.h.lookaside().respond_all(None),
    )
    .await;
}

/// Bounded network reach through the webhook: a pod with images at three
/// registries (each a counting proxy in front of the real registry), only
/// one of them under a signature-requiring scope. Only that registry and
/// its lookaside are contacted; images whose scope in every applicable
/// document is `reject` or `insecureAcceptAnything` cause no connection at
/// all, including when a namespace document tightens to `reject`.
#[tokio::test]
async fn only_registries_of_signature_requiring_scopes_are_contacted() {
    let h = Harness::start();
    let k = keys();
    let upstream = format!("http://{}", h.registry());
    let [signed_reg, accepted_reg, rejected_reg] = [0, 1, 2].map(|_| FaultProxy::start(&upstream));
    let lookaside = FaultProxy::start(&h.lookaside_url());
    let digest = h.push_unsigned(&h.build_image("reach"), "reach/app:v1");
    let signed = format!("{}/reach/app:v1", signed_reg.host());
    let sig = h.standalone_sign(&h.raw_manifest("reach/app:v1"), &signed, &k.signer);
    h.put_signature("reach/app", &digest, 1, &sig);
    let accepted = format!("{}/reach/app:v1", accepted_reg.host());
    let rejected = format!("{}/reach/app:v1", rejected_reg.host());
    let every_registry: Value = [&signed_reg, &accepted_reg, &rejected_reg]
        .iter()
        .map(|p| (p.host(), json!({"lookaside": lookaside.url()})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let cluster = cluster_policy(
        "prod",
        json!({"transports": {"docker": {
            signed_reg.host(): signed_by(&k.signer.public_armored),
            accepted_reg.host(): [{"type": "insecureAcceptAnything"}],
            rejected_reg.host(): [{"type": "reject"}],
        }}}),
        json!({"docker": every_registry}),
    );
    let strict = serde_json::to_string(&json!({
        "apiVersion": "imagegate.dev/v1alpha1", "kind": "ImagePolicy",
        "metadata": {"name": "strict", "namespace": "strict"},
        "spec": {"mode": "Enforce", "policy": {"transports": {"docker": {
            accepted_reg.host(): [{"type": "reject"}]}}}}
    }))
    .unwrap();
    let w = Webhook::start(
        &h.unique_path("webhook"),
        &[("prod.yaml", cluster), ("strict.yaml", strict)],
    );
    let contacted =
        || [&signed_reg, &accepted_reg, &rejected_reg, &lookaside].map(|p| p.connections());

    // reject / insecureAcceptAnything only: nothing is contacted.
    let (r, _) = w.review("team", &[&accepted, &rejected]).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(
        r["status"]["message"],
        format!(
            "image {rejected} rejected by ClusterImagePolicy/prod (scope {}): \
             Running image docker://{rejected} is rejected by policy.",
            rejected_reg.host()
        )
    );
    let (r, _) = w.review("team", &[&accepted]).await;
    assert_eq!(r["allowed"], true, "{r}");
    // A namespace tightening to reject needs no network either.
    let (r, _) = w.review("strict", &[&accepted]).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ImagePolicy/strict/strict"),
        "{r}"
    );
    assert_eq!(contacted(), [0, 0, 0, 0], "no connection before policy");

    // Three registries, one under signedBy: only it (and its lookaside).
    let (r, _) = w.review("team", &[&signed, &accepted, &rejected]).await;
    assert_eq!(r["allowed"], false, "{r}");
    let (r, _) = w.review("team", &[&signed, &accepted]).await;
    assert_eq!(r["allowed"], true, "{r}");
    let [s, a, j, l] = contacted();
    assert!(s >= 1, "the signedBy registry was contacted");
    assert!(l >= 1, "its lookaside was read");
    assert_eq!((a, j), (0, 0), "the other registries were not contacted");
    assert!(
        signed_reg
            .requests()
            .iter()
            .all(|r| r.path == "/v2/" || r.path.starts_with("/v2/reach/app/manifests/")),
        "only the ping and the manifest: {:?}",
        signed_reg.requests()
    );
    assert!(
        lookaside
            .requests()
            .iter()
            .all(|r| r.path.starts_with(&format!(
                "/reach/app@{}/signature-",
                digest.replace(':', "=")
            ))),
        "only that image's signatures: {:?}",
        lookaside.requests()
    );
}

/// The Kubernetes API watch drops and the API server stays unavailable for
/// a while: admission keeps enforcing the last policy set it built (an
/// unsigned image is still denied, a signed one still allowed), and once
/// the API server is back a new document takes effect. The reflectors'
/// re-watch and re-list are covered in tests/controller_watch.rs
/// (`recovers_after_watch_connections_drop`, `relists_after_410_gone`).
#[tokio::test]
async fn admission_keeps_enforcing_while_the_api_watch_is_down() {
    use fake_apiserver::cluster::{ClusterOptions, ClusterVerifier};
    use fake_apiserver::{FakeApiServer, Gvr};
    use imagegate::admission::review::RequestContext;
    const NAMESPACE: &str = "imagegate-system";

    let _ = rustls::crypto::ring::default_provider().install_default();
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("watch signed"), "watch/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("watch unsigned"), "watch/unsigned:v1");
    let fake = FakeApiServer::start().await;
    let policy = |name: &str, policy: Value| {
        json!({
            "apiVersion": "imagegate.dev/v1alpha1", "kind": "ClusterImagePolicy",
            "metadata": {"name": name},
            "spec": {"mode": "Enforce", "policy": policy,
                     "lookaside": {"docker": {h.registry(): {"lookaside": h.lookaside_url()}}}}
        })
    };
    fake.insert(
        &Gvr::cluster_image_policies(),
        policy(
            "prod",
            json!({"transports": {"docker": {h.image("watch"): signed_by(&k.signer.public_armored)}}}),
        ),
    );
    // No caching, so every review decides again with the current set.
    let mut options = ClusterOptions::new(NAMESPACE);
    options.caches = imagegate::engine::CacheSettings {
        verdict_ttl: Duration::from_millis(1),
        negative_ttl: Duration::from_millis(1),
        digest_ttl: Duration::from_millis(1),
        signature_ttl: Duration::from_millis(1),
        ..Default::default()
    };
    options.timeout = TIMEOUT;
    options.key_refresh = Duration::from_millis(200);
    let verifier = ClusterVerifier::start(&fake, options).await;
    let ctx = RequestContext {
        namespace: Some("team".into()),
        ..RequestContext::default()
    };
    let images = vec![h.image("watch/app:v1"), h.image("watch/unsigned:v1")];
    let decide = || async {
        let v = verifier.verify(&images, &ctx).await;
        (v[0].admitted(), v[1].admitted())
    };
    assert_eq!(decide().await, (true, false), "before the outage");

    // The API server goes away: watches drop, lists and watches fail.
    for plural in ["clusterimagepolicies", "imagepolicies"] {
        fake.fail_always(
            http::Method::GET,
            &format!("/apis/imagegate.dev/v1alpha1/{plural}"),
            503,
        );
    }
    fake.drop_watches();
    let outage_end = Instant::now() + Duration::from_secs(2);
    let mut during = 0;
    while Instant::now() < outage_end {
        assert_eq!(decide().await, (true, false), "during the outage");
        during += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(during >= 5);

    // Back: a new document (reject everything in the repository) arrives
    // through the re-established watch and takes effect.
    fake.clear_outages();
    fake.insert(
        &Gvr::cluster_image_policies(),
        policy(
            "lockdown",
            json!({"transports": {"docker": {h.image("watch"): [{"type": "reject"}]}}}),
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if decide().await == (false, false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the document written after the outage never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Memory stays bounded under a burst of hostile reviews: oversized
/// manifests and signatures (each a 5 MiB body the reader must cut off),
/// 128 signatures per image, garbage, 429s and malformed manifests, ten
/// reviews at a time. VmRSS of the serve process is read after a warm-up
/// round (so allocator arenas and caches exist) and after the burst.
#[tokio::test]
async fn memory_stays_bounded_under_hostile_reviews() {
    let mut rig = Rig::start();
    let real_signature = rig.h.signatures("fault/app", &rig.signed_digest)[0].clone();
    let faults: Vec<(&str, usize, HostileStep)> = vec![
        (
            "oversized manifest",
            40,
            Box::new(|r| {
                r.registry
                    .inject(Fault::OversizedManifest(FIVE_MIB), Target::Manifests)
            }),
        ),
        (
            "5 MiB signature",
            40,
            Box::new(|r| {
                r.signature_1(Some(
                    CannedResponse::ok(vec![0x89; FIVE_MIB]).without_content_length(),
                ))
            }),
        ),
        (
            "128 signatures",
            10,
            Box::new(move |r| {
                r.h.lookaside()
                    .respond_all(Some(CannedResponse::ok(real_signature.clone())))
            }),
        ),
        (
            "garbage signature",
            40,
            Box::new(|r| r.signature_1(Some(CannedResponse::ok(vec![0xff; 64 << 10])))),
        ),
        (
            "429",
            40,
            Box::new(|r| {
                r.registry.inject(
                    Fault::TooManyRequests {
                        retry_after_secs: 3600,
                    },
                    Target::Manifests,
                )
            }),
        ),
        (
            "malformed manifest",
            40,
            Box::new(|r| {
                r.registry
                    .inject(Fault::MalformedManifest, Target::Manifests)
            }),
        ),
    ];
    let warm = hostile_burst(&rig, &faults, 25).await;
    let before = rig.webhook.rss_kib();
    let denied = hostile_burst(&rig, &faults, 100).await;
    let after = rig.webhook.rss_kib();
    rig.webhook.assert_alive();
    let growth_kib = after.saturating_sub(before);
    eprintln!(
        "memory: VmRSS {before} KiB after {warm} warm-up reviews, {after} KiB after \
         {denied} more hostile reviews (growth {growth_kib} KiB)"
    );
    assert!(
        growth_kib < 64 * 1024,
        "VmRSS grew by {growth_kib} KiB over {denied} hostile reviews ({before} → {after} KiB)"
    );
    let (ok, _) = rig
        .webhook
        .review("team", &[&rig.signed, &rig.signed_by_digest])
        .await;
    assert_eq!(ok["allowed"], true, "after the burst: {ok}");
}

type HostileStep = Box<dyn Fn(&Rig)>;

/// `count * scale / 100` reviews per fault, ten at a time, all denied in
/// time; returns how many were sent.
async fn hostile_burst(rig: &Rig, faults: &[(&str, usize, HostileStep)], scale: usize) -> usize {
    let images = [rig.signed.as_str(), rig.unsigned.as_str()];
    let mut denied = 0;
    for (name, count, inject) in faults {
        inject(rig);
        let count = (count * scale / 100).max(1);
        let mut left = count;
        while left > 0 {
            let n = left.min(10);
            left -= n;
            let answers =
                futures::future::join_all((0..n).map(|_| rig.webhook.review("team", &images)))
                    .await;
            for (r, elapsed) in answers {
                assert_eq!(r["allowed"], false, "{name}: {r}");
                assert!(elapsed < TIMEOUT + MARGIN, "{name}: {elapsed:?}");
                denied += 1;
            }
        }
        rig.registry.clear();
        rig.signature_1(None);
        rig.h.lookaside().respond_all(None);
    }
    denied
}

/// The malformed manifest and index rows give c/image's verdict, in its
/// words: skopeo pulls the same image through the same faulty proxy, with
/// the same policy and lookaside.
#[tokio::test]
async fn malformed_manifests_are_refused_as_skopeo_refuses_them() {
    let rig = Rig::start();
    let k = keys();
    let policy = rig.h.write_policy(&json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            format!("{}/fault", rig.registry.host()): signed_by(&k.signer.public_armored)
        }}
    }));
    let registries_d = rig.h.unique_path("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("proxy.yaml"),
        format!(
            "docker:\n  {}:\n    lookaside: {}\n",
            rig.registry.host(),
            rig.lookaside.url()
        ),
    )
    .unwrap();
    let (ok, message) = rig
        .h
        .skopeo_verdict_with(&policy, &rig.signed, None, &registries_d);
    assert!(
        ok,
        "skopeo accepts the signed image without a fault: {message}"
    );
    for fault in [Fault::MalformedManifest, Fault::MalformedIndex] {
        rig.registry.inject(fault.clone(), Target::Manifests);
        let (r, _) = rig.webhook.review("team", &[&rig.signed]).await;
        let (skopeo_ok, skopeo_says) =
            rig.h
                .skopeo_verdict_with(&policy, &rig.signed, None, &registries_d);
        rig.registry.clear();
        assert_eq!(r["allowed"], false, "{fault:?}: {r}");
        assert!(!skopeo_ok, "{fault:?}: skopeo accepted");
        let ours = r["status"]["message"].as_str().unwrap();
        let reason = ours.split_once("): ").unwrap().1;
        match fault {
            // The same words.
            Fault::MalformedManifest => assert_eq!(
                Some(reason),
                skopeo_says.strip_prefix("Source image rejected: "),
                "{fault:?}: skopeo says {skopeo_says:?}"
            ),
            // The same parse error; c/image adds "parsing primary manifest
            // as list for docker://…" and quotes the body, imagegate does not.
            _ => {
                let parse_error = "invalid character '<' looking for beginning of value";
                assert_eq!(reason, format!("unmarshaling OCI1Index: {parse_error}"));
                assert!(
                    skopeo_says.starts_with("parsing primary manifest as list for ")
                        && skopeo_says.contains("unmarshaling OCI1Index")
                        && skopeo_says.ends_with(parse_error),
                    "skopeo says {skopeo_says:?}"
                );
            }
        }
    }
}
