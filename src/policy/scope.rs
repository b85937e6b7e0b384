//! Scope lookup: which requirement list applies to an image (semantics
//! §1.5, c/image `requirementsForImageRef`).
//!
//! First match wins and nothing is merged: the identity, then the
//! repository and its parent namespaces up to `host[:port]`, then the `*.`
//! wildcards of the host without its port, then the transport's `""`, then
//! the global `default`.

use std::fmt;

use super::config::{Policy, Requirement, scope_path};
use crate::reference::ImageReference;

/// The transport imagegate evaluates: CRI-O pulls with `docker://`.
pub const DOCKER_TRANSPORT: &str = "docker";

/// Which part of a document supplied the requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchedScope {
    /// A scope key of the transport: the identity, a repository or
    /// namespace, a host, or a `*.` wildcard.
    Scope(String),
    /// The transport's `""` scope.
    TransportDefault,
    /// The document's global `default`.
    Default,
}

/// The result of a scope lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeMatch<'a> {
    /// The transport whose section was searched (`docker`).
    pub transport: &'static str,
    pub scope: MatchedScope,
    /// The selected, non-empty requirement list.
    pub requirements: &'a [Requirement],
}

impl ScopeMatch<'_> {
    /// JSON path of the selected list: `$.transports.docker["x"]`,
    /// `$.transports.docker[""]` or `$.default`.
    pub fn json_path(&self) -> String {
        match &self.scope {
            MatchedScope::Scope(key) => scope_path(self.transport, key),
            MatchedScope::TransportDefault => scope_path(self.transport, ""),
            MatchedScope::Default => "$.default".to_string(),
        }
    }
}

impl fmt::Display for MatchedScope {
    /// `scope "x"`, `transport default ""`, `default`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedScope::Scope(key) => write!(f, "scope {key:?}"),
            MatchedScope::TransportDefault => f.write_str("transport default \"\""),
            MatchedScope::Default => f.write_str("default"),
        }
    }
}

