//! Reading signature blobs from a lookaside store (semantics §5.4, c/image
//! `appendSignaturesFromLookaside`/`getOneSignature`) and decoding the body
//! of the registry signature API extension (§6.1).
//!
//! The reader fetches `signature-1`, `signature-2`, … under a repository base
//! URL (built by [`crate::signature::registries_d`]) one at a time until the
//! first missing one; a 128th existing signature is an error. `file` URLs are
//! read from the local filesystem, `http`/`https` URLs with a GET that never
//! carries registry credentials; every other outcome than "found" or "not
//! found" fails the whole read, as it fails the pull on the node.
//!
//! Bodies are returned raw: classifying them (`FromBlob`) is the caller's job
//! ([`crate::signature::blob::from_blob`]), and
//! [`LookasideSignature::parse_error`] words a classification failure as
//! c/image does.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::reference::Digest;
use crate::signature::registries_d::go_url::GoUrl;
use crate::signature::registries_d::{go_errno_text, go_quote, signature_url};
use crate::strictjson::{self, JsonValue};

/// `maxLookasideSignatures`: when `signature-1` … `signature-128` all exist
/// the read fails instead of asking for `signature-129`, so at most 127
/// signatures can be returned.
pub const MAX_LOOKASIDE_SIGNATURES: usize = 128;

/// `iolimits.MaxSignatureBodySize`: the largest signature blob accepted.
pub const MAX_SIGNATURE_BODY_SIZE: u64 = 4 * 1024 * 1024;

/// `iolimits.MaxSignatureListBodySize`: the largest API-extension response
/// body the caller should read before [`parse_extension_signatures`].
pub const MAX_SIGNATURE_LIST_BODY_SIZE: u64 = 4 * 1024 * 1024;

/// How many HTTP redirects one signature fetch follows by default.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Bounds on one [`read_signatures`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLimits {
    /// The largest signature body, in bytes; larger bodies fail the read.
    pub max_body_size: u64,
    /// Redirects followed per signature before giving up.
    pub max_redirects: usize,
    /// Time allowed for fetching one signature (all its redirects and its
    /// body); `None` for no per-signature limit.
    pub request_timeout: Option<Duration>,
    /// A point after which the whole read is abandoned; `None` for none.
    pub deadline: Option<Instant>,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_body_size: MAX_SIGNATURE_BODY_SIZE,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            request_timeout: Some(Duration::from_secs(10)),
            deadline: None,
        }
    }
}

/// Sees every HTTP request the reader makes, for metrics: the `host[:port]`
/// asked, and the response status, or `None` when no response arrived
/// (connection error, timeout). Each redirect hop is one request.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, host: &str, status: Option<u16>);
}

impl<F: Fn(&str, Option<u16>) + Send + Sync> RequestObserver for F {
    fn observe(&self, host: &str, status: Option<u16>) {
        self(host, status)
    }
}

/// One signature blob as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookasideSignature {
    /// The signature's URL, with any password redacted.
    pub url: String,
    /// How c/image names this signature in a blob error: the Go-quoted file
    /// path for `file` URLs, the redacted URL otherwise.
    pub location: String,
    /// The raw blob.
    pub body: Vec<u8>,
}

impl LookasideSignature {
    /// c/image's wording for a blob that `FromBlob` refuses:
    /// `parsing signature <location>: <error>`.
    pub fn parse_error(&self, error: impl fmt::Display) -> String {
        format!("parsing signature {}: {error}", self.location)
    }
}

/// Why reading from a lookaside store failed; any of these fails the whole
/// signature read (and, on the node, the pull).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookasideError {
    #[error(
        "server provided {MAX_LOOKASIDE_SIGNATURES} signatures, assuming that's unreasonable and a server error"
    )]
    TooManySignatures,
    /// The URL is neither `file`, `http` nor `https` (a bare path included).
    #[error("Unsupported scheme when reading signature from {url}")]
    UnsupportedScheme { url: String },
    /// An HTTP status other than 200, 404 or a followed redirect.
    #[error("reading signature from {url}: status {status} ({})", go_status_text(*.status))]
    HttpStatus { url: String, status: u16 },
    /// The body is larger than the limit (`iolimits.ReadAtMost` wording).
    #[error("exceeded maximum allowed size of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// A local file could not be opened or read (`ENOENT` is not an error:
    /// it ends the list). Go's `*PathError` shape: `open <path>: <reason>`.
    #[error("{op} {path}: {reason}")]
    File {
        op: &'static str,
        path: String,
        reason: String,
    },
    /// The request could not be made or its response not read.
    #[error("reading signature from {url}: {reason}")]
    Network { url: String, reason: String },
    /// A redirect was refused: too many, an `https` to `http` downgrade, a
    /// bad `Location`, or a scheme other than `http`/`https`.
    #[error("reading signature from {url}: {reason}")]
    Redirect { url: String, reason: String },
    /// Fetching one signature took longer than [`ReadLimits::request_timeout`].
    #[error("reading signature from {url}: timed out after {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    /// [`ReadLimits::deadline`] passed.
    #[error("reading signature from {url}: deadline exceeded")]
    DeadlineExceeded { url: String },
}

