//! The lookaside reader against an in-process HTTP(S) server on 127.0.0.1
//! that serves signatures and injects faults (semantics §5.4).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode, Uri, header};
use bytes::Bytes;
use futures::StreamExt;
use imagegate::reference::Digest;
use imagegate::signature::lookaside::{
    LookasideError, ReadLimits, RequestObserver, client_builder, read_signatures,
};
use imagegate::signature::registries_d::go_url::GoUrl;

const HEX: &str = "20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";
const MIB: usize = 1024 * 1024;

#[derive(Clone, Default)]
struct ServerState {
    /// Where absolute redirects point (the plain-HTTP server).
    http_addr: Arc<Mutex<Option<SocketAddr>>>,
    /// Requests that arrived with an Authorization header.
    authorized_requests: Arc<Mutex<usize>>,
}

/// `/<scenario>/ns/app@sha256=<hex>/signature-<n>` → (scenario, n).
fn route(uri: &Uri) -> (String, usize) {
    let path = uri.path().trim_start_matches('/');
    let scenario = path.split('/').next().unwrap_or("").to_string();
    let n = path
        .rsplit_once("/signature-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (scenario, n)
}

fn reply(status: u16, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .body(body.into())
        .unwrap()
}

fn redirect(status: u16, location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap()
}

fn sig_path(scenario: &str, n: usize) -> String {
    format!("/{scenario}/ns/app@sha256={HEX}/signature-{n}")
}

async fn handler(State(state): State<ServerState>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    if headers.contains_key(header::AUTHORIZATION) {
        *state.authorized_requests.lock().unwrap() += 1;
    }
    let http_addr = state
        .http_addr
        .lock()
        .unwrap()
        .expect("http server address");
    let (scenario, n) = route(&uri);
    let signature = |limit: usize| {
        if n <= limit {
            reply(200, format!("sig-{n}"))
        } else {
            reply(404, "")
        }
    };
    match scenario.as_str() {
        "two" => signature(2),
        "none" => reply(404, "not here"),
        "many" => signature(usize::MAX),
        "m127" => signature(127),
        s if s.starts_with('s') && s[1..].parse::<u16>().is_ok() => {
            reply(s[1..].parse().unwrap(), "")
        }
        "redirect" => match n {
            1 => redirect(302, &sig_path("two", 1)),
            2 => redirect(307, &format!("http://{http_addr}{}", sig_path("hop", 2))),
            _ => redirect(303, &sig_path("none", n)),
        },
        "hop" => redirect(308, &sig_path("two", n)),
        "loop" => redirect(302, uri.path()),
        "noloc" => reply(302, ""),
        "ftp" => redirect(301, "ftp://127.0.0.1/sig"),
        "big" => reply(200, vec![0xa3u8; 5 * MIB]),
        "bigstream" => {
            let chunks = futures::stream::iter(
                (0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0xa3u8; MIB]))),
            );
            reply(200, Body::from_stream(chunks))
        }
        "exact" => {
            if n == 1 {
                reply(200, vec![0xa3u8; 4 * MIB])
            } else {
                reply(404, "")
            }
        }
        "html" if n == 1 => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from("<html>"))
            .unwrap(),
        "html" => reply(404, ""),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            reply(200, "too late")
        }
        "slowbody" => {
            let stalls = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"\xa3partial"))
            })
            .chain(futures::stream::pending());
            reply(200, Body::from_stream(stalls))
        }
        // The TLS server's scenarios.
        "tlsok" => signature(1),
        "downgrade" => {
            if n == 1 {
                reply(200, "tls-sig-1")
            } else {
                redirect(302, &format!("http://{http_addr}{}", sig_path("two", n)))
            }
        }
        _ => reply(500, "unknown scenario"),
    }
}

fn app(state: ServerState) -> Router {
    Router::new().fallback(handler).with_state(state)
}

struct Fixture {
    http: SocketAddr,
    state: ServerState,
    client: reqwest::Client,
}

async fn start() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let state = ServerState::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    *state.http_addr.lock().unwrap() = Some(http);
    let server = app(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, server).await;
    });
    Fixture {
        http,
        state,
        client: client_builder().build().unwrap(),
    }
}

fn digest() -> Digest {
    Digest::parse(&format!("sha256:{HEX}")).unwrap()
}

fn base(addr: SocketAddr, scenario: &str) -> GoUrl {
    GoUrl::parse(&format!("http://{addr}/{scenario}/ns/app")).unwrap()
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

async fn read(
    fx: &Fixture,
    scenario: &str,
    limits: &ReadLimits,
    recorder: &Recorder,
) -> Result<Vec<imagegate::signature::lookaside::LookasideSignature>, LookasideError> {
    read_signatures(
        &base(fx.http, scenario),
        &digest(),
        &fx.client,
        limits,
        Some(recorder),
    )
    .await
}

fn url(addr: SocketAddr, scenario: &str, n: usize) -> String {
    format!("http://{addr}{}", sig_path(scenario, n))
}

#[tokio::test]
async fn reads_until_404_without_credentials() {
    let fx = start().await;
    let rec = Recorder::default();
    let sigs = read(&fx, "two", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0].body, b"sig-1");
    assert_eq!(sigs[1].body, b"sig-2");
    assert_eq!(sigs[0].url, url(fx.http, "two", 1));
    assert_eq!(sigs[1].location, url(fx.http, "two", 2));
    // Sequential: the third request is the 404 that ends the list.
    let host = fx.http.to_string();
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec![
            (host.clone(), Some(200)),
            (host.clone(), Some(200)),
            (host, Some(404))
        ]
    );

    let none = read(&fx, "none", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(*fx.state.authorized_requests.lock().unwrap(), 0);
}

