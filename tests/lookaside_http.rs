//! The lookaside reader against the harness's lookaside server on 127.0.0.1
//! (plain HTTP, and HTTPS for the downgrade case), which serves signatures
//! and injects faults (semantics §5.4).
//!
//! Each scenario lives under its own path prefix, as a store base URL
//! `http://127.0.0.1:PORT/<scenario>/ns/app`, so the reader asks for
//! `/<scenario>/ns/app@sha256=<hex>/signature-<n>`.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{CannedResponse, LookasideServer};
use imagegate::reference::Digest;
use imagegate::signature::lookaside::{
    LookasideError, LookasideSignature, ReadLimits, RequestObserver, client_builder,
    read_signatures,
};
use imagegate::signature::registries_d::go_url::GoUrl;

const HEX: &str = "20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";
const MIB: usize = 1024 * 1024;

fn digest() -> Digest {
    Digest::parse(&format!("sha256:{HEX}")).unwrap()
}

/// The URL path of `signature-<n>` in `scenario`.
fn sig_path(scenario: &str, n: usize) -> String {
    format!("/{scenario}/ns/app@sha256={HEX}/signature-{n}")
}

/// A lookaside server (plain HTTP; HTTPS too if asked) and a client as
/// imagegate builds it.
struct Fixture {
    server: LookasideServer,
    client: reqwest::Client,
}

impl Fixture {
    fn start() -> Fixture {
        Self::with(LookasideServer::builder().start())
    }

    fn start_with_https() -> Fixture {
        Self::with(LookasideServer::builder().https().start())
    }

    fn with(server: LookasideServer) -> Fixture {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Fixture {
            server,
            client: client_builder().build().unwrap(),
        }
    }

    /// Serves `signature-1` … `signature-<count>` of `scenario` with bodies
    /// `sig-<n>` (and 404 after them).
    fn signatures(&self, scenario: &str, count: usize) {
        for n in 1..=count {
            self.server.put(&sig_path(scenario, n), format!("sig-{n}"));
        }
    }

    /// Answers `signature-<n>` of `scenario` with `response`.
    fn canned(&self, scenario: &str, n: usize, response: CannedResponse) {
        self.server.respond(&sig_path(scenario, n), Some(response));
    }

    /// The full plain-HTTP URL of `signature-<n>` in `scenario`.
    fn url(&self, scenario: &str, n: usize) -> String {
        format!("{}{}", self.server.url(), sig_path(scenario, n))
    }

    fn base(&self, scenario: &str) -> GoUrl {
        GoUrl::parse(&format!("{}/{scenario}/ns/app", self.server.url())).unwrap()
    }

    async fn read(
        &self,
        scenario: &str,
        limits: &ReadLimits,
        recorder: &Recorder,
    ) -> Result<Vec<LookasideSignature>, LookasideError> {
        read_signatures(
            &self.base(scenario),
            &digest(),
            &self.client,
            limits,
            Some(recorder),
        )
        .await
    }
}

/// One observed request: host and status.
type Observed = (String, Option<u16>);

/// Records every (host, status) the reader reports.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Observed>>>);

impl RequestObserver for Recorder {
    fn observe(&self, host: &str, status: Option<u16>) {
        self.0.lock().unwrap().push((host.to_string(), status));
    }
}

impl Recorder {
    fn statuses(&self) -> Vec<Option<u16>> {
        self.0.lock().unwrap().iter().map(|(_, s)| *s).collect()
    }
}

#[tokio::test]
async fn reads_until_404_without_credentials() {
    let fx = Fixture::start();
    fx.signatures("two", 2);
    let rec = Recorder::default();
    let sigs = fx.read("two", &ReadLimits::default(), &rec).await.unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0].body, b"sig-1");
    assert_eq!(sigs[1].body, b"sig-2");
    assert_eq!(sigs[0].url, fx.url("two", 1));
    assert_eq!(sigs[1].location, fx.url("two", 2));
    // Sequential: the third request is the 404 that ends the list.
    let host = fx.server.host();
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec![
            (host.clone(), Some(200)),
            (host.clone(), Some(200)),
            (host, Some(404))
        ]
    );
    let seen: Vec<(String, u16)> = fx
        .server
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (sig_path("two", 1), 200),
            (sig_path("two", 2), 200),
            (sig_path("two", 3), 404)
        ]
    );

    let none = fx.read("none", &ReadLimits::default(), &rec).await.unwrap();
    assert!(none.is_empty());
    let requests = fx.server.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests
            .iter()
            .all(|r| r.method == "GET" && r.header("authorization").is_none()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn any_other_status_fails_the_read() {
    let fx = Fixture::start();
    let rec = Recorder::default();
    for (code, text) in [
        (500, "Internal Server Error"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (410, "Gone"),
        (304, "Not Modified"),
        (599, ""),
    ] {
        let scenario = format!("s{code}");
        fx.canned(&scenario, 1, CannedResponse::status(code));
        let err = fx
            .read(&scenario, &ReadLimits::default(), &rec)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading signature from {}: status {code} ({text})",
                fx.url(&scenario, 1)
            )
        );
        assert_eq!(
            err,
            LookasideError::HttpStatus {
                url: fx.url(&scenario, 1),
                status: code
            }
        );
    }
    // A 3xx without Location is not followed, and not a success.
    fx.canned("noloc", 1, CannedResponse::status(302));
    let err = fx
        .read("noloc", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: status 302 (Found)",
            fx.url("noloc", 1)
        )
    );
}

