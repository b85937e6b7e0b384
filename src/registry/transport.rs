//! The docker registry v2 HTTP conversation as c/image's `dockerClient` has
//! it (`docker/docker_client.go`): one unauthenticated ping of `/v2/` per
//! registry (HTTPS, then HTTP if TLS verification is off) that yields the
//! scheme, the authentication challenges and the signature-extension flag;
//! requests authenticated from those challenges (`Basic` with the
//! credentials, or `Bearer` with a token from the realm, cached); error
//! bodies turned into c/image's error texts; bodies read under a size cap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::{Method, StatusCode, header};

use super::auth::Credentials;
use super::{MAX_AUTH_TOKEN_BODY_SIZE, RegistryError, RegistryErrorKind};
use crate::cache::Cache;
use crate::reference::Named;

/// c/image's `minimumTokenLifetimeSeconds`.
const MINIMUM_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// c/image's `MaxErrorBodySize`.
const MAX_ERROR_BODY_SIZE: usize = 1 << 20;
/// How long a ping result (scheme, challenges, extension flag) is reused.
const PING_TTL: Duration = Duration::from_secs(300);

/// The registry host to connect to for a reference domain (`docker.io` is
/// served by `registry-1.docker.io`).
pub(crate) fn registry_host(domain: &str) -> &str {
    if domain == crate::reference::DEFAULT_DOMAIN {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// One `WWW-Authenticate` challenge: lower-case scheme and parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// What the ping of `/v2/` told us about a registry.
#[derive(Debug, Clone)]
pub(crate) struct RegistryProperties {
    pub scheme: &'static str,
    pub challenges: Vec<Challenge>,
    /// `X-Registry-Supports-Signatures: 1`.
    pub supports_signatures: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    realm: String,
    service: String,
    scope: String,
    credentials: String,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// Settings of the HTTP client, from [`super::RegistryOptions`].
pub(crate) struct TransportConfig<'a> {
    pub tls_verify: bool,
    pub extra_root_certificates: &'a [Vec<u8>],
    pub connect_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub user_agent: &'a str,
}

/// The shared HTTP client with its ping and token caches.
pub(crate) struct Transport {
    http: reqwest::Client,
    tls_verify: bool,
    pings: Cache<String, Arc<RegistryProperties>>,
    tokens: Cache<TokenKey, CachedToken>,
}

impl Transport {
    pub(crate) fn new(config: TransportConfig<'_>) -> Result<Transport, RegistryError> {
        crate::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.to_string())
            .danger_accept_invalid_certs(!config.tls_verify);
        let mut roots = Vec::new();
        for pem in config.extra_root_certificates {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::new(
                    RegistryErrorKind::Config,
                    format!("parsing extra root certificates: {}", error_chain(&e)),
                )
            })?;
            if certs.is_empty() {
                return Err(RegistryError::new(
                    RegistryErrorKind::Config,
                    "parsing extra root certificates: no PEM certificate found",
                ));
            }
            roots.extend(certs);
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        if let Some(t) = config.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = config.request_timeout {
            builder = builder.timeout(t);
        }
        let http = builder.build().map_err(|e| {
            RegistryError::new(
                RegistryErrorKind::Config,
                format!("building the HTTP client: {}", error_chain(&e)),
            )
        })?;
        Ok(Transport {
            http,
            tls_verify: config.tls_verify,
            pings: Cache::new(1024, Some(PING_TTL)),
            tokens: Cache::new(10_000, Some(Duration::from_secs(3600))),
        })
    }

    /// `detectProperties` for `host`, cached; concurrent callers share one ping.
    pub(crate) async fn properties(
        &self,
        host: &str,
    ) -> Result<Arc<RegistryProperties>, RegistryError> {
        self.pings
            .try_get_with(host, self.ping(host))
            .await
            .map_err(|e| (*e).clone())
    }

    async fn ping(&self, host: &str) -> Result<Arc<RegistryProperties>, RegistryError> {
        let mut result = self.ping_scheme(host, "https").await;
        if result.is_err() && !self.tls_verify {
            result = self.ping_scheme(host, "http").await;
        }
        result
            .map(Arc::new)
            .map_err(|e| e.context(format!("pinging container registry {host}")))
    }

    async fn ping_scheme(
        &self,
        host: &str,
        scheme: &'static str,
    ) -> Result<RegistryProperties, RegistryError> {
        let url = format!("{scheme}://{host}/v2/");
        let res = self
            .http
            .get(&url)
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .send()
            .await
            .map_err(|e| send_error(&Method::GET, &url, &e))?;
        let status = res.status();
        if status != StatusCode::OK && status != StatusCode::UNAUTHORIZED {
            return Err(registry_http_response_error(res).await);
        }
        let challenges = parse_challenges(res.headers());
        let supports_signatures = res
            .headers()
            .get("X-Registry-Supports-Signatures")
            .is_some_and(|v| v.as_bytes() == b"1");
        Ok(RegistryProperties {
            scheme,
            challenges,
            supports_signatures,
        })
    }

    /// A `GET` of `path` (starting with `/`) on `image`'s registry,
    /// authenticated for pulling `image`'s repository as c/image's
    /// `makeRequest(…, v2Auth)` is. The response is returned whatever its
    /// status; transport failures are errors.
    pub(crate) async fn get(
        &self,
        image: &Named,
        path: &str,
        accept: &[&str],
        credentials: &Credentials,
    ) -> Result<reqwest::Response, RegistryError> {
        let host = registry_host(image.domain());
        let props = self.properties(host).await?;
        let url = format!("{}://{host}{path}", props.scheme);
        let mut req = self
            .http
            .get(&url)
            .header("Docker-Distribution-API-Version", "registry/2.0");
        for a in accept {
            req = req.header(header::ACCEPT, *a);
        }
        let scope = format!("repository:{}:pull", image.path());
        req = self
            .authenticate(req, &props.challenges, &scope, credentials)
            .await?;
        req.send()
            .await
            .map_err(|e| send_error(&Method::GET, &url, &e))
    }

    /// `setupRequestAuth`: the first supported challenge of the ping decides.
    async fn authenticate(
        &self,
        req: reqwest::RequestBuilder,
        challenges: &[Challenge],
        scope: &str,
        credentials: &Credentials,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        for challenge in challenges {
            match challenge.scheme.as_str() {
                "basic" => {
                    return Ok(req.basic_auth(&credentials.username, Some(&credentials.password)));
                }
                "bearer" => {
                    let token = self.bearer_token(challenge, scope, credentials).await?;
                    return Ok(req.bearer_auth(token));
                }
                other => tracing::debug!("no handler for {other} authentication"),
            }
        }
        if !challenges.is_empty() {
            tracing::info!(
                "none of the challenges sent by the registry are supported, trying an unauthenticated request anyway"
            );
        }
        Ok(req)
    }

    async fn bearer_token(
        &self,
        challenge: &Challenge,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<String, RegistryError> {
        let realm = challenge.params.get("realm").ok_or_else(|| {
            RegistryError::new(
                RegistryErrorKind::InvalidResponse,
                "missing realm in bearer auth challenge",
            )
        })?;
        let service = challenge.params.get("service").cloned().unwrap_or_default();
        let key = TokenKey {
            realm: realm.clone(),
            service: service.clone(),
            scope: scope.to_string(),
            credentials: credentials.fingerprint(),
        };
        if let Some(t) = self.tokens.get(&key)
            && Instant::now() < t.expires
        {
            return Ok(t.token);
        }
        let fetched = self
            .fetch_token(realm, &service, scope, credentials)
            .await?;
        let token = fetched.token.clone();
        self.tokens.insert(key, fetched);
        Ok(token)
    }

    /// `getBearerToken`, or `getBearerTokenOAuth2` with an identity token.
    async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<CachedToken, RegistryError> {
        let mut url = url::Url::parse(realm).map_err(|e| {
            RegistryError::new(
                RegistryErrorKind::InvalidResponse,
                format!("invalid bearer token realm {realm:?}: {e}"),
            )
        })?;
        let (method, req, context) = if !credentials.identity_token.is_empty() {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            if !service.is_empty() {
                form.append_pair("service", service);
            }
            form.append_pair("scope", scope);
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", &credentials.identity_token);
            form.append_pair("client_id", "containers/image");
            let req = self
                .http
                .post(url.clone())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.finish());
            (Method::POST, req, "Trying to obtain access token")
        } else {
            {
                let mut q = url.query_pairs_mut();
                if !credentials.username.is_empty() {
                    q.append_pair("account", &credentials.username);
                }
                if !service.is_empty() {
                    q.append_pair("service", service);
                }
                q.append_pair("scope", scope);
            }
            let mut req = self.http.get(url.clone());
            if !credentials.username.is_empty() && !credentials.password.is_empty() {
                req = req.basic_auth(&credentials.username, Some(&credentials.password));
            }
            (Method::GET, req, "Requesting bearer token")
        };
        let res = req
            .send()
            .await
            .map_err(|e| send_error(&method, url.as_str(), &e))?;
        let status = res.status();
        if status != StatusCode::OK {
            return Err(http_response_error(res, context).await);
        }
        let body = read_capped(res, MAX_AUTH_TOKEN_BODY_SIZE).await?;
        parse_token_response(&body, url.as_str())
    }
}