#[tokio::test]
async fn any_other_status_fails_the_read() {
    let fx = start().await;
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
        let err = read(&fx, &scenario, &ReadLimits::default(), &rec)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading signature from {}: status {code} ({text})",
                url(fx.http, &scenario, 1)
            )
        );
        assert_eq!(
            err,
            LookasideError::HttpStatus {
                url: url(fx.http, &scenario, 1),
                status: code
            }
        );
    }
    // A 3xx without Location is not followed, and not a success.
    let err = read(&fx, "noloc", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: status 302 (Found)",
            url(fx.http, "noloc", 1)
        )
    );
}

#[tokio::test]
async fn passwords_are_redacted_in_errors() {
    let fx = start().await;
    let with_user = GoUrl::parse(&format!("http://user:secret@{}/s500/ns/app", fx.http)).unwrap();
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
            &url(fx.http, "s500", 1)["http://".len()..]
        )
    );
}

#[tokio::test]
async fn redirects_are_followed_and_capped() {
    let fx = start().await;
    let rec = Recorder::default();
    let sigs = read(&fx, "redirect", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    let bodies: Vec<&[u8]> = sigs.iter().map(|s| s.body.as_slice()).collect();
    assert_eq!(bodies, [b"sig-1".as_slice(), b"sig-2"]);
    // The signature is named by the URL asked for, not where it was found.
    assert_eq!(sigs[1].url, url(fx.http, "redirect", 2));
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

    let rec = Recorder::default();
    let err = read(&fx, "loop", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: stopped after 5 redirects",
            url(fx.http, "loop", 1)
        )
    );
    assert_eq!(rec.statuses().len(), 6);

    let no_redirects = ReadLimits {
        max_redirects: 0,
        ..ReadLimits::default()
    };
    let err = read(&fx, "redirect", &no_redirects, &rec)
        .await
        .unwrap_err();
    assert!(matches!(err, LookasideError::Redirect { .. }), "{err}");

    let err = read(&fx, "ftp", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading signature from {}: refusing redirect to unsupported scheme \"ftp\" (ftp://127.0.0.1/sig)",
            url(fx.http, "ftp", 1)
        )
    );
}

#[tokio::test]
async fn bodies_are_capped_at_4_mib() {
    let fx = start().await;
    let rec = Recorder::default();
    for scenario in ["big", "bigstream"] {
        let err = read(&fx, scenario, &ReadLimits::default(), &rec)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "exceeded maximum allowed size of 4194304 bytes"
        );
        assert_eq!(err.url(), Some(url(fx.http, scenario, 1).as_str()));
    }
    let exact = read(&fx, "exact", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].body.len(), 4 * MIB);

    // A text/html body is only warned about.
    let html = read(&fx, "html", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert_eq!(html.len(), 1);
    assert_eq!(html[0].body, b"<html>");
}

#[tokio::test]
async fn at_most_127_signatures() {
    let fx = start().await;
    let rec = Recorder::default();
    let sigs = read(&fx, "m127", &ReadLimits::default(), &rec)
        .await
        .unwrap();
    assert_eq!(sigs.len(), 127);
    assert_eq!(sigs[126].body, b"sig-127");

    let rec = Recorder::default();
    let err = read(&fx, "many", &ReadLimits::default(), &rec)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server provided 128 signatures, assuming that's unreasonable and a server error"
    );
    // signature-1 … signature-128 were asked for; signature-129 never is.
    assert_eq!(rec.statuses().len(), 128);
}

#[tokio::test]
async fn timeouts_and_deadlines() {
    let fx = start().await;
    let rec = Recorder::default();
    let short = ReadLimits {
        request_timeout: Some(Duration::from_millis(200)),
        ..ReadLimits::default()
    };
    for scenario in ["slow", "slowbody"] {
        let err = read(&fx, scenario, &short, &rec).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading signature from {}: timed out after 200ms",
                url(fx.http, scenario, 1)
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
    let err = read(&fx, "slow", &deadline, &rec).await.unwrap_err();
    assert_eq!(
        err,
        LookasideError::DeadlineExceeded {
            url: url(fx.http, "slow", 1)
        }
    );
    // A deadline already past stops the read before anything is fetched.
    let past = ReadLimits {
        deadline: Some(tokio::time::Instant::now()),
        ..ReadLimits::default()
    };
    let err = read(&fx, "slow", &past, &rec).await.unwrap_err();
    assert!(
        matches!(err, LookasideError::DeadlineExceeded { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn connection_errors_are_fatal() {
    let fx = start().await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rec = Recorder::default();
    let err = read_signatures(
        &base(closed, "two"),
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
    assert_eq!(*shown, url(closed, "two", 1));
    assert!(!reason.is_empty());
    assert!(err.to_string().starts_with(&format!(
        "reading signature from {}: ",
        url(closed, "two", 1)
    )));
    assert_eq!(*rec.0.lock().unwrap(), vec![(closed.to_string(), None)]);
}

#[tokio::test]
async fn https_works_and_never_downgrades() {
    let fx = start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert.pem().into_bytes(),
        cert.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let https = listener.local_addr().unwrap();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    let tls_app = app(fx.state.clone());
    tokio::spawn(async move {
        let _ = server.serve(tls_app.into_make_service()).await;
    });
    let client = client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let https_base =
        |scenario: &str| GoUrl::parse(&format!("https://{https}/{scenario}/ns/app")).unwrap();

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
            "reading signature from https://{https}{}: refusing redirect from https to http ({})",
            sig_path("downgrade", 2),
            url(fx.http, "two", 2)
        )
    );
    // The plain-HTTP target was never contacted.
    assert_eq!(rec.statuses(), [Some(200), Some(302)]);
}
