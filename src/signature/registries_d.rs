//! containers-registries.d: where lookaside signature stores are, per image
//! scope (semantics §5.1–5.3, c/image `docker/registries_d.go`).
//!
//! A configuration is a set of YAML documents, each with an optional
//! `default-docker` section and a `docker` map from scope to section. The
//! documents are merged; defining `default-docker`, or the same `docker`
//! scope, in two documents is an error. A section names a base URL for
//! reading (`lookaside`, legacy `sigstore`) and for writing
//! (`lookaside-staging`, legacy `sigstore-staging`), and whether sigstore
//! attachments are used.
//!
//! Lookup is not "longest prefix wins": scopes are tried in the policy.json
//! order (identity, repository, parent namespaces, host:port, `*.` wildcards),
//! then `default-docker`, and a section that has no URL for the access wanted
//! falls through to the next candidate. With nothing configured a built-in
//! default (`file:///var/lib/containers/sigstore` for root) is used.
//!
//! URLs are parsed and printed with [`go_url::GoUrl`], a reimplementation of
//! Go's `net/url` parse/print rules: c/image appends the repository path to
//! the parsed URL's `Path` and prints it back, which keeps double slashes,
//! queries and fragments, accepts bare paths such as `/srv/sigs`, and refuses
//! `:emptyscheme`; a WHATWG parser (the `url` crate) does none of that the
//! same way.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::reference::{Digest, ImageReference};

use self::go_url::GoUrl;

/// The built-in lookaside base when registries.d configures nothing, for a
/// root process such as CRI-O (`defaultDockerDir`). Rootless c/image uses
/// `file://$HOME/.local/share/containers/sigstore` instead.
pub const BUILTIN_ROOT_LOOKASIDE: &str = "file:///var/lib/containers/sigstore";

/// The system registries.d directory (`/etc/containers/registries.d`).
pub const SYSTEM_REGISTRIES_D: &str = "/etc/containers/registries.d";

/// One configuration section (`registryNamespace`): the `default-docker`
/// section or the value of one `docker` scope.
///
/// As in c/image, an empty string means "not set", so `lookaside: ""` and a
/// missing `lookaside` behave the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryNamespace {
    /// `lookaside`: base URL for reading, and for writing when no staging URL is set.
    pub lookaside: String,
    /// `lookaside-staging`: base URL for writing only.
    pub lookaside_staging: String,
    /// `sigstore`: legacy name of `lookaside`, used only when `lookaside` is empty.
    pub sigstore: String,
    /// `sigstore-staging`: legacy name of `lookaside-staging`.
    pub sigstore_staging: String,
    /// `use-sigstore-attachments`; `None` when the key is absent or null.
    pub use_sigstore_attachments: Option<bool>,
}

impl RegistryNamespace {
    /// `registryNamespace.signatureTopLevel`: the base URL this section gives
    /// for reading (`lookaside`, else `sigstore`) or writing
    /// (`lookaside-staging`, `sigstore-staging`, `lookaside`, `sigstore`), or
    /// `None` if it sets none of them.
    pub fn signature_top_level(&self, write: bool) -> Option<&str> {
        if write {
            for url in [&self.lookaside_staging, &self.sigstore_staging] {
                if !url.is_empty() {
                    return Some(url);
                }
            }
        }
        [&self.lookaside, &self.sigstore]
            .into_iter()
            .find(|url| !url.is_empty())
            .map(String::as_str)
    }
}

/// A registries.d configuration: one document, or several merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfiguration {
    /// `default-docker`, used after every `docker` scope has been tried.
    pub default_docker: Option<RegistryNamespace>,
    /// `docker`: scope (`docker.io/library/busybox`, `quay.io`, `*.example.com`,
    /// an identity with tag or digest …) to section, ordered by scope.
    pub docker: BTreeMap<String, RegistryNamespace>,
}

/// Why a registries.d configuration could not be loaded or used, in
/// c/image's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistriesDError {
    /// A document is not valid YAML or does not have the registries.d shape.
    #[error("parsing {source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    /// `default-docker` appears in two documents.
    #[error(
        "Error parsing signature storage configuration: \"default-docker\" defined both in {} and {}",
        go_quote(.first),
        go_quote(.second)
    )]
    DuplicateDefaultDocker { first: String, second: String },
    /// The same `docker` scope appears in two documents.
    #[error(
        "Error parsing signature storage configuration: \"docker\" namespace {} defined both in {} and {}",
        go_quote(.namespace),
        go_quote(.first),
        go_quote(.second)
    )]
    DuplicateNamespace {
        namespace: String,
        first: String,
        second: String,
    },
    /// The directory or one of its files could not be read.
    #[error("{0}")]
    Io(String),
    /// The selected base URL does not parse (`Invalid signature storage URL …`).
    #[error("Invalid signature storage URL {url}: {error}")]
    InvalidUrl {
        url: String,
        error: go_url::GoUrlError,
    },
    /// The repository path has `.`/`..`/empty components (unreachable with
    /// references from [`crate::reference`], kept as c/image's guard).
    #[error("Unexpected path elements in Docker reference {0} for signature storage")]
    UnexpectedPathElements(String),
}

// The YAML shapes, deserialised non-strictly as gopkg.in/yaml.v3 does:
// unknown keys are ignored, null leaves a field at its zero value, and a
// plain scalar (number, boolean) read into a string field keeps its text.
#[derive(Deserialize, Default)]
struct RawConfiguration {
    #[serde(rename = "default-docker", default)]
    default_docker: Option<RawNamespace>,
    #[serde(default)]
    docker: Option<BTreeMap<String, Option<RawNamespace>>>,
}