#[tokio::test]
async fn passwords_are_redacted_in_errors() {
    let fx = Fixture::start();
    fx.canned("s500", 1, CannedResponse::status(500));
    let with_user = GoUrl::parse(&format!(
        "http://user:secret@{}/s500/ns/app",
        fx.server.host()
    ))
    .unwrap();
    let err = read_signatures(
        &with_user,
        &digest(),
        &fx.client,
        &ReadLimits::default(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from http://user:xxxxx@{}: status 500 (Internal Server Error)",
            &fx.url("s500", 1)["http://".len()..]
        )
    );
}

#[tokio::test]
async fn redirects_are_followed_and_capped() {
    let fx = Fixture::start();
    fx.signatures("two", 2);
    // signature-1: relative 302 to two/1. signature-2: absolute 307 to
    // hop/2, itself a 308 to two/2. signature-3: 303 to none/3, a 404.
    fx.canned(
        "redirect",
        1,
        CannedResponse::redirect(302, &sig_path("two", 1)),
    );
    fx.canned(
        "redirect",
        2,
        CannedResponse::redirect(307, &fx.url("hop", 2)),
    );
    fx.canned(
        "redirect",
        3,
        CannedResponse::redirect(303, &sig_path("none", 3)),
    );
    fx.canned("hop", 2, CannedResponse::redirect(308, &sig_path("two", 2)));
    let rec = Recorder::default();
    let sigs = fx
        .read("redirect", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    let bodies: Vec<&[u8]> = sigs.iter().map(|s| s.body.as_slice()).collect();
    assert_eq!(bodies, [b"sig-1".as_slice(), b"sig-2"]);
    // The signature is named by the URL asked for, not where it was found.
    assert_eq!(sigs[1].url, fx.url("redirect", 2));
    assert_eq!(
        rec.statuses(),
        [
            Some(302),
            Some(200),
            Some(307),
            Some(308),
            Some(200),
            Some(303),
            Some(404)
        ]
    );

    // A redirect to itself.
    fx.canned(
        "loop",
        1,
        CannedResponse::redirect(302, &sig_path("loop", 1)),
    );
    let rec = Recorder::default();
    let err = fx
        .read("loop", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: stopped after 5 redirects",
            fx.url("loop", 1)
        )
    );
    assert_eq!(rec.statuses().len(), 6);

    let no_redirects = ReadLimits {
        max_redirects: 0,
        ..ReadLimits::default()
    };
    let err = fx.read("redirect", &no_redirects, &rec).await.unwrap_err();
    assert!(matches!(err, LookasideError::Redirect { .. }), "{err}");

    fx.canned(
        "ftp",
        1,
        CannedResponse::redirect(301, "ftp://127.0.0.1/sig"),
    );
    let err = fx
        .read("ftp", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: refusing redirect to unsupported scheme \"ftp\" (ftp://127.0.0.1/sig)",
            fx.url("ftp", 1)
        )
    );
}

#[tokio::test]
async fn bodies_are_capped_at_4_mib() {
    let fx = Fixture::start();
    let big = vec![0xa3u8; 5 * MIB];
    fx.canned("big", 1, CannedResponse::ok(big.clone()));
    fx.canned(
        "bigstream",
        1,
        CannedResponse::ok(big).without_content_length(),
    );
    // The two oversized bodies differ only in whether the size is announced.
    for (scenario, announced) in [("big", Some(5 * MIB as u64)), ("bigstream", None)] {
        let response = fx.client.get(fx.url(scenario, 1)).send().await.unwrap();
        assert_eq!(response.content_length(), announced, "{scenario}");
    }
    let rec = Recorder::default();
    for scenario in ["big", "bigstream"] {
        let err = fx
            .read(scenario, &ReadLimits::default(), &rec)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "exceeded maximum allowed size of 4194304 bytes"
        );
        assert_eq!(err.url(), Some(fx.url(scenario, 1).as_str()));
    }
    fx.canned("exact", 1, CannedResponse::ok(vec![0xa3u8; 4 * MIB]));
    let exact = fx
        .read("exact", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].body.len(), 4 * MIB);

    // A text/html body is only warned about.
    fx.canned(
        "html",
        1,
        CannedResponse::ok("<html>").header("content-type", "text/html; charset=utf-8"),
    );
    let html = fx.read("html", &ReadLimits::default(), &rec).await.unwrap();
    assert_eq!(html.len(), 1);
    assert_eq!(html[0].body, b"<html>");
}

