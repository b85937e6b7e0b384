//! Where the keys of a `signedBy` requirement come from, and how their bytes
//! are obtained at evaluation time.
//!
//! c/image reads key files at *every* evaluation (`os.ReadFile` inside
//! `isSignatureAuthorAccepted`), so a missing or unreadable file is a
//! rejection reason, not a parse error; [`KeyResolver`] keeps that shape.
//! `keyRef` (imagegate's extension: a ConfigMap or Secret key) is resolved by
//! resolvers that know about Kubernetes; the filesystem resolver refuses it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The key material of a `signedBy` requirement: exactly one of
/// `keyPath`, `keyPaths`, `keyData` and (imagegate only) `keyRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `keyPath`: one keyring file (binary or ASCII-armoured).
    Path(String),
    /// `keyPaths`: several keyring files, keys unioned. May be empty
    /// (`"keyPaths": []` parses; it imports no keys).
    Paths(Vec<String>),
    /// `keyData`: keyring bytes (decoded from base64). May be empty.
    Data(Vec<u8>),
    /// `keyRef`: a key in a ConfigMap or Secret.
    Ref(KeyRef),
}

/// imagegate's `keyRef`: `{"configMap"|"secret": NAME, "key": KEY}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub kind: KeyRefKind,
    /// The ConfigMap or Secret name (an RFC 1123 subdomain).
    pub name: String,
    /// The data key inside it.
    pub key: String,
}

/// What kind of object a [`KeyRef`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRefKind {
    ConfigMap,
    Secret,
}

impl KeyRefKind {
    /// The JSON key naming this kind (`configMap`, `secret`).
    pub fn json_key(self) -> &'static str {
        match self {
            KeyRefKind::ConfigMap => "configMap",
            KeyRefKind::Secret => "secret",
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} key {:?}",
            self.kind.json_key(),
            self.name,
            self.key
        )
    }
}

impl fmt::Display for KeySource {
    /// `keyPath "/x"`, `keyPaths ["/a", "/b"]`, `keyData (N bytes)`, `keyRef …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => write!(f, "keyPath {p:?}"),
            KeySource::Paths(ps) => write!(f, "keyPaths {ps:?}"),
            KeySource::Data(d) => write!(f, "keyData ({} bytes)", d.len()),
            KeySource::Ref(r) => write!(f, "keyRef {r}"),
        }
    }
}

/// Produces the keyring blobs of a key source, at evaluation time.
///
/// An `Err` is the rejection reason of every signature checked against
/// this requirement (c/image: the `os.ReadFile` error).
pub trait KeyResolver: Send + Sync {
    fn key_blobs(&self, source: &KeySource) -> Result<Vec<Vec<u8>>, String>;
}

impl<F> KeyResolver for F
where
    F: Fn(&KeySource) -> Result<Vec<Vec<u8>>, String> + Send + Sync,
{
    fn key_blobs(&self, source: &KeySource) -> Result<Vec<Vec<u8>>, String> {
        self(source)
    }
}

/// Reads `keyPath`/`keyPaths` from the local filesystem (as c/image does),
/// returns `keyData` as is, and refuses `keyRef`.
#[derive(Debug, Clone, Default)]
pub struct FilesystemKeyResolver {
    base_dir: Option<PathBuf>,
}

impl FilesystemKeyResolver {
    /// Relative paths are relative to the process's working directory, as
    /// in c/image.
    pub fn new() -> Self {
        FilesystemKeyResolver { base_dir: None }
    }

    /// Relative paths are resolved against `dir` (e.g. the directory of the
    /// policy file); absolute paths are used as they are.
    pub fn with_base_dir(dir: impl Into<PathBuf>) -> Self {
        FilesystemKeyResolver {
            base_dir: Some(dir.into()),
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        match &self.base_dir {
            Some(base) if Path::new(path).is_relative() => base.join(path),
            _ => PathBuf::from(path),
        }
    }
}

impl KeyResolver for FilesystemKeyResolver {
    fn key_blobs(&self, source: &KeySource) -> Result<Vec<Vec<u8>>, String> {
        match source {
            KeySource::Path(p) => Ok(vec![go_read_file(&self.resolve(p))?]),
            // The first unreadable file rejects, as in c/image's loop.
            KeySource::Paths(ps) => ps.iter().map(|p| go_read_file(&self.resolve(p))).collect(),
            KeySource::Data(d) => Ok(vec![d.clone()]),
            KeySource::Ref(r) => Err(format!(
                "keyRef ({r}) cannot be resolved from the local filesystem; \
                 it is only available to policies loaded from Kubernetes"
            )),
        }
    }
}

/// `os.ReadFile`, with Go's error text: `open /x: no such file or directory`,
/// `read /x: is a directory`.
pub fn go_read_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("open {shown}: {}", go_errno_text(&e)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("read {shown}: {}", go_errno_text(&e)))?;
    Ok(bytes)
}

/// Go prints a syscall error as the lower-case C `strerror` text without
/// Rust's ` (os error N)` suffix.
fn go_errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => text[..i].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_io_errors() {
        assert_eq!(
            go_read_file(Path::new("/nonexistent/imagegate-key")).unwrap_err(),
            "open /nonexistent/imagegate-key: no such file or directory"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            go_read_file(dir.path()).unwrap_err(),
            format!("read {}: is a directory", dir.path().display())
        );
    }

    #[test]
    fn filesystem_resolver() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.gpg"), b"A").unwrap();
        std::fs::write(dir.path().join("b.gpg"), b"B").unwrap();
        let r = FilesystemKeyResolver::with_base_dir(dir.path());
        assert_eq!(
            r.key_blobs(&KeySource::Path("a.gpg".into())).unwrap(),
            vec![b"A".to_vec()]
        );
        assert_eq!(
            r.key_blobs(&KeySource::Paths(vec!["a.gpg".into(), "b.gpg".into()]))
                .unwrap(),
            vec![b"A".to_vec(), b"B".to_vec()]
        );
        assert_eq!(
            r.key_blobs(&KeySource::Paths(vec![])).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        let err = r
            .key_blobs(&KeySource::Paths(vec!["a.gpg".into(), "missing".into()]))
            .unwrap_err();
        assert!(err.ends_with("missing: no such file or directory"), "{err}");
        assert_eq!(
            r.key_blobs(&KeySource::Data(b"xyz".to_vec())).unwrap(),
            vec![b"xyz".to_vec()]
        );
        let err = r
            .key_blobs(&KeySource::Ref(KeyRef {
                kind: KeyRefKind::Secret,
                name: "keys".into(),
                key: "pub.gpg".into(),
            }))
            .unwrap_err();
        assert!(err.contains("secret \"keys\" key \"pub.gpg\""), "{err}");
    }

    #[test]
    fn closures_are_resolvers() {
        let r = |_: &KeySource| -> Result<Vec<Vec<u8>>, String> { Ok(vec![b"k".to_vec()]) };
        assert_eq!(
            (&r as &dyn KeyResolver)
                .key_blobs(&KeySource::Path("x".into()))
                .unwrap(),
            vec![b"k".to_vec()]
        );
    }
}
