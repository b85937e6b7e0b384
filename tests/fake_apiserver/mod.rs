//! An in-process fake of the Kubernetes API server, kept only for faults a
//! real kube-apiserver cannot be made to produce on demand (each test that
//! uses it says which); everything else is tested through the real one
//! (`harness::cluster`, `tests/kube_*.rs`). It is an axum
//! server on 127.0.0.1 that keeps objects in memory and speaks the real
//! wire format (Kubernetes JSON objects, lists with `metadata.resourceVersion`,
//! newline-delimited watch events, `Status` errors), so the real `kube`
//! client and kube-runtime reflectors can be driven against it.
//!
//! Supported: list (with field selectors on `metadata.name` and
//! `metadata.namespace` and equality label selectors), watch from a
//! resourceVersion (replaying the history after it, `410 Gone` as an ERROR
//! event when it was compacted away, bookmarks on request), get, create,
//! replace (resourceVersion-guarded), merge / JSON / server-side-apply
//! patches on the object and on `/status`, delete. Every write gets the
//! next resourceVersion of one cluster-wide counter (as etcd revisions);
//! a write that changes nothing is a no-op, as in the real API server.
//!
//! Not modelled: server-side apply field ownership (apply merges the
//! applied configuration into the object, lists replaced whole), strategic
//! merge patch (answered with 415, as for custom resources), admission,
//! defaulting, pagination (one page holds everything).
//!
//! Test controls: insert/modify/remove objects directly, drop every open
//! watch connection (a network failure), compact the history (watches from
//! older resourceVersions get 410), inject a hook or a failure before a
//! given request, and read the request log.

#![allow(dead_code)]

pub mod cluster;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// A resource type: API group (empty for the core group), version, plural.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, plural: &str) -> Gvr {
        Gvr {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
        }
    }

    /// A core (`/api/v1`) resource.
    pub fn core(plural: &str) -> Gvr {
        Gvr::new("", "v1", plural)
    }

    pub fn cluster_image_policies() -> Gvr {
        Gvr::new("imagegate.dev", "v1alpha1", "clusterimagepolicies")
    }
    pub fn image_policies() -> Gvr {
        Gvr::new("imagegate.dev", "v1alpha1", "imagepolicies")
    }
    pub fn nodes() -> Gvr {
        Gvr::core("nodes")
    }
    pub fn secrets() -> Gvr {
        Gvr::core("secrets")
    }
    pub fn service_accounts() -> Gvr {
        Gvr::core("serviceaccounts")
    }
    pub fn leases() -> Gvr {
        Gvr::new("coordination.k8s.io", "v1", "leases")
    }
    pub fn events() -> Gvr {
        Gvr::new("events.k8s.io", "v1", "events")
    }
    pub fn validating_webhooks() -> Gvr {
        Gvr::new(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
        )
    }
    pub fn mutating_webhooks() -> Gvr {
        Gvr::new(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        )
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as the API server names a resource in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// One request as received, with the answer's status code.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
}