impl LookasideError {
    /// The (redacted) URL or path the error is about, if it is about one.
    pub fn url(&self) -> Option<&str> {
        match self {
            LookasideError::TooManySignatures => None,
            LookasideError::File { path, .. } => Some(path),
            LookasideError::UnsupportedScheme { url }
            | LookasideError::HttpStatus { url, .. }
            | LookasideError::TooLarge { url, .. }
            | LookasideError::Network { url, .. }
            | LookasideError::Redirect { url, .. }
            | LookasideError::Timeout { url, .. }
            | LookasideError::DeadlineExceeded { url } => Some(url),
        }
    }
}

/// A client builder suited to [`read_signatures`]: redirects are left to the
/// reader (which caps them and refuses `https` → `http`), so a client passed
/// to it must not follow redirects itself. Add TLS roots and proxies as the
/// registry client has them; never default credentials headers.
pub fn client_builder() -> reqwest::ClientBuilder {
    crate::ensure_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Reads every signature of `digest` under `repo_base` (the
/// `<top level>/<repository path>` URL from
/// [`RegistryConfiguration::lookaside_base_url`](crate::signature::registries_d::RegistryConfiguration::lookaside_base_url)),
/// in order, stopping at the first missing one.
///
/// `client` should come from [`client_builder`]; it is shared so
/// connections are reused. `observer` is told about every HTTP request.
pub async fn read_signatures(
    repo_base: &GoUrl,
    digest: &Digest,
    client: &reqwest::Client,
    limits: &ReadLimits,
    observer: Option<&dyn RequestObserver>,
) -> Result<Vec<LookasideSignature>, LookasideError> {
    let mut signatures = Vec::new();
    for index in 0..MAX_LOOKASIDE_SIGNATURES {
        let url = signature_url(repo_base, digest, index);
        match fetch_bounded(&url, client, limits, observer).await? {
            Some(signature) => signatures.push(signature),
            None => return Ok(signatures),
        }
    }
    Err(LookasideError::TooManySignatures)
}

/// One signature, within the per-signature timeout and the overall deadline.
async fn fetch_bounded(
    url: &GoUrl,
    client: &reqwest::Client,
    limits: &ReadLimits,
    observer: Option<&dyn RequestObserver>,
) -> Result<Option<LookasideSignature>, LookasideError> {
    // Whichever comes first: this signature's timeout or the overall deadline.
    let mut stop = limits
        .request_timeout
        .map(|after| (Instant::now() + after, Some(after)));
    if let Some(deadline) = limits.deadline
        && stop.is_none_or(|(at, _)| deadline <= at)
    {
        stop = Some((deadline, None));
    }
    // The host being talked to when time runs out, for the observer.
    let current_host = Mutex::new(None::<String>);
    let fetch = fetch_one(url, client, limits, observer, &current_host);
    let Some((at, timeout)) = stop else {
        return fetch.await;
    };
    match tokio::time::timeout_at(at, fetch).await {
        Ok(result) => result,
        Err(_) => {
            let host = current_host.lock().ok().and_then(|mut h| h.take());
            if let (Some(observer), Some(host)) = (observer, host) {
                observer.observe(&host, None);
            }
            let url = url.redacted();
            Err(match timeout {
                Some(after) => LookasideError::Timeout { url, after },
                None => LookasideError::DeadlineExceeded { url },
            })
        }
    }
}

/// `getOneSignature`: `Ok(None)` means the signature does not exist.
async fn fetch_one(
    url: &GoUrl,
    client: &reqwest::Client,
    limits: &ReadLimits,
    observer: Option<&dyn RequestObserver>,
    current_host: &Mutex<Option<String>>,
) -> Result<Option<LookasideSignature>, LookasideError> {
    let shown = url.redacted();
    let body = match url.scheme() {
        "file" => read_file(url.path(), limits.max_body_size).await?,
        "http" | "https" => http_get(url, &shown, client, limits, observer, current_host).await?,
        _ => return Err(LookasideError::UnsupportedScheme { url: shown }),
    };
    Ok(body.map(|body| LookasideSignature {
        location: if url.scheme() == "file" {
            go_quote(&String::from_utf8_lossy(url.path()))
        } else {
            shown.clone()
        },
        url: shown,
        body,
    }))
}

#[cfg(unix)]
fn local_path(path: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(path).into()
}

#[cfg(not(unix))]
fn local_path(path: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(path).into_owned().into()
}

/// Reads a `file` URL's path (the host part is ignored, as in c/image).
/// c/image reads local files without a size limit; the same limit as for
/// HTTP bodies is applied here so a stray large file cannot exhaust memory.
async fn read_file(path: &[u8], limit: u64) -> Result<Option<Vec<u8>>, LookasideError> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let file_error = |op: &'static str, e: &std::io::Error| LookasideError::File {
        op,
        path: shown.clone(),
        reason: go_errno_text(e),
    };
    let file = match tokio::fs::File::open(local_path(path)).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error("open", &e)),
    };
    let mut body = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .await
        .map_err(|e| file_error("read", &e))?;
    if body.len() as u64 > limit {
        return Err(LookasideError::TooLarge { url: shown, limit });
    }
    Ok(Some(body))
}

