//! The lookaside web server: serves a directory of signatures on 127.0.0.1
//! over plain HTTP (and, if asked, HTTPS too), records every request, and
//! can be told to answer a path, a path prefix or every path with a canned
//! response to inject faults.
//!
//! It runs in-process (axum on its own thread and tokio runtime) rather than
//! as `python3 -m http.server`: the request log is exact and immediate
//! instead of a log file to parse, faults can be injected per path, and the
//! port is bound before anyone can take it.
//!
//! What a [`CannedResponse`] can be:
//! - any status, headers and body: [`CannedResponse::status`],
//!   [`CannedResponse::ok`], [`CannedResponse::header`];
//! - a redirect: [`CannedResponse::redirect`] (relative or absolute
//!   `Location`). A chain is one canned redirect per hop; a redirect to its
//!   own path is a loop; [`CannedResponse::status`]`(302)` is a redirect
//!   without `Location`;
//! - a body larger than a reader's limit: `ok(vec![0; n])` sends it with a
//!   `Content-Length`, adding [`CannedResponse::without_content_length`]
//!   streams it in chunks with none;
//! - a slow or hung server: [`CannedResponse::delayed`] (no answer for a
//!   while), [`CannedResponse::stalled`] (headers and part of the body, then
//!   nothing, the response never ends).
//!
//! ```ignore
//! let server = LookasideServer::builder().https().start();
//! server.put("/ns/app@sha256=ab…/signature-1", b"sig");
//! server.respond("/ns/app@sha256=ab…/signature-2",
//!     Some(CannedResponse::redirect(302, &format!("{}/elsewhere", server.url()))));
//! let ca = server.ca_cert_pem(); // trust this to talk to server.https_url()
//! assert!(server.requests().iter().all(|r| r.header("authorization").is_none()));
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use futures::StreamExt;

/// Size of the pieces a body sent [`CannedResponse::without_content_length`]
/// is streamed in.
const STREAM_CHUNK: usize = 64 * 1024;

/// One request the lookaside server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookasideRequest {
    /// `http` or `https`: which listener it came in on.
    pub scheme: String,
    pub method: String,
    /// The request path, percent-decoded, without the query string, e.g.
    /// `/e2e/hello@sha256=62b6…/signature-1`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Every request header, names lowercase, in arrival order (values that
    /// are not UTF-8 are replaced lossily).
    pub headers: Vec<(String, String)>,
    /// The status code it was (or, for a delayed response, will be)
    /// answered with.
    pub status: u16,
}

impl LookasideRequest {
    /// The first value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a canned body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    /// In one piece, with `Content-Length`.
    Whole,
    /// As a stream of chunks, without `Content-Length`.
    Streamed,
    /// The body, then the response stays open and never ends.
    Stalled,
}

/// A response the server gives instead of looking at the directory.
#[derive(Debug, Clone)]
pub struct CannedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long to wait before answering (a slow or hung server).
    pub delay: Option<Duration>,
    mode: BodyMode,
}

impl CannedResponse {
    /// A response with `status` (100–999, any code, registered or not) and
    /// an empty body.
    pub fn status(status: u16) -> Self {
        CannedResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
            mode: BodyMode::Whole,
        }
    }

    /// A 200 response with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        CannedResponse {
            body: body.into(),
            ..Self::status(200)
        }
    }

    /// A redirect: `status` (301, 302, 303, 307, 308, …) with `Location:
    /// location`, taken as is (a path, an absolute URL of this or another
    /// server, or any other scheme).
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("location", location)
    }

    /// Answers only after `delay` (a slow server; a long delay is a server
    /// that never answers within any deadline under test).
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Streams the body in chunks with no `Content-Length` (chunked
    /// transfer encoding): a reader cannot know the size up front.
    pub fn without_content_length(mut self) -> Self {
        self.mode = BodyMode::Streamed;
        self
    }

    /// Sends the headers and the body, then keeps the response open without
    /// ever ending it (no `Content-Length`): a body that stalls.
    pub fn stalled(mut self) -> Self {
        self.mode = BodyMode::Stalled;
        self
    }

    fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = match self.mode {
            BodyMode::Whole => Body::from(self.body),
            BodyMode::Streamed => {
                let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = self
                    .body
                    .chunks(STREAM_CHUNK)
                    .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                    .collect();
                Body::from_stream(futures::stream::iter(chunks))
            }
            BodyMode::Stalled => {
                let first = bytes::Bytes::from(self.body);
                Body::from_stream(
                    futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(futures::stream::pending()),
                )
            }
        };
        builder.body(body).expect("canned response is valid")
    }
}

