//! Docker image references, parsed and normalised exactly as c/image's
//! vendored `docker/reference` and `go-digest` do (semantics §1.4).
//!
//! `oci-client`'s `Reference` is not used here: it lower-cases nothing but
//! also accepts forms c/image refuses and rewrites others (it has no
//! name-only references, and keeps `index.docker.io` in some paths), so the
//! policy-relevant parsing lives in this module, built from the same regular
//! expressions as Go's `reference/regexp.go` so that ambiguous inputs resolve
//! the same way (both use leftmost-first matching).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The registry that short names resolve to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_NAME: &str = "library";
/// `NameTotalLengthMax`.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A reference parse error, in the words of `docker/reference` and go-digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name must be lowercase")]
    NameContainsUppercase,
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    #[error("reference {0} has no name")]
    NoName(String),
    #[error("reference {0} is not in its canonical form")]
    NotCanonical(String),
    #[error("invalid checksum digest format")]
    DigestInvalidFormat,
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    #[error("Docker references with both a tag and digest are currently not supported")]
    TagAndDigest,
}

fn expression(parts: &[&str]) -> String {
    parts.concat()
}
fn optional(parts: &[&str]) -> String {
    format!("(?:{})?", parts.concat())
}
fn repeated(parts: &[&str]) -> String {
    format!("(?:{})+", parts.concat())
}
fn group(parts: &[&str]) -> String {
    format!("(?:{})", parts.concat())
}
fn capture(parts: &[&str]) -> String {
    format!("({})", parts.concat())
}
fn anchored(parts: &[&str]) -> String {
    format!("^{}$", parts.concat())
}

// The building blocks of c/image's `docker/reference/regexp.go`.
const ALPHA_NUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]*)";
const DOMAIN_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
// Go's `\w` is ASCII (`[0-9A-Za-z_]`); Rust's is Unicode, which would both
// accept tags c/image refuses (`vé`) and compile to a huge automaton.
const TAG: &str = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";

fn name_component() -> String {
    expression(&[
        ALPHA_NUMERIC,
        &optional(&[&repeated(&[SEPARATOR, ALPHA_NUMERIC])]),
    ])
}

fn domain() -> String {
    expression(&[
        DOMAIN_COMPONENT,
        &optional(&[&repeated(&[r"\.", DOMAIN_COMPONENT])]),
        &optional(&[":", "[0-9]+"]),
    ])
}

fn name() -> String {
    let nc = name_component();
    expression(&[
        &optional(&[&domain(), "/"]),
        &nc,
        &optional(&[&repeated(&["/", &nc])]),
    ])
}

static REFERENCE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&anchored(&[
        &capture(&[&name()]),
        &optional(&[":", &capture(&[TAG])]),
        &optional(&["@", &capture(&[DIGEST])]),
    ]))
    .expect("reference regexp")
});

static ANCHORED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    let nc = name_component();
    Regex::new(&anchored(&[
        &optional(&[&capture(&[&domain()]), "/"]),
        &capture(&[&nc, &optional(&[&repeated(&["/", &nc])])]),
    ]))
    .expect("name regexp")
});

static ANCHORED_IDENTIFIER_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-f0-9]{64}$").expect("identifier regexp"));

static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&anchored(&[TAG])).expect("tag regexp"));

static DIGEST_ANCHORED_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&anchored(&[&group(&[DIGEST])])).expect("digest regexp"));

/// A content digest (`algorithm:encoded`), validated as go-digest does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: String,
    encoded: String,
}