/// `host[:port]` of a URL, for the observer.
fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// An error and its causes, `a: b: c`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// GET with manual redirects: 404 is `Ok(None)`, 200 the body, anything
/// else an error.
async fn http_get(
    url: &GoUrl,
    shown: &str,
    client: &reqwest::Client,
    limits: &ReadLimits,
    observer: Option<&dyn RequestObserver>,
    current_host: &Mutex<Option<String>>,
) -> Result<Option<Vec<u8>>, LookasideError> {
    let network = |reason: String| LookasideError::Network {
        url: shown.to_string(),
        reason,
    };
    let redirect = |reason: String| LookasideError::Redirect {
        url: shown.to_string(),
        reason,
    };
    if url.host().is_empty() {
        // Go's client refuses such a URL (`https:opaque`, `https:///x`); a
        // WHATWG parser would instead read a host out of it.
        return Err(network("http: no Host in request URL".to_string()));
    }
    let mut target = reqwest::Url::parse(&url.to_string()).map_err(|e| network(e.to_string()))?;
    let mut redirects = 0;
    loop {
        let host = authority(&target);
        if let Ok(mut current) = current_host.lock() {
            *current = Some(host.clone());
        }
        let observe = |status: Option<u16>| {
            if let Some(observer) = observer {
                observer.observe(&host, status);
            }
        };
        let response = match client.get(target.clone()).send().await {
            Ok(response) => response,
            Err(e) => {
                observe(None);
                return Err(network(error_chain(&e.without_url())));
            }
        };
        let status = response.status().as_u16();
        observe(Some(status));
        if let Ok(mut current) = current_host.lock() {
            *current = None;
        }
        // A client that follows redirects itself hides the hops; its final
        // URL still must not be a downgrade.
        if target.scheme() == "https" && response.url().scheme() == "http" {
            return Err(redirect(format!(
                "refusing redirect from https to http ({})",
                response.url()
            )));
        }
        match status {
            404 => return Ok(None),
            200 => {
                let content_type = response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if content_type
                    .split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
                {
                    tracing::warn!(
                        url = shown,
                        content_type,
                        "signature has Content-Type text/html, unexpected for a signature"
                    );
                }
                return read_body(response, shown, limits.max_body_size)
                    .await
                    .map(Some);
            }
            301 | 302 | 303 | 307 | 308 => {
                // Without a Location the response itself is the answer (as
                // Go's client returns it), and a 3xx is not a success.
                let Some(location) = response.headers().get(http::header::LOCATION) else {
                    return Err(LookasideError::HttpStatus {
                        url: shown.to_string(),
                        status,
                    });
                };
                if redirects >= limits.max_redirects {
                    return Err(redirect(format!("stopped after {redirects} redirects")));
                }
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                let next = target.join(&location).map_err(|e| {
                    redirect(format!(
                        "failed to parse Location header {}: {e}",
                        go_quote(&location)
                    ))
                })?;
                match (target.scheme(), next.scheme()) {
                    ("https", "http") => {
                        return Err(redirect(format!(
                            "refusing redirect from https to http ({next})"
                        )));
                    }
                    (_, "http" | "https") => {}
                    (_, other) => {
                        return Err(redirect(format!(
                            "refusing redirect to unsupported scheme {} ({next})",
                            go_quote(other)
                        )));
                    }
                }
                redirects += 1;
                target = next;
            }
            _ => {
                return Err(LookasideError::HttpStatus {
                    url: shown.to_string(),
                    status,
                });
            }
        }
    }
}

