//! The lookaside web server: serves a directory of signatures over plain
//! HTTP on 127.0.0.1, records every request, and can be told to answer a
//! path (or every path) with a canned response to inject faults.
//!
//! It runs in-process (axum on its own thread and tokio runtime) rather than
//! as `python3 -m http.server`: the request log is exact and immediate
//! instead of a log file to parse, faults (500, 403, redirects, huge bodies)
//! can be injected per path, and the port is bound before anyone can take it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};

/// One request the lookaside server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookasideRequest {
    pub method: String,
    /// The request path, percent-decoded, without the query string, e.g.
    /// `/e2e/hello@sha256=62b6…/signature-1`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The status code it was answered with.
    pub status: u16,
}

/// A response the server gives instead of looking at the directory.
#[derive(Debug, Clone)]
pub struct CannedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long to wait before answering (a slow or hung server).
    pub delay: Option<std::time::Duration>,
}

impl CannedResponse {
    /// A response with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        CannedResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        }
    }

    /// A 200 response with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        CannedResponse {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
        }
    }

    /// Answers only after `delay` (a slow server; a long delay is a server
    /// that never answers within any deadline under test).
    pub fn delayed(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Default)]
struct Faults {
    by_path: HashMap<String, CannedResponse>,
    all: Option<CannedResponse>,
}

struct State {
    root: PathBuf,
    log: Mutex<Vec<LookasideRequest>>,
    faults: Mutex<Faults>,
}

/// A running lookaside server; stopped on drop.
pub struct LookasideServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LookasideServer {
    /// Starts serving `root` on an ephemeral 127.0.0.1 port.
    pub fn start(root: &Path) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("test harness: bind the lookaside server on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("set_nonblocking on lookaside listener");
        let addr = listener.local_addr().expect("lookaside local_addr");
        let state = Arc::new(State {
            root: root.to_path_buf(),
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
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("tokio listener for the lookaside server");
                    let app = axum::Router::new().fallback(move |request: Request<Body>| {
                        let state = Arc::clone(&served);
                        async move { respond(&state, request).await }
                    });
                    // Stopping drops the server future; dropping the runtime
                    // then cancels any connection still open.
                    tokio::select! {
                        result = std::future::IntoFuture::into_future(axum::serve(listener, app)) => {
                            if let Err(e) = result {
                                eprintln!("test harness: lookaside server failed: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn the lookaside server thread");
        LookasideServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request answered so far, oldest first.
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

    /// Answers every request with `response` from now on (per-path canned
    /// responses still take precedence); `None` restores normal serving.
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

async fn respond(state: &State, request: Request<Body>) -> Response<Body> {
    let path = percent_decode(request.uri().path());
    let query = request.uri().query().map(str::to_string);
    let delay = {
        let faults = state.faults.lock().unwrap();
        faults
            .by_path
            .get(&path)
            .or(faults.all.as_ref())
            .and_then(|c| c.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let response = answer(state, request.method(), &path);
    state.log.lock().unwrap().push(LookasideRequest {
        method: request.method().to_string(),
        path,
        query,
        status: response.status().as_u16(),
    });
    response
}

fn answer(state: &State, method: &Method, path: &str) -> Response<Body> {
    let canned = {
        let faults = state.faults.lock().unwrap();
        faults.by_path.get(path).or(faults.all.as_ref()).cloned()
    };
    if let Some(canned) = canned {
        let mut builder = Response::builder().status(canned.status);
        for (name, value) in &canned.headers {
            builder = builder.header(name, value);
        }
        return builder
            .body(Body::from(canned.body))
            .expect("canned response is valid");
    }
    if method != Method::GET && method != Method::HEAD {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(file) = file_for(&state.root, path) else {
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
