//! Registry credentials from Kubernetes pull secrets (DESIGN decision 10):
//! the pod's `imagePullSecrets`, then those of its ServiceAccount, then the
//! secrets configured for imagegate in its own namespace.
//!
//! Within each of those three tiers the secrets form one keyring with the
//! kubelet's semantics (`pkg/credentialprovider`): entries keyed by a
//! URL-ish string (optional `http(s)://`, optional path, `/v1/` or `/v2/`
//! ignored), matched against the image's repository with the port equal,
//! the same number of DNS labels, a glob per label (`*.example.com`), and
//! the key's path a string prefix of the repository path; every matching
//! key contributes, most specific (reverse-sorted) first; Docker Hub
//! images fall back to an `index.docker.io` entry. Secrets are read on
//! demand through a short-lived cache, never watched cluster-wide.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{PodSpec, Secret, ServiceAccount};
use kube::{Api, Client};
use serde_json::Value;

use crate::cache::Cache;

/// `type` of a Secret holding a docker `config.json`.
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// `type` of a Secret holding a legacy `.dockercfg`.
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";
/// The data key of a `kubernetes.io/dockercfg` Secret.
pub const KEY_DOCKERCFG: &str = ".dockercfg";

/// The kubelet's key for Docker Hub credentials (`https://index.docker.io/v1/`).
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// A user name and password for a registry, with where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct PullCredential {
    pub username: String,
    pub password: String,
    /// `secret NAMESPACE/NAME`, for diagnostics.
    pub source: String,
}

impl fmt::Debug for PullCredential {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// One entry of a docker config: the kubelet's `DockerConfigEntry`.
#[derive(Clone, Default, PartialEq, Eq)]
struct ConfigEntry {
    username: String,
    password: String,
}

/// A parsed pull secret: `(key, entry)` in document order.
#[derive(Clone, Default)]
pub struct DockerConfig {
    entries: Vec<(String, ConfigEntry)>,
}

impl fmt::Debug for DockerConfig {
    /// Keys and user names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, e)| (k, &e.username)))
            .finish()
    }
}

impl DockerConfig {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses a `.dockerconfigjson` document (`{"auths": {KEY: ENTRY}}`).
pub fn parse_docker_config_json(bytes: &[u8]) -> Result<DockerConfig, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(top) = v else {
        return Err("expected a JSON object".into());
    };
    // Go's encoding/json matches field names case-insensitively, last one wins.
    let mut auths = None;
    for (k, v) in &top {
        if k.eq_ignore_ascii_case("auths") {
            auths = Some(v);
        }
    }
    match auths {
        None | Some(Value::Null) => Ok(DockerConfig::default()),
        Some(v) => parse_entries(v, "auths"),
    }
}

/// Parses a legacy `.dockercfg` document (`{KEY: ENTRY}`).
pub fn parse_dockercfg(bytes: &[u8]) -> Result<DockerConfig, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    parse_entries(&v, "")
}

fn parse_entries(v: &Value, what: &str) -> Result<DockerConfig, String> {
    let Value::Object(map) = v else {
        return Err(if what.is_empty() {
            "expected a JSON object".into()
        } else {
            format!("{what}: expected a JSON object")
        });
    };
    let mut entries = Vec::new();
    for (key, entry) in map {
        entries.push((
            key.clone(),
            parse_entry(entry).map_err(|e| format!("{key:?}: {e}"))?,
        ));
    }
    Ok(DockerConfig { entries })
}

/// One entry: `username`/`password`, overridden by `auth`
/// (base64 of `user:password`) when that is present.
fn parse_entry(v: &Value) -> Result<ConfigEntry, String> {
    let map = match v {
        Value::Object(m) => m,
        Value::Null => return Ok(ConfigEntry::default()),
        _ => return Err("expected a JSON object".into()),
    };
    let mut entry = ConfigEntry::default();
    let mut auth = String::new();
    for (k, v) in map {
        let slot = match k.to_ascii_lowercase().as_str() {
            "username" => &mut entry.username,
            "password" => &mut entry.password,
            "auth" => &mut auth,
            // `email` and unknown fields are ignored by the kubelet.
            _ => continue,
        };
        match v {
            Value::String(s) => *slot = s.clone(),
            Value::Null => {}
            _ => return Err(format!("{k}: expected a string")),
        }
    }
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.as_bytes())
            .map_err(|e| format!("auth: {e}"))?;
        let decoded = String::from_utf8_lossy(&decoded);
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            "unable to parse auth field, must be formatted as base64(username:password)".to_string()
        })?;
        entry.username = user.to_string();
        entry.password = password.to_string();
    }
    Ok(entry)
}

