//! `signedIdentity` / `baseLayerIdentity`: c/image's `PolicyReferenceMatch`
//! (semantics §3, `policy_reference_match.go`, constructors in
//! `policy_config.go`).
//!
//! A matcher decides whether the `docker-reference` a signature claims is
//! acceptable for the image being admitted. The *intended* reference is the
//! user's reference, normalised (it always has a tag or a digest when it
//! comes from an [`crate::reference::ImageReference`]); the signature's
//! string is parsed with `ParseNormalizedNamed` at match time, and a string
//! that does not parse matches nothing.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::reference::Named;

/// One `signedIdentity` matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyReferenceMatch {
    /// `matchExact`: the signature names exactly the intended reference.
    MatchExact,
    /// `matchRepoDigestOrExact` (the default): exact for tag references,
    /// same repository for digest references.
    MatchRepoDigestOrExact,
    /// `matchRepository`: same repository, any tag or digest.
    MatchRepository,
    /// `exactReference`: the signature names exactly `docker_reference`,
    /// whatever image is being admitted.
    ExactReference { docker_reference: String },
    /// `exactRepository`: the signature names `docker_repository` (any tag
    /// or digest), whatever image is being admitted.
    ExactRepository { docker_repository: String },
    /// `remapIdentity`: like `matchRepoDigestOrExact`, after replacing
    /// `prefix` by `signed_prefix` in the intended reference.
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

/// c/image's vendored `docker/reference` domain grammar (no IPv6 literals in
/// that copy). `crate::reference` keeps its own copy private; `remapIdentity`
/// prefixes need the bare domain and name expressions, so they are rebuilt
/// here from the same building blocks.
const DOMAIN_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const NAME_COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";

fn domain_expression() -> String {
    format!(r"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*(?::[0-9]+)?")
}

static REMAP_DOMAIN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{}$", domain_expression())).expect("domain regexp"));
static REMAP_DOMAIN_PREFIX_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{}/", domain_expression())).expect("domain regexp"));
static REMAP_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        "^(?:{}/)?{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$",
        domain_expression()
    ))
    .expect("name regexp")
});

impl PolicyReferenceMatch {
    /// `NewPRMExactReference`: the reference must parse and carry a tag or
    /// a digest.
    pub fn exact_reference(docker_reference: &str) -> Result<Self, String> {
        let named = Named::parse_normalized(docker_reference).map_err(|e| {
            format!(
                "Invalid format of dockerReference {}: {e}",
                super::config::go_quote(docker_reference)
            )
        })?;
        if named.is_name_only() {
            return Err(format!(
                "dockerReference {} contains neither a tag nor digest",
                super::config::go_quote(docker_reference)
            ));
        }
        Ok(PolicyReferenceMatch::ExactReference {
            docker_reference: docker_reference.to_string(),
        })
    }

    /// `NewPRMExactRepository`: the repository must parse (a tag or digest
    /// is allowed and ignored).
    pub fn exact_repository(docker_repository: &str) -> Result<Self, String> {
        Named::parse_normalized(docker_repository).map_err(|e| {
            format!(
                "Invalid format of dockerRepository {}: {e}",
                super::config::go_quote(docker_repository)
            )
        })?;
        Ok(PolicyReferenceMatch::ExactRepository {
            docker_repository: docker_repository.to_string(),
        })
    }

    /// `NewPRMRemapIdentity`: both prefixes must pass
    /// Whether `s` is a registry host with an optional port, by c/image's
    /// reference grammar.
    pub fn is_domain(s: &str) -> bool {
        REMAP_DOMAIN_RE.is_match(s)
    }

    /// `validateIdentityRemappingPrefix`.
    pub fn remap_identity(prefix: &str, signed_prefix: &str) -> Result<Self, String> {
        validate_remapping_prefix(prefix)?;
        validate_remapping_prefix(signed_prefix)?;
        Ok(PolicyReferenceMatch::RemapIdentity {
            prefix: prefix.to_string(),
            signed_prefix: signed_prefix.to_string(),
        })
    }