impl Policy {
    /// The requirements that apply to `image` under the docker transport.
    /// `None` only when the document has no `default` (Kubernetes documents)
    /// and no scope matched: the document has no opinion on this image.
    pub fn requirements_for(&self, image: &ImageReference) -> Option<ScopeMatch<'_>> {
        if let Some(transport) = self.transport(DOCKER_TRANSPORT) {
            // The identity, then each namespace, most specific first.
            let found = transport
                .scope(image.identity())
                .map(|scope| (image.identity().to_string(), scope))
                .or_else(|| {
                    image.find_policy_configuration_namespace(|key| {
                        transport.scope(key).map(|scope| (key.to_string(), scope))
                    })
                });
            if let Some((key, scope)) = found {
                return Some(ScopeMatch {
                    transport: DOCKER_TRANSPORT,
                    scope: MatchedScope::Scope(key),
                    requirements: &scope.requirements,
                });
            }
            if let Some(scope) = transport.scope("") {
                return Some(ScopeMatch {
                    transport: DOCKER_TRANSPORT,
                    scope: MatchedScope::TransportDefault,
                    requirements: &scope.requirements,
                });
            }
        }
        self.default.as_deref().map(|requirements| ScopeMatch {
            transport: DOCKER_TRANSPORT,
            scope: MatchedScope::Default,
            requirements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::ParseOptions;

    /// A policy whose every scope list is a distinct, recognisable
    /// requirement: `signedBy` with `keyPath` = the scope key.
    fn policy(scopes: &[&str], default: bool, transport_default: bool) -> Policy {
        let mut docker = serde_json::Map::new();
        for s in scopes {
            docker.insert(
                s.to_string(),
                serde_json::json!([{"type":"signedBy","keyType":"GPGKeys","keyPath":format!("/{s}")}]),
            );
        }
        if transport_default {
            docker.insert(
                "".into(),
                serde_json::json!([{"type":"insecureAcceptAnything"}]),
            );
        }
        let mut doc = serde_json::json!({"transports": {"docker": docker}});
        if default {
            doc["default"] = serde_json::json!([{"type":"reject"}]);
        }
        Policy::parse(
            &serde_json::to_vec(&doc).unwrap(),
            ParseOptions {
                require_default: false,
                allow_key_ref: false,
            },
        )
        .unwrap()
    }

    fn lookup(p: &Policy, image: &str) -> Option<MatchedScope> {
        p.requirements_for(&ImageReference::parse(image).unwrap())
            .map(|m| m.scope)
    }

    fn scope(s: &str) -> Option<MatchedScope> {
        Some(MatchedScope::Scope(s.to_string()))
    }

    #[test]
    fn upstream_scope_table() {
        // policy_eval_test.go's scopes (MANIFEST.md "Scope lookup cases").
        let p = policy(
            &[
                "unmatched",
                "deep.com",
                "*.very.deep.com",
                "*.deep.com",
                "deep.com/n1",
                "deep.com/n1/n2",
                "deep.com/n1/n2/n3",
                "deep.com/n1/n2/n3/repo",
                "deep.com/n1/n2/n3/repo:tag2",
            ],
            true,
            true,
        );
        let cases = [
            (
                "deep.com/n1/n2/n3/repo:tag2",
                scope("deep.com/n1/n2/n3/repo:tag2"),
            ),
            (
                "deep.com/n1/n2/n3/repo:nottag2",
                scope("deep.com/n1/n2/n3/repo"),
            ),
            ("deep.com/n1/n2/n3/notrepo:tag2", scope("deep.com/n1/n2/n3")),
            ("deep.com/n1/n2/notn3/repo:tag2", scope("deep.com/n1/n2")),
            ("deep.com/n1/notn2/n3/repo:tag2", scope("deep.com/n1")),
            ("deep.com/notn1/n2/n3/repo:tag2", scope("deep.com")),
            ("very.deep.com/n1/n2/n3/repo:tag2", scope("*.deep.com")),
            (
                "not.very.deep.com/n1/n2/n3/repo:tag2",
                scope("*.very.deep.com"),
            ),
            (
                "this.does-not/match:anything",
                Some(MatchedScope::TransportDefault),
            ),
        ];
        for (image, want) in cases {
            assert_eq!(lookup(&p, image), want, "{image}");
        }
        // The requirements are the selected scope's own.
        let m = p
            .requirements_for(&ImageReference::parse("deep.com/n1/x:1").unwrap())
            .unwrap();
        assert_eq!(m.json_path(), "$.transports.docker[\"deep.com/n1\"]");
        assert!(matches!(&m.requirements[0], Requirement::SignedBy(sb)
            if sb.keys == crate::policy::KeySource::Path("/deep.com/n1".into())));
    }

    #[test]
    fn fallbacks() {
        // No "" in the transport: the global default.
        let p = policy(&["a.com"], true, false);
        assert_eq!(lookup(&p, "b.com/x:1"), Some(MatchedScope::Default));
        // No docker section at all.
        let p = Policy::parse(
            br#"{"default":[{"type":"reject"}],"transports":{"dir":{"":[{"type":"reject"}]}}}"#,
            ParseOptions::POLICY_FILE,
        )
        .unwrap();
        assert_eq!(lookup(&p, "b.com/x:1"), Some(MatchedScope::Default));
        let m = p
            .requirements_for(&ImageReference::parse("b.com/x:1").unwrap())
            .unwrap();
        assert_eq!(m.json_path(), "$.default");
        // No default and nothing matched: no opinion.
        let p = policy(&["a.com"], false, false);
        assert_eq!(lookup(&p, "b.com/x:1"), None);
        assert_eq!(lookup(&p, "a.com/x:1"), scope("a.com"));
        // The transport default wins over the missing global default.
        let p = policy(&["a.com"], false, true);
        assert_eq!(
            lookup(&p, "b.com/x:1"),
            Some(MatchedScope::TransportDefault)
        );
    }

    #[test]
    fn pitfalls() {
        let p = policy(
            &[
                "example.com",
                "*.example.com",
                "127.0.0.1",
                "*.0.1",
                "busybox",
                "library/busybox",
                "localhost",
                "*.3",
            ],
            true,
            false,
        );
        // A host scope must carry the image's port; wildcards ignore it.
        assert_eq!(lookup(&p, "example.com/x:1"), scope("example.com"));
        assert_eq!(
            lookup(&p, "example.com:5000/x:1"),
            Some(MatchedScope::Default)
        );
        assert_eq!(lookup(&p, "a.example.com:5000/x:1"), scope("*.example.com"));
        assert_eq!(lookup(&p, "a.b.example.com/x:1"), scope("*.example.com"));
        assert_eq!(lookup(&p, "127.0.0.1/ns/single:v1"), scope("127.0.0.1"));
        assert_eq!(lookup(&p, "127.0.0.1:5055/ns/single:v1"), scope("*.0.1"));
        assert_eq!(lookup(&p, "10.1.2.3:5000/x:t"), scope("*.3"));
        // Short names never match: scopes are compared with expanded names.
        assert_eq!(lookup(&p, "busybox"), Some(MatchedScope::Default));
        assert_eq!(
            lookup(&p, "docker.io/library/busybox:latest"),
            Some(MatchedScope::Default)
        );
        // Hosts without dots have no wildcards; localhost matches itself.
        assert_eq!(lookup(&p, "localhost/x:1"), scope("localhost"));
        assert_eq!(
            lookup(&p, "localhost:5000/x:1"),
            Some(MatchedScope::Default)
        );
        // More specific wildcards first; any exact scope beats a wildcard.
        let p = policy(
            &["*.example.com", "*.b.example.com", "a.b.example.com/ns"],
            true,
            false,
        );
        assert_eq!(lookup(&p, "x.b.example.com/y:1"), scope("*.b.example.com"));
        assert_eq!(
            lookup(&p, "a.b.example.com/ns/y:1"),
            scope("a.b.example.com/ns")
        );
        // Digest identities are exact keys too.
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let key = format!("a.com/x@{d}");
        let p = policy(&[key.as_str(), "a.com/x"], true, false);
        assert_eq!(lookup(&p, &key), scope(&key));
        assert_eq!(lookup(&p, "a.com/x:1"), scope("a.com/x"));
    }

    #[test]
    fn semantics_doc_example_order() {
        let image = "registry.example.com:5000/a/b/c:tag";
        let mut keys = vec![
            "*.com",
            "*.example.com",
            "registry.example.com:5000",
            "registry.example.com:5000/a",
            "registry.example.com:5000/a/b",
            "registry.example.com:5000/a/b/c",
            "registry.example.com:5000/a/b/c:tag",
        ];
        // Removing the most specific remaining key each time walks the table.
        while let Some(most_specific) = keys.pop() {
            let mut p = policy(&keys, true, true);
            let mut scopes = p.transports[0].scopes().to_vec();
            scopes.push(crate::policy::Scope {
                key: most_specific.to_string(),
                requirements: vec![Requirement::Reject],
            });
            p.transports[0] = crate::policy::TransportScopes::new("docker".into(), scopes);
            assert_eq!(lookup(&p, image), scope(most_specific));
        }
        let p = policy(&[], true, true);
        assert_eq!(lookup(&p, image), Some(MatchedScope::TransportDefault));
    }
}
