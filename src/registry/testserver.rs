//! An in-process fake registry on 127.0.0.1 for the client's unit tests:
//! manifests, the signature extension, and Basic or Bearer (token server,
//! OAuth2 refresh grant) authentication, with counters to check caching.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// How the fake registry authenticates.
pub(crate) enum Auth {
    None,
    Basic {
        user: String,
        password: String,
    },
    /// A token server at `/token` on the same address: `GET` with Basic
    /// credentials, or `POST` with the refresh grant for `identity_token`.
    Bearer {
        user: String,
        password: String,
        identity_token: String,
    },
}

#[derive(Default)]
struct Data {
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    signatures: HashMap<String, Vec<u8>>,
    supports_signatures: Option<String>,
    stall: Option<Duration>,
    pings: usize,
    token_requests: usize,
    oauth_requests: usize,
    issued: Vec<String>,
    last_accept: Vec<String>,
    last_token_query: Vec<(String, String)>,
}

struct Inner {
    auth: Auth,
    addr: SocketAddr,
    data: Mutex<Data>,
}

/// A running fake registry; it stops with the test's runtime.
pub(crate) struct FakeRegistry {
    inner: Arc<Inner>,
}

impl FakeRegistry {
    pub(crate) async fn start(auth: Auth) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            auth,
            addr,
            data: Mutex::new(Data::default()),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRegistry { inner }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        self.inner.addr.to_string()
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.inner.data.lock().expect("fake registry lock")
    }

    /// Stores a manifest under `reference` and, as a registry does, under
    /// the sha256 digest of its bytes.
    pub(crate) fn put(&self, repo: &str, reference: &str, content_type: &str, body: &[u8]) {
        let mut d = self.data();
        let value = (content_type.to_string(), body.to_vec());
        let digest = crate::reference::Digest::sha256_of(body).to_string();
        d.manifests
            .insert((repo.to_string(), digest), value.clone());
        d.manifests
            .insert((repo.to_string(), reference.to_string()), value);
    }

    /// `rest` is the path after `/extensions/v2/`.
    pub(crate) fn put_signatures(&self, rest: &str, body: &[u8]) {
        self.data()
            .signatures
            .insert(rest.to_string(), body.to_vec());
    }

    pub(crate) fn set_supports_signatures(&self, value: &str) {
        self.data().supports_signatures = Some(value.to_string());
    }

    /// Manifest requests wait this long before answering.
    pub(crate) fn stall_manifests(&self, d: Duration) {
        self.data().stall = Some(d);
    }

    pub(crate) fn pings(&self) -> usize {
        self.data().pings
    }

    pub(crate) fn token_requests(&self) -> usize {
        self.data().token_requests
    }

    pub(crate) fn oauth_requests(&self) -> usize {
        self.data().oauth_requests
    }

    pub(crate) fn last_accept(&self) -> Vec<String> {
        self.data().last_accept.clone()
    }

    pub(crate) fn last_token_query(&self) -> Vec<(String, String)> {
        self.data().last_token_query.clone()
    }
}

fn errcode(status: StatusCode, code: &str, message: &str, detail: &str) -> Response {
    let body =
        format!(r#"{{"errors":[{{"code":"{code}","message":"{message}","detail":{detail}}}]}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn challenge(inner: &Inner, error: Option<&str>) -> Option<String> {
    match &inner.auth {
        Auth::None => None,
        Auth::Basic { .. } => Some(r#"Basic realm="fake""#.into()),
        Auth::Bearer { .. } => {
            let mut c = format!(
                r#"Bearer realm="http://{}/token",service="fake-registry""#,
                inner.addr
            );
            if let Some(e) = error {
                c.push_str(&format!(r#",error="{e}""#));
            }
            Some(c)
        }
    }
}

fn authorized(inner: &Inner, req: &Request) -> bool {
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match &inner.auth {
        Auth::None => true,
        Auth::Basic { user, password } => got == basic(user, password),
        Auth::Bearer { .. } => got.strip_prefix("Bearer ").is_some_and(|t| {
            inner
                .data
                .lock()
                .expect("lock")
                .issued
                .iter()
                .any(|i| i == t)
        }),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn unauthorized(inner: &Inner, repo: &str) -> Response {
    let mut r = errcode(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
        &format!(r#"[{{"Type":"repository","Name":"{repo}","Action":"pull"}}]"#),
    );
    if let Some(c) = challenge(inner, Some("invalid_token")) {
        // The client must use the ping's challenge, not this one; an OAuth
        // error here only shapes the message.
        let c = if matches!(inner.auth, Auth::Bearer { .. }) {
            c.replace(r#",error="invalid_token""#, "")
        } else {
            c
        };
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, c.parse().expect("header"));
    }
    r
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/v2/" {
        let ext = {
            let mut d = inner.data.lock().expect("lock");
            d.pings += 1;
            d.supports_signatures.clone()
        };
        let mut r = match challenge(&inner, None) {
            None => (StatusCode::OK, "{}").into_response(),
            Some(c) => {
                let mut r = errcode(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required",
                    "null",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, c.parse().expect("header"));
                r
            }
        };
        if let Some(v) = ext {
            r.headers_mut()
                .insert("X-Registry-Supports-Signatures", v.parse().expect("header"));
        }
        return r;
    }
    if path == "/token" {
        return token(&inner, req).await;
    }
    if let Some(rest) = path.strip_prefix("/extensions/v2/") {
        let repo = rest.split("/signatures/").next().unwrap_or("").to_string();
        if !authorized(&inner, &req) {
            return unauthorized(&inner, &repo);
        }
        let body = inner
            .data
            .lock()
            .expect("lock")
            .signatures
            .get(rest)
            .cloned();
        return match body {
            Some(b) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                b,
            )
                .into_response(),
            None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/")
        && let Some((repo, reference)) = rest.rsplit_once("/manifests/")
    {
        if !authorized(&inner, &req) {
            return unauthorized(&inner, repo);
        }
        let (found, stall) = {
            let mut d = inner.data.lock().expect("lock");
            d.last_accept = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            (
                d.manifests
                    .get(&(repo.to_string(), reference.to_string()))
                    .cloned(),
                d.stall,
            )
        };
        if let Some(s) = stall {
            tokio::time::sleep(s).await;
        }
        return match found {
            Some((ct, body)) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, ct)],
                Body::from(body),
            )
                .into_response(),
            None => errcode(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
                &format!(r#"{{"Tag":"{reference}"}}"#),
            ),
        };
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn token(inner: &Inner, req: Request) -> Response {
    let Auth::Bearer {
        user,
        password,
        identity_token,
    } = &inner.auth
    else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let granted = if req.method() == axum::http::Method::POST {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        inner.data.lock().expect("lock").oauth_requests += 1;
        form.get("grant_type").map(String::as_str) == Some("refresh_token")
            && form.get("refresh_token") == Some(identity_token)
            && form.get("client_id").map(String::as_str) == Some("containers/image")
    } else {
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(basic(user, password).as_str());
        let mut d = inner.data.lock().expect("lock");
        d.token_requests += 1;
        d.last_token_query = query;
        ok
    };
    if !granted {
        return errcode(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            "null",
        );
    }
    let mut d = inner.data.lock().expect("lock");
    let token = format!("tok-{}", d.issued.len() + 1);
    d.issued.push(token.clone());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"token":"{token}","expires_in":300}}"#),
    )
        .into_response()
}
