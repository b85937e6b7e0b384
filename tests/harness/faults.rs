//! A fault-injecting HTTP proxy on 127.0.0.1, put in front of a real server
//! (the harness's `docker-registry`, or the lookaside server) so a test can
//! make that server misbehave on demand while everything else stays real.
//!
//! With no fault injected it forwards every request to the upstream and
//! relays the answer unchanged. A [`Fault`] replaces the answer for the
//! requests its [`Target`] covers:
//! - [`Fault::Down`]: the listener is closed and open connections are shut,
//!   so new connections are refused (`ECONNREFUSED`), as for a server that
//!   is not running; clearing the fault listens on the same port again;
//! - [`Fault::Slow`]: each request is held back, then forwarded (a server
//!   slower than any deadline under test); held requests are released with
//!   a 503 as soon as the fault changes, so they never outlive the test step;
//! - [`Fault::Status`]: any status with a short plain-text body (5xx);
//! - [`Fault::TooManyRequests`]: 429 with `Retry-After`;
//! - [`Fault::MalformedManifest`] / [`Fault::MalformedIndex`] /
//!   [`Fault::OversizedManifest`]: 200 with a manifest (index) content type
//!   and a body that is not a manifest (index) / is larger than c/image's
//!   4 MiB manifest limit (streamed without a length, so the reader has to
//!   count);
//! - [`Fault::RedirectLoop`]: a 302 to the request's own URL, forever.
//!
//! The proxy counts accepted TCP connections and logs every request, so a
//! test can also prove that a server was *not* contacted.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&format!("http://{}", h.registry()));
//! proxy.inject(Fault::Status(503), Target::Manifests);
//! proxy.clear();
//! assert_eq!(proxy.connections(), 0);
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, Request, Response, StatusCode, header};
use axum::serve::ListenerExt;
use futures::StreamExt;
use tokio::sync::watch;

/// The content type fault manifests claim.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Truncated JSON: what a broken proxy or a cut-off upload serves. (The
/// index's bytes differ from the manifest's: a client may remember a
/// manifest by its digest.)
const MALFORMED_INDEX: &[u8] = b"{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.index.v1+json\", \"manifests\": [<not json";
const MALFORMED: &[u8] = b"{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\": {\"digest\": <not json";

/// How a faulty server misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Not listening: connections are refused.
    Down,
    /// Every covered request is held this long before being forwarded.
    Slow(Duration),
    /// This status, with a short `text/plain` body.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u64 },
    /// 200, manifest content type, a body that is no manifest at all.
    MalformedManifest,
    /// 200, OCI index content type, a body that is no index.
    MalformedIndex,
    /// 200, manifest content type, this many bytes, no `Content-Length`.
    OversizedManifest(usize),
    /// 302 to the same URL, every time.
    RedirectLoop,
}

/// Which requests a fault applies to ([`Fault::Down`] always takes the
/// whole server down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `GET|HEAD /v2/<name>/manifests/<reference>`: the registry answers its
    /// ping (`/v2/`) normally but fails the manifest.
    Manifests,
    /// Every request.
    Everything,
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    fault: Mutex<Option<(Fault, Target)>>,
    /// Bumped on every change of fault, so held (slow) requests let go.
    changes: watch::Sender<u64>,
    connections: AtomicUsize,
    /// Whether the listener is open (the serve loop sets it).
    listening: std::sync::atomic::AtomicBool,
    log: Mutex<Vec<ProxyRequest>>,
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding from an ephemeral 127.0.0.1 port to `upstream`
    /// (`http://host:port`, no trailing slash).
    pub fn start(upstream: &str) -> FaultProxy {
        // reqwest (rustls without a default provider) needs a process-wide one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("test harness: bind the fault proxy on 127.0.0.1");
        let addr = std_listener.local_addr().expect("fault proxy local_addr");
        std_listener
            .set_nonblocking(true)
            .expect("set_nonblocking on the fault proxy listener");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                // Relayed as they are: the client under test decides what to follow.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("fault proxy HTTP client"),
            fault: Mutex::new(None),
            changes: watch::channel(0).0,
            connections: AtomicUsize::new(0),
            listening: std::sync::atomic::AtomicBool::new(true),
            log: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the fault proxy")
                    .block_on(run(served, std_listener, addr, stop_rx));
            })
            .expect("spawn the fault proxy thread");
        FaultProxy {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`: use it where the real server's host would go.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` for `target` from now on (replacing any other).
    pub fn inject(&self, fault: Fault, target: Target) {
        self.set(Some((fault, target)));
        if matches!(self.current(), Some((Fault::Down, _))) {
            self.wait_until(false);
        }
    }

    /// Forwards everything again (listening again after [`Fault::Down`]).
    pub fn clear(&self) {
        let was_down = matches!(self.current(), Some((Fault::Down, _)));
        self.set(None);
        if was_down {
            self.wait_until(true);
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.state.log.lock().unwrap().clone()
    }

    fn current(&self) -> Option<(Fault, Target)> {
        self.state.fault.lock().unwrap().clone()
    }

    fn set(&self, fault: Option<(Fault, Target)>) {
        *self.state.fault.lock().unwrap() = fault;
        self.state.changes.send_modify(|n| *n += 1);
    }

    /// Waits until the listener is open (`up`) or closed (`!up`), so the
    /// step after `inject`/`clear` sees the new state.
    fn wait_until(&self, up: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.state.listening.load(Ordering::SeqCst) != up {
            assert!(
                std::time::Instant::now() < deadline,
                "test harness: the fault proxy on {} did not go {}",
                self.addr,
                if up { "up" } else { "down" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Release held requests so the serve loop can end.
        self.state.changes.send_modify(|n| *n += 1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until stopped: listening while the fault is not `Down`, closed
/// while it is.
async fn run(
    state: Arc<State>,
    first: std::net::TcpListener,
    addr: SocketAddr,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut first = Some(first);
    let mut changes = state.changes.subscribe();
    loop {
        let down = matches!(*state.fault.lock().unwrap(), Some((Fault::Down, _)));
        if down {
            tokio::select! {
                _ = changes.changed() => continue,
                _ = &mut stop => return,
            }
        }
        let listener = match first.take() {
            Some(l) => tokio::net::TcpListener::from_std(l).expect("fault proxy listener"),
            None => rebind(addr),
        };
        let counted = Arc::clone(&state);
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::SeqCst);
        });
        state.listening.store(true, Ordering::SeqCst);
        let router = router(&state);
        let mut went_down = state.changes.subscribe();
        let down_state = Arc::clone(&state);
        let (stopped_tx, mut stopped_rx) = tokio::sync::oneshot::channel::<()>();
        // Graceful shutdown closes idle keep-alive connections at once, so a
        // client's pooled connection cannot reach a server that is "down".
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped_rx => return,
                    r = went_down.changed() => {
                        if r.is_err()
                            || matches!(*down_state.fault.lock().unwrap(), Some((Fault::Down, _)))
                        {
                            return;
                        }
                    }
                }
            }
        });
        tokio::select! {
            result = std::future::IntoFuture::into_future(serve) => {
                if let Err(e) = result {
                    eprintln!("test harness: fault proxy failed: {e}");
                    return;
                }
            }
            _ = &mut stop => {
                let _ = stopped_tx.send(());
                return;
            }
        }
        // Every connection is closed and the listener dropped: refused from now on.
        state.listening.store(false, Ordering::SeqCst);
        drop(stopped_tx);
    }
}