/// `newBearerTokenFromHTTPResponseBody`.
fn parse_token_response(body: &[u8], url: &str) -> Result<CachedToken, RegistryError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        expires_in: i64,
        #[serde(default)]
        issued_at: Option<String>,
    }
    let decode_error = |e: String| {
        let sample = String::from_utf8_lossy(&body[..body.len().min(50)]).into_owned();
        RegistryError::new(
            RegistryErrorKind::InvalidResponse,
            format!("decoding bearer token (last URL {url:?}, body start {sample:?}): {e}"),
        )
    };
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| decode_error(e.to_string()))?;
    let token = if parsed.token.is_empty() {
        parsed.access_token
    } else {
        parsed.token
    };
    if token.is_empty() {
        return Err(decode_error("the response has no token".into()));
    }
    let lifetime = Duration::from_secs(parsed.expires_in.max(0) as u64).max(MINIMUM_TOKEN_LIFETIME);
    let issued = match parsed.issued_at.as_deref() {
        None | Some("") => SystemTime::now(),
        Some(s) => humantime::parse_rfc3339_weak(s)
            .map_err(|e| decode_error(format!("parsing issued_at {s:?}: {e}")))?,
    };
    // Remaining lifetime from now, as a monotonic deadline.
    let remaining = (issued + lifetime)
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Ok(CachedToken {
        token,
        expires: Instant::now() + remaining,
    })
}

