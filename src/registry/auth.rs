//! Registry credentials: containers auth files and docker `config.json`
//! (`c/image/pkg/docker/config`), and the per-request credential lookup the
//! registry client takes.
//!
//! The same parser reads Kubernetes pull secrets: a
//! `kubernetes.io/dockerconfigjson` secret is a `config.json`, a
//! `kubernetes.io/dockercfg` secret is the legacy `.dockercfg` map
//! ([`AuthFile::parse_legacy`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::reference::Named;
use crate::strictjson::{self, JsonValue};

/// A credentials lookup or auth-file error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Credentials for one registry (c/image's `types.DockerAuthConfig`).
///
/// An identity token is an OAuth2 refresh token (what `docker login` stores
/// for some registries): it is exchanged at the token endpoint
/// (`grant_type=refresh_token`), never sent to the registry itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

impl Credentials {
    /// No credentials: anonymous access.
    pub fn anonymous() -> Credentials {
        Credentials::default()
    }

    /// A user name and password (or access token used as a password).
    pub fn basic(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            identity_token: String::new(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_empty()
    }

    /// A digest of the secret material, so caches can key tokens by the
    /// credentials that obtained them without holding a second copy.
    pub(crate) fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.username, &self.password, &self.identity_token] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for Credentials {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field(
                "password",
                &(!self.password.is_empty()).then_some("<redacted>"),
            )
            .field(
                "identity_token",
                &(!self.identity_token.is_empty()).then_some("<redacted>"),
            )
            .finish()
    }
}

/// Where a request's credentials come from. The registry client asks for
/// every request, so callers can supply per-request sources (for example a
/// pod's pull secrets ahead of imagegate's own).
pub trait CredentialSource: Send + Sync {
    /// Credentials for `image` (`GetCredentialsForRef`, keyed by
    /// `image.name()`). `Ok(None)` means this source has no entry, so a
    /// [`CredentialChain`] moves on to the next one.
    fn lookup(&self, image: &Named) -> Result<Option<Credentials>, AuthError>;

    /// Every credential for `image`, in the order to try them. c/image has
    /// one per registry (the default), but the kubelet, given several
    /// matching pull secrets, tries each in turn until a pull succeeds; the
    /// registry client does the same so that a stale first secret does not
    /// deny what the node would pull.
    fn lookup_all(&self, image: &Named) -> Result<Vec<Credentials>, AuthError> {
        Ok(self.lookup(image)?.into_iter().collect())
    }
}

/// A source with no credentials at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn lookup(&self, _image: &Named) -> Result<Option<Credentials>, AuthError> {
        Ok(None)
    }
}

/// Fixed credentials, used for every image (like `skopeo --creds`).
impl CredentialSource for Credentials {
    fn lookup(&self, _image: &Named) -> Result<Option<Credentials>, AuthError> {
        Ok((!self.is_anonymous()).then(|| self.clone()))
    }
}

/// Sources tried in order; the first that has an entry wins, as c/image
/// walks its auth files. An error in a source is returned at once.
#[derive(Clone, Default)]
pub struct CredentialChain(pub Vec<Arc<dyn CredentialSource>>);