/// The kubelet's `BasicDockerKeyring`: credentials by normalised key.
#[derive(Clone, Default)]
pub struct DockerKeyring {
    /// Keys, deduplicated, in reverse lexicographic order.
    index: Vec<String>,
    creds: HashMap<String, Vec<PullCredential>>,
}

impl DockerKeyring {
    /// Adds every entry of `config` (read from `source`).
    pub fn add(&mut self, config: &DockerConfig, source: &str) {
        for (loc, entry) in &config.entries {
            let Some(key) = normalise_key(loc) else {
                tracing::debug!(%source, key = %loc, "pull secret key is not a URL; ignored");
                continue;
            };
            self.creds
                .entry(key.clone())
                .or_default()
                .push(PullCredential {
                    username: entry.username.clone(),
                    password: entry.password.clone(),
                    source: source.to_string(),
                });
            self.index.push(key);
        }
        let set: BTreeSet<String> = self.index.drain(..).collect();
        self.index = set.into_iter().rev().collect();
    }

    /// The credentials for `image`, a repository name without tag or
    /// digest as the kubelet sees it (`registry.example.com:5000/team/app`,
    /// `docker.io/library/ubuntu`), most specific key first.
    pub fn lookup(&self, image: &str) -> Vec<PullCredential> {
        let mut out = Vec::new();
        for key in &self.index {
            if urls_match(key, image) {
                out.extend(self.creds[key].iter().cloned());
            }
        }
        if out.is_empty()
            && is_default_registry_match(image)
            && let Some(c) = self.creds.get(DEFAULT_REGISTRY_HOST)
        {
            out.extend(c.iter().cloned());
        }
        out
    }
}

/// A host with optional port, and a path (empty or starting with `/`),
/// from a URL without its scheme, as Go's `url.Parse` splits it.
struct SchemelessUrl {
    host: String,
    path: String,
}

fn parse_schemeless(s: &str) -> Option<SchemelessUrl> {
    let s = s.split('#').next().unwrap_or("");
    let s = s.split('?').next().unwrap_or("");
    let (authority, path) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    // Go rejects a non-numeric port.
    let (_, port) = split_host_port(host);
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(SchemelessUrl {
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// The kubelet's key for a config entry: scheme dropped, `/v1/` and `/v2/`
/// path prefixes dropped, `host` or `host/path`.
fn normalise_key(loc: &str) -> Option<String> {
    let rest = loc
        .strip_prefix("https://")
        .or_else(|| loc.strip_prefix("http://"))
        .unwrap_or(loc);
    let url = parse_schemeless(rest)?;
    let mut path = url.path.as_str();
    if path.starts_with("/v2/") || path.starts_with("/v1/") {
        path = &path[3..];
    }
    Some(if !path.is_empty() && path != "/" {
        format!("{}{path}", url.host)
    } else {
        url.host
    })
}

/// Go's `net.SplitHostPort`, with a host that has no port given whole.
fn split_host_port(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => match tail.strip_prefix(':') {
                Some(port) => (h, port),
                None => (host, ""),
            },
            None => (host, ""),
        };
    }
    match host.matches(':').count() {
        1 => host.split_once(':').unwrap_or((host, "")),
        _ => (host, ""),
    }
}

/// The kubelet's `URLsMatchStr(glob, target)`: ports equal, the same
/// number of DNS labels, each label matching as a glob, and the glob's
/// path a string prefix of the target's.
pub fn urls_match(glob: &str, target: &str) -> bool {
    let (Some(g), Some(t)) = (parse_schemeless(glob), parse_schemeless(target)) else {
        return false;
    };
    let (g_host, g_port) = split_host_port(&g.host);
    let (t_host, t_port) = split_host_port(&t.host);
    if g_port != t_port {
        return false;
    }
    let g_parts: Vec<&str> = g_host.split('.').collect();
    let t_parts: Vec<&str> = t_host.split('.').collect();
    if g_parts.len() != t_parts.len() {
        return false;
    }
    if !t.path.starts_with(&g.path) {
        return false;
    }
    g_parts
        .iter()
        .zip(&t_parts)
        .all(|(p, n)| glob_match(p, n).unwrap_or(false))
}

/// Whether `image` is pulled from Docker Hub: no registry host in its
/// first component, or `docker.io`/`index.docker.io`.
fn is_default_registry_match(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() {
        return true;
    }
    if first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':'])
}