#[derive(Default)]
struct Faults {
    by_path: HashMap<String, CannedResponse>,
    /// (prefix, response); the longest matching prefix wins.
    by_prefix: Vec<(String, CannedResponse)>,
    all: Option<CannedResponse>,
}

impl Faults {
    fn lookup(&self, path: &str) -> Option<&CannedResponse> {
        self.by_path
            .get(path)
            .or_else(|| {
                self.by_prefix
                    .iter()
                    .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .map(|(_, response)| response)
            })
            .or(self.all.as_ref())
    }
}

struct State {
    root: PathBuf,
    log: Mutex<Vec<LookasideRequest>>,
    faults: Mutex<Faults>,
}

/// How to start a [`LookasideServer`]: see [`LookasideServer::builder`].
#[derive(Debug, Default)]
pub struct LookasideServerBuilder {
    root: Option<PathBuf>,
    https: bool,
}

impl LookasideServerBuilder {
    /// Serves `root` (default: a fresh temporary directory the server owns
    /// and removes when it stops).
    pub fn root(mut self, root: &Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    /// Also listens for HTTPS, on a second port, with a certificate for
    /// `127.0.0.1` and `localhost` issued by a throw-away CA
    /// ([`LookasideServer::ca_cert_pem`]). Both listeners share the
    /// directory, canned responses and request log.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Binds the listeners on ephemeral 127.0.0.1 ports and starts serving.
    pub fn start(self) -> LookasideServer {
        let (root, tempdir) = match self.root {
            Some(root) => (root, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("imagegate-lookaside-")
                    .tempdir()
                    .expect("test harness: create the lookaside tempdir");
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let http = bind_local();
        let addr = http.local_addr().expect("lookaside local_addr");
        let tls = self.https.then(|| {
            // rustls (under axum-server) needs a process-wide provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let validity = time::Duration::days(1);
            let ca = imagegate::certs::generate_ca("imagegate test lookaside CA", validity)
                .expect("test harness: generate the lookaside CA");
            let leaf = imagegate::certs::issue_serving_cert(
                &ca,
                &["127.0.0.1".to_string(), "localhost".to_string()],
                validity,
            )
            .expect("test harness: issue the lookaside serving certificate");
            (bind_local(), ca.cert_pem, leaf)
        });
        let https_addr = tls
            .as_ref()
            .map(|(listener, _, _)| listener.local_addr().expect("lookaside https local_addr"));
        let ca_cert_pem = tls.as_ref().map(|(_, ca, _)| ca.clone());

        let state = Arc::new(State {
            root,
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("lookaside-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the lookaside server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(http)
                        .expect("tokio listener for the lookaside server");
                    let plain = axum::serve(listener, router(&served, "http"));
                    let secure = async {
                        let Some((listener, _, leaf)) = tls else {
                            return std::future::pending::<()>().await;
                        };
                        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                            leaf.cert_pem.into_bytes(),
                            leaf.key_pem.into_bytes(),
                        )
                        .await
                        .expect("test harness: lookaside TLS configuration");
                        let server = axum_server::from_tcp_rustls(listener, config)
                            .expect("test harness: lookaside HTTPS listener");
                        if let Err(e) = server
                            .serve(router(&served, "https").into_make_service())
                            .await
                        {
                            eprintln!("test harness: lookaside HTTPS server failed: {e}");
                        }
                    };
                    // Stopping drops the server futures; dropping the runtime
                    // then cancels any connection still open (delayed or
                    // stalled responses included).
                    tokio::select! {
                        result = std::future::IntoFuture::into_future(plain) => {
                            if let Err(e) = result {
                                eprintln!("test harness: lookaside server failed: {e}");
                            }
                        }
                        _ = secure => {}
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn the lookaside server thread");
        LookasideServer {
            addr,
            https_addr,
            ca_cert_pem,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
            _tempdir: tempdir,
        }
    }
}

/// A running lookaside server; stopped on drop.
pub struct LookasideServer {
    addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    ca_cert_pem: Option<String>,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The directory served when the builder was given none; removed after
    /// the server stops (fields drop after `Drop::drop`).
    _tempdir: Option<tempfile::TempDir>,
}

impl LookasideServer {
    /// Starts serving `root` over plain HTTP on an ephemeral 127.0.0.1 port.
    pub fn start(root: &Path) -> Self {
        Self::builder().root(root).start()
    }

    /// Options: another root, a temporary root, HTTPS.
    pub fn builder() -> LookasideServerBuilder {
        LookasideServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT` of the plain-HTTP listener.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT`, no trailing slash; panics unless started
    /// with [`LookasideServerBuilder::https`].
    pub fn https_url(&self) -> String {
        format!("https://{}", self.https_host())
    }

    /// `127.0.0.1:PORT` of the HTTPS listener; panics unless started with
    /// [`LookasideServerBuilder::https`].
    pub fn https_host(&self) -> String {
        self.https_addr
            .expect("test harness: this lookaside server has no HTTPS listener")
            .to_string()
    }

    /// The PEM certificate of the CA that issued the HTTPS certificate: what
    /// a client must trust; panics unless started with
    /// [`LookasideServerBuilder::https`].
    pub fn ca_cert_pem(&self) -> &str {
        self.ca_cert_pem
            .as_deref()
            .expect("test harness: this lookaside server has no HTTPS listener")
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Writes `bytes` as the file served at URL path `path` (leading `/`,
    /// percent-decoded form, e.g. `/ns/app@sha256=ab…/signature-1`),
    /// creating directories; returns the file's path.
    pub fn put(&self, path: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let relative = Path::new(path.trim_start_matches('/'));
        assert!(
            relative
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "test harness: {path:?} is not a plain path under the lookaside root"
        );
        let file = self.state.root.join(relative);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("mkdir in the lookaside root");
        }
        std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        file
    }

    /// Every request received so far (on either listener), oldest first.
    pub fn requests(&self) -> Vec<LookasideRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// Answers requests for exactly `path` (percent-decoded, leading `/`)
    /// with `response` from now on; `None` restores normal serving.
    pub fn respond(&self, path: &str, response: Option<CannedResponse>) {
        let mut faults = self.state.faults.lock().unwrap();
        match response {
            Some(r) => faults.by_path.insert(path.to_string(), r),
            None => faults.by_path.remove(path),
        };
    }

    /// Answers every request whose path starts with `prefix` with
    /// `response` from now on (an exact [`LookasideServer::respond`] path
    /// takes precedence, then the longest prefix); `None` removes it.
    pub fn respond_prefix(&self, prefix: &str, response: Option<CannedResponse>) {
        let mut faults = self.state.faults.lock().unwrap();
        faults.by_prefix.retain(|(p, _)| p != prefix);
        if let Some(r) = response {
            faults.by_prefix.push((prefix.to_string(), r));
        }
    }

    /// Answers every request with `response` from now on (per-path and
    /// per-prefix canned responses still take precedence); `None` restores
    /// normal serving.
    pub fn respond_all(&self, response: Option<CannedResponse>) {
        self.state.faults.lock().unwrap().all = response;
    }
}

impl Drop for LookasideServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_local() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("test harness: bind the lookaside server on 127.0.0.1");
    // tokio (and axum-server) take over the listener only if non-blocking.
    listener
        .set_nonblocking(true)
        .expect("set_nonblocking on lookaside listener");
    listener
}

fn router(state: &Arc<State>, scheme: &'static str) -> axum::Router {
    let state = Arc::clone(state);
    axum::Router::new().fallback(move |request: Request<Body>| {
        let state = Arc::clone(&state);
        async move { respond(&state, scheme, request).await }
    })
}

async fn respond(state: &State, scheme: &str, request: Request<Body>) -> Response<Body> {
    let path = percent_decode(request.uri().path());
    let (response, delay) = answer(state, request.method(), &path);
    // Logged on arrival, so a request still waiting on a delay is visible.
    state.log.lock().unwrap().push(LookasideRequest {
        scheme: scheme.to_string(),
        method: request.method().to_string(),
        path,
        query: request.uri().query().map(str::to_string),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: response.status().as_u16(),
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

/// The response for `path` and how long to hold it back.
fn answer(state: &State, method: &Method, path: &str) -> (Response<Body>, Option<Duration>) {
    let canned = state.faults.lock().unwrap().lookup(path).cloned();
    if let Some(canned) = canned {
        let delay = canned.delay;
        return (canned.into_response(), delay);
    }
    (serve_file(&state.root, method, path), None)
}

fn serve_file(root: &Path, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(file) = file_for(root, path) else {
        return status_only(StatusCode::NOT_FOUND);
    };
    match std::fs::read(&file) {
        Ok(bytes) => {
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
                .expect("file response is valid")
        }
        Err(_) => status_only(StatusCode::NOT_FOUND),
    }
}

fn status_only(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("status response is valid")
}

/// The file under `root` that a decoded request path names, refusing any
/// path that would leave `root`.
fn file_for(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

/// Decodes `%XX` escapes; malformed escapes are kept literally.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