    /// The `type` value of this matcher in policy.json.
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicyReferenceMatch::MatchExact => "matchExact",
            PolicyReferenceMatch::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            PolicyReferenceMatch::MatchRepository => "matchRepository",
            PolicyReferenceMatch::ExactReference { .. } => "exactReference",
            PolicyReferenceMatch::ExactRepository { .. } => "exactRepository",
            PolicyReferenceMatch::RemapIdentity { .. } => "remapIdentity",
        }
    }

    /// `matchesDockerReference`: whether a signature claiming
    /// `signature_reference` is acceptable for an image whose (normalised)
    /// reference is `intended`.
    pub fn matches(&self, intended: &Named, signature_reference: &str) -> bool {
        // An unparseable signature identity matches nothing, whatever the matcher.
        let Ok(signature) = Named::parse_normalized(signature_reference) else {
            return false;
        };
        match self {
            PolicyReferenceMatch::MatchExact => {
                !intended.is_name_only()
                    && !signature.is_name_only()
                    && signature.to_string() == intended.to_string()
            }
            PolicyReferenceMatch::MatchRepoDigestOrExact => {
                match_repo_digest_or_exact(intended, &signature)
            }
            PolicyReferenceMatch::MatchRepository => signature.name() == intended.name(),
            PolicyReferenceMatch::ExactReference { docker_reference } => {
                let Ok(wanted) = Named::parse_normalized(docker_reference) else {
                    return false;
                };
                !wanted.is_name_only()
                    && !signature.is_name_only()
                    && signature.to_string() == wanted.to_string()
            }
            PolicyReferenceMatch::ExactRepository { docker_repository } => {
                match Named::parse_normalized(docker_repository) {
                    Ok(wanted) => signature.name() == wanted.name(),
                    Err(_) => false,
                }
            }
            PolicyReferenceMatch::RemapIdentity { .. } => match self.remap(intended) {
                Ok(remapped) => match_repo_digest_or_exact(&remapped, &signature),
                Err(_) => false,
            },
        }
    }

    /// `remapReferencePrefix`: for `remapIdentity`, the identity a signature
    /// must claim for `intended` (the intended reference itself when the
    /// prefix does not apply, or for any other matcher). A rewrite that is
    /// not a canonical reference is an error, which never matches.
    pub fn remap(&self, intended: &Named) -> Result<Named, String> {
        let PolicyReferenceMatch::RemapIdentity {
            prefix,
            signed_prefix,
        } = self
        else {
            return Ok(intended.clone());
        };
        if !name_matches_prefix(&intended.name(), prefix) {
            return Ok(intended.clone());
        }
        let original = intended.to_string();
        // The name starts with the prefix, so the first occurrence is at 0,
        // exactly what Go's strings.Replace(…, 1) rewrites.
        let rewritten = original.replacen(prefix.as_str(), signed_prefix, 1);
        Named::parse_canonical(&rewritten).map_err(|e| {
            format!("error rewriting reference from \"{original}\" to \"{rewritten}\": {e}")
        })
    }
}

/// `matchRepoDigestOrExactReferenceValues`.
fn match_repo_digest_or_exact(intended: &Named, signature: &Named) -> bool {
    if signature.is_name_only() {
        return false;
    }
    if intended.tag().is_some() {
        // NamedTagged, including tag+digest: exact.
        signature.to_string() == intended.to_string()
    } else if intended.digest().is_some() {
        // Digest-only: the manifest digest is checked separately.
        signature.name() == intended.name()
    } else {
        false
    }
}