#[derive(Deserialize, Default)]
struct RawNamespace {
    #[serde(default)]
    lookaside: Option<String>,
    #[serde(rename = "lookaside-staging", default)]
    lookaside_staging: Option<String>,
    #[serde(default)]
    sigstore: Option<String>,
    #[serde(rename = "sigstore-staging", default)]
    sigstore_staging: Option<String>,
    #[serde(rename = "use-sigstore-attachments", default)]
    use_sigstore_attachments: Option<bool>,
}

impl From<RawNamespace> for RegistryNamespace {
    fn from(raw: RawNamespace) -> Self {
        RegistryNamespace {
            lookaside: raw.lookaside.unwrap_or_default(),
            lookaside_staging: raw.lookaside_staging.unwrap_or_default(),
            sigstore: raw.sigstore.unwrap_or_default(),
            sigstore_staging: raw.sigstore_staging.unwrap_or_default(),
            use_sigstore_attachments: raw.use_sigstore_attachments,
        }
    }
}

impl RegistryConfiguration {
    /// Parses one registries.d YAML document. An empty document, `{}` and
    /// `~` are an empty configuration. Only the first document of a
    /// multi-document stream is used, as `yaml.Unmarshal` does (later ones
    /// must still be well-formed, which yaml.v3 does not check). The error
    /// is the YAML parser's message; [`ConfigMerger::add_yaml`] wraps it as
    /// `parsing <source>: <message>`.
    pub fn from_yaml(yaml: &[u8]) -> Result<RegistryConfiguration, String> {
        let text = std::str::from_utf8(yaml).map_err(|e| format!("invalid UTF-8: {e}"))?;
        let docs: Vec<Option<RawConfiguration>> =
            serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
        let raw = docs.into_iter().next().flatten().unwrap_or_default();
        Ok(RegistryConfiguration {
            default_docker: raw.default_docker.map(RegistryNamespace::from),
            docker: raw
                .docker
                .unwrap_or_default()
                .into_iter()
                .map(|(scope, ns)| (scope, ns.map(RegistryNamespace::from).unwrap_or_default()))
                .collect(),
        })
    }

    /// Loads and merges a registries.d directory (`loadAndMergeConfig`):
    /// only regular `*.yaml` names are read (`.yml` is ignored), in byte
    /// order of their names; a missing directory is an empty configuration.
    ///
    /// c/image reads in raw directory order; sorting makes the choice of
    /// "first" and "second" file in a duplicate error deterministic and
    /// changes nothing else.
    pub fn load_dir(dir: &Path) -> Result<RegistryConfiguration, RegistriesDError> {
        let shown_dir = dir.to_string_lossy();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistryConfiguration::default());
            }
            Err(e) => return Err(io_error("open", &shown_dir, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("readdirent", &shown_dir, &e))?;
            let name = entry.file_name();
            if name.as_encoded_bytes().ends_with(b".yaml") {
                names.push(name);
            }
        }
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));

        let mut merger = ConfigMerger::new();
        for name in names {
            let path = dir.join(&name);
            let shown = go_clean(&format!("{}/{}", shown_dir, name.to_string_lossy()));
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                // Removed between listing and reading: an expected race, as in c/image.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let op = if path.is_dir() { "read" } else { "open" };
                    return Err(io_error(op, &shown, &e));
                }
            };
            merger.add_yaml(&shown, &bytes)?;
        }
        Ok(merger.finish())
    }

    /// Parses and merges in-memory documents, each named for error messages
    /// (a file path, or e.g. `ClusterImagePolicy/prod` for a document carried
    /// inline by a Kubernetes object), with the same duplicate rules as
    /// [`RegistryConfiguration::load_dir`], in the order given.
    pub fn merge_documents<'a, I>(docs: I) -> Result<RegistryConfiguration, RegistriesDError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut merger = ConfigMerger::new();
        for (name, yaml) in docs {
            merger.add_yaml(name, yaml.as_bytes())?;
        }
        Ok(merger.finish())
    }

    /// `registryConfiguration.signatureTopLevel`: the configured base URL
    /// string for `image` (read or write), with fall-through over the scope
    /// candidates and `default-docker`; `None` if nothing applies.
    pub fn signature_top_level(&self, image: &ImageReference, write: bool) -> Option<&str> {
        self.sections_for(image)
            .into_iter()
            .find_map(|ns| ns.signature_top_level(write))
    }

    /// `useSigstoreAttachments`: the first section in lookup order that sets
    /// `use-sigstore-attachments`, else `false`.
    pub fn use_sigstore_attachments(&self, image: &ImageReference) -> bool {
        self.sections_for(image)
            .into_iter()
            .find_map(|ns| ns.use_sigstore_attachments)
            .unwrap_or(false)
    }

    /// `lookasideStorageBaseURL`: the base URL for `image`'s repository,
    /// `<top level>/<repository path>` (no registry host, tag or digest),
    /// using `builtin_default` when nothing is configured.
    ///
    /// `image` must be the **physical** reference (the mirror actually pulled
    /// from, semantics §5.6).
    pub fn lookaside_base_url(
        &self,
        image: &ImageReference,
        write: bool,
        builtin_default: &GoUrl,
    ) -> Result<GoUrl, RegistriesDError> {
        let mut base = match self.signature_top_level(image, write) {
            Some(top) => GoUrl::parse(top).map_err(|error| RegistriesDError::InvalidUrl {
                url: top.to_string(),
                error,
            })?,
            None => builtin_default.clone(),
        };
        let repo = image.docker_reference().path();
        if go_clean(repo) != repo {
            return Err(RegistriesDError::UnexpectedPathElements(
                image.docker_reference().to_string(),
            ));
        }
        let mut path = base.path().to_vec();
        path.push(b'/');
        path.extend_from_slice(repo.as_bytes());
        base.set_path(path);
        Ok(base)
    }

    /// The sections that apply to `image`, most specific first: the exact
    /// identity, each of `PolicyConfigurationNamespaces`, then `default-docker`.
    fn sections_for(&self, image: &ImageReference) -> Vec<&RegistryNamespace> {
        let mut keys = vec![image.policy_configuration_identity()];
        keys.extend(image.policy_configuration_namespaces());
        keys.iter()
            .filter_map(|k| self.docker.get(k))
            .chain(self.default_docker.as_ref())
            .collect()
    }
}