/// Parses every `WWW-Authenticate` header into challenges
/// (`iterateAuthHeader`): one challenge per header value.
pub(crate) fn parse_challenges(headers: &header::HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .collect()
}

fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim_start();
    let (scheme, mut rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end?;
            value = out;
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Reads a body, failing with c/image's `ReadAtMost` message once it is
/// longer than `limit`.
pub(crate) async fn read_capped(
    mut res: reqwest::Response,
    limit: usize,
) -> Result<Bytes, RegistryError> {
    let too_large = || {
        RegistryError::new(
            RegistryErrorKind::TooLarge,
            format!("exceeded maximum allowed size of {limit} bytes"),
        )
    };
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let url = res.url().to_string();
    let mut buf = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| send_error(&Method::GET, &url, &e))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Go's `url.Error` form for a failed request: `Get "https://…": <cause>`.
pub(crate) fn send_error(method: &Method, url: &str, e: &reqwest::Error) -> RegistryError {
    let kind = if e.is_timeout() {
        RegistryErrorKind::Timeout
    } else {
        RegistryErrorKind::Network
    };
    let mut cause = source_chain(e);
    if cause.is_empty() {
        cause = e.to_string();
    }
    if kind == RegistryErrorKind::Timeout && !cause.contains("timed out") {
        cause.push_str(" (timed out)");
    }
    let m = method.as_str();
    let go_method = format!("{}{}", &m[..1], m[1..].to_ascii_lowercase());
    RegistryError::new(kind, format!("{go_method} {url:?}: {cause}"))
}

/// The `source()` chain of an error, without the top-level message.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last().is_none_or(|p| p != &text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// An error with its whole `source()` chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let chain = source_chain(e);
    if chain.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {chain}")
    }
}