impl CredentialSource for CredentialChain {
    fn lookup(&self, image: &Named) -> Result<Option<Credentials>, AuthError> {
        for source in &self.0 {
            if let Some(c) = source.lookup(image)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

impl<T: CredentialSource + ?Sized> CredentialSource for Arc<T> {
    fn lookup(&self, image: &Named) -> Result<Option<Credentials>, AuthError> {
        (**self).lookup(image)
    }

    fn lookup_all(&self, image: &Named) -> Result<Vec<Credentials>, AuthError> {
        (**self).lookup_all(image)
    }
}

/// One `auths` entry.
#[derive(Clone, Default, PartialEq, Eq)]
struct AuthEntry {
    auth: String,
    identity_token: String,
    // `username`/`password` are not read by c/image but are written by some
    // tools and honoured by docker and the kubelet when `auth` is absent.
    username: String,
    password: String,
}

/// A parsed containers auth file, docker `config.json` or legacy
/// `.dockercfg`.
#[derive(Clone, Default)]
pub struct AuthFile {
    /// Entries in document order; a repeated key keeps its first position and
    /// its last value, as a Go map filled in document order does.
    auths: Vec<(String, AuthEntry)>,
    cred_helpers: BTreeMap<String, String>,
    legacy: bool,
    /// Names the file in messages (a path or `secret ns/name`).
    source: String,
}

impl fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFile")
            .field("source", &self.source)
            .field(
                "keys",
                &self.auths.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("cred_helpers", &self.cred_helpers)
            .field("legacy", &self.legacy)
            .finish()
    }
}

impl AuthFile {
    /// Parses an auth file in the current format (`{"auths": {…},
    /// "credHelpers": {…}}`); other top-level keys are ignored.
    pub fn parse(bytes: &[u8], source: &str) -> Result<AuthFile, AuthError> {
        let doc = parse_json(bytes, source)?;
        let (auths, helpers) = match &doc {
            JsonValue::Null => (None, None),
            JsonValue::Object(entries) => {
                (go_field(entries, "auths"), go_field(entries, "credHelpers"))
            }
            other => {
                return Err(unmarshal_error(
                    source,
                    &strictjson::cannot_unmarshal(other, "$", "config.dockerConfigFile").message,
                ));
            }
        };
        let mut file = AuthFile {
            source: source.to_string(),
            ..AuthFile::default()
        };
        if let Some(a) = auths {
            file.auths = parse_auth_map(a, "$.auths", source)?;
        }
        if let Some(h) = helpers {
            match h {
                JsonValue::Object(entries) => {
                    for (k, v) in entries {
                        let path = strictjson::child_path("$.credHelpers", k);
                        let helper = strictjson::go_string(v, &path)
                            .map_err(|e| unmarshal_error(source, &e.message))?;
                        file.cred_helpers.insert(k.clone(), helper);
                    }
                }
                other => {
                    return Err(unmarshal_error(
                        source,
                        &strictjson::cannot_unmarshal(other, "$.credHelpers", "map[string]string")
                            .message,
                    ));
                }
            }
        }
        Ok(file)
    }

    /// Parses a legacy `.dockercfg` file (the `auths` map at top level, keys
    /// usually `https://host/v1/`), also the payload of a
    /// `kubernetes.io/dockercfg` secret.
    pub fn parse_legacy(bytes: &[u8], source: &str) -> Result<AuthFile, AuthError> {
        let doc = parse_json(bytes, source)?;
        let auths = match &doc {
            JsonValue::Null => Vec::new(),
            value => parse_auth_map(value, "$", source)?,
        };
        Ok(AuthFile {
            auths,
            cred_helpers: BTreeMap::new(),
            legacy: true,
            source: source.to_string(),
        })
    }

    /// Reads and parses an auth file; a missing file has no entries, as in
    /// c/image.
    pub fn load(path: &Path) -> Result<AuthFile, AuthError> {
        let source = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => AuthFile::parse(&bytes, &source),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile {
                source,
                ..AuthFile::default()
            }),
            Err(e) => Err(AuthError(format!("reading JSON file {source:?}: {e}"))),
        }
    }

    /// `findCredentialsInFile`: credentials for `key`, a repository
    /// (`host/ns/repo`), namespace or registry host.
    ///
    /// Exact keys from the most specific (`host/ns/repo`, `host/ns`, `host`;
    /// only `host` in legacy files), then any key that normalizes to the host
    /// (`https://host/v1/`, `http://host`; `docker.io`,
    /// `index.docker.io` and `registry-1.docker.io` are one registry). The
    /// first key found decides, even if its entry is empty (then `None`).
    pub fn find(&self, key: &str) -> Result<Option<Credentials>, AuthError> {
        let registry = key.split_once('/').map_or(key, |(r, _)| r);
        if let Some(helper) = self.cred_helpers.get(registry) {
            return Err(AuthError(format!(
                "credential helper {helper:?} configured for {registry} in {} is not supported; store the credentials in \"auths\"",
                self.source
            )));
        }
        let get = |k: &str| self.auths.iter().find(|(key, _)| key == k);
        if self.legacy {
            if let Some((k, e)) = get(registry) {
                return self.decode(k, e);
            }
        } else {
            let mut candidate = key;
            loop {
                if let Some((k, e)) = get(candidate) {
                    return self.decode(k, e);
                }
                match candidate.rfind('/') {
                    Some(i) => candidate = &candidate[..i],
                    None => break,
                }
            }
        }
        let normalized = normalize_registry(registry);
        if let Some((k, e)) = self
            .auths
            .iter()
            .find(|(k, _)| normalize_auth_file_key(k, self.legacy) == normalized)
        {
            return self.decode(k, e);
        }
        Ok(None)
    }