/// `lookasideStorageURL`: the URL of signature number `index + 1` for
/// `digest` under a repository base URL:
/// `<base>/<repo>@<algorithm>=<hex>/signature-<index+1>`.
pub fn signature_url(repo_base: &GoUrl, digest: &Digest, index: usize) -> GoUrl {
    let mut url = repo_base.clone();
    let mut path = url.path().to_vec();
    path.extend_from_slice(
        format!(
            "@{}={}/signature-{}",
            digest.algorithm(),
            digest.encoded(),
            index + 1
        )
        .as_bytes(),
    );
    url.set_path(path);
    url
}

/// Merges registries.d documents one at a time with c/image's duplicate
/// rules, remembering which document defined what for error messages.
#[derive(Debug, Default)]
pub struct ConfigMerger {
    merged: RegistryConfiguration,
    default_docker_from: String,
    namespace_from: HashMap<String, String>,
}

impl ConfigMerger {
    pub fn new() -> ConfigMerger {
        ConfigMerger::default()
    }

    /// Adds a parsed document named `source`. `default-docker` is checked
    /// before the `docker` scopes, as in c/image.
    pub fn add(
        &mut self,
        source: &str,
        config: RegistryConfiguration,
    ) -> Result<(), RegistriesDError> {
        if let Some(default_docker) = config.default_docker {
            if self.merged.default_docker.is_some() {
                return Err(RegistriesDError::DuplicateDefaultDocker {
                    first: self.default_docker_from.clone(),
                    second: source.to_string(),
                });
            }
            self.merged.default_docker = Some(default_docker);
            self.default_docker_from = source.to_string();
        }
        for (scope, ns) in config.docker {
            if let Some(first) = self.namespace_from.get(&scope) {
                return Err(RegistriesDError::DuplicateNamespace {
                    namespace: scope,
                    first: first.clone(),
                    second: source.to_string(),
                });
            }
            self.namespace_from
                .insert(scope.clone(), source.to_string());
            self.merged.docker.insert(scope, ns);
        }
        Ok(())
    }

    /// Parses `yaml` (errors: `parsing <source>: …`) and adds it.
    pub fn add_yaml(&mut self, source: &str, yaml: &[u8]) -> Result<(), RegistriesDError> {
        let config =
            RegistryConfiguration::from_yaml(yaml).map_err(|message| RegistriesDError::Parse {
                source_name: source.to_string(),
                message,
            })?;
        self.add(source, config)
    }

    /// The merged configuration.
    pub fn finish(self) -> RegistryConfiguration {
        self.merged
    }
}

pub use crate::gofmt::go_quote;