impl RequestRecord {
    pub fn is(&self, method: &Method, path: &str) -> bool {
        self.method == *method && self.path == path
    }
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

#[derive(Clone, Debug)]
struct Change {
    resource: Gvr,
    namespace: String,
    rv: u64,
    kind: &'static str,
    object: Value,
}

type HookFn = Box<dyn FnOnce(&FakeApiServer) + Send>;

enum Injection {
    Hook(HookFn),
    Fail(u16),
}

struct PendingInjection {
    method: Method,
    path: String,
    injection: Injection,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// Watches starting before this resourceVersion are answered 410 Gone.
    compacted: u64,
    objects: BTreeMap<Gvr, BTreeMap<(String, String), Value>>,
    kinds: BTreeMap<Gvr, String>,
    history: Vec<Change>,
    uid_counter: u64,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    drop_epoch: watch::Sender<u64>,
    injections: Mutex<Vec<PendingInjection>>,
    /// (method, path, code): every matching request fails until cleared.
    outages: Mutex<Vec<(Method, String, u16)>>,
    log: Mutex<Vec<RequestRecord>>,
    /// Resources whose `status` is a subresource: writes to the object
    /// leave status alone, writes to `/status` touch only status.
    status_subresources: Mutex<HashSet<String>>,
    gone_answers: Mutex<u64>,
}

/// The fake API server. Cheap to clone; it runs until the test's runtime ends.
#[derive(Clone)]
pub struct FakeApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The error a write helper or a request handler produces: an HTTP status
/// with a Kubernetes `Status` body.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl FakeApiServer {
    /// Starts the server on an ephemeral 127.0.0.1 port.
    pub async fn start() -> FakeApiServer {
        let (changes, _) = broadcast::channel(4096);
        let (drop_epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes,
            drop_epoch,
            injections: Mutex::new(Vec::new()),
            outages: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            status_subresources: Mutex::new(
                [
                    "clusterimagepolicies",
                    "imagepolicies",
                    "nodes",
                    "pods",
                    "deployments",
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ),
            gone_answers: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = FakeApiServer { addr, shared };
        let handler_server = server.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = handler_server.clone();
                async move { s.handle(method, uri, headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        server
    }

    /// A `kube::Client` talking to this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("kube client")
    }

    /// Marks `plural` as having a status subresource.
    pub fn enable_status_subresource(&self, plural: &str) {
        self.shared
            .status_subresources
            .lock()
            .unwrap()
            .insert(plural.into());
    }

    // ----- test helpers: objects -----

    /// Creates an object as a client's create would (resourceVersion, uid,
    /// creationTimestamp, generation 1), emitting ADDED. The namespace is
    /// taken from `metadata.namespace`. Panics if it exists.
    pub fn insert(&self, gvr: &Gvr, object: Value) -> Value {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.create_object(gvr, &ns, object)
            .unwrap_or_else(|e| panic!("insert: {e:?}"))
    }

    /// Changes an object through `f` as a client's replace would
    /// (generation bumped when anything outside metadata and status
    /// changed), emitting MODIFIED. Panics if it does not exist.
    pub fn modify(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Value {
        let ns = namespace.unwrap_or("");
        let mut obj = self
            .get(gvr, namespace, name)
            .unwrap_or_else(|| panic!("modify: {gvr:?} {ns}/{name} does not exist"));
        f(&mut obj);
        self.commit_update(gvr, ns, name, obj, Write::Raw)
            .unwrap_or_else(|e| panic!("modify: {e:?}"))
    }

    /// Deletes an object, emitting DELETED.
    pub fn remove(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.delete_object(gvr, namespace.unwrap_or(""), name).ok()
    }

    pub fn get(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Option<Value> {
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .get(gvr)
            .and_then(|m| m.get(&(namespace.unwrap_or("").to_string(), name.to_string())))
            .cloned()
    }

    /// Every object of a resource, all namespaces.
    pub fn list(&self, gvr: &Gvr) -> Vec<Value> {
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .get(gvr)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    // ----- test helpers: failures -----

    /// Ends every open watch connection abruptly (the client sees a
    /// broken stream), as a network failure or an API server restart would.
    pub fn drop_watches(&self) {
        self.shared.drop_epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the history: a watch from any resourceVersion older than
    /// the current one is answered 410 Gone (too old resource version).
    pub fn compact(&self) {
        let mut store = self.shared.store.lock().unwrap();
        store.compacted = store.rv;
        store.history.clear();
    }

    /// How many watches were answered 410 Gone.
    pub fn gone_answers(&self) -> u64 {
        *self.shared.gone_answers.lock().unwrap()
    }

    /// Sends a BOOKMARK with the current resourceVersion to every open
    /// watch that asked for bookmarks.
    pub fn bookmark(&self) {
        let store = self.shared.store.lock().unwrap();
        for (gvr, kind) in &store.kinds {
            let _ = self.shared.changes.send(Change {
                resource: gvr.clone(),
                namespace: String::new(),
                rv: store.rv,
                kind: "BOOKMARK",
                object: json!({
                    "kind": kind,
                    "apiVersion": gvr.api_version(),
                    "metadata": {"resourceVersion": store.rv.to_string()}
                }),
            });
        }
    }

    /// Runs `hook` (with access to this server) just before the next
    /// request with this method and path is handled: the way to make
    /// another writer win a race.
    pub fn before_next(
        &self,
        method: Method,
        path: &str,
        hook: impl FnOnce(&FakeApiServer) + Send + 'static,
    ) {
        self.shared
            .injections
            .lock()
            .unwrap()
            .push(PendingInjection {
                method,
                path: path.into(),
                injection: Injection::Hook(Box::new(hook)),
            });
    }

    /// Answers the next request with this method and path with `code`
    /// (a `Status` with a matching reason) instead of handling it.
    pub fn fail_next(&self, method: Method, path: &str, code: u16) {
        self.shared
            .injections
            .lock()
            .unwrap()
            .push(PendingInjection {
                method,
                path: path.into(),
                injection: Injection::Fail(code),
            });
    }

    /// Answers every request with this method and path with `code` until
    /// [`FakeApiServer::clear_outages`].
    pub fn fail_always(&self, method: Method, path: &str, code: u16) {
        self.shared
            .outages
            .lock()
            .unwrap()
            .push((method, path.into(), code));
    }

    pub fn clear_outages(&self) {
        self.shared.outages.lock().unwrap().clear();
    }

    // ----- test helpers: what the client did -----

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests with this method and exact path.
    pub fn requests_to(&self, method: &Method, path: &str) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.is(method, path))
            .collect()
    }

    /// Events (events.k8s.io/v1) in `namespace`.
    pub fn events_in(&self, namespace: &str) -> Vec<Value> {
        self.list(&Gvr::events())
            .into_iter()
            .filter(|e| e["metadata"]["namespace"] == namespace)
            .collect()
    }

    // ----- request handling -----

    async fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or("").to_string();
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let body_json: Option<Value> = if body.is_empty() {
            None
        } else {
            serde_json::from_slice(&body).ok()
        };

        let outage = self
            .shared
            .outages
            .lock()
            .unwrap()
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, code)| *code);
        let injection = match outage {
            Some(code) => Some(Injection::Fail(code)),
            None => {
                let mut inj = self.shared.injections.lock().unwrap();
                inj.iter()
                    .position(|p| p.method == method && p.path == path)
                    .map(|i| inj.remove(i).injection)
            }
        };
        let response = match injection {
            Some(Injection::Fail(code)) => failure_response(&ApiFailure {
                code,
                reason: reason_for(code),
                message: format!("injected failure {code}"),
            }),
            other => {
                if let Some(Injection::Hook(h)) = other {
                    h(self);
                }
                self.dispatch(
                    &method,
                    &path,
                    &query,
                    content_type.as_deref(),
                    &body,
                    body_json.clone(),
                )
            }
        };
        self.shared.log.lock().unwrap().push(RequestRecord {
            method,
            path,
            query,
            content_type,
            body: body_json,
            status: response.status().as_u16(),
        });
        response
    }

    fn dispatch(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        raw_body: &Bytes,
        body: Option<Value>,
    ) -> Response {
        let Some(target) = parse_path(path) else {
            return failure_response(&ApiFailure {
                code: 404,
                reason: "NotFound",
                message: format!("the server could not find the requested resource ({path})"),
            });
        };
        let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let ns = target.namespace.clone().unwrap_or_default();
        let result = match (method.clone(), &target.name, &target.subresource) {
            (Method::GET, None, None) => {
                if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) {
                    return self.watch(&target, &params);
                }
                self.list_response(&target, &params)
            }
            (Method::POST, None, None) => match body {
                Some(obj) => self
                    .create_object(&target.gvr, &ns, obj)
                    .map(|o| (StatusCode::CREATED, o)),
                None => Err(bad_request(&raw_body_error(raw_body))),
            },
            (Method::GET, Some(name), sub) if sub.is_none() || sub.as_deref() == Some("status") => {
                self.get(&target.gvr, target.namespace.as_deref(), name)
                    .map(|o| (StatusCode::OK, o))
                    .ok_or_else(|| not_found(&target.gvr, name))
            }
            (Method::PUT, Some(name), sub) if sub.is_none() || sub.as_deref() == Some("status") => {
                match body {
                    Some(obj) => {
                        let mode = if sub.is_some() {
                            Write::Status
                        } else {
                            Write::Object
                        };
                        self.replace(&target.gvr, &ns, name, obj, mode)
                            .map(|o| (StatusCode::OK, o))
                    }
                    None => Err(bad_request(&raw_body_error(raw_body))),
                }
            }
            (Method::PATCH, Some(name), sub)
                if sub.is_none() || sub.as_deref() == Some("status") =>
            {
                let mode = if sub.is_some() {
                    Write::Status
                } else {
                    Write::Object
                };
                match body {
                    Some(patch) => self
                        .patch(&target.gvr, &ns, name, content_type, patch, &params, mode)
                        .map(|(created, o)| {
                            (
                                if created {
                                    StatusCode::CREATED
                                } else {
                                    StatusCode::OK
                                },
                                o,
                            )
                        }),
                    None => Err(bad_request(&raw_body_error(raw_body))),
                }
            }
            (Method::DELETE, Some(name), None) => self
                .delete_object(&target.gvr, &ns, name)
                .map(|o| (StatusCode::OK, o)),
            _ => Err(ApiFailure {
                code: 405,
                reason: "MethodNotAllowed",
                message: format!("{method} is not supported on {path}"),
            }),
        };
        match result {
            Ok((code, obj)) => (code, axum::Json(obj)).into_response(),
            Err(f) => failure_response(&f),
        }
    }

    fn list_response(
        &self,
        target: &Target,
        params: &BTreeMap<String, String>,
    ) -> Result<(StatusCode, Value), ApiFailure> {
        let selector = Selector::parse(params)?;
        let store = self.shared.store.lock().unwrap();
        let items: Vec<Value> = store
            .objects
            .get(&target.gvr)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), obj)| {
                        target.namespace.as_ref().is_none_or(|t| t == ns) && selector.matches(obj)
                    })
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default();
        let kind = store
            .kinds
            .get(&target.gvr)
            .map(|k| format!("{k}List"))
            .unwrap_or_else(|| "List".into());
        Ok((
            StatusCode::OK,
            json!({
                "kind": kind,
                "apiVersion": target.gvr.api_version(),
                "metadata": {"resourceVersion": store.rv.to_string()},
                "items": items,
            }),
        ))
    }

    fn watch(&self, target: &Target, params: &BTreeMap<String, String>) -> Response {
        let selector = match Selector::parse(params) {
            Ok(s) => s,
            Err(f) => return failure_response(&f),
        };
        let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs);
        let from: Option<u64> = match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(v) => match v.parse() {
                Ok(v) => Some(v),
                Err(_) => {
                    return failure_response(&bad_request(&format!(
                        "invalid resource version \"{v}\""
                    )));
                }
            },
        };
        let filter = WatchFilter {
            gvr: target.gvr.clone(),
            namespace: target.namespace.clone(),
            selector,
            bookmarks,
        };

        // Subscribe and snapshot under one lock so no change falls between.
        let (initial, live, last_rv) = {
            let store = self.shared.store.lock().unwrap();
            let live = self.shared.changes.subscribe();
            match from {
                Some(rv) if rv < store.compacted => {
                    *self.shared.gone_answers.lock().unwrap() += 1;
                    let line = watch_line(
                        "ERROR",
                        &status_json(&ApiFailure {
                            code: 410,
                            reason: "Expired",
                            message: format!(
                                "too old resource version: {rv} ({})",
                                store.compacted
                            ),
                        }),
                    );
                    return watch_response(Body::from(line));
                }
                Some(rv) => {
                    let replay: VecDeque<Bytes> = store
                        .history
                        .iter()
                        .filter(|c| c.rv > rv && filter.matches(c))
                        .map(|c| watch_line(c.kind, &c.object))
                        .collect();
                    (replay, live, rv.max(store.rv))
                }
                None => {
                    let current: VecDeque<Bytes> = store
                        .objects
                        .get(&target.gvr)
                        .map(|m| {
                            m.iter()
                                .filter(|((ns, _), o)| {
                                    filter.namespace.as_ref().is_none_or(|t| t == ns)
                                        && filter.selector.matches(o)
                                })
                                .map(|(_, o)| watch_line("ADDED", o))
                                .collect()
                        })
                        .unwrap_or_default();
                    (current, live, store.rv)
                }
            }
        };

        let state = WatchState {
            initial,
            live,
            drop_rx: self.shared.drop_epoch.subscribe(),
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            filter,
            last_rv,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if let Some(line) = st.initial.pop_front() {
                return Some((Ok(line), st));
            }
            loop {
                let deadline = st.deadline;
                let sleep = async move {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = st.drop_rx.changed() => {
                        return Some((Err(std::io::Error::other("watch connection dropped")), st));
                    }
                    _ = sleep => return None,
                    change = st.live.recv() => match change {
                        Ok(c) => {
                            if c.kind != "BOOKMARK" && c.rv <= st.last_rv {
                                continue;
                            }
                            if !st.filter.matches(&c) {
                                continue;
                            }
                            if c.kind != "BOOKMARK" {
                                st.last_rv = c.rv;
                            }
                            return Some((Ok(watch_line(c.kind, &c.object)), st));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                            return Some((Err(std::io::Error::other("watch fell behind")), st));
                        }
                    },
                }
            }
        });
        // After an error item the stream must end: hyper aborts the body.
        let stream = futures::StreamExt::scan(stream, false, |failed, item| {
            let out = if *failed {
                None
            } else {
                *failed = item.is_err();
                Some(item)
            };
            futures::future::ready(out)
        });
        watch_response(Body::from_stream(stream))
    }

    // ----- storage operations -----

    fn next_uid(store: &mut Store) -> String {
        store.uid_counter += 1;
        format!("00000000-0000-4000-8000-{:012x}", store.uid_counter)
    }

    fn create_object(&self, gvr: &Gvr, ns: &str, mut obj: Value) -> Result<Value, ApiFailure> {
        if !obj.is_object() {
            return Err(bad_request("the body must be a JSON object"));
        }
        let mut store = self.shared.store.lock().unwrap();
        let meta = obj
            .as_object_mut()
            .unwrap()
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(bad_request("metadata must be an object"));
        }
        let name = match meta["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta["generateName"].as_str() {
                Some(prefix) => {
                    store.uid_counter += 1;
                    format!("{prefix}{:05x}", store.uid_counter)
                }
                None => {
                    return Err(ApiFailure {
                        code: 422,
                        reason: "Invalid",
                        message: format!(
                            "{} is invalid: metadata.name: Required value: name or generateName is required",
                            gvr.qualified()
                        ),
                    });
                }
            },
        };
        if let Some(body_ns) = meta["namespace"].as_str()
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let key = (ns.to_string(), name.clone());
        if store.objects.get(gvr).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiFailure {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", gvr.qualified()),
            });
        }
        store.rv += 1;
        let rv = store.rv;
        let uid = Self::next_uid(&mut store);
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("name".into(), json!(name));
        if ns.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        if let Some(kind) = obj["kind"].as_str() {
            store.kinds.insert(gvr.clone(), kind.to_string());
        }
        store
            .objects
            .entry(gvr.clone())
            .or_default()
            .insert(key, obj.clone());
        self.record_change(&mut store, gvr, ns, rv, "ADDED", &obj);
        Ok(obj)
    }

    fn record_change(
        &self,
        store: &mut Store,
        gvr: &Gvr,
        ns: &str,
        rv: u64,
        kind: &'static str,
        obj: &Value,
    ) {
        let change = Change {
            resource: gvr.clone(),
            namespace: ns.to_string(),
            rv,
            kind,
            object: obj.clone(),
        };
        store.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }

    fn has_status_subresource(&self, gvr: &Gvr) -> bool {
        self.shared
            .status_subresources
            .lock()
            .unwrap()
            .contains(&gvr.plural)
    }

    fn replace(
        &self,
        gvr: &Gvr,
        ns: &str,
        name: &str,
        obj: Value,
        mode: Write,
    ) -> Result<Value, ApiFailure> {
        if !obj.is_object() {
            return Err(bad_request("the body must be a JSON object"));
        }
        if let Some(body_name) = obj["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let current = self
            .get(gvr, Some(ns), name)
            .ok_or_else(|| not_found(gvr, name))?;
        check_precondition(gvr, name, &current, &obj)?;
        self.commit_update(gvr, ns, name, obj, mode)
    }

    #[allow(clippy::too_many_arguments)]
    fn patch(
        &self,
        gvr: &Gvr,
        ns: &str,
        name: &str,
        content_type: Option<&str>,
        patch: Value,
        params: &BTreeMap<String, String>,
        mode: Write,
    ) -> Result<(bool, Value), ApiFailure> {
        let current = self.get(gvr, Some(ns), name);
        match content_type {
            Some("application/apply-patch+yaml") => {
                if params.get("fieldManager").is_none_or(|m| m.is_empty()) {
                    return Err(ApiFailure {
                        code: 422,
                        reason: "Invalid",
                        message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                    });
                }
                match current {
                    None => {
                        if mode == Write::Status {
                            return Err(not_found(gvr, name));
                        }
                        let mut obj = patch;
                        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                            return Err(bad_request(
                                "the name of the object does not match the name on the URL",
                            ));
                        }
                        obj["metadata"]["name"] = json!(name);
                        self.create_object(gvr, ns, obj).map(|o| (true, o))
                    }
                    Some(cur) => {
                        let mut obj = cur.clone();
                        apply_merge(&mut obj, &patch);
                        self.commit_update(gvr, ns, name, obj, mode).map(|o| (false, o))
                    }
                }
            }
            Some("application/merge-patch+json") | Some("application/json-patch+json") => {
                let cur = current.ok_or_else(|| not_found(gvr, name))?;
                let mut obj = cur.clone();
                if content_type == Some("application/merge-patch+json") {
                    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                        && Some(rv) != cur["metadata"]["resourceVersion"].as_str()
                    {
                        return Err(conflict(gvr, name));
                    }
                    json_patch::merge(&mut obj, &patch);
                } else {
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| bad_request(&format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut obj, &ops).map_err(|e| ApiFailure {
                        code: 422,
                        reason: "Invalid",
                        message: format!("the JSON patch could not be applied: {e}"),
                    })?;
                    if obj["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                        check_precondition(gvr, name, &cur, &obj)?;
                    }
                }
                self.commit_update(gvr, ns, name, obj, mode).map(|o| (false, o))
            }
            Some("application/strategic-merge-patch+json") => Err(ApiFailure {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
            }),
            other => Err(ApiFailure {
                code: 415,
                reason: "UnsupportedMediaType",
                message: format!("unsupported patch content type {other:?}"),
            }),
        }
    }

    /// Stores `new` as the next version of an existing object, keeping what
    /// the server owns (identity, creation time, and status or spec
    /// depending on the endpoint), bumping generation when the spec-like
    /// part changed. A write that changes nothing is a no-op.
    fn commit_update(
        &self,
        gvr: &Gvr,
        ns: &str,
        name: &str,
        new: Value,
        mode: Write,
    ) -> Result<Value, ApiFailure> {
        let status_sub = self.has_status_subresource(gvr);
        let mut store = self.shared.store.lock().unwrap();
        let key = (ns.to_string(), name.to_string());
        let current = store
            .objects
            .get(gvr)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| not_found(gvr, name))?;
        let mut next = match mode {
            Write::Status => {
                let mut o = current.clone();
                match new.get("status") {
                    Some(s) if !s.is_null() => o["status"] = s.clone(),
                    _ => {
                        o.as_object_mut().unwrap().remove("status");
                    }
                }
                o
            }
            Write::Object if status_sub => {
                let mut o = new;
                match current.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                o
            }
            Write::Object | Write::Raw => new,
        };
        // Server-owned metadata.
        {
            let cur_meta = current["metadata"].clone();
            if !next["metadata"].is_object() {
                next["metadata"] = json!({});
            }
            let meta = next["metadata"].as_object_mut().unwrap();
            for k in ["name", "uid", "creationTimestamp", "generation"] {
                match cur_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            if ns.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), json!(ns));
            }
            meta.insert(
                "resourceVersion".into(),
                cur_meta["resourceVersion"].clone(),
            );
        }
        if next == current {
            return Ok(current);
        }
        if spec_part(&next) != spec_part(&current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            next["metadata"]["generation"] = json!(generation);
        }
        store.rv += 1;
        let rv = store.rv;
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        store
            .objects
            .entry(gvr.clone())
            .or_default()
            .insert(key, next.clone());
        self.record_change(&mut store, gvr, ns, rv, "MODIFIED", &next);
        Ok(next)
    }

    fn delete_object(&self, gvr: &Gvr, ns: &str, name: &str) -> Result<Value, ApiFailure> {
        let mut store = self.shared.store.lock().unwrap();
        let key = (ns.to_string(), name.to_string());
        let mut obj = store
            .objects
            .get_mut(gvr)
            .and_then(|m| m.remove(&key))
            .ok_or_else(|| not_found(gvr, name))?;
        store.rv += 1;
        let rv = store.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record_change(&mut store, gvr, ns, rv, "DELETED", &obj);
        Ok(obj)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Write {
    /// A write to the object: status is kept if it is a subresource.
    Object,
    /// A write to `/status`: only status changes.
    Status,
    /// A test helper's write: everything changes as given.
    Raw,
}

/// The part of an object whose changes bump `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn check_precondition(
    gvr: &Gvr,
    name: &str,
    current: &Value,
    body: &Value,
) -> Result<(), ApiFailure> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if !rv.is_empty() && Some(rv) != current["metadata"]["resourceVersion"].as_str() =>
        {
            Err(conflict(gvr, name))
        }
        _ => Ok(()),
    }
}