#[derive(Debug)]
enum GlobToken {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Go's `filepath.Match` for a name without separators: `*`, `?`,
/// `[...]` / `[^...]` classes with ranges, `\` escapes. `None` for a
/// malformed pattern (which the kubelet treats as no match).
fn glob_match(pattern: &str, name: &str) -> Option<bool> {
    let tokens = parse_glob(pattern)?;
    let name: Vec<char> = name.chars().collect();
    Some(match_tokens(&tokens, &name))
}

fn parse_glob(pattern: &str) -> Option<Vec<GlobToken>> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(GlobToken::Star),
            '?' => out.push(GlobToken::Any),
            '\\' => out.push(GlobToken::Char(chars.next()?)),
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                let mut ranges = Vec::new();
                loop {
                    let mut lo = chars.next()?;
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    if lo == ']' || lo == '-' {
                        return None;
                    }
                    if lo == '\\' {
                        lo = chars.next()?;
                    }
                    let mut hi = lo;
                    if chars.next_if_eq(&'-').is_some() {
                        hi = chars.next()?;
                        if hi == ']' || hi == '-' {
                            return None;
                        }
                        if hi == '\\' {
                            hi = chars.next()?;
                        }
                    }
                    ranges.push((lo, hi));
                }
                out.push(GlobToken::Class { negated, ranges });
            }
            c => out.push(GlobToken::Char(c)),
        }
    }
    Some(out)
}

fn match_tokens(tokens: &[GlobToken], name: &[char]) -> bool {
    match tokens.split_first() {
        None => name.is_empty(),
        Some((GlobToken::Star, rest)) => (0..=name.len()).any(|i| match_tokens(rest, &name[i..])),
        Some((tok, rest)) => {
            let Some((&c, tail)) = name.split_first() else {
                return false;
            };
            let ok = match tok {
                GlobToken::Char(p) => *p == c,
                GlobToken::Any => true,
                GlobToken::Class { negated, ranges } => {
                    ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
                }
                GlobToken::Star => unreachable!("handled above"),
            };
            ok && match_tokens(rest, tail)
        }
    }
}

/// The keyring of a set of Secrets, as the kubelet's `MakeDockerKeyring`
/// builds it: only `kubernetes.io/dockerconfigjson` Secrets with a
/// non-empty `.dockerconfigjson` and `kubernetes.io/dockercfg` Secrets with
/// a non-empty `.dockercfg` count; a malformed one is an error.
pub fn keyring_from_secrets<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<DockerKeyring, PullSecretError> {
    let mut ring = DockerKeyring::default();
    for s in secrets {
        let source = secret_source(s);
        if let Some(cfg) = parse_secret(s).map_err(|reason| PullSecretError::Malformed {
            secret: source.clone(),
            reason,
        })? {
            ring.add(&cfg, &source);
        }
    }
    Ok(ring)
}

fn secret_source(s: &Secret) -> String {
    format!(
        "secret {}/{}",
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or("")
    )
}