/// Go's `path.Clean` (lexical: `.`/`..`/duplicate slashes).
fn go_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for elem in p.split('/') {
        match elem {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            e => parts.push(e),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// An OS error in Go's `*PathError` shape: `open /p: permission denied`.
fn io_error(op: &str, path: &str, err: &std::io::Error) -> RegistriesDError {
    RegistriesDError::Io(format!("{op} {path}: {}", go_errno_text(err)))
}

/// The errno text without Rust's ` (os error N)` suffix, lower-cased first
/// letter as Go's syscall error strings are.
pub(crate) fn go_errno_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if err.raw_os_error().is_some() => text[..i].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `net/url` URL model, parser and printer, limited to what c/image
/// does with signature storage URLs: `url.Parse`, assigning `Path`,
/// `String()` and `Redacted()`.
pub mod go_url {
    use std::fmt;

    /// A URL as Go's `url.URL` holds it: decoded path, host, user info and
    /// fragment (bytes, as Go strings are), and the raw query, opaque part
    /// and encoding hints.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GoUrl {
        scheme: String,
        opaque: String,
        user: Option<UserInfo>,
        host: Vec<u8>,
        path: Vec<u8>,
        raw_path: String,
        omit_host: bool,
        force_query: bool,
        raw_query: String,
        fragment: Vec<u8>,
        raw_fragment: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct UserInfo {
        username: Vec<u8>,
        password: Option<Vec<u8>>,
    }

    /// `*url.Error` from `url.Parse`: `parse "<url>": <reason>`.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("parse {}: {reason}", super::go_quote(.url))]
    pub struct GoUrlError {
        /// The input (without the fragment when the error is not in the fragment).
        pub url: String,
        /// Go's reason, e.g. `missing protocol scheme`.
        pub reason: String,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Path,
        Host,
        Zone,
        UserPassword,
        Fragment,
    }

    impl GoUrl {
        /// `url.Parse`.
        pub fn parse(raw: &str) -> Result<GoUrl, GoUrlError> {
            let (u, frag) = match raw.split_once('#') {
                Some((u, f)) => (u, Some(f)),
                None => (raw, None),
            };
            let mut url = parse_without_fragment(u).map_err(|reason| GoUrlError {
                url: u.to_string(),
                reason,
            })?;
            if let Some(frag) = frag.filter(|f| !f.is_empty()) {
                let decoded = unescape(frag, Mode::Fragment).map_err(|reason| GoUrlError {
                    url: raw.to_string(),
                    reason,
                })?;
                url.raw_fragment = if escape(&decoded, Mode::Fragment) == frag {
                    String::new()
                } else {
                    frag.to_string()
                };
                url.fragment = decoded;
            }
            Ok(url)
        }

        /// A `file` URL for a local directory, as c/image builds its
        /// built-in default (`&url.URL{Scheme: "file", Path: dir}`).
        pub fn from_file_path(dir: &str) -> GoUrl {
            GoUrl {
                scheme: "file".to_string(),
                path: dir.as_bytes().to_vec(),
                ..GoUrl::default()
            }
        }

        /// The lower-cased scheme; empty for a scheme-less URL.
        pub fn scheme(&self) -> &str {
            &self.scheme
        }

        /// The decoded host (with port), lossily as text.
        pub fn host(&self) -> String {
            String::from_utf8_lossy(&self.host).into_owned()
        }

        /// The decoded path (Go's `URL.Path`).
        pub fn path(&self) -> &[u8] {
            &self.path
        }

        /// Assigns `URL.Path` (the encoding hint is kept and, as in Go,
        /// ignored by the printer unless it still encodes the new path).
        pub fn set_path(&mut self, path: Vec<u8>) {
            self.path = path;
        }

        /// Go's `EscapedPath`.
        pub fn escaped_path(&self) -> String {
            if !self.raw_path.is_empty()
                && valid_encoded(&self.raw_path, Mode::Path)
                && unescape(&self.raw_path, Mode::Path).ok().as_deref() == Some(&self.path[..])
            {
                return self.raw_path.clone();
            }
            if self.path == b"*" {
                return "*".to_string();
            }
            escape(&self.path, Mode::Path)
        }

        fn escaped_fragment(&self) -> String {
            if !self.raw_fragment.is_empty()
                && valid_encoded(&self.raw_fragment, Mode::Fragment)
                && unescape(&self.raw_fragment, Mode::Fragment).ok().as_deref()
                    == Some(&self.fragment[..])
            {
                return self.raw_fragment.clone();
            }
            escape(&self.fragment, Mode::Fragment)
        }

        /// Go's `Redacted`: the URL with any password replaced by `xxxxx`,
        /// the form c/image uses in messages.
        pub fn redacted(&self) -> String {
            match &self.user {
                Some(UserInfo {
                    username,
                    password: Some(_),
                }) => {
                    let mut copy = self.clone();
                    copy.user = Some(UserInfo {
                        username: username.clone(),
                        password: Some(b"xxxxx".to_vec()),
                    });
                    copy.to_string()
                }
                _ => self.to_string(),
            }
        }
    }

    impl fmt::Display for GoUrl {
        /// Go's `URL.String`.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut buf = String::new();
            if !self.scheme.is_empty() {
                buf.push_str(&self.scheme);
                buf.push(':');
            }
            if !self.opaque.is_empty() {
                buf.push_str(&self.opaque);
            } else {
                let has_authority =
                    !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some();
                // `scheme:/path` was parsed with an empty authority omitted.
                let omitted = self.omit_host && self.host.is_empty() && self.user.is_none();
                if has_authority && !omitted {
                    if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                        buf.push_str("//");
                    }
                    if let Some(user) = &self.user {
                        buf.push_str(&escape(&user.username, Mode::UserPassword));
                        if let Some(password) = &user.password {
                            buf.push(':');
                            buf.push_str(&escape(password, Mode::UserPassword));
                        }
                        buf.push('@');
                    }
                    buf.push_str(&escape(&self.host, Mode::Host));
                }
                let path = self.escaped_path();
                if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                    buf.push('/');
                }
                if buf.is_empty() {
                    let segment = path.split('/').next().unwrap_or("");
                    if segment.contains(':') {
                        buf.push_str("./");
                    }
                }
                buf.push_str(&path);
            }
            if self.force_query || !self.raw_query.is_empty() {
                buf.push('?');
                buf.push_str(&self.raw_query);
            }
            if !self.fragment.is_empty() {
                buf.push('#');
                buf.push_str(&self.escaped_fragment());
            }
            f.write_str(&buf)
        }
    }

    fn parse_without_fragment(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".to_string());
        }
        let mut url = GoUrl::default();
        if raw == "*" {
            url.path = b"*".to_vec();
            return Ok(url);
        }
        let (scheme, rest) = get_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        let mut rest = rest;
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((r, q)) = rest.split_once('?') {
            rest = r;
            url.raw_query = q.to_string();
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                // Rootless paths after a scheme are opaque (RFC 3986).
                url.opaque = rest.to_string();
                return Ok(url);
            }
            let segment = rest.split('/').next().unwrap_or("");
            if segment.contains(':') {
                return Err("first path segment in URL cannot contain colon".to_string());
            }
        }
        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let after = &rest[2..];
            let (authority, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let (user, host) = parse_authority(authority)?;
            url.user = user;
            url.host = host;
            rest = path;
        } else if !url.scheme.is_empty() && rest.starts_with('/') {
            url.omit_host = true;
        }
        let path = unescape(rest, Mode::Path)?;
        url.raw_path = if escape(&path, Mode::Path) == rest {
            String::new()
        } else {
            rest.to_string()
        };
        url.path = path;
        Ok(url)
    }

    fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
        for (i, c) in raw.bytes().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' => {
                    if i == 0 {
                        return Ok(("", raw));
                    }
                }
                b':' => {
                    if i == 0 {
                        return Err("missing protocol scheme".to_string());
                    }
                    return Ok((&raw[..i], &raw[i + 1..]));
                }
                _ => return Ok(("", raw)),
            }
        }
        Ok(("", raw))
    }

    fn parse_authority(authority: &str) -> Result<(Option<UserInfo>, Vec<u8>), String> {
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let host = parse_host(host)?;
        let Some(userinfo) = userinfo else {
            return Ok((None, host));
        };
        if !valid_userinfo(userinfo) {
            return Err("net/url: invalid userinfo".to_string());
        }
        let user = match userinfo.split_once(':') {
            None => UserInfo {
                username: unescape(userinfo, Mode::UserPassword)?,
                password: None,
            },
            Some((name, password)) => UserInfo {
                username: unescape(name, Mode::UserPassword)?,
                password: Some(unescape(password, Mode::UserPassword)?),
            },
        };
        Ok((Some(user), host))
    }

    fn parse_host(host: &str) -> Result<Vec<u8>, String> {
        if host.starts_with('[') {
            let Some(i) = host.rfind(']') else {
                return Err("missing ']' in host".to_string());
            };
            let colon_port = &host[i + 1..];
            if !valid_optional_port(colon_port) {
                return Err(format!(
                    "invalid port {} after host",
                    super::go_quote(colon_port)
                ));
            }
            if let Some(zone) = host[..i].find("%25") {
                let mut out = unescape(&host[..zone], Mode::Host)?;
                out.extend(unescape(&host[zone..i], Mode::Zone)?);
                out.extend(unescape(&host[i..], Mode::Host)?);
                return Ok(out);
            }
        } else if let Some(i) = host.rfind(':') {
            let colon_port = &host[i..];
            if !valid_optional_port(colon_port) {
                return Err(format!(
                    "invalid port {} after host",
                    super::go_quote(colon_port)
                ));
            }
        }
        unescape(host, Mode::Host)
    }

    fn valid_optional_port(port: &str) -> bool {
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()))
    }

    fn valid_userinfo(s: &str) -> bool {
        s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '.'
                        | '_'
                        | ':'
                        | '~'
                        | '!'
                        | '$'
                        | '&'
                        | '\''
                        | '('
                        | ')'
                        | '*'
                        | '+'
                        | ','
                        | ';'
                        | '='
                        | '%'
                        | '@'
                )
        })
    }

    fn should_escape(c: u8, mode: Mode) -> bool {
        if c.is_ascii_alphanumeric() {
            return false;
        }
        if matches!(mode, Mode::Host | Mode::Zone)
            && matches!(
                c,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'<'
                    | b'>'
                    | b'"'
            )
        {
            return false;
        }
        match c {
            b'-' | b'_' | b'.' | b'~' => return false,
            b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
                return match mode {
                    Mode::Path => c == b'?',
                    Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                    Mode::Fragment => false,
                    Mode::Host | Mode::Zone => true,
                };
            }
            _ => {}
        }
        if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
            return false;
        }
        true
    }

    fn is_hex(c: u8) -> bool {
        c.is_ascii_hexdigit()
    }

    fn unhex(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        }
    }

    fn escape_error(s: &[u8]) -> String {
        let shown = String::from_utf8_lossy(s);
        format!("invalid URL escape {}", super::go_quote(&shown))
    }

    /// Go's `unescape` (never in query mode: `+` stays `+`).
    fn unescape(s: &str, mode: Mode) -> Result<Vec<u8>, String> {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    if i + 2 >= b.len() || !is_hex(b[i + 1]) || !is_hex(b[i + 2]) {
                        let end = (i + 3).min(b.len());
                        return Err(escape_error(&b[i..end]));
                    }
                    if mode == Mode::Host && unhex(b[i + 1]) < 8 && &b[i..i + 3] != b"%25" {
                        return Err(escape_error(&b[i..i + 3]));
                    }
                    if mode == Mode::Zone {
                        let v = (unhex(b[i + 1]) << 4) | unhex(b[i + 2]);
                        if &b[i..i + 3] != b"%25" && v != b' ' && should_escape(v, Mode::Host) {
                            return Err(escape_error(&b[i..i + 3]));
                        }
                    }
                    i += 3;
                }
                c => {
                    if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode)
                    {
                        return Err(format!(
                            "invalid character {} in host name",
                            super::go_quote(&(c as char).to_string())
                        ));
                    }
                    i += 1;
                }
            }
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push((unhex(b[i + 1]) << 4) | unhex(b[i + 2]));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    fn escape(s: &[u8], mode: Mode) -> String {
        const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(s.len());
        for &c in s {
            if should_escape(c, mode) {
                out.push('%');
                out.push(UPPER_HEX[(c >> 4) as usize] as char);
                out.push(UPPER_HEX[(c & 15) as usize] as char);
            } else {
                out.push(c as char);
            }
        }
        out
    }

    fn valid_encoded(s: &str, mode: Mode) -> bool {
        s.bytes().all(|c| {
            matches!(
                c,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'['
                    | b']'
                    | b'%'
            ) || !should_escape(c, mode)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";

    fn fixtures_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cimage/upstream/docker/fixtures/registries.d")
    }

    fn fixtures() -> RegistryConfiguration {
        RegistryConfiguration::load_dir(&fixtures_dir()).unwrap()
    }

    fn image(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap()
    }

    fn root_default() -> GoUrl {
        GoUrl::parse(BUILTIN_ROOT_LOOKASIDE).unwrap()
    }

    fn base(config: &RegistryConfiguration, img: &str) -> Result<String, RegistriesDError> {
        config
            .lookaside_base_url(&image(img), false, &root_default())
            .map(|u| u.to_string())
    }

    fn ns(lookaside: &str) -> RegistryNamespace {
        RegistryNamespace {
            lookaside: lookaside.to_string(),
            ..RegistryNamespace::default()
        }
    }

    #[test]
    fn fixture_directory_merges() {
        let config = fixtures();
        assert_eq!(
            config.default_docker,
            Some(ns(
                "file:///mnt/companywide/signatures/for/other/repositories"
            ))
        );
        let scopes: Vec<&str> = config.docker.keys().map(String::as_str).collect();
        assert_eq!(
            scopes,
            [
                "docker.io/centos",
                "docker.io/centos/mybetaproduct",
                "docker.io/centos/mybetaproduct:latest",
                "docker.io/contoso",
                "example.com",
                "localhost",
                "localhost/file/path/test",
                "localhost/invalid/url/test",
                "localhost/relative/path/test",
                "localhost:8080",
                "registry.test.example.com",
                "registry.test.example.com:8888",
            ]
        );
        assert_eq!(
            config.docker["registry.test.example.com:8888"],
            RegistryNamespace {
                lookaside: "http://registry.test.example.com:8889/lookaside".into(),
                lookaside_staging:
                    "https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist"
                        .into(),
                ..RegistryNamespace::default()
            }
        );
    }

    #[test]
    fn manifest_base_url_table() {
        let config = fixtures();
        let rows = [
            (
                "example.com/my/project:latest",
                "https://lookaside.example.com/my/project",
            ),
            (
                "docker.io/contoso/app:v1",
                "https://lookaside.contoso.com/fordocker/contoso/app",
            ),
            (
                "docker.io/centos/httpd:latest",
                "https://lookaside.centos.org//centos/httpd",
            ),
            (
                "docker.io/centos/mybetaproduct:latest",
                "https://lookaside.centos.org//centos/mybetaproduct",
            ),
            (
                "docker.io/centos/mybetaproduct:v2",
                "http://localhost:9999/mybetaWIP/lookaside/centos/mybetaproduct",
            ),
            (
                "busybox:latest",
                "file:///mnt/companywide/signatures/for/other/repositories/library/busybox",
            ),
            (
                "registry.test.example.com:8888/ns/img:t",
                "http://registry.test.example.com:8889/lookaside/ns/img",
            ),
            (
                "registry.test.example.com/ns/img:t",
                "http://registry.test.example.com/lookaside/ns/img",
            ),
            (
                "sub.example.com/x:t",
                "file:///mnt/companywide/signatures/for/other/repositories/x",
            ),
            ("localhost:8080/x:t", "file:///home/mitr/mydevelopment2/x"),
            (
                "localhost/file/path/test:t",
                "/no/scheme/just/a/path/file/path/test",
            ),
            (
                "localhost/relative/path/test:t",
                "no/scheme/relative/path/relative/path/test",
            ),
            (
                "localhost/other:t",
                "file:///home/mitr/mydevelopment1/other",
            ),
        ];
        for (img, want) in rows {
            assert_eq!(base(&config, img).unwrap(), want, "{img}");
        }
        assert_eq!(
            base(&config, "localhost/invalid/url/test:t")
                .unwrap_err()
                .to_string(),
            "Invalid signature storage URL :emptyscheme: parse \":emptyscheme\": missing protocol scheme"
        );
    }

    #[test]
    fn write_selection() {
        let config = fixtures();
        let write = |img: &str| {
            config
                .lookaside_base_url(&image(img), true, &root_default())
                .unwrap()
                .to_string()
        };
        assert_eq!(
            write("registry.test.example.com:8888/ns/img:t"),
            "https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist/ns/img"
        );
        assert_eq!(
            write("docker.io/centos/mybetaproduct:v2"),
            "file:///srv/mybetaWIP/lookaside/centos/mybetaproduct"
        );
        // The exact identity has only `lookaside`, which writing also uses.
        assert_eq!(
            write("docker.io/centos/mybetaproduct:latest"),
            "https://lookaside.centos.org//centos/mybetaproduct"
        );

        let all = RegistryNamespace {
            lookaside: "L".into(),
            lookaside_staging: "LS".into(),
            sigstore: "S".into(),
            sigstore_staging: "SS".into(),
            use_sigstore_attachments: None,
        };
        assert_eq!(all.signature_top_level(true), Some("LS"));
        assert_eq!(all.signature_top_level(false), Some("L"));
        let legacy = RegistryNamespace {
            lookaside: String::new(),
            lookaside_staging: String::new(),
            ..all.clone()
        };
        assert_eq!(legacy.signature_top_level(true), Some("SS"));
        assert_eq!(legacy.signature_top_level(false), Some("S"));
        let read_only_legacy = RegistryNamespace {
            sigstore: "S".into(),
            ..RegistryNamespace::default()
        };
        assert_eq!(read_only_legacy.signature_top_level(true), Some("S"));
        assert_eq!(RegistryNamespace::default().signature_top_level(true), None);
    }

    #[test]
    fn builtin_default_when_nothing_configured() {
        let empty = RegistryConfiguration::default();
        assert_eq!(
            base(&empty, "busybox").unwrap(),
            "file:///var/lib/containers/sigstore/library/busybox"
        );
        let rootless = GoUrl::from_file_path("/home/u/.local/share/containers/sigstore");
        assert_eq!(
            empty
                .lookaside_base_url(&image("quay.io/ns/app:v1"), false, &rootless)
                .unwrap()
                .to_string(),
            "file:///home/u/.local/share/containers/sigstore/ns/app"
        );
        // A missing directory is an empty configuration.
        let missing = RegistryConfiguration::load_dir(Path::new("/nonexistent/registries.d"));
        assert_eq!(missing.unwrap(), RegistryConfiguration::default());
    }

    #[test]
    fn fall_through_and_attachments() {
        let config = RegistryConfiguration::merge_documents([(
            "doc",
            "default-docker:\n  use-sigstore-attachments: false\n  sigstore: https://default/\n\
             docker:\n  quay.io/ns/app:\n    use-sigstore-attachments: true\n  quay.io:\n    lookaside: https://quay-sigs\n\
             \x20 '*.io':\n    use-sigstore-attachments: false\n    lookaside: https://wild\n",
        )])
        .unwrap();
        // The repository entry has no URL: falls through to the host entry.
        assert_eq!(
            base(&config, "quay.io/ns/app:v1").unwrap(),
            "https://quay-sigs/ns/app"
        );
        assert!(config.use_sigstore_attachments(&image("quay.io/ns/app:v1")));
        assert!(!config.use_sigstore_attachments(&image("quay.io/other:v1")));
        // Wildcards lose to the exact host, but apply to other hosts.
        assert_eq!(base(&config, "ghcr.io/x/y:1").unwrap(), "https://wild/x/y");
        assert_eq!(
            base(&config, "example.com/x:1").unwrap(),
            "https://default//x"
        );
        assert!(!config.use_sigstore_attachments(&image("example.com/x:1")));

        let only_default = RegistryConfiguration::merge_documents([(
            "d",
            "default-docker:\n  use-sigstore-attachments: true\n",
        )])
        .unwrap();
        assert!(only_default.use_sigstore_attachments(&image("busybox")));
        // A section without URLs anywhere: the built-in default.
        assert_eq!(
            base(&only_default, "busybox").unwrap(),
            "file:///var/lib/containers/sigstore/library/busybox"
        );
        assert!(!RegistryConfiguration::default().use_sigstore_attachments(&image("busybox")));
    }

    #[test]
    fn digest_identity_scope() {
        let config = RegistryConfiguration::merge_documents([(
            "d",
            format!("docker:\n  quay.io/ns/app@sha256:{HEX}:\n    lookaside: https://pinned\n")
                .as_str(),
        )])
        .unwrap();
        assert_eq!(
            base(&config, &format!("quay.io/ns/app@sha256:{HEX}")).unwrap(),
            "https://pinned/ns/app"
        );
        assert_eq!(
            base(&config, "quay.io/ns/app:v1").unwrap(),
            "file:///var/lib/containers/sigstore/ns/app"
        );
    }

    #[test]
    fn signature_urls_are_byte_exact() {
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let config = fixtures();
        let base_url = config
            .lookaside_base_url(
                &image("docker.io/centos/httpd:latest"),
                false,
                &root_default(),
            )
            .unwrap();
        assert_eq!(
            signature_url(&base_url, &digest, 0).to_string(),
            format!("https://lookaside.centos.org//centos/httpd@sha256={HEX}/signature-1")
        );
        assert_eq!(
            signature_url(&base_url, &digest, 126).to_string(),
            format!("https://lookaside.centos.org//centos/httpd@sha256={HEX}/signature-127")
        );

        let with_query = RegistryConfiguration::merge_documents([(
            "d",
            "default-docker:\n  lookaside: 'https://user:secret@sigs.example.com:8443/a%20b/?token=x%2Fy#frag%21'\n",
        )])
        .unwrap();
        let b = with_query
            .lookaside_base_url(&image("quay.io/ns/app:v1"), false, &root_default())
            .unwrap();
        let sig = signature_url(&b, &digest, 1);
        assert_eq!(
            sig.to_string(),
            format!(
                "https://user:secret@sigs.example.com:8443/a%20b//ns/app@sha256={HEX}/signature-2?token=x%2Fy#frag%21"
            )
        );
        assert_eq!(
            sig.redacted(),
            format!(
                "https://user:xxxxx@sigs.example.com:8443/a%20b//ns/app@sha256={HEX}/signature-2?token=x%2Fy#frag%21"
            )
        );
        assert_eq!(sig.host(), "sigs.example.com:8443");
        assert_eq!(
            sig.path(),
            format!("/a b//ns/app@sha256={HEX}/signature-2").as_bytes()
        );

        let sha512 = Digest::parse(&format!("sha512:{HEX}{HEX}")).unwrap();
        let file_base = GoUrl::parse("file:///srv/sigs").unwrap();
        assert_eq!(
            signature_url(&file_base, &sha512, 0).to_string(),
            format!("file:///srv/sigs@sha512={HEX}{HEX}/signature-1")
        );
    }

    #[test]
    fn go_url_parse_and_print() {
        let round_trip = |s: &str| GoUrl::parse(s).unwrap().to_string();
        for s in [
            "https://lookaside.example.com",
            "https://lookaside.centos.org/",
            "file:///var/lib/containers/sigstore",
            "http://[::1]:8080/x",
            "/no/scheme/just/a/path",
            "no/scheme/relative/path",
            "https://h/p?",
            "https://h/a%2Fb",
            "mailto:someone@example.com",
        ] {
            assert_eq!(round_trip(s), s);
        }
        // An empty authority after `scheme:/` is omitted when printing.
        assert_eq!(round_trip("file:/srv/sigs"), "file:/srv/sigs");
        assert_eq!(round_trip("HTTPS://h/x"), "https://h/x");
        assert_eq!(round_trip("https://h/a b"), "https://h/a%20b");

        let opaque = GoUrl::parse("https:opaque/x").unwrap();
        assert_eq!(opaque.scheme(), "https");
        assert_eq!(opaque.path(), b"");

        let err = |s: &str| GoUrl::parse(s).unwrap_err().to_string();
        assert_eq!(
            err(":emptyscheme"),
            "parse \":emptyscheme\": missing protocol scheme"
        );
        // `a:` is a scheme, so this is an opaque URL rather than an error.
        assert_eq!(round_trip("a:b/c"), "a:b/c");
        assert_eq!(
            err("1a:b/c"),
            "parse \"1a:b/c\": first path segment in URL cannot contain colon"
        );
        assert_eq!(
            err("https://h/%zz"),
            "parse \"https://h/%zz\": invalid URL escape \"%zz\""
        );
        assert_eq!(
            err("https://h:port/"),
            "parse \"https://h:port/\": invalid port \":port\" after host"
        );
        assert_eq!(
            err("https://h o/"),
            "parse \"https://h o/\": invalid character \" \" in host name"
        );
        assert_eq!(
            err("https://h/\n"),
            "parse \"https://h/\\n\": net/url: invalid control character in URL"
        );
        assert_eq!(
            err("https://h/#%zz"),
            "parse \"https://h/#%zz\": invalid URL escape \"%zz\""
        );
        assert_eq!(
            err("https://[::1/"),
            "parse \"https://[::1/\": missing ']' in host"
        );
        assert_eq!(
            err("https://us er@h/"),
            "parse \"https://us er@h/\": net/url: invalid userinfo"
        );
    }

    #[test]
    fn duplicate_definitions_are_errors() {
        let err = RegistryConfiguration::merge_documents([
            ("first", "default-docker:\n  lookaside: https://a\n"),
            ("second", "default-docker:\n  lookaside: https://b\n"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error parsing signature storage configuration: \"default-docker\" defined both in \"first\" and \"second\""
        );
        let err = RegistryConfiguration::merge_documents([
            (
                "ClusterImagePolicy/prod",
                "docker:\n  quay.io:\n    lookaside: https://a\n",
            ),
            ("ClusterImagePolicy/dev", "docker:\n  quay.io: {}\n"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error parsing signature storage configuration: \"docker\" namespace \"quay.io\" defined both in \"ClusterImagePolicy/prod\" and \"ClusterImagePolicy/dev\""
        );
        // A null section defines nothing; a null scope value still defines the scope.
        RegistryConfiguration::merge_documents([
            ("a", "default-docker: ~\n"),
            ("b", "default-docker:\n  lookaside: https://b\n"),
        ])
        .unwrap();
        let err = RegistryConfiguration::merge_documents([
            ("a", "docker:\n  quay.io:\n"),
            ("b", "docker:\n  quay.io:\n    lookaside: https://b\n"),
        ])
        .unwrap_err();
        assert!(matches!(err, RegistriesDError::DuplicateNamespace { .. }));
    }

    #[test]
    fn directory_duplicates_and_yaml_errors_name_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("b.yaml"),
            "default-docker:\n  lookaside: https://b\n",
        )
        .unwrap();
        std::fs::write(
            d.join("a.yaml"),
            "default-docker:\n  lookaside: https://a\n",
        )
        .unwrap();
        // Not read: wrong extension.
        std::fs::write(d.join("c.yml"), "default-docker:\n  lookaside: https://c\n").unwrap();
        std::fs::write(d.join("d.yaml.bak"), "{{{").unwrap();
        let err = RegistryConfiguration::load_dir(d).unwrap_err();
        let shown = d.to_string_lossy();
        assert_eq!(
            err.to_string(),
            format!(
                "Error parsing signature storage configuration: \"default-docker\" defined both in \"{shown}/a.yaml\" and \"{shown}/b.yaml\""
            )
        );

        std::fs::remove_file(d.join("b.yaml")).unwrap();
        let ok = RegistryConfiguration::load_dir(d).unwrap();
        assert_eq!(ok.default_docker, Some(ns("https://a")));

        std::fs::write(d.join("z.yaml"), "docker: [unclosed\n").unwrap();
        let err = RegistryConfiguration::load_dir(d).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("parsing {shown}/z.yaml: ")),
            "{err}"
        );
        std::fs::remove_file(d.join("z.yaml")).unwrap();

        // A directory named *.yaml cannot be read: fatal, like os.ReadFile.
        std::fs::create_dir(d.join("dir.yaml")).unwrap();
        let err = RegistryConfiguration::load_dir(d).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("read {shown}/dir.yaml: is a directory")
        );
    }

    #[test]
    fn yaml_is_read_non_strictly() {
        let config = RegistryConfiguration::from_yaml(
            b"unknown-top: 1\ndefault-docker:\n  lookside: https://typo\n  sigstore: 12345\n\
              docker:\n  quay.io:\n    lookaside: true\n    use-sigstore-attachments: yes\n    extra: [1, 2]\n\
              \x20 ghcr.io:\n    lookaside: ~\n",
        )
        .unwrap();
        let default_docker = config.default_docker.unwrap();
        assert_eq!(default_docker.lookaside, "");
        assert_eq!(default_docker.sigstore, "12345");
        assert_eq!(config.docker["quay.io"].lookaside, "true");
        assert_eq!(
            config.docker["quay.io"].use_sigstore_attachments,
            Some(true)
        );
        assert_eq!(config.docker["ghcr.io"], RegistryNamespace::default());

        for empty in [
            "",
            "{}",
            "~",
            "# only a comment\n",
            "docker:\n",
            "docker: {}\n",
        ] {
            assert_eq!(
                RegistryConfiguration::from_yaml(empty.as_bytes()).unwrap(),
                RegistryConfiguration::default(),
                "{empty:?}"
            );
        }
        // Only the first document of a stream counts, as with yaml.Unmarshal.
        let first = RegistryConfiguration::from_yaml(
            b"default-docker:\n  lookaside: https://one\n---\ndefault-docker:\n  lookaside: https://two\n",
        )
        .unwrap();
        assert_eq!(first.default_docker, Some(ns("https://one")));

        for bad in [
            "docker: [1, 2]\n",
            "- a\n- b\n",
            "default-docker: hello\n",
            "docker:\n  quay.io:\n    lookaside: [a]\n",
            "docker:\n  quay.io: {}\n  quay.io: {}\n",
            "default-docker:\n  use-sigstore-attachments: maybe\n",
            "\u{0}",
        ] {
            assert!(
                RegistryConfiguration::from_yaml(bad.as_bytes()).is_err(),
                "{bad:?} should not parse"
            );
        }
        assert!(RegistryConfiguration::from_yaml(&[0xff, 0xfe, 0x00]).is_err());
    }

    #[test]
    fn go_helpers() {
        assert_eq!(go_clean("/a//b/./c/.."), "/a/b");
        assert_eq!(go_clean("a/../../b"), "../b");
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("/.."), "/");
        assert_eq!(go_clean("library/busybox"), "library/busybox");
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }
}