/// Server-side apply without field ownership: maps merge recursively,
/// everything else (lists included) is replaced by the applied value.
fn apply_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        apply_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

struct Target {
    gvr: Gvr,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then
/// `[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]]`.
fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    if plural.is_empty() {
        return None;
    }
    Some(Target {
        gvr: Gvr::new(group, version, plural),
        namespace,
        name,
        subresource,
    })
}

/// Equality-based field and label selectors.
#[derive(Clone, Default)]
struct Selector {
    fields: Vec<(String, String)>,
    labels: Vec<(String, String)>,
}

impl Selector {
    fn parse(params: &BTreeMap<String, String>) -> Result<Selector, ApiFailure> {
        let pairs = |s: Option<&String>, what: &str| -> Result<Vec<(String, String)>, ApiFailure> {
            let Some(s) = s.filter(|s| !s.is_empty()) else {
                return Ok(Vec::new());
            };
            s.split(',')
                .map(|term| {
                    let term = term.trim();
                    let (k, v) = term
                        .split_once("==")
                        .or_else(|| term.split_once('='))
                        .filter(|(k, _)| !k.ends_with('!'))
                        .ok_or_else(|| {
                            bad_request(&format!("unsupported {what} selector term {term:?}"))
                        })?;
                    Ok((k.trim().to_string(), v.trim().to_string()))
                })
                .collect()
        };
        let fields = pairs(params.get("fieldSelector"), "field")?;
        for (k, _) in &fields {
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(bad_request(&format!("field label not supported: {k}")));
            }
        }
        Ok(Selector {
            fields,
            labels: pairs(params.get("labelSelector"), "label")?,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        self.fields.iter().all(|(k, v)| {
            let field = k.trim_start_matches("metadata.");
            meta[field].as_str().unwrap_or("") == v
        }) && self
            .labels
            .iter()
            .all(|(k, v)| meta["labels"][k.as_str()].as_str() == Some(v.as_str()))
    }
}

struct WatchFilter {
    gvr: Gvr,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
}

impl WatchFilter {
    fn matches(&self, c: &Change) -> bool {
        if c.resource != self.gvr {
            return false;
        }
        if c.kind == "BOOKMARK" {
            return self.bookmarks;
        }
        self.namespace.as_ref().is_none_or(|ns| ns == &c.namespace)
            && self.selector.matches(&c.object)
    }
}

struct WatchState {
    initial: VecDeque<Bytes>,
    live: broadcast::Receiver<Change>,
    drop_rx: watch::Receiver<u64>,
    deadline: Option<tokio::time::Instant>,
    filter: WatchFilter,
    last_rv: u64,
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    line.push(b'\n');
    Bytes::from(line)
}

fn watch_response(body: Body) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body)
        .expect("response")
}

