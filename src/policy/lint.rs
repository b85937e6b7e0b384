//! Warnings for policy documents that parse but do not do what their author
//! likely meant: scopes that can never match an image, and requirements
//! that reject every image (unimplemented key types, `signedBaseLayer`,
//! `sigstoreSigned`, keys that import nothing). c/image accepts all of
//! these silently; `policy lint` and the CRDs' status report them.

use std::fmt;

use super::config::{KeyType, Policy, Requirement, SignedBy, scope_path};
use super::identity::{PolicyReferenceMatch, is_domain};
use super::keys::KeySource;
use super::scope::DOCKER_TRANSPORT;
use crate::reference::{DEFAULT_DOMAIN, Named};
use crate::strictjson::{child_path, index_path};

/// The transports registered in c/image (`alltransports`); any other name
/// is accepted by the parser but never consulted.
pub const KNOWN_TRANSPORTS: &[&str] = &[
    "atomic",
    "containers-storage",
    "dir",
    "docker",
    "docker-archive",
    "docker-daemon",
    "oci",
    "oci-archive",
    "ostree",
    "sif",
    "tarball",
];

/// One finding, with the JSON path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintWarning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for LintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", self.message, self.path)
    }
}

/// All warnings for `policy`, in document order.
pub fn lint(policy: &Policy) -> Vec<LintWarning> {
    let mut out = Vec::new();
    if let Some(default) = &policy.default {
        lint_requirements(default, "$.default", &mut out);
    }
    for transport in &policy.transports {
        let tpath = child_path("$.transports", &transport.name);
        if !KNOWN_TRANSPORTS.contains(&transport.name.as_str()) {
            out.push(LintWarning {
                path: tpath.clone(),
                message: format!(
                    "unknown transport {:?}: its scopes are never consulted",
                    transport.name
                ),
            });
        }
        for scope in transport.scopes() {
            let spath = scope_path(&transport.name, &scope.key);
            if transport.name == DOCKER_TRANSPORT
                && let Some(why) = docker_scope_never_matches(&scope.key)
            {
                out.push(LintWarning {
                    path: spath.clone(),
                    message: format!("scope {:?} can never match: {why}", scope.key),
                });
            }
            lint_requirements(&scope.requirements, &spath, &mut out);
        }
    }
    out
}

/// Why a docker-transport scope key can never be selected, if it cannot.
/// Keys are compared with the identity and namespaces of fully expanded
/// references (semantics §1.5), so anything that is not such a string is
/// dead.
pub fn docker_scope_never_matches(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    if let Some(rest) = key.strip_prefix("*.") {
        if rest.contains('/') {
            return Some("a wildcard scope cannot contain a path".into());
        }
        if rest.contains(':') {
            return Some(
                "a wildcard scope cannot contain a port (ports are stripped before wildcards are tried)"
                    .into(),
            );
        }
        if rest.contains('*') {
            return Some("only a single leading \"*.\" wildcard is supported".into());
        }
        if !is_domain(rest) {
            return Some(format!("{rest:?} is not a host name"));
        }
        return None;
    }
    if key.contains('*') {
        return Some("\"*\" is only supported as a leading \"*.\" followed by a host name".into());
    }
    let host = key.split('/').next().unwrap_or(key);
    let qualified = host.contains(['.', ':']) || host == "localhost";
    if !qualified {
        let expanded = match Named::parse_normalized(key) {
            Ok(n) => format!("; did you mean {:?}?", n.to_string()),
            Err(_) => String::new(),
        };
        return Some(format!(
            "scopes are matched against fully qualified names, and {host:?} is not a registry host{expanded}"
        ));
    }
    if host == "index.docker.io" {
        return Some(format!(
            "references to index.docker.io are normalised to {DEFAULT_DOMAIN}"
        ));
    }
    if !key.contains('/') {
        if is_domain(key) {
            return None;
        }
        return Some(format!("{key:?} is not a valid host[:port]"));
    }
    let named = match Named::parse_normalized(key) {
        Ok(n) => n,
        Err(e) => return Some(format!("not a valid image reference: {e}")),
    };
    if named.tag().is_some() && named.digest().is_some() {
        return Some(
            "an image identity has a tag or a digest, never both (CRI-O drops the tag of repo:tag@digest)"
                .into(),
        );
    }
    if !named.is_name_only() {
        if named.to_string() != key {
            return Some(format!(
                "images are identified by their normalised form {:?}",
                named.to_string()
            ));
        }
        return None;
    }
    // A repository or a namespace. `docker.io/x` is a valid namespace even
    // though no repository is called that (it would be docker.io/library/x).
    let single_docker_component = named.domain() == DEFAULT_DOMAIN && key.matches('/').count() == 1;
    if named.name() != key && !single_docker_component {
        return Some(format!(
            "images are identified by their normalised form {:?}",
            named.name()
        ));
    }
    None
}

fn lint_requirements(requirements: &[Requirement], path: &str, out: &mut Vec<LintWarning>) {
    let several = requirements.len() > 1;
    for (i, requirement) in requirements.iter().enumerate() {
        let rpath = index_path(path, i);
        let mut warn = |path: String, message: String| out.push(LintWarning { path, message });
        match requirement {
            Requirement::InsecureAcceptAnything if several => warn(
                rpath,
                "insecureAcceptAnything has no effect next to other requirements (all must pass)"
                    .into(),
            ),
            Requirement::Reject if several => warn(
                rpath,
                "reject denies every image; the other requirements of this list do not matter"
                    .into(),
            ),
            Requirement::SignedBy(sb) => lint_signed_by(sb, &rpath, &mut warn),
            Requirement::SignedBaseLayer(_) => warn(
                rpath,
                "signedBaseLayer is not implemented by c/image: this requirement denies every image"
                    .into(),
            ),
            Requirement::SigstoreSigned(_) => warn(
                rpath,
                "sigstoreSigned is not supported by imagegate yet: this requirement denies every image"
                    .into(),
            ),
            _ => {}
        }
    }
}