/// Streams a body, never holding more than `limit` bytes.
async fn read_body(
    mut response: reqwest::Response,
    shown: &str,
    limit: u64,
) -> Result<Vec<u8>, LookasideError> {
    let too_large = || LookasideError::TooLarge {
        url: shown.to_string(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| LookasideError::Network {
                url: shown.to_string(),
                reason: error_chain(&e.without_url()),
            })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
}

/// Go's `http.StatusText` (empty for unknown codes).
pub fn go_status_text(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// The API-extension body could not be decoded (`decoding signature list: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decoding signature list: {0}")]
pub struct ExtensionError(pub String);

/// The entry type c/image reads from the extension (`extensionSignature`).
#[derive(Default)]
struct ExtensionSignature {
    schema_version: i64,
    kind: String,
    content: Vec<u8>,
}

/// Decodes an `X-Registry-Supports-Signatures` signature list
/// (`{"signatures":[{"schemaVersion":2,"type":"atomic","content":"<base64>"}]}`)
/// and returns the blobs of the entries with `schemaVersion` 2 and type
/// `atomic`, in order; other entries are skipped silently.
///
/// Decoding follows Go's `encoding/json` into c/image's structs: keys match
/// case-insensitively, unknown keys are ignored, `null` leaves a field
/// unset, and a wrongly typed field or bad base64 anywhere fails the whole
/// list. The blobs are not classified with `FromBlob` (c/image hands them to
/// the mechanism as they are). Capping the body at
/// [`MAX_SIGNATURE_LIST_BODY_SIZE`] while reading it is the caller's job.
pub fn parse_extension_signatures(body: &[u8]) -> Result<Vec<Vec<u8>>, ExtensionError> {
    let value = strictjson::parse(body).map_err(|e| ExtensionError(e.message))?;
    let entries = match &value {
        JsonValue::Null => return Ok(Vec::new()),
        JsonValue::Object(entries) => entries,
        other => {
            return Err(ExtensionError(format!(
                "json: cannot unmarshal {} into Go value of type docker.extensionSignatureList",
                json_kind(other)
            )));
        }
    };
    // Go keeps decoding after a type error and reports the first one.
    let mut first_error: Option<String> = None;
    let mut signatures: Vec<ExtensionSignature> = Vec::new();
    for (key, value) in entries {
        if !key.eq_ignore_ascii_case("signatures") {
            continue;
        }
        match value {
            JsonValue::Null => signatures.clear(),
            JsonValue::Array(items) => {
                signatures = items
                    .iter()
                    .map(|item| decode_extension_signature(item, &mut first_error))
                    .collect();
            }
            other => record(
                &mut first_error,
                type_error(
                    other,
                    "extensionSignatureList.signatures",
                    "[]docker.extensionSignature",
                ),
            ),
        }
    }
    if let Some(error) = first_error {
        return Err(ExtensionError(error));
    }
    Ok(signatures
        .into_iter()
        .filter(|s| s.schema_version == 2 && s.kind == "atomic")
        .map(|s| s.content)
        .collect())
}

fn decode_extension_signature(
    item: &JsonValue,
    first_error: &mut Option<String>,
) -> ExtensionSignature {
    let mut signature = ExtensionSignature::default();
    let entries = match item {
        JsonValue::Object(entries) => entries,
        JsonValue::Null => return signature,
        other => {
            record(
                first_error,
                type_error(
                    other,
                    "extensionSignatureList.signatures",
                    "docker.extensionSignature",
                ),
            );
            return signature;
        }
    };
    for (key, value) in entries {
        let field = ["schemaVersion", "name", "type", "content"]
            .into_iter()
            .find(|f| f.eq_ignore_ascii_case(key));
        let Some(field) = field else { continue };
        let go_field = format!("extensionSignature.signatures.{field}");
        match (field, value) {
            (_, JsonValue::Null) => {}
            ("schemaVersion", JsonValue::Number(n)) => match n.as_i64() {
                Some(v) => signature.schema_version = v,
                None => record(
                    first_error,
                    format!(
                        "json: cannot unmarshal number {n} into Go struct field {go_field} of type int"
                    ),
                ),
            },
            ("name", JsonValue::String(_)) => {}
            ("type", JsonValue::String(s)) => signature.kind = s.clone(),
            ("content", JsonValue::String(s)) => match go_base64_decode(s) {
                Ok(bytes) => signature.content = bytes,
                Err(e) => record(first_error, e),
            },
            (field, other) => {
                let go_type = match field {
                    "schemaVersion" => "int",
                    "content" => "[]uint8",
                    _ => "string",
                };
                record(first_error, type_error(other, &go_field, go_type));
            }
        }
    }
    signature
}

fn record(first_error: &mut Option<String>, error: String) {
    first_error.get_or_insert(error);
}

fn type_error(value: &JsonValue, go_field: &str, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go struct field {go_field} of type {go_type}",
        json_kind(value)
    )
}

fn json_kind(value: &JsonValue) -> &'static str {
    match value {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "bool",
        JsonValue::Number(_) => "number",
        JsonValue::String(_) => "string",
        JsonValue::Array(_) => "array",
        JsonValue::Object(_) => "object",
    }
}