#[tokio::test]
async fn at_most_127_signatures() {
    let fx = Fixture::start();
    fx.signatures("m127", 127);
    let rec = Recorder::default();
    let sigs = fx.read("m127", &ReadLimits::default(), &rec).await.unwrap();
    assert_eq!(sigs.len(), 127);
    assert_eq!(sigs[126].body, b"sig-127");

    // A store with a signature at every number.
    fx.server
        .respond_prefix("/many/", Some(CannedResponse::ok("sig")));
    let rec = Recorder::default();
    let err = fx
        .read("many", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server provided 128 signatures, assuming that's unreasonable and a server error"
    );
    // signature-1 … signature-128 were asked for; signature-129 never is.
    assert_eq!(rec.statuses().len(), 128);
    let many: Vec<String> = fx
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/many/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(many.len(), 128);
    assert_eq!(many.last(), Some(&sig_path("many", 128)));
}

#[tokio::test]
async fn timeouts_and_deadlines() {
    let fx = Fixture::start();
    fx.canned(
        "slow",
        1,
        CannedResponse::ok("too late").delayed(Duration::from_secs(60)),
    );
    fx.canned(
        "slowbody",
        1,
        CannedResponse::ok(b"\xa3partial".to_vec()).stalled(),
    );
    let rec = Recorder::default();
    let short = ReadLimits {
        request_timeout: Some(Duration::from_millis(200)),
        ..ReadLimits::default()
    };
    for scenario in ["slow", "slowbody"] {
        let err = fx.read(scenario, &short, &rec).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading signature from {}: timed out after 200ms",
                fx.url(scenario, 1)
            )
        );
    }
    // The request that never answered is counted without a status.
    assert_eq!(rec.statuses(), [None, Some(200)]);

    let deadline = ReadLimits {
        request_timeout: None,
        deadline: Some(tokio::time::Instant::now() + Duration::from_millis(200)),
        ..ReadLimits::default()
    };
    let err = fx.read("slow", &deadline, &rec).await.unwrap_err();
    assert_eq!(
        err,
        LookasideError::DeadlineExceeded {
            url: fx.url("slow", 1)
        }
    );
    // A deadline already past stops the read before anything is fetched.
    // (Let the abandoned request above reach the server's log first: it is
    // logged on arrival, which can trail the client's deadline.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = fx.server.requests().len();
    let past = ReadLimits {
        deadline: Some(tokio::time::Instant::now()),
        ..ReadLimits::default()
    };
    let err = fx.read("slow", &past, &rec).await.unwrap_err();
    assert!(
        matches!(err, LookasideError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert_eq!(fx.server.requests().len(), asked);
}

#[tokio::test]
async fn connection_errors_are_fatal() {
    let fx = Fixture::start();
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let closed_url = format!("http://{closed}{}", sig_path("two", 1));
    let rec = Recorder::default();
    let err = read_signatures(
        &GoUrl::parse(&format!("http://{closed}/two/ns/app")).unwrap(),
        &digest(),
        &fx.client,
        &ReadLimits::default(),
        Some(&rec),
    )
    .await
    .unwrap_err();
    let LookasideError::Network { url: shown, reason } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*shown, closed_url);
    assert!(!reason.is_empty());
    assert!(
        err.to_string()
            .starts_with(&format!("reading signature from {closed_url}: "))
    );
    assert_eq!(*rec.0.lock().unwrap(), vec![(closed.to_string(), None)]);
}

#[tokio::test]
async fn https_works_and_never_downgrades() {
    let fx = Fixture::start_with_https();
    let server = &fx.server;
    fx.signatures("two", 2);
    fx.signatures("tlsok", 1);
    server.put(&sig_path("downgrade", 1), "tls-sig-1");
    fx.canned(
        "downgrade",
        2,
        CannedResponse::redirect(302, &fx.url("two", 2)),
    );
    let client = client_builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.ca_cert_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let https_base = |scenario: &str| {
        GoUrl::parse(&format!("{}/{scenario}/ns/app", server.https_url())).unwrap()
    };

    let sigs = read_signatures(
        &https_base("tlsok"),
        &digest(),
        &client,
        &ReadLimits::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].body, b"sig-1");

    server.clear_requests();
    let rec = Recorder::default();
    let err = read_signatures(
        &https_base("downgrade"),
        &digest(),
        &client,
        &ReadLimits::default(),
        Some(&rec),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}{}: refusing redirect from https to http ({})",
            server.https_url(),
            sig_path("downgrade", 2),
            fx.url("two", 2)
        )
    );
    // The plain-HTTP target was never contacted.
    assert_eq!(rec.statuses(), [Some(200), Some(302)]);
    let seen: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.scheme, r.path))
        .collect();
    assert_eq!(
        seen,
        [
            ("https".to_string(), sig_path("downgrade", 1)),
            ("https".to_string(), sig_path("downgrade", 2))
        ]
    );
}