fn lint_signed_by(sb: &SignedBy, path: &str, warn: &mut impl FnMut(String, String)) {
    if sb.key_type != KeyType::GpgKeys {
        warn(
            child_path(path, "keyType"),
            format!(
                "keyType {:?} is not implemented by c/image: this requirement denies every signed image",
                sb.key_type.as_str()
            ),
        );
    }
    match &sb.keys {
        KeySource::Paths(ps) if ps.is_empty() => warn(
            child_path(path, "keyPaths"),
            "an empty keyPaths imports no keys: this requirement denies every signed image".into(),
        ),
        KeySource::Data(d) if d.is_empty() => warn(
            child_path(path, "keyData"),
            "an empty keyData imports no keys: this requirement denies every signed image".into(),
        ),
        KeySource::Path(p) if std::path::Path::new(p).is_relative() => warn(
            child_path(path, "keyPath"),
            format!("keyPath {p:?} is relative: it is resolved against the working directory"),
        ),
        KeySource::Paths(ps) => {
            for (i, p) in ps.iter().enumerate() {
                if std::path::Path::new(p).is_relative() {
                    warn(
                        index_path(&child_path(path, "keyPaths"), i),
                        format!(
                            "keyPaths entry {p:?} is relative: it is resolved against the working directory"
                        ),
                    );
                }
            }
        }
        _ => {}
    }
    if let PolicyReferenceMatch::RemapIdentity { prefix, .. } = &sb.signed_identity {
        let host = prefix.split('/').next().unwrap_or(prefix);
        if !(host.contains(['.', ':']) || host == "localhost") {
            warn(
                child_path(path, "signedIdentity"),
                format!(
                    "remapIdentity prefix {prefix:?} does not start with a registry host: it never applies, since image names are fully qualified"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::ParseOptions;

    fn never(key: &str) -> bool {
        docker_scope_never_matches(key).is_some()
    }

    #[test]
    fn dead_scopes() {
        for key in [
            "busybox",
            "library/busybox",
            "bogus/key-data-example",
            "myregistry",
            "example.com/Upper",
            "*.example.com/ns",
            "*.example.com:5000",
            "example*.*.com",
            "*.*.com",
            "*.",
            "index.docker.io/library/busybox",
            "docker.io/busybox:latest",
            "docker.io/library/busybox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "example.com/ns:",
        ] {
            assert!(never(key), "{key} should be reported");
        }
        for key in [
            "",
            "docker.io",
            "docker.io/library",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
            "docker.io/busybox",
            "example.com",
            "Example.com",
            "example.com:5000",
            "localhost",
            "localhost/x",
            "127.0.0.1",
            "*.example.com",
            "*.com",
            "*.0.1",
            "private-mirror:5000/vendor-mirror",
            "registry.access.redhat.com",
            "example.com/ns/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                !never(key),
                "{key} should be fine: {:?}",
                docker_scope_never_matches(key)
            );
        }
        assert!(
            docker_scope_never_matches("busybox")
                .unwrap()
                .contains("\"docker.io/library/busybox\"")
        );
    }

    #[test]
    fn lint_document() {
        let p = Policy::parse(
            br#"{"default":[{"type":"insecureAcceptAnything"},{"type":"signedBy","keyType":"GPGKeys","keyData":""}],
                 "transports":{
                   "dokcer":{"":[{"type":"reject"}]},
                   "docker":{
                     "busybox":[{"type":"reject"}],
                     "a.com":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/k"}],
                     "b.com":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchRepository"}}],
                     "c.com":[{"type":"sigstoreSigned","keyPath":"/k"}],
                     "d.com":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"remapIdentity","prefix":"ns/repo","signedPrefix":"e.com"}}],
                     "e.com":[{"type":"signedBy","keyType":"GPGKeys","keyPaths":[]}],
                     "f.com":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"rel.gpg"}]}}}"#,
            ParseOptions::POLICY_FILE,
        )
        .unwrap();
        let w = lint(&p);
        let paths: Vec<&str> = w.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.default[0]",
                "$.default[1].keyData",
                "$.transports.dokcer",
                "$.transports.docker.busybox",
                "$.transports.docker[\"a.com\"][0].keyType",
                "$.transports.docker[\"b.com\"][0]",
                "$.transports.docker[\"c.com\"][0]",
                "$.transports.docker[\"d.com\"][0].signedIdentity",
                "$.transports.docker[\"e.com\"][0].keyPaths",
                "$.transports.docker[\"f.com\"][0].keyPath",
            ],
            "{w:#?}"
        );
        assert!(
            w[3].to_string()
                .starts_with("scope \"busybox\" can never match")
        );
    }

    #[test]
    fn clean_policy_has_no_warnings() {
        let p = Policy::parse(
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{
                "docker.io/library":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/keys/a.gpg"}],
                "*.example.com":[{"type":"insecureAcceptAnything"}]},
                "docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
            ParseOptions::POLICY_FILE,
        )
        .unwrap();
        assert_eq!(lint(&p), vec![]);
    }
}