/// The docker config a Secret holds, `None` for Secrets of other types.
fn parse_secret(s: &Secret) -> Result<Option<DockerConfig>, String> {
    let data = |key: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
    };
    match s.type_.as_deref() {
        Some(SECRET_TYPE_DOCKER_CONFIG_JSON) => match data(KEY_DOCKER_CONFIG_JSON) {
            Some(b) => parse_docker_config_json(b)
                .map(Some)
                .map_err(|e| format!("{KEY_DOCKER_CONFIG_JSON}: {e}")),
            None => Ok(None),
        },
        Some(SECRET_TYPE_DOCKERCFG) => match data(KEY_DOCKERCFG) {
            Some(b) => parse_dockercfg(b)
                .map(Some)
                .map_err(|e| format!("{KEY_DOCKERCFG}: {e}")),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PullSecretError {
    /// A pull secret the pod depends on cannot be parsed (the kubelet's
    /// pull would fail too).
    #[error("pull secret {secret} is malformed: {reason}")]
    Malformed { secret: String, reason: String },
}

/// What a pod (or pod template) says about pulling: its namespace,
/// `imagePullSecrets` and ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodPullContext {
    pub namespace: String,
    pub image_pull_secrets: Vec<String>,
    /// `None` means the namespace's `default` ServiceAccount.
    pub service_account: Option<String>,
}

impl PodPullContext {
    pub fn from_pod_spec(namespace: &str, spec: &PodSpec) -> PodPullContext {
        PodPullContext {
            namespace: namespace.to_string(),
            image_pull_secrets: spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            service_account: spec
                .service_account_name
                .clone()
                .or_else(|| spec.service_account.clone())
                .filter(|n| !n.is_empty()),
        }
    }

    fn service_account_name(&self) -> &str {
        self.service_account.as_deref().unwrap_or("default")
    }
}

/// How pull secrets are read.
#[derive(Clone, Debug)]
pub struct PullSecretsConfig {
    /// Secrets in imagegate's namespace used after the pod's and its
    /// ServiceAccount's.
    pub secret_names: Vec<String>,
    /// How long a Secret or ServiceAccount read is reused.
    pub cache_ttl: Duration,
    /// Bound on cached Secrets and ServiceAccounts.
    pub cache_capacity: u64,
}

impl Default for PullSecretsConfig {
    fn default() -> PullSecretsConfig {
        PullSecretsConfig {
            secret_names: Vec::new(),
            cache_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
        }
    }
}

type ObjectKey = (String, String);

/// Resolves pull credentials for pods, reading Secrets on demand.
pub struct PullSecretResolver {
    client: Client,
    namespace: String,
    config: PullSecretsConfig,
    secrets: Cache<ObjectKey, Option<Arc<Secret>>>,
    service_accounts: Cache<ObjectKey, Arc<Vec<String>>>,
}

impl PullSecretResolver {
    /// `namespace` is imagegate's own (where configured secrets live).
    pub fn new(client: Client, namespace: &str, config: PullSecretsConfig) -> PullSecretResolver {
        PullSecretResolver {
            secrets: Cache::new(config.cache_capacity, Some(config.cache_ttl)),
            service_accounts: Cache::new(config.cache_capacity, Some(config.cache_ttl)),
            client,
            namespace: namespace.to_string(),
            config,
        }
    }

    /// Credential candidates for `image` (a repository name, see
    /// [`DockerKeyring::lookup`]), in the order to try them: the pod's
    /// secrets, its ServiceAccount's, imagegate's; duplicates removed.
    /// Secrets that are missing or unreadable are skipped (logged), as the
    /// kubelet does; a malformed one is an error.
    pub async fn credentials(
        &self,
        pod: &PodPullContext,
        image: &str,
    ) -> Result<Vec<PullCredential>, PullSecretError> {
        let mut out: Vec<PullCredential> = Vec::new();
        let push_all = |found: Vec<PullCredential>, out: &mut Vec<PullCredential>| {
            for c in found {
                if !out
                    .iter()
                    .any(|o| o.username == c.username && o.password == c.password)
                {
                    out.push(c);
                }
            }
        };

        let pod_secrets = self
            .read_secrets(&pod.namespace, &pod.image_pull_secrets)
            .await;
        push_all(
            keyring_from_secrets(pod_secrets.iter().map(|s| s.as_ref()))?.lookup(image),
            &mut out,
        );

        let sa_names = self
            .service_account_secrets(&pod.namespace, pod.service_account_name())
            .await;
        let sa_secrets = self.read_secrets(&pod.namespace, &sa_names).await;
        push_all(
            keyring_from_secrets(sa_secrets.iter().map(|s| s.as_ref()))?.lookup(image),
            &mut out,
        );

        let own = self
            .read_secrets(&self.namespace, &self.config.secret_names)
            .await;
        push_all(
            keyring_from_secrets(own.iter().map(|s| s.as_ref()))?.lookup(image),
            &mut out,
        );
        Ok(out)
    }

    async fn read_secrets(&self, namespace: &str, names: &[String]) -> Vec<Arc<Secret>> {
        let mut out = Vec::new();
        for name in names {
            let key = (namespace.to_string(), name.clone());
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let fetched = self
                .secrets
                .try_get_with(&key, async move {
                    match api.get_opt(name).await {
                        Ok(s) => Ok(s.map(Arc::new)),
                        Err(e) => Err(e),
                    }
                })
                .await;
            match fetched {
                Ok(Some(s)) => out.push(s),
                Ok(None) => {
                    tracing::warn!(%namespace, secret = %name, "pull secret not found; skipped");
                }
                Err(e) => {
                    tracing::warn!(%namespace, secret = %name, error = %e, "pull secret not readable; skipped");
                }
            }
        }
        out
    }

    async fn service_account_secrets(&self, namespace: &str, name: &str) -> Vec<String> {
        let key = (namespace.to_string(), name.to_string());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let fetched = self
            .service_accounts
            .try_get_with(&key, async move {
                let sa = api.get_opt(name).await?;
                Ok::<_, kube::Error>(Arc::new(
                    sa.and_then(|sa| sa.image_pull_secrets)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| r.name)
                        .filter(|n| !n.is_empty())
                        .collect(),
                ))
            })
            .await;
        match fetched {
            Ok(names) => names.as_ref().clone(),
            Err(e) => {
                tracing::warn!(%namespace, service_account = %name, error = %e, "service account not readable; its pull secrets are skipped");
                Vec::new()
            }
        }
    }

    /// Drops every cached read (the next lookups read the API again).
    pub fn invalidate(&self) {
        self.secrets.invalidate_all();
        self.service_accounts.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn ring(json: &str) -> DockerKeyring {
        let mut r = DockerKeyring::default();
        r.add(&parse_docker_config_json(json.as_bytes()).unwrap(), "test");
        r
    }

    fn users(c: &[PullCredential]) -> Vec<&str> {
        c.iter().map(|c| c.username.as_str()).collect()
    }

    #[test]
    fn port_must_match() {
        let r = ring(r#"{"auths":{"registry.example.com":{"username":"a","password":"p"}}}"#);
        assert_eq!(users(&r.lookup("registry.example.com/team/app")), ["a"]);
        assert!(r.lookup("registry.example.com:5000/team/app").is_empty());
        let r = ring(r#"{"auths":{"registry.example.com:5000":{"username":"b","password":"p"}}}"#);
        assert_eq!(
            users(&r.lookup("registry.example.com:5000/team/app")),
            ["b"]
        );
        assert!(r.lookup("registry.example.com/team/app").is_empty());
    }

    #[test]
    fn wildcard_per_label() {
        let r = ring(r#"{"auths":{"*.example.com":{"username":"w","password":"p"}}}"#);
        assert_eq!(users(&r.lookup("registry.example.com/app")), ["w"]);
        assert!(
            r.lookup("example.com/app").is_empty(),
            "label count differs"
        );
        assert!(r.lookup("a.b.example.com/app").is_empty(), "* is one label");
        let r = ring(r#"{"auths":{"registry.*.com":{"username":"m","password":"p"}}}"#);
        assert_eq!(users(&r.lookup("registry.example.com/app")), ["m"]);
        let r = ring(r#"{"auths":{"reg-[0-9].example.com":{"username":"c","password":"p"}}}"#);
        assert_eq!(users(&r.lookup("reg-7.example.com/app")), ["c"]);
        assert!(r.lookup("reg-x.example.com/app").is_empty());
    }

    #[test]
    fn path_prefix_and_specificity() {
        let r = ring(
            r#"{"auths":{
                "registry.example.com":{"username":"host","password":"p"},
                "https://registry.example.com/team":{"username":"team","password":"p"},
                "registry.example.com/other":{"username":"other","password":"p"}}}"#,
        );
        assert_eq!(
            users(&r.lookup("registry.example.com/team/app")),
            ["team", "host"]
        );
        assert_eq!(users(&r.lookup("registry.example.com/solo/app")), ["host"]);
        // A plain string prefix, as the kubelet compares.
        assert_eq!(
            users(&r.lookup("registry.example.com/teamster/app")),
            ["team", "host"]
        );
    }

    #[test]
    fn scheme_and_api_version_paths_are_dropped() {
        assert_eq!(
            normalise_key("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(
            normalise_key("http://r.example.com/v2/team").unwrap(),
            "r.example.com/team"
        );
        assert_eq!(
            normalise_key("r.example.com:443").unwrap(),
            "r.example.com:443"
        );
        assert_eq!(normalise_key("r.example.com:abc"), None);
    }

    #[test]
    fn docker_hub_fallback() {
        let r =
            ring(r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"p"}}}"#);
        assert_eq!(users(&r.lookup("docker.io/library/ubuntu")), ["hub"]);
        assert!(r.lookup("quay.io/team/app").is_empty());
        assert!(is_default_registry_match("library/ubuntu"));
        assert!(is_default_registry_match("ubuntu"));
        assert!(!is_default_registry_match("localhost:5000/app"));
    }

    #[test]
    fn auth_field_overrides_username_and_password() {
        let json = format!(
            r#"{{"auths":{{"r.example.com":{{"username":"ignored","password":"x","auth":"{}"}}}}}}"#,
            b64("alice:s3:cret")
        );
        let r = ring(&json);
        let c = r.lookup("r.example.com/app");
        assert_eq!(
            (c[0].username.as_str(), c[0].password.as_str()),
            ("alice", "s3:cret")
        );
        let bad = format!(r#"{{"auths":{{"r":{{"auth":"{}"}}}}}}"#, b64("nocolon"));
        assert!(
            parse_docker_config_json(bad.as_bytes())
                .unwrap_err()
                .contains("must be formatted as base64(username:password)")
        );
        assert!(parse_docker_config_json(br#"{"auths":{"r":{"auth":"!!"}}}"#).is_err());
        assert!(parse_docker_config_json(br#"{"auths":{"r":{"username":1}}}"#).is_err());
    }

    #[test]
    fn field_names_are_case_insensitive() {
        let r = ring(r#"{"Auths":{"r.example.com":{"Username":"u","PASSWORD":"p"}}}"#);
        let c = r.lookup("r.example.com/app");
        assert_eq!((c[0].username.as_str(), c[0].password.as_str()), ("u", "p"));
    }

    #[test]
    fn legacy_dockercfg() {
        let cfg = parse_dockercfg(
            format!(
                r#"{{"https://r.example.com":{{"auth":"{}","email":"e@x"}}}}"#,
                b64("u:p")
            )
            .as_bytes(),
        )
        .unwrap();
        let mut r = DockerKeyring::default();
        r.add(&cfg, "legacy");
        assert_eq!(users(&r.lookup("r.example.com/a/b")), ["u"]);
    }

    #[test]
    fn globs_follow_go_filepath_match() {
        assert_eq!(glob_match("*", "anything"), Some(true));
        assert_eq!(glob_match("a?c", "abc"), Some(true));
        assert_eq!(glob_match("[^a]bc", "abc"), Some(false));
        assert_eq!(glob_match("[^a]bc", "xbc"), Some(true));
        assert_eq!(glob_match("\\*", "*"), Some(true));
        assert_eq!(glob_match("[", "a"), None);
        assert_eq!(glob_match("[]", "a"), None);
        assert_eq!(glob_match("a\\", "a"), None);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("h:5000"), ("h", "5000"));
        assert_eq!(split_host_port("h"), ("h", ""));
        assert_eq!(split_host_port("[::1]:5000"), ("::1", "5000"));
        assert!(urls_match("[::1]:5000", "[::1]:5000/app"));
        assert!(!urls_match("[::1]:5000", "[::1]:5001/app"));
    }

    #[test]
    fn debug_hides_passwords() {
        let c = PullCredential {
            username: "u".into(),
            password: "topsecret".into(),
            source: "s".into(),
        };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