/// Listens on `addr` again after a [`Fault::Down`]; `SO_REUSEADDR` because
/// connections of the previous listener may linger in `TIME_WAIT`. (While
/// down, another socket could in principle take the port; Linux prefers
/// ephemeral ports of one parity for `connect` and the other for `bind(0)`,
/// which makes that unlikely, and the panic below would say so.)
fn rebind(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("fault proxy socket");
    socket
        .set_reuseaddr(true)
        .expect("SO_REUSEADDR on the fault proxy socket");
    socket.bind(addr).unwrap_or_else(|e| {
        panic!("test harness: the fault proxy cannot listen on {addr} again: {e}")
    });
    socket.listen(1024).expect("fault proxy listen")
}

fn router(state: &Arc<State>) -> axum::Router {
    let state = Arc::clone(state);
    axum::Router::new().fallback(move |request: Request<Body>| {
        let state = Arc::clone(&state);
        async move { handle(&state, request).await }
    })
}

fn is_manifest_request(path: &str) -> bool {
    path.starts_with("/v2/") && path.contains("/manifests/")
}

async fn handle(state: &State, request: Request<Body>) -> Response<Body> {
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_string(), |p| p.to_string());
    state.log.lock().unwrap().push(ProxyRequest {
        method: request.method().to_string(),
        path: path.clone(),
    });
    let fault = state.fault.lock().unwrap().clone();
    let fault = fault.and_then(|(fault, target)| {
        (target == Target::Everything || is_manifest_request(request.uri().path())).then_some(fault)
    });
    match fault {
        None | Some(Fault::Down) => forward(state, request, &path).await,
        Some(Fault::Slow(delay)) => {
            let mut changes = state.changes.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(delay) => forward(state, request, &path).await,
                _ = changes.changed() => text(503, "fault proxy: slow request released"),
            }
        }
        Some(Fault::Status(status)) => text(status, "fault proxy: injected failure\n"),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = text(429, "fault proxy: too many requests\n");
            r.headers_mut().insert(
                header::RETRY_AFTER,
                retry_after_secs.to_string().parse().unwrap(),
            );
            r
        }
        Some(Fault::MalformedManifest) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, OCI_MANIFEST)
            .body(Body::from(MALFORMED))
            .unwrap(),
        Some(Fault::MalformedIndex) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, OCI_INDEX)
            .body(Body::from(MALFORMED_INDEX))
            .unwrap(),
        Some(Fault::OversizedManifest(size)) => {
            // Streamed in chunks without Content-Length: the reader has to
            // count; a valid JSON prefix, then padding.
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let head = bytes::Bytes::from_static(b"{\"schemaVersion\": 2,");
            let chunks = size.div_ceil(chunk.len());
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(
                futures::stream::iter(
                    (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                ),
            );
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, OCI_MANIFEST)
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Some(Fault::RedirectLoop) => Response::builder()
            .status(302)
            .header(header::LOCATION, path)
            .body(Body::empty())
            .unwrap(),
    }
}

fn text(status: u16, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("a valid status code"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body))
        .unwrap()
}

/// Hop-by-hop headers, never relayed.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host"
    )
}

async fn forward(state: &State, request: Request<Body>, path: &str) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return text_owned(400, format!("fault proxy: reading the request: {e}")),
    };
    let mut upstream = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            upstream = upstream.header(name, value);
        }
    }
    let res = match upstream.send().await {
        Ok(r) => r,
        Err(e) => return text_owned(502, format!("fault proxy: upstream: {e}")),
    };
    let mut builder = Response::builder().status(res.status().as_u16());
    for (name, value) in res.headers() {
        if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
            builder = builder.header(name, value);
        }
    }
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => return text_owned(502, format!("fault proxy: upstream body: {e}")),
    };
    builder.body(Body::from(bytes)).unwrap()
}

fn text_owned(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body))
        .unwrap()
}