fn kind_for_status(status: StatusCode) -> RegistryErrorKind {
    match status.as_u16() {
        401 => RegistryErrorKind::Unauthorized,
        403 => RegistryErrorKind::Denied,
        404 => RegistryErrorKind::NotFound,
        429 => RegistryErrorKind::TooManyRequests,
        400..=499 => RegistryErrorKind::Http,
        _ => RegistryErrorKind::Server,
    }
}

/// `httpResponseToError`, used for token endpoints.
async fn http_response_error(res: reqwest::Response, context: &str) -> RegistryError {
    let status = res.status();
    match status {
        StatusCode::TOO_MANY_REQUESTS => RegistryError::new(
            RegistryErrorKind::TooManyRequests,
            "too many requests to registry",
        ),
        StatusCode::UNAUTHORIZED => registry_http_response_error(res)
            .await
            .context("unable to retrieve auth token: invalid username/password"),
        _ => RegistryError::new(
            kind_for_status(status),
            format!(
                "{context}: invalid status code from registry {} ({})",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        ),
    }
}

/// `registryHTTPResponseToError`: the registry's error for a non-success
/// response, as c/image words it.
pub(crate) async fn registry_http_response_error(res: reqwest::Response) -> RegistryError {
    let status = res.status();
    let challenges = parse_challenges(res.headers());
    let body = if status.is_client_error() {
        read_capped(res, MAX_ERROR_BODY_SIZE)
            .await
            .unwrap_or_default()
    } else {
        Bytes::new()
    };
    registry_error_from_parts(status, &challenges, &body)
}

/// The pure part of [`registry_http_response_error`] (`handleErrorResponse`
/// plus the first-error and `StatusCode: …` formatting).
pub(crate) fn registry_error_from_parts(
    status: StatusCode,
    challenges: &[Challenge],
    body: &[u8],
) -> RegistryError {
    let mut kind = kind_for_status(status);
    if !status.is_client_error() {
        return RegistryError::new(kind, format!("received unexpected HTTP status: {status}"));
    }
    if status == StatusCode::UNAUTHORIZED {
        // OAuth errors in the challenge take precedence (RFC 6750 §3).
        for c in challenges.iter().filter(|c| c.scheme == "bearer") {
            let code = match c.params.get("error").map(String::as_str) {
                Some("invalid_token") => "UNAUTHORIZED",
                Some("insufficient_scope") => "DENIED",
                _ => continue,
            };
            let message = c
                .params
                .get("error_description")
                .filter(|d| !d.is_empty())
                .map(|d| registry_text(d))
                .unwrap_or_else(|| default_message(code).to_string());
            if code == "DENIED" {
                kind = RegistryErrorKind::Denied;
            }
            return RegistryError::new(kind, format!("{}: {message}", code_text(code)));
        }
    }
    match parse_error_body(status, body) {
        Some((code, text)) => {
            match code.as_str() {
                "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" => {
                    kind = RegistryErrorKind::NotFound
                }
                "DENIED" => kind = RegistryErrorKind::Denied,
                "TOOMANYREQUESTS" => kind = RegistryErrorKind::TooManyRequests,
                _ => {}
            }
            RegistryError::new(kind, registry_text(&text))
        }
        None if status == StatusCode::UNAUTHORIZED => RegistryError::new(
            kind,
            format!(
                "{}: {}",
                code_text("UNAUTHORIZED"),
                default_message("UNAUTHORIZED")
            ),
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            let shown = match text.char_indices().nth(50) {
                Some((i, _)) => format!("{}...", &text[..i]),
                None => text.into_owned(),
            };
            // Already bounded, and kept byte for byte as c/image shows it.
            RegistryError::new(kind, format!("StatusCode: {}, {shown}", status.as_u16()))
        }
    }
}

/// Longest registry-supplied text kept in an error (and so in a denial).
const MAX_REGISTRY_TEXT: usize = 512;

/// Registry-supplied text (a JSON error's `message`, a challenge's
/// `error_description`) as it goes into an error message: c/image quotes it
/// verbatim, but here it ends up in an AdmissionResponse shown by
/// kubectl, so a hostile registry must not fill it (the error body may be
/// 1 MiB) or break it into lines. Control characters become spaces; past
/// [`MAX_REGISTRY_TEXT`] characters it is cut with an ellipsis. Ordinary
/// messages are unchanged.
fn registry_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_REGISTRY_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_REGISTRY_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// `parseHTTPErrorResponse` reduced to the first error: `(code, text)`, or
/// `None` when the body is not a distribution error document.
fn parse_error_body(status: StatusCode, body: &[u8]) -> Option<(String, String)> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = doc.as_object()?;
    let field = |name: &str| {
        obj.iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    // The legacy `{"details": "…"}` form.
    if let Some(details) = field("details")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty())
    {
        let code = match status.as_u16() {
            401 => "UNAUTHORIZED",
            429 => "TOOMANYREQUESTS",
            _ => "UNKNOWN",
        };
        return Some((code.into(), format!("{}: {details}", code_text(code))));
    }
    let first = field("errors")?.as_array()?.first()?.as_object()?;
    let get = |name: &str| {
        first
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let raw_code = get("code").and_then(|c| c.as_str()).unwrap_or("");
    // Codes c/image does not know decode as UNKNOWN.
    let code = if KNOWN_CODES.iter().any(|(c, _)| *c == raw_code) {
        raw_code
    } else {
        "UNKNOWN"
    };
    let message = get("message").and_then(|m| m.as_str()).unwrap_or("");
    let has_detail = get("detail").is_some_and(|d| !d.is_null());
    // errcode.Errors.UnmarshalJSON keeps only the code when there is no
    // detail and the message is empty or the code's default.
    let text = if !has_detail && (message.is_empty() || message == default_message(code)) {
        code_text(code)
    } else {
        format!("{}: {message}", code_text(code))
    };
    Some((code.to_string(), text))
}

/// `ErrorCode.Error()`: `MANIFEST_UNKNOWN` → `manifest unknown`.
fn code_text(code: &str) -> String {
    code.replace('_', " ").to_lowercase()
}

/// The error codes registered in c/image's binary (docker/distribution's
/// `errcode` and `api/v2`) with their default messages.
const KNOWN_CODES: &[(&str, &str)] = &[
    ("UNKNOWN", "unknown error"),
    ("UNSUPPORTED", "The operation is unsupported."),
    ("UNAUTHORIZED", "authentication required"),
    ("DENIED", "requested access to the resource is denied"),
    ("UNAVAILABLE", "service unavailable"),
    ("TOOMANYREQUESTS", "too many requests"),
    (
        "DIGEST_INVALID",
        "provided digest did not match uploaded content",
    ),
    (
        "SIZE_INVALID",
        "provided length did not match content length",
    ),
    ("NAME_INVALID", "invalid repository name"),
    ("TAG_INVALID", "manifest tag did not match URI"),
    ("NAME_UNKNOWN", "repository name not known to registry"),
    ("MANIFEST_UNKNOWN", "manifest unknown"),
    ("MANIFEST_INVALID", "manifest invalid"),
    (
        "MANIFEST_UNVERIFIED",
        "manifest failed signature verification",
    ),
    ("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
    ("BLOB_UNKNOWN", "blob unknown to registry"),
    ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
    ("BLOB_UPLOAD_INVALID", "blob upload invalid"),
    (
        "PAGINATION_NUMBER_INVALID",
        "invalid number of results requested",
    ),
    ("RANGE_INVALID", "invalid content range"),
];

fn default_message(code: &str) -> &'static str {
    KNOWN_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown error", |(_, m)| m)
}

/// `simplifyContentType`: the media type without parameters, lower-cased;
/// `""` when the header is absent or malformed (Go's `mime.ParseMediaType`).
pub(crate) fn simplify_content_type(value: Option<&header::HeaderValue>) -> String {
    let Some(text) = value.and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let is_token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c))
    };
    let valid_type = match media.split_once('/') {
        Some((t, sub)) => is_token(t) && is_token(sub),
        None => is_token(&media),
    };
    if !valid_type {
        return String::new();
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let Some((k, v)) = param.split_once('=') else {
            return String::new();
        };
        let v = v.trim();
        let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        if !is_token(k.trim()) || !(quoted || is_token(v)) {
            return String::new();
        }
    }
    media
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        for v in values {
            h.append(header::WWW_AUTHENTICATE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn challenges() {
        let c = parse_challenges(&headers(&[
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
            "Basic realm=\"x\"",
            "Negotiate",
        ]));
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example/token");
        assert_eq!(c[0].params["service"], "registry.example");
        assert_eq!(c[0].params["scope"], "repository:a/b:pull");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[2].scheme, "negotiate");
        assert!(c[2].params.is_empty());
        let c = parse_challenges(&headers(&[
            r#"BEARER Realm=http://t/x , Error="invalid_token",error_description="a \"b\"""#,
        ]));
        assert_eq!(c[0].params["realm"], "http://t/x");
        assert_eq!(c[0].params["error"], "invalid_token");
        assert_eq!(c[0].params["error_description"], "a \"b\"");
        // An unterminated quote drops the header.
        assert!(parse_challenges(&headers(&[r#"Bearer realm="x"#])).is_empty());
    }

    #[test]
    fn registry_text_is_bounded_and_on_one_line() {
        let huge = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"{}"}}]}}"#,
            "x".repeat(1 << 20)
        );
        let e = registry_error_from_parts(StatusCode::FORBIDDEN, &[], huge.as_bytes());
        assert_eq!(e.kind(), RegistryErrorKind::Denied);
        assert!(
            e.to_string().chars().count() < MAX_REGISTRY_TEXT + 64,
            "{}",
            e.to_string().len()
        );
        assert!(e.to_string().ends_with('…'));
        let e = registry_error_from_parts(
            StatusCode::TOO_MANY_REQUESTS,
            &[],
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down\nplease"}]}"#,
        );
        assert_eq!(e.kind(), RegistryErrorKind::TooManyRequests);
        assert!(e.to_string().ends_with("slow down please"), "{e}");
        assert_eq!(
            registry_text("repository name not known to registry"),
            "repository name not known to registry"
        );
    }

    #[test]
    fn error_bodies_in_c_image_words() {
        let e = |status: u16, body: &str| {
            registry_error_from_parts(StatusCode::from_u16(status).unwrap(), &[], body.as_bytes())
        };
        let r = e(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"missing"}}]}"#,
        );
        assert_eq!(r.message(), "manifest unknown: manifest unknown");
        assert_eq!(r.kind(), RegistryErrorKind::NotFound);
        assert_eq!(
            e(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .message(),
            "manifest unknown"
        );
        assert_eq!(
            e(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#).message(),
            "name unknown: repository name not known to registry"
        );
        assert_eq!(
            e(
                400,
                r#"{"errors":[{"code":"WEIRD","message":"odd"},{"code":"DENIED"}]}"#
            )
            .message(),
            "unknown: odd"
        );
        let r = e(403, r#"{"errors":[{"code":"DENIED","message":"nope"}]}"#);
        assert_eq!(
            (r.kind(), r.message()),
            (RegistryErrorKind::Denied, "denied: nope")
        );
        let r = e(404, "404 page not found\n");
        assert_eq!(r.message(), "StatusCode: 404, 404 page not found\n");
        assert_eq!(r.kind(), RegistryErrorKind::NotFound);
        let long = "x".repeat(80);
        assert_eq!(
            e(400, &long).message(),
            format!("StatusCode: 400, {}...", "x".repeat(50))
        );
        assert_eq!(
            e(404, r#"{"errors":[]}"#).message(),
            "StatusCode: 404, {\"errors\":[]}"
        );
        assert_eq!(e(404, r#"{"details":"gone"}"#).message(), "unknown: gone");
        let r = e(401, "");
        assert_eq!(r.message(), "unauthorized: authentication required");
        assert_eq!(r.kind(), RegistryErrorKind::Unauthorized);
        let r = e(500, "boom");
        assert_eq!(
            r.message(),
            "received unexpected HTTP status: 500 Internal Server Error"
        );
        assert_eq!(r.kind(), RegistryErrorKind::Server);
        let challenge = parse_challenges(&headers(&[
            r#"Bearer realm="x",error="insufficient_scope",error_description="no pull""#,
        ]));
        let r = registry_error_from_parts(StatusCode::UNAUTHORIZED, &challenge, b"{}");
        assert_eq!(
            (r.kind(), r.message()),
            (RegistryErrorKind::Denied, "denied: no pull")
        );
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, "http://t").unwrap();
        assert_eq!(t.token, "abc");
        assert!(t.expires > Instant::now() + Duration::from_secs(200));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, "http://t").unwrap();
        assert_eq!(t.token, "xyz");
        // Short lifetimes are raised to the 60 s minimum.
        let t = parse_token_response(br#"{"token":"a","expires_in":1}"#, "http://t").unwrap();
        assert!(t.expires > Instant::now() + Duration::from_secs(30));
        // Issued long ago: already expired, so not reused.
        let t = parse_token_response(
            br#"{"token":"a","expires_in":60,"issued_at":"2001-01-01T00:00:00Z"}"#,
            "http://t",
        )
        .unwrap();
        assert!(t.expires <= Instant::now());
        let e = parse_token_response(b"<html>", "http://t/token")
            .err()
            .unwrap();
        assert!(
            e.message().starts_with(
                r#"decoding bearer token (last URL "http://t/token", body start "<html>"): "#
            ),
            "{e}"
        );
        assert!(parse_token_response(b"{}", "http://t").is_err());
    }

    #[test]
    fn content_types() {
        let ct = |s: &str| simplify_content_type(Some(&header::HeaderValue::from_str(s).unwrap()));
        assert_eq!(
            ct("application/vnd.oci.image.index.v1+json"),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(ct("Application/JSON; charset=utf-8"), "application/json");
        assert_eq!(ct("text/plain; charset=\"utf-8\""), "text/plain");
        assert_eq!(ct("a/b; broken"), "");
        assert_eq!(ct("a b/c"), "");
        assert_eq!(simplify_content_type(None), "");
    }

    #[test]
    fn docker_hub_host() {
        assert_eq!(registry_host("docker.io"), "registry-1.docker.io");
        assert_eq!(registry_host("quay.io"), "quay.io");
    }
}