    /// `decodeDockerAuth`.
    fn decode(&self, key: &str, e: &AuthEntry) -> Result<Option<Credentials>, AuthError> {
        if e.auth.is_empty() && !e.username.is_empty() {
            return Ok(Some(Credentials {
                username: e.username.clone(),
                password: e.password.clone(),
                identity_token: e.identity_token.clone(),
            }));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(e.auth.as_bytes())
            .map_err(|err| {
                AuthError(format!(
                    "decoding the \"auth\" field of credential entry {key:?} in {}: {err}",
                    self.source
                ))
            })?;
        let decoded = String::from_utf8_lossy(&decoded);
        // Without a colon the entry is skipped, as docker does (docker writes
        // empty entries next to credential helpers).
        let Some((user, password)) = decoded.split_once(':') else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            username: user.to_string(),
            password: password.trim_matches('\0').to_string(),
            identity_token: e.identity_token.clone(),
        }))
    }
}

impl CredentialSource for AuthFile {
    fn lookup(&self, image: &Named) -> Result<Option<Credentials>, AuthError> {
        self.find(&image.name())
    }
}

/// `normalizeRegistry`: the docker.io host names are one registry.
fn normalize_registry(registry: &str) -> &str {
    match registry {
        "registry-1.docker.io" | "docker.io" => "index.docker.io",
        other => other,
    }
}

/// `normalizeAuthFileKey`: a URL key (`https://host/v1/`) becomes its host.
fn normalize_auth_file_key(key: &str, legacy: bool) -> &str {
    let stripped = key.strip_prefix("http://").unwrap_or(key);
    let stripped = stripped.strip_prefix("https://").unwrap_or(stripped);
    let host = if legacy || stripped.len() != key.len() {
        stripped.split_once('/').map_or(stripped, |(h, _)| h)
    } else {
        stripped
    };
    normalize_registry(host)
}

fn parse_json(bytes: &[u8], source: &str) -> Result<JsonValue, AuthError> {
    strictjson::parse(bytes).map_err(|e| unmarshal_error(source, &e.message))
}

fn unmarshal_error(source: &str, message: &str) -> AuthError {
    AuthError(format!("unmarshaling JSON at {source:?}: {message}"))
}

/// Go's case-insensitive struct-field match: the last key that matches.
fn go_field<'a>(entries: &'a [(String, JsonValue)], name: &str) -> Option<&'a JsonValue> {
    entries
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !matches!(v, JsonValue::Null))
}