fn status_json(f: &ApiFailure) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f.message,
        "reason": f.reason,
        "code": f.code,
    })
}

fn failure_response(f: &ApiFailure) -> Response {
    let code = StatusCode::from_u16(f.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(status_json(f))).into_response()
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    }
}

fn not_found(gvr: &Gvr, name: &str) -> ApiFailure {
    ApiFailure {
        code: 404,
        reason: "NotFound",
        message: format!("{} \"{name}\" not found", gvr.qualified()),
    }
}

fn conflict(gvr: &Gvr, name: &str) -> ApiFailure {
    ApiFailure {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            gvr.qualified()
        ),
    }
}

fn bad_request(message: &str) -> ApiFailure {
    ApiFailure {
        code: 400,
        reason: "BadRequest",
        message: message.into(),
    }
}

fn raw_body_error(raw: &Bytes) -> String {
    if raw.is_empty() {
        "the request body is empty".into()
    } else {
        "the request body is not valid JSON".into()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

// ----- object builders for tests -----

/// A ClusterImagePolicy object.
pub fn cluster_policy(name: &str, policy: Value) -> Value {
    json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"policy": policy},
    })
}

/// An ImagePolicy object.
pub fn image_policy(namespace: &str, name: &str, policy: Value) -> Value {
    json!({
        "apiVersion": "imagegate.dev/v1alpha1",
        "kind": "ImagePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"policy": policy},
    })
}

/// A Node with the given platform in `status.nodeInfo` and labels.
pub fn node(name: &str, os: &str, arch: &str, variant: Option<&str>) -> Value {
    let mut labels = json!({"kubernetes.io/os": os, "kubernetes.io/arch": arch});
    if let Some(v) = variant {
        labels["kubernetes.io/arch-variant"] = json!(v);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"nodeInfo": {
            "operatingSystem": os, "architecture": arch,
            "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
            "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
            "osImage": "", "systemUUID": ""
        }},
    })
}

/// A Secret with base64-encoded `data`.
pub fn secret(namespace: &str, name: &str, type_: &str, data: &[(&str, &[u8])]) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": data,
    })
}

/// Polls `check` every 20 ms until it holds; panics after 15 s naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut`; panics after 15 s naming `what` (a hung test fails).
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(15), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for: {what}"),
    }
}