impl Digest {
    /// go-digest `Parse`: `sha256`, `sha384` and `sha512` with lower-case hex
    /// of the exact length.
    pub fn parse(s: &str) -> Result<Digest, ReferenceError> {
        let i = s.find(':').ok_or(ReferenceError::DigestInvalidFormat)?;
        if i == 0 || i + 1 == s.len() {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        let (algorithm, encoded) = (&s[..i], &s[i + 1..]);
        let size = match algorithm {
            "sha256" => 32,
            "sha384" => 48,
            "sha512" => 64,
            _ => {
                if !DIGEST_ANCHORED_RE.is_match(s) {
                    return Err(ReferenceError::DigestInvalidFormat);
                }
                return Err(ReferenceError::DigestUnsupported);
            }
        };
        if encoded.len() != size * 2 {
            return Err(ReferenceError::DigestInvalidLength);
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        Ok(Digest {
            algorithm: algorithm.to_string(),
            encoded: encoded.to_string(),
        })
    }

    /// The sha256 digest of `bytes` (go-digest `FromBytes`, `digest.Canonical`).
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        use sha2::{Digest as _, Sha256};
        Digest {
            algorithm: "sha256".into(),
            encoded: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The hex part.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

impl std::str::FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// A named docker reference (`reference.Named`): a repository with an
/// optional tag and an optional digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Named {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Named {
    /// `reference.ParseNormalizedNamed`: expands short names to
    /// `docker.io[/library]/…`, rewrites `index.docker.io`, keeps the case of
    /// the domain and refuses upper case in the path.
    pub fn parse_normalized(s: &str) -> Result<Named, ReferenceError> {
        if ANCHORED_IDENTIFIER_RE.is_match(s) {
            return Err(ReferenceError::HexIdentifier(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => &remainder[..],
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError::NameContainsUppercase);
        }
        let full = format!("{domain}/{remainder}");
        let named = parse(&full)?;
        if named.path.is_empty() {
            return Err(ReferenceError::NoName(full));
        }
        Ok(named)
    }

    /// `reference.ParseNamed`: the input must already be canonical
    /// (`ParseNormalizedNamed(s).String() == s`).
    pub fn parse_canonical(s: &str) -> Result<Named, ReferenceError> {
        let named = Named::parse_normalized(s)?;
        if named.to_string() != s {
            return Err(ReferenceError::NotCanonical(s.to_string()));
        }
        Ok(named)
    }

    /// The registry host, with its port if any; case preserved.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path without the domain (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `Name()`: domain and path, no tag or digest.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// `IsNameOnly`: neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `TagNameOnly`: adds `:latest` to a name-only reference.
    pub fn with_default_tag(mut self) -> Named {
        if self.is_name_only() {
            self.tag = Some("latest".into());
        }
        self
    }

    /// The repository alone (`TrimNamed`).
    pub fn trimmed(&self) -> Named {
        Named {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The same repository at `digest`, without a tag (`WithDigest(TrimNamed)`).
    pub fn with_digest_only(&self, digest: Digest) -> Named {
        Named {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository and tag pinned to `digest` (`repo:tag@digest`),
    /// the form digest pinning writes.
    pub fn with_tag_and_digest(&self, digest: Digest) -> Named {
        Named {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: self.tag.clone(),
            digest: Some(digest),
        }
    }

    /// `FamiliarString`: `busybox:latest` for `docker.io/library/busybox:latest`.
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// `FamiliarName`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.split_once('/') {
                Some((OFFICIAL_REPO_NAME, rest)) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }
}

impl fmt::Display for Named {
    /// `String()`: the full normalised form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) if name[..i].contains(['.', ':']) || &name[..i] == "localhost" => {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_NAME}/{remainder}");
    }
    (domain, remainder)
}

/// `reference.Parse` (no normalisation).
fn parse(s: &str) -> Result<Named, ReferenceError> {
    let Some(caps) = REFERENCE_RE.captures(s) else {
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        if REFERENCE_RE.is_match(&s.to_lowercase()) {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let name = caps.get(1).map_or("", |m| m.as_str());
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let (domain, path) = match ANCHORED_NAME_RE.captures(name) {
        Some(n) => (
            n.get(1).map_or("", |m| m.as_str()).to_string(),
            n.get(2).map_or("", |m| m.as_str()).to_string(),
        ),
        None => (String::new(), name.to_string()),
    };
    let tag = caps.get(2).map(|m| m.as_str().to_string());
    let digest = caps.get(3).map(|m| Digest::parse(m.as_str())).transpose()?;
    Ok(Named {
        domain,
        path,
        tag,
        digest,
    })
}

/// Whether `tag` is a valid tag (Go's `[\w][\w.-]{0,127}`, ASCII).
pub fn is_valid_tag(tag: &str) -> bool {
    TAG_RE.is_match(tag)
}

/// A reference in the docker transport: what c/image evaluates a policy
/// against. It always has exactly one of a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    named: Named,
    /// `named` as a string (the policy identity), kept: scope lookup, cache
    /// keys and verdicts all need it for every review.
    identity: String,
}

impl ImageReference {
    fn new(named: Named) -> ImageReference {
        let identity = named.to_string();
        ImageReference { named, identity }
    }

    /// `docker.ParseReference` as Skopeo uses it: a `docker://` prefix is
    /// optional, a name-only reference gets `:latest`, and a reference with
    /// both a tag and a digest is refused.
    pub fn parse(s: &str) -> Result<ImageReference, ReferenceError> {
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let named = Named::parse_normalized(s)?.with_default_tag();
        if named.tag.is_some() && named.digest.is_some() {
            return Err(ReferenceError::TagAndDigest);
        }
        Ok(ImageReference::new(named))
    }

    /// The reference CRI-O evaluates for a pod's `image:` string: as
    /// [`ImageReference::parse`], but a `repo:tag@digest` is evaluated as
    /// `repo@digest` (`RegistryImageReferenceFromRaw` strips the tag).
    pub fn from_pod_image(s: &str) -> Result<ImageReference, ReferenceError> {
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let mut named = Named::parse_normalized(s)?.with_default_tag();
        if named.digest.is_some() {
            named.tag = None;
        }
        Ok(ImageReference::new(named))
    }

    /// Wraps a named reference that has exactly one of a tag or digest.
    pub fn from_named(named: Named) -> Result<ImageReference, ReferenceError> {
        let named = named.with_default_tag();
        if named.tag.is_some() && named.digest.is_some() {
            return Err(ReferenceError::TagAndDigest);
        }
        Ok(ImageReference::new(named))
    }

    /// `DockerReference()`: the normalised reference.
    pub fn docker_reference(&self) -> &Named {
        &self.named
    }

    /// `transports.ImageName`: `docker://busybox:latest`.
    pub fn image_name(&self) -> String {
        format!("docker://{}", self.named.familiar_string())
    }

    /// `PolicyConfigurationIdentity`: `name:tag` or `name@digest`.
    pub fn policy_configuration_identity(&self) -> String {
        self.identity.clone()
    }

    /// The same, borrowed (also what `Display` writes).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `PolicyConfigurationNamespaces` (`DockerReferenceNamespaces`): the
    /// repository, each parent namespace, the host with its port, then the
    /// `*.` wildcards of the host without its port, most specific first.
    pub fn policy_configuration_namespaces(&self) -> Vec<String> {
        docker_reference_namespaces(&self.named)
    }

    /// The first of [`Self::policy_configuration_namespaces`], in order,
    /// for which `visit` returns something, without building the list.
    pub fn find_policy_configuration_namespace<T>(
        &self,
        visit: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        find_docker_reference_namespace(&self.named, visit)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identity)
    }
}

/// `policyconfiguration.DockerReferenceNamespaces`.
pub fn docker_reference_namespaces(named: &Named) -> Vec<String> {
    let mut res = Vec::new();
    find_docker_reference_namespace(named, |n| {
        res.push(n.to_string());
        None::<()>
    });
    res
}

/// Visits `DockerReferenceNamespaces` most specific first (the repository,
/// each parent, the host with its port, then `*.` wildcards of the host
/// without its port) until `visit` returns something.
fn find_docker_reference_namespace<T>(
    named: &Named,
    mut visit: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let full = named.name();
    let mut name = full.as_str();
    if let Some(found) = visit(name) {
        return Some(found);
    }
    while let Some(i) = name.rfind('/') {
        name = &name[..i];
        if let Some(found) = visit(name) {
            return Some(found);
        }
    }
    if let Some(i) = name.find(':') {
        name = &name[..i];
    }
    let mut wildcard = String::with_capacity(name.len() + 2);
    while let Some(i) = name.find('.') {
        name = &name[i + 1..];
        wildcard.clear();
        wildcard.push_str("*.");
        wildcard.push_str(name);
        if let Some(found) = visit(&wildcard) {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Named::parse_normalized(s).unwrap().to_string()
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox");
        assert_eq!(norm("busybox:latest"), "docker.io/library/busybox:latest");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox");
        assert_eq!(norm("index.docker.io/busybox"), "docker.io/library/busybox");
        assert_eq!(norm("index.docker.io/ns/app:1"), "docker.io/ns/app:1");
        assert_eq!(norm("testing/manifest"), "docker.io/testing/manifest");
        assert_eq!(norm("localhost/x"), "localhost/x");
        assert_eq!(norm("localhost:5000/x:t"), "localhost:5000/x:t");
        assert_eq!(norm("Example.com/x"), "Example.com/x");
        assert_eq!(
            norm("127.0.0.1:5000/e2e/hello:v1"),
            "127.0.0.1:5000/e2e/hello:v1"
        );
        assert_eq!(
            norm(&format!("busybox:latest@{D1}")),
            format!("docker.io/library/busybox:latest@{D1}")
        );
        assert_eq!(
            norm("registry.access.redhat.com/rhel7/rhel:7.2.3"),
            "registry.access.redhat.com/rhel7/rhel:7.2.3"
        );
    }

    #[test]
    fn rejections() {
        use ReferenceError::*;
        let e = |s: &str| Named::parse_normalized(s).unwrap_err();
        assert_eq!(e("UPPERCASEISINVALID"), NameContainsUppercase);
        assert_eq!(e("example.com/Upper"), NameContainsUppercase);
        assert_eq!(e(""), InvalidFormat);
        assert!(matches!(
            e(&"a".repeat(64).replace('a', "b")),
            HexIdentifier(_)
        ));
        assert_eq!(e("busybox:"), InvalidFormat);
        assert_eq!(e("busybox@sha256:abc"), InvalidFormat);
        assert_eq!(
            e(&format!("busybox@sha256:{}", "a".repeat(32))),
            DigestInvalidLength
        );
        assert_eq!(
            e(&format!(
                "busybox@{}",
                D1.to_uppercase().replace("SHA256", "sha256")
            )),
            DigestInvalidFormat
        );
        assert_eq!(
            e(&format!("busybox@md5:{}", "0".repeat(32))),
            DigestUnsupported
        );
        assert_eq!(e(&format!("busybox:{}", "t".repeat(129))), InvalidFormat);
        assert!(Named::parse_normalized(&format!("busybox:{}", "t".repeat(128))).is_ok());
        let long = format!("example.com/{}", "a".repeat(244));
        assert_eq!(long.len(), 256);
        assert_eq!(e(&long), NameTooLong);
        assert!(Named::parse_normalized(&long[..255]).is_ok());
    }

    #[test]
    fn tags_are_ascii_as_in_go() {
        assert_eq!(
            Named::parse_normalized("busybox:v\u{e9}").unwrap_err(),
            ReferenceError::InvalidFormat
        );
        assert!(is_valid_tag("v1.2_3-rc"));
        assert!(!is_valid_tag("\u{e9}"));
    }

    #[test]
    fn sha384_and_sha512_digests_parse() {
        assert!(Digest::parse(&format!("sha384:{}", "a".repeat(96))).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert_eq!(
            Digest::parse("sha256").unwrap_err(),
            ReferenceError::DigestInvalidFormat
        );
        assert_eq!(
            Digest::parse(":aa").unwrap_err(),
            ReferenceError::DigestInvalidFormat
        );
    }

    #[test]
    fn canonical() {
        assert!(Named::parse_canonical("docker.io/library/busybox:latest").is_ok());
        assert!(Named::parse_canonical("busybox:latest").is_err());
        assert!(Named::parse_canonical("notlocalhost:tag").is_err());
    }

    #[test]
    fn familiar() {
        let f = |s: &str| Named::parse_normalized(s).unwrap().familiar_string();
        assert_eq!(f("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(f("docker.io/ns/app:v1"), "ns/app:v1");
        assert_eq!(f("quay.io/ns/app:v1"), "quay.io/ns/app:v1");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b");
    }

    #[test]
    fn image_reference() {
        let r = ImageReference::parse("docker://busybox").unwrap();
        assert_eq!(
            r.policy_configuration_identity(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(r.image_name(), "docker://busybox:latest");
        assert_eq!(
            ImageReference::parse(&format!("busybox:v1@{D1}")).unwrap_err(),
            ReferenceError::TagAndDigest
        );
        let pod = ImageReference::from_pod_image(&format!("busybox:v1@{D1}")).unwrap();
        assert_eq!(pod.to_string(), format!("docker.io/library/busybox@{D1}"));
    }

    #[test]
    fn namespaces_in_lookup_order() {
        let r = ImageReference::parse("registry.example.com:5000/a/b/c:tag").unwrap();
        assert_eq!(
            r.policy_configuration_identity(),
            "registry.example.com:5000/a/b/c:tag"
        );
        assert_eq!(
            r.policy_configuration_namespaces(),
            [
                "registry.example.com:5000/a/b/c",
                "registry.example.com:5000/a/b",
                "registry.example.com:5000/a",
                "registry.example.com:5000",
                "*.example.com",
                "*.com",
            ]
        );
        let r = ImageReference::parse("localhost:5000/x:t").unwrap();
        assert_eq!(
            r.policy_configuration_namespaces(),
            ["localhost:5000/x", "localhost:5000"]
        );
        let r = ImageReference::parse("10.1.2.3:5000/x:t").unwrap();
        assert_eq!(
            r.policy_configuration_namespaces(),
            [
                "10.1.2.3:5000/x",
                "10.1.2.3:5000",
                "*.1.2.3",
                "*.2.3",
                "*.3"
            ]
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_arbitrary_strings_never_panics(s in "\\PC{0,300}") {
                let _ = Named::parse_normalized(&s);
                let _ = ImageReference::parse(&s);
                let _ = ImageReference::from_pod_image(&s);
                let _ = Digest::parse(&s);
            }

            #[test]
            fn normalisation_is_idempotent(
                host in prop::option::of("[a-z0-9]{1,10}(\\.[a-z0-9]{1,8}){0,2}(:[0-9]{1,5})?"),
                path in "[a-z0-9]{1,8}([._-][a-z0-9]{1,5})?(/[a-z0-9]{1,8}){0,3}",
                tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            ) {
                let mut s = match &host { Some(h) => format!("{h}/{path}"), None => path.clone() };
                if let Some(t) = &tag { s.push(':'); s.push_str(t); }
                if let Ok(named) = Named::parse_normalized(&s) {
                    let again = Named::parse_normalized(&named.to_string()).unwrap();
                    prop_assert_eq!(&again, &named);
                    prop_assert!(Named::parse_canonical(&named.to_string()).is_ok());
                    prop_assert!(named.name().len() <= NAME_TOTAL_LENGTH_MAX);
                    let r = ImageReference::from_named(named.clone()).unwrap();
                    let ns = r.policy_configuration_namespaces();
                    prop_assert_eq!(&ns[0], &named.name());
                    prop_assert!(ns.iter().all(|k| !k.contains('@') && !k.ends_with(':')));
                }
            }
        }
    }
}