/// `refMatchesPrefix` of `remapIdentity`: `prefix` is the whole name or a
/// leading run of its `/`-separated components.
pub fn name_matches_prefix(name: &str, prefix: &str) -> bool {
    name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Whether `s` is a registry host with an optional port, by c/image's
/// reference grammar.
pub fn is_domain(s: &str) -> bool {
    REMAP_DOMAIN_RE.is_match(s)
}

/// `validateIdentityRemappingPrefix`.
pub(crate) fn validate_remapping_prefix(s: &str) -> Result<(), String> {
    if REMAP_DOMAIN_RE.is_match(s)
        || (REMAP_NAME_RE.is_match(s) && REMAP_DOMAIN_PREFIX_RE.is_match(s))
    {
        Ok(())
    } else {
        Err(format!(
            "prefix {} is not valid",
            super::config::go_quote(s)
        ))
    }
}

impl fmt::Display for PolicyReferenceMatch {
    /// A one-line description for reports: `matchExact`,
    /// `exactReference "x"`, `remapIdentity "a" -> "b"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyReferenceMatch::ExactReference { docker_reference } => {
                write!(f, "exactReference \"{docker_reference}\"")
            }
            PolicyReferenceMatch::ExactRepository { docker_repository } => {
                write!(f, "exactRepository \"{docker_repository}\"")
            }
            PolicyReferenceMatch::RemapIdentity {
                prefix,
                signed_prefix,
            } => write!(f, "remapIdentity \"{prefix}\" -> \"{signed_prefix}\""),
            other => f.write_str(other.type_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn named(s: &str) -> Named {
        Named::parse_normalized(s).unwrap()
    }

    #[test]
    fn default_matcher_selected_cases() {
        let m = PolicyReferenceMatch::MatchRepoDigestOrExact;
        assert!(m.matches(&named("busybox:latest"), "docker.io/library/busybox:latest"));
        assert!(m.matches(&named("docker.io/library/busybox:latest"), "busybox:latest"));
        assert!(!m.matches(&named("busybox:latest"), "busybox:notlatest"));
        assert!(!m.matches(&named("busybox:latest"), &format!("busybox{D1}")));
        assert!(m.matches(&named(&format!("busybox{D1}")), "busybox:latest"));
        assert!(!m.matches(&named("busybox:latest"), "busybox"));
        assert!(!m.matches(&named("busybox:latest"), "UPPERCASEISINVALID"));
        assert!(!m.matches(&named("busybox:latest"), ""));
    }

    #[test]
    fn exact_and_repository() {
        let d = format!("busybox{D1}");
        assert!(!PolicyReferenceMatch::MatchExact.matches(&named(&d), "busybox:latest"));
        assert!(PolicyReferenceMatch::MatchExact.matches(&named(&d), &d));
        for sig in ["busybox", "busybox:1.2", d.as_str()] {
            assert!(PolicyReferenceMatch::MatchRepository.matches(&named("busybox:latest"), sig));
        }
    }

    #[test]
    fn constructors_validate() {
        assert_eq!(
            PolicyReferenceMatch::exact_reference("busybox").unwrap_err(),
            "dockerReference \"busybox\" contains neither a tag nor digest"
        );
        assert_eq!(
            PolicyReferenceMatch::exact_reference("UPPER:x").unwrap_err(),
            "Invalid format of dockerReference \"UPPER:x\": invalid reference format: repository name must be lowercase"
        );
        assert!(PolicyReferenceMatch::exact_repository("busybox:latest").is_ok());
        assert!(PolicyReferenceMatch::exact_repository("").is_err());
        assert!(PolicyReferenceMatch::remap_identity("ns/repo", "example.com").is_ok());
        assert!(PolicyReferenceMatch::remap_identity("example.com:5000", "localhost").is_ok());
        assert_eq!(
            PolicyReferenceMatch::remap_identity("example.com/Upper", "x.com").unwrap_err(),
            "prefix \"example.com/Upper\" is not valid"
        );
        assert_eq!(
            PolicyReferenceMatch::remap_identity("x.com", "x.com/ns:tag").unwrap_err(),
            "prefix \"x.com/ns:tag\" is not valid"
        );
        assert!(PolicyReferenceMatch::remap_identity("", "x.com").is_err());
    }

    #[test]
    fn remap_examples() {
        let m = PolicyReferenceMatch::remap_identity("docker.io/library", "original.com").unwrap();
        assert!(m.matches(&named("copied:latest"), "original.com/copied:latest"));
        let m =
            PolicyReferenceMatch::remap_identity("mirror.example", "docker.io/library").unwrap();
        assert!(m.matches(&named("mirror.example/busybox:latest"), "busybox:latest"));
        // Unrelated names are matched as matchRepoDigestOrExact.
        assert!(m.matches(&named("other.example/x:1"), "other.example/x:1"));
        let m = PolicyReferenceMatch::remap_identity("mirror.example/ns/image", "notlocalhost")
            .unwrap();
        let err = m.remap(&named("mirror.example/ns/image:tag")).unwrap_err();
        assert!(err.starts_with("error rewriting reference from"), "{err}");
    }

    #[test]
    fn display() {
        assert_eq!(PolicyReferenceMatch::MatchExact.to_string(), "matchExact");
        assert_eq!(
            PolicyReferenceMatch::remap_identity("a.com", "b.com")
                .unwrap()
                .to_string(),
            "remapIdentity \"a.com\" -> \"b.com\""
        );
    }
}