/// A `map[string]dockerAuthConfig`.
fn parse_auth_map(
    value: &JsonValue,
    path: &str,
    source: &str,
) -> Result<Vec<(String, AuthEntry)>, AuthError> {
    let entries = match value {
        JsonValue::Object(entries) => entries,
        other => {
            return Err(unmarshal_error(
                source,
                &strictjson::cannot_unmarshal(other, path, "map[string]config.dockerAuthConfig")
                    .message,
            ));
        }
    };
    let mut out: Vec<(String, AuthEntry)> = Vec::new();
    for (key, v) in entries {
        let entry_path = strictjson::child_path(path, key);
        let fields: &[(String, JsonValue)] = match v {
            JsonValue::Object(f) => f,
            JsonValue::Null => &[],
            other => {
                return Err(unmarshal_error(
                    source,
                    &strictjson::cannot_unmarshal(other, &entry_path, "config.dockerAuthConfig")
                        .message,
                ));
            }
        };
        let string = |name: &str| -> Result<String, AuthError> {
            match go_field(fields, name) {
                None => Ok(String::new()),
                Some(v) => strictjson::go_string(v, &strictjson::child_path(&entry_path, name))
                    .map_err(|e| unmarshal_error(source, &e.message)),
            }
        };
        let entry = AuthEntry {
            auth: string("auth")?,
            identity_token: string("identitytoken")?,
            username: string("username")?,
            password: string("password")?,
        };
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = entry,
            None => out.push((key.clone(), entry)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn named(s: &str) -> Named {
        Named::parse_normalized(s).unwrap()
    }

    fn user(c: Option<Credentials>) -> Option<String> {
        c.map(|c| format!("{}:{}", c.username, c.password))
    }

    #[test]
    fn most_specific_key_wins() {
        let doc = format!(
            r#"{{"auths":{{
                "quay.io":{{"auth":"{}"}},
                "quay.io/ns":{{"auth":"{}"}},
                "quay.io/ns/repo":{{"auth":"{}"}},
                "quay.io/other/repo":{{"auth":"{}"}}
            }}}}"#,
            b64("host:h"),
            b64("ns:n"),
            b64("repo:r"),
            b64("other:o")
        );
        let f = AuthFile::parse(doc.as_bytes(), "auth.json").unwrap();
        assert_eq!(
            user(f.lookup(&named("quay.io/ns/repo:v1")).unwrap()).unwrap(),
            "repo:r"
        );
        assert_eq!(
            user(f.lookup(&named("quay.io/ns/app")).unwrap()).unwrap(),
            "ns:n"
        );
        assert_eq!(
            user(f.lookup(&named("quay.io/ns/repo/sub")).unwrap()).unwrap(),
            "repo:r"
        );
        assert_eq!(
            user(f.lookup(&named("quay.io/x/y")).unwrap()).unwrap(),
            "host:h"
        );
        assert_eq!(f.lookup(&named("example.com/x")).unwrap(), None);
        // Keys are prefixes at path boundaries only.
        assert_eq!(user(f.find("quay.io/nsx/a").unwrap()).unwrap(), "host:h");
    }

    #[test]
    fn docker_io_and_url_keys() {
        let doc = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"http://reg.example:5000/v2/":{{"auth":"{}"}}}}}}"#,
            b64("hub:p"),
            b64("reg:q")
        );
        let f = AuthFile::parse(doc.as_bytes(), "config.json").unwrap();
        assert_eq!(user(f.lookup(&named("busybox")).unwrap()).unwrap(), "hub:p");
        assert_eq!(
            user(f.lookup(&named("docker.io/library/busybox")).unwrap()).unwrap(),
            "hub:p"
        );
        assert_eq!(
            user(f.lookup(&named("reg.example:5000/a/b")).unwrap()).unwrap(),
            "reg:q"
        );
        assert_eq!(f.lookup(&named("reg.example/a")).unwrap(), None);
        // A plain key with a path is not a URL, so it is not cut at "/".
        let doc = format!(
            r#"{{"auths":{{"registry-1.docker.io":{{"auth":"{}"}}}}}}"#,
            b64("r1:x")
        );
        let f = AuthFile::parse(doc.as_bytes(), "config.json").unwrap();
        assert_eq!(user(f.lookup(&named("busybox")).unwrap()).unwrap(), "r1:x");
    }

    #[test]
    fn legacy_format() {
        let doc = format!(
            r#"{{"https://index.docker.io/v1/":{{"auth":"{}","email":"x@example.com"}},"quay.io/ns":{{"auth":"{}"}}}}"#,
            b64("old:pw"),
            b64("ns:n")
        );
        let f = AuthFile::parse_legacy(doc.as_bytes(), "secret default/pull").unwrap();
        assert_eq!(user(f.lookup(&named("alpine")).unwrap()).unwrap(), "old:pw");
        // Legacy files match hosts only: keys are cut at the first "/".
        assert_eq!(
            user(f.lookup(&named("quay.io/other/repo")).unwrap()).unwrap(),
            "ns:n"
        );
    }

    #[test]
    fn entry_decoding() {
        let doc = format!(
            r#"{{"auths":{{
                "a.example":{{"auth":"{}","identitytoken":"refresh"}},
                "b.example":{{}},
                "c.example":{{"auth":"{}"}},
                "d.example":{{"username":"u","password":"p"}},
                "e.example":{{"auth":"!!"}},
                "f.example":{{"auth":"{}"}}
            }},"other":1}}"#,
            b64("<token>:"),
            b64("nocolon"),
            b64("u:p\0\0")
        );
        let f = AuthFile::parse(doc.as_bytes(), "auth.json").unwrap();
        let a = f.find("a.example").unwrap().unwrap();
        assert_eq!(a.username, "<token>");
        assert_eq!(a.identity_token, "refresh");
        assert!(f.find("b.example").unwrap().is_none());
        assert!(f.find("c.example").unwrap().is_none());
        assert_eq!(user(f.find("d.example").unwrap()).unwrap(), "u:p");
        assert!(f.find("e.example").unwrap_err().0.contains("\"e.example\""));
        assert_eq!(user(f.find("f.example").unwrap()).unwrap(), "u:p");
        // An empty most-specific entry decides: no fallback to the host.
        let doc = format!(
            r#"{{"auths":{{"g.example":{{"auth":"{}"}},"g.example/ns":{{}}}}}}"#,
            b64("host:h")
        );
        let f = AuthFile::parse(doc.as_bytes(), "auth.json").unwrap();
        assert!(f.find("g.example/ns/repo").unwrap().is_none());
    }

    #[test]
    fn go_json_rules_and_errors() {
        // Field names match case-insensitively; the last repeated key wins.
        let doc = format!(
            r#"{{"Auths":{{"h.example":{{"Auth":"{}"}},"h.example":{{"auth":"{}"}}}}}}"#,
            b64("first:1"),
            b64("second:2")
        );
        let f = AuthFile::parse(doc.as_bytes(), "auth.json").unwrap();
        assert_eq!(user(f.find("h.example").unwrap()).unwrap(), "second:2");
        assert!(
            AuthFile::parse(b"null", "x")
                .unwrap()
                .find("a")
                .unwrap()
                .is_none()
        );
        assert!(
            AuthFile::parse(b"{}", "x")
                .unwrap()
                .find("a")
                .unwrap()
                .is_none()
        );
        for bad in [
            &b"[]"[..],
            b"{\"auths\":[]}",
            b"{\"auths\":{\"a\":{\"auth\":1}}}",
            b"{",
        ] {
            let e = AuthFile::parse(bad, "auth.json").unwrap_err();
            assert!(
                e.0.starts_with("unmarshaling JSON at \"auth.json\": "),
                "{e}"
            );
        }
        let helper =
            AuthFile::parse(br#"{"credHelpers":{"gcr.io":"gcloud"}}"#, "config.json").unwrap();
        assert!(helper.find("gcr.io/p/i").unwrap_err().0.contains("gcloud"));
        assert!(helper.find("quay.io/p/i").unwrap().is_none());
    }

    #[test]
    fn missing_file_is_empty() {
        let f = AuthFile::load(Path::new("/nonexistent/imagegate/auth.json")).unwrap();
        assert!(f.find("quay.io").unwrap().is_none());
    }

    #[test]
    fn chains_and_fixed_credentials() {
        let doc = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("file:f")
        );
        let file: Arc<dyn CredentialSource> =
            Arc::new(AuthFile::parse(doc.as_bytes(), "auth.json").unwrap());
        let fixed: Arc<dyn CredentialSource> = Arc::new(Credentials::basic("fixed", "x"));
        let chain = CredentialChain(vec![Arc::new(Anonymous), file.clone(), fixed.clone()]);
        assert_eq!(
            user(chain.lookup(&named("quay.io/a")).unwrap()).unwrap(),
            "file:f"
        );
        assert_eq!(
            user(chain.lookup(&named("example.com/a")).unwrap()).unwrap(),
            "fixed:x"
        );
        assert_eq!(Anonymous.lookup(&named("a")).unwrap(), None);
        assert_eq!(Credentials::anonymous().lookup(&named("a")).unwrap(), None);
        let dbg = format!("{:?}", Credentials::basic("u", "secret"));
        assert!(!dbg.contains("secret"), "{dbg}");
        assert_ne!(
            Credentials::basic("a", "bc").fingerprint(),
            Credentials::basic("ab", "c").fingerprint()
        );
    }
}