/// `base64.StdEncoding.DecodeString` as `encoding/json` uses it for
/// `[]byte`: padded standard alphabet, CR and LF ignored, non-zero trailing
/// bits tolerated.
fn go_base64_decode(s: &str) -> Result<Vec<u8>, String> {
    const GO_STD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    GO_STD.decode(cleaned.as_bytes()).map_err(|e| {
        let offset = match e {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            base64::DecodeError::InvalidLength(len) => len,
            base64::DecodeError::InvalidPadding => cleaned.len(),
        };
        format!("illegal base64 data at input byte {offset}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{HEX}")).unwrap()
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        client_builder().build().unwrap()
    }

    #[tokio::test]
    async fn file_store_reads_until_the_first_missing_signature() {
        let dir = tempfile::tempdir().unwrap();
        let sig_dir = dir.path().join(format!("ns/app@sha256={HEX}"));
        std::fs::create_dir_all(&sig_dir).unwrap();
        std::fs::write(sig_dir.join("signature-1"), b"\xa3first").unwrap();
        std::fs::write(sig_dir.join("signature-2"), b"").unwrap();
        std::fs::write(sig_dir.join("signature-4"), b"unreachable").unwrap();

        // The host part of a file URL is ignored.
        let base = GoUrl::parse(&format!(
            "file://ignored-host{}/ns/app",
            dir.path().display()
        ))
        .unwrap();
        let sigs = read_signatures(&base, &digest(), &client(), &ReadLimits::default(), None)
            .await
            .unwrap();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[0].body, b"\xa3first");
        assert_eq!(sigs[1].body, b"");
        let path1 = sig_dir.join("signature-1");
        assert_eq!(
            sigs[0].url,
            format!("file://ignored-host{}", path1.display())
        );
        assert_eq!(sigs[0].location, format!("\"{}\"", path1.display()));
        assert_eq!(
            sigs[0].parse_error("unrecognized signature format, starting with binary 0x2d"),
            format!(
                "parsing signature \"{}\": unrecognized signature format, starting with binary 0x2d",
                path1.display()
            )
        );
    }

    #[tokio::test]
    async fn file_store_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sig_dir = dir.path().join(format!("r@sha256={HEX}"));
        std::fs::create_dir_all(sig_dir.join("signature-1")).unwrap();
        let base = GoUrl::from_file_path(&format!("{}/r", dir.path().display()));
        let err = read_signatures(&base, &digest(), &client(), &ReadLimits::default(), None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("read {}/signature-1: is a directory", sig_dir.display())
        );

        std::fs::remove_dir(sig_dir.join("signature-1")).unwrap();
        std::fs::write(sig_dir.join("signature-1"), vec![0xa3; 11]).unwrap();
        let limits = ReadLimits {
            max_body_size: 10,
            ..ReadLimits::default()
        };
        let err = read_signatures(&base, &digest(), &client(), &limits, None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "exceeded maximum allowed size of 10 bytes");

        // No directory at all: no signatures.
        let none = GoUrl::from_file_path("/nonexistent/lookaside/r");
        let sigs = read_signatures(&none, &digest(), &client(), &ReadLimits::default(), None)
            .await
            .unwrap();
        assert!(sigs.is_empty());
    }

    #[tokio::test]
    async fn unsupported_schemes() {
        for (base, shown) in [
            (
                "/no/scheme/just/a/path/file/path/test",
                "/no/scheme/just/a/path/file/path/test",
            ),
            ("no/scheme/relative", "no/scheme/relative"),
            ("ftp://example.com/sigs", "ftp://example.com/sigs"),
            ("https:opaque", "https:opaque"),
        ] {
            let url = GoUrl::parse(base).unwrap();
            let err = read_signatures(&url, &digest(), &client(), &ReadLimits::default(), None)
                .await
                .unwrap_err();
            if base.starts_with("https") {
                // An opaque URL has no host: c/image fails in the HTTP client.
                assert_eq!(
                    err.to_string(),
                    "reading signature from https:opaque: http: no Host in request URL"
                );
                continue;
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "Unsupported scheme when reading signature from {shown}@sha256={HEX}/signature-1"
                )
            );
        }
    }

    #[test]
    fn the_read_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let base = GoUrl::from_file_path("/nonexistent");
        let (client, limits, digest) = (client(), ReadLimits::default(), digest());
        let observer = |_: &str, _: Option<u16>| {};
        let read = read_signatures(&base, &digest, &client, &limits, Some(&observer));
        assert_send(&read);
    }

    #[test]
    fn status_texts_are_gos() {
        let err = LookasideError::HttpStatus {
            url: "https://x/s".into(),
            status: 500,
        };
        assert_eq!(
            err.to_string(),
            "reading signature from https://x/s: status 500 (Internal Server Error)"
        );
        assert_eq!(go_status_text(413), "Request Entity Too Large");
        assert_eq!(go_status_text(599), "");
        assert_eq!(
            LookasideError::TooManySignatures.to_string(),
            "server provided 128 signatures, assuming that's unreasonable and a server error"
        );
    }

    #[test]
    fn extension_bodies() {
        let body = br#"{"signatures":[
            {"schemaVersion":2,"name":"sha256:x@1","type":"atomic","content":"oAEC"},
            {"schemaVersion":1,"type":"atomic","content":"AAAA"},
            {"schemaVersion":2,"type":"other","content":"AAAA"},
            {"SchemaVersion":2,"TYPE":"atomic","Content":"LS0t\nLS0=","unknown":[1]},
            {"schemaVersion":2,"type":"atomic"},
            null
        ],"extra":true}"#;
        let sigs = parse_extension_signatures(body).unwrap();
        assert_eq!(
            sigs,
            vec![vec![0xa0, 0x01, 0x02], b"-----".to_vec(), vec![]]
        );

        assert!(parse_extension_signatures(b"null").unwrap().is_empty());
        assert!(parse_extension_signatures(b"{}").unwrap().is_empty());
        assert!(
            parse_extension_signatures(br#"{"signatures":null}"#)
                .unwrap()
                .is_empty()
        );

        let err = |b: &[u8]| parse_extension_signatures(b).unwrap_err().to_string();
        assert_eq!(
            err(b"[]"),
            "decoding signature list: json: cannot unmarshal array into Go value of type docker.extensionSignatureList"
        );
        assert_eq!(
            err(br#"{"signatures":[{"schemaVersion":"2"}]}"#),
            "decoding signature list: json: cannot unmarshal string into Go struct field extensionSignature.signatures.schemaVersion of type int"
        );
        assert_eq!(
            err(br#"{"signatures":[{"schemaVersion":2.5}]}"#),
            "decoding signature list: json: cannot unmarshal number 2.5 into Go struct field extensionSignature.signatures.schemaVersion of type int"
        );
        // A bad entry fails the list even if it would have been skipped.
        assert_eq!(
            err(br#"{"signatures":[{"schemaVersion":1,"content":"@@@@"}]}"#),
            "decoding signature list: illegal base64 data at input byte 0"
        );
        assert_eq!(
            err(br#"{"signatures":{}}"#),
            "decoding signature list: json: cannot unmarshal object into Go struct field extensionSignatureList.signatures of type []docker.extensionSignature"
        );
        assert_eq!(
            err(b"{"),
            "decoding signature list: unexpected end of JSON input"
        );
        assert!(err(br#"{"signatures":[{"content":"YQ"}]}"#).contains("illegal base64 data"));
    }
}
