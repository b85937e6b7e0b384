//! c/image conformance for the policy module: every row of
//! `tests/fixtures/cimage/MANIFEST.md` that is decided at the policy level
//! (identity-matching tables, scope lookup, policy-file fixtures, `dir-img-*`
//! policy cases, upstream and generated signatures evaluated through a
//! `signedBy` requirement), plus robustness of the parser.

use std::path::{Path, PathBuf};

use imagegate::policy::keys::go_read_file;
use imagegate::policy::{
    FilesystemKeyResolver, ImageMaterial, KeySource, KeyType, MatchedScope, ParseOptions, Policy,
    PolicyReferenceMatch, RejectionStage, Requirement, RequirementOutcome, SignatureOutcome,
    SignedBy, Verdict, identity::name_matches_prefix, is_running_image_allowed, lint,
};
use imagegate::reference::{ImageReference, Named};
use imagegate::signature::blob::{StoredSignature, from_blob};

const D1: &str = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const D2: &str = "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const RHEL: &str = "registry.access.redhat.com/rhel7/rhel:7.2.3";
const RHEL_REPO: &str = "registry.access.redhat.com/rhel7/rhel";
/// The digest of `image.manifest.json` ("D" in MANIFEST.md).
const D: &str = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";
const TESTING_LATEST: &str = "docker.io/testing/manifest:latest";

fn cimage() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cimage")
}

fn fixtures() -> PathBuf {
    cimage().join("upstream/signature/fixtures")
}

fn generated() -> PathBuf {
    cimage().join("generated")
}

fn s(a: &str, b: &str) -> String {
    format!("{a}{b}")
}

// ---------------------------------------------------------------------------
// Identity-matching conformance tables
// ---------------------------------------------------------------------------

/// Upstream `prmExactMatchTestTable`: (image, signature, expected), symmetric.
fn exact_table() -> Vec<(String, String, bool)> {
    let t = |a: &str, b: &str, r: bool| (a.to_string(), b.to_string(), r);
    vec![
        t("busybox:latest", "busybox:latest", true),
        t(RHEL, RHEL, true),
        t(&s("busybox", D1), &s("busybox", D1), true),
        t("library/busybox:latest", "busybox:latest", true),
        t("docker.io/library/busybox:latest", "busybox:latest", true),
        t(&s("library/busybox", D1), &s("busybox", D1), true),
        t("busybox:latest", "busybox:notlatest", false),
        t("busybox:latest", "notbusybox:latest", false),
        t(
            "busybox:latest",
            "hostname/library/busybox:notlatest",
            false,
        ),
        t(
            "hostname/library/busybox:latest",
            "busybox:notlatest",
            false,
        ),
        t("busybox:latest", RHEL, false),
        t(&s("busybox", D1), &s("notbusybox", D1), false),
        t("busybox:latest", &s("busybox", D1), false),
        t(&s("busybox", D1), &s("busybox", D2), false),
        t("busybox", "busybox:latest", false),
        t("busybox", &s("busybox", D1), false),
        t("busybox", "busybox", false),
        t(&s("busybox:latest", D1), &s("busybox:latest", D1), true),
        t(&s("busybox:latest", D1), &s("busybox:latest", D2), false),
        t(&s("busybox:latest", D1), &s("busybox:notlatest", D1), false),
        t(&s("busybox:latest", D1), &s("busybox", D1), false),
        t(&s("busybox:latest", D1), "busybox:latest", false),
        t(
            "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES",
            "busybox:latest",
            false,
        ),
        t("", "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES", false),
        t("INVALID", "INVALID", false),
        t("", "", false),
    ]
}

/// Upstream `prmRepositoryMatchTestTable`: symmetric.
fn repository_table() -> Vec<(String, String, bool)> {
    let t = |a: &str, b: &str, r: bool| (a.to_string(), b.to_string(), r);
    vec![
        t("busybox:latest", "busybox:latest", true),
        t(RHEL, RHEL, true),
        t(&s("busybox", D1), &s("busybox", D1), true),
        t("library/busybox:latest", "busybox:latest", true),
        t("docker.io/library/busybox:latest", "busybox:latest", true),
        t(&s("library/busybox", D1), &s("busybox", D1), true),
        t("busybox:latest", "busybox:notlatest", true),
        t(&s(RHEL, "tagsuffix"), RHEL, true),
        t("library/busybox:latest", "busybox:notlatest", true),
        t("busybox:latest", "library/busybox:notlatest", true),
        t(
            "docker.io/library/busybox:notlatest",
            "busybox:latest",
            true,
        ),
        t(
            "busybox:notlatest",
            "docker.io/library/busybox:latest",
            true,
        ),
        t("busybox:latest", &s("busybox", D1), true),
        t(&s("busybox", D1), &s("busybox", D2), true),
        t("busybox", "busybox:notlatest", true),
        t(RHEL_REPO, RHEL, true),
        t("busybox", &s("busybox", D1), true),
        t("library/busybox", "busybox", true),
        t("docker.io/library/busybox", "busybox", true),
        t("busybox:latest", "notbusybox:latest", false),
        t(
            "hostname/library/busybox:latest",
            "busybox:notlatest",
            false,
        ),
        t("busybox:latest", RHEL, false),
        t(&s("busybox", D1), &s("notbusybox", D1), false),
        t(&s("busybox:latest", D1), &s("busybox:latest", D1), true),
        t(&s("busybox:latest", D1), &s("busybox:latest", D2), true),
        t(&s("busybox:latest", D1), &s("busybox:notlatest", D1), true),
        t(&s("busybox:latest", D1), &s("busybox", D1), true),
        t(&s("busybox:latest", D1), "busybox:latest", true),
        t(
            "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES",
            "busybox:latest",
            false,
        ),
        t("", "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES", false),
        t("INVALID", "INVALID", false),
    ]
}

/// Both orders of a symmetric table.
fn both_orders(table: Vec<(String, String, bool)>) -> Vec<(String, String, bool)> {
    table
        .into_iter()
        .flat_map(|(a, b, r)| [(a.clone(), b.clone(), r), (b, a, r)])
        .collect()
}

/// A matcher's verdict for (image, signature); an image reference that does
/// not parse never matches (c/image fails `parseImageAndDockerReference`).
fn image_match(m: &PolicyReferenceMatch, image: &str, signature: &str) -> bool {
    match Named::parse_normalized(image) {
        Ok(intended) => m.matches(&intended, signature),
        Err(_) => false,
    }
}

/// The pulled image's name is irrelevant to exactReference/exactRepository.
fn unrelated_image() -> Named {
    Named::parse_normalized("unrelated.example/other:tag").unwrap()
}

#[test]
fn identity_exact_match_table() {
    for (image, sig, want) in both_orders(exact_table()) {
        assert_eq!(
            image_match(&PolicyReferenceMatch::MatchExact, &image, &sig),
            want,
            "matchExact {image:?} ~ {sig:?}"
        );
        // exactReference with the pair swapped: the policy names `image`.
        let got = match PolicyReferenceMatch::exact_reference(&image) {
            Ok(m) => m.matches(&unrelated_image(), &sig),
            Err(_) => false,
        };
        assert_eq!(got, want, "exactReference {image:?} ~ {sig:?}");
    }
}

#[test]
fn identity_repository_match_table() {
    for (image, sig, want) in both_orders(repository_table()) {
        assert_eq!(
            image_match(&PolicyReferenceMatch::MatchRepository, &image, &sig),
            want,
            "matchRepository {image:?} ~ {sig:?}"
        );
        let got = match PolicyReferenceMatch::exact_repository(&image) {
            Ok(m) => m.matches(&unrelated_image(), &sig),
            Err(_) => false,
        };
        assert_eq!(got, want, "exactRepository {image:?} ~ {sig:?}");
    }
}

#[test]
fn identity_repo_digest_or_exact_table() {
    let m = PolicyReferenceMatch::MatchRepoDigestOrExact;
    let name_only = |r: &str| Named::parse_normalized(r).is_ok_and(|n| n.is_name_only());
    // Every exact-true pair is accepted.
    for (image, sig, want) in both_orders(exact_table()) {
        if want {
            assert!(image_match(&m, &image, &sig), "{image:?} ~ {sig:?}");
        }
    }
    // Every repository-false pair is rejected.
    for (image, sig, want) in both_orders(repository_table()) {
        if !want {
            assert!(!image_match(&m, &image, &sig), "{image:?} ~ {sig:?}");
        }
    }
    // Repository-true pairs: name-only on either side and differing tags are
    // rejected; digest-only images accept any signature on the repository.
    for (image, sig, _) in both_orders(repository_table()).into_iter().filter(|r| r.2) {
        let intended = Named::parse_normalized(&image).unwrap();
        let signature = Named::parse_normalized(&sig).unwrap();
        let want = if name_only(&image) || name_only(&sig) {
            false
        } else if intended.tag().is_some() {
            intended.to_string() == signature.to_string()
        } else {
            true
        };
        assert_eq!(image_match(&m, &image, &sig), want, "{image:?} ~ {sig:?}");
    }
    let explicit = [
        ("busybox:latest", "busybox:notlatest", false),
        (
            "docker.io/library/busybox:latest",
            "library/busybox:notlatest",
            false,
        ),
        ("busybox", "busybox:latest", false),
        ("busybox:latest", "busybox", false),
        ("busybox:latest", &s("busybox", D1), false),
        (&s("busybox:latest", D1), "busybox:latest", false),
        (&s("busybox:latest", D1), &s("busybox", D1), false),
        (&s("busybox:latest", D1), &s("busybox:latest", D1), true),
        (&s("busybox", D1), "busybox:latest", true),
        (&s("busybox", D1), &s("busybox", D2), true),
        (&s("busybox", D1), &s("notbusybox", D1), false),
    ];
    for (image, sig, want) in explicit {
        assert_eq!(image_match(&m, image, sig), want, "{image:?} ~ {sig:?}");
    }
}

#[test]
fn identity_remap_prefix_matching() {
    let cases = [
        ("docker.io/image", "docker.io", true),
        ("docker.io/image", "example.com", false),
        ("example.com:5000/image", "example.com:5000", true),
        ("example.com:50000/image", "example.com:5000", false),
        ("example.com:5000/image", "example.com", false),
        ("example.com/foo/bar:baz", "example.com", true),
        ("docker.io/ns/image", "docker.io/library", false),
        ("docker.io/libraryy/image", "docker.io/library", false),
        ("docker.io/library/busybox", "docker.io/library", true),
        ("example.com/ns2/image", "example.com/ns", false),
        ("example.com:5000/ns/image", "example.com/ns", false),
        (
            "docker.io/library/busybox2",
            "docker.io/library/busybox",
            false,
        ),
        (
            &s("example.com/ns/image:tag", D1),
            "example.com/ns/image",
            true,
        ),
    ];
    for (reference, prefix, want) in cases {
        let name = Named::parse_normalized(reference).unwrap().name();
        assert_eq!(
            name_matches_prefix(&name, prefix),
            want,
            "{reference} / {prefix}"
        );
        // The same through the matcher's rewrite.
        let m = PolicyReferenceMatch::remap_identity(prefix, "rewritten.example/x").unwrap();
        let intended = Named::parse_normalized(reference).unwrap();
        let remapped = m.remap(&intended).unwrap();
        assert_eq!(remapped != intended, want, "{reference} / {prefix}");
    }
}

#[test]
fn identity_remap_rewrites() {
    let cases: [(&str, &str, &str, Option<&str>); 6] = [
        (
            "mirror.example",
            "vendor.example",
            "mirror.example/ns/image:tag",
            Some("vendor.example/ns/image:tag"),
        ),
        (
            "docker.io",
            "not-docker-signed.example",
            "busybox",
            Some("not-docker-signed.example/library/busybox"),
        ),
        (
            "docker.io/library",
            "not-docker-signed.example/ns",
            "busybox",
            Some("not-docker-signed.example/ns/busybox"),
        ),
        (
            "mirror.example",
            "vendor.example",
            "prefixmirror.example/ns/image:tag",
            Some("prefixmirror.example/ns/image:tag"),
        ),
        (
            "mirror.example/ns/image",
            "vendor.example:5000",
            "mirror.example/ns/image:tag",
            None,
        ),
        (
            "mirror.example/ns/image",
            "notlocalhost",
            "mirror.example/ns/image:tag",
            None,
        ),
    ];
    for (prefix, signed_prefix, image, want) in cases {
        let m = PolicyReferenceMatch::remap_identity(prefix, signed_prefix).unwrap();
        let intended = Named::parse_normalized(image).unwrap();
        let got = m.remap(&intended).ok().map(|n| n.to_string());
        assert_eq!(got.as_deref(), want, "{prefix} -> {signed_prefix}: {image}");
        if want.is_none() {
            // A failed rewrite matches nothing, not even the image itself.
            assert!(!m.matches(&intended.clone().with_default_tag(), image));
        }
    }
}

#[test]
fn identity_semantics_selected_cases() {
    let default = PolicyReferenceMatch::MatchRepoDigestOrExact;
    let x = s("busybox", D1);
    let y = s("busybox", D2);
    let cases: Vec<(PolicyReferenceMatch, &str, &str, bool)> = vec![
        (
            default.clone(),
            "busybox:latest",
            "docker.io/library/busybox:latest",
            true,
        ),
        (
            default.clone(),
            "docker.io/library/busybox:latest",
            "busybox:latest",
            true,
        ),
        (
            default.clone(),
            "busybox:latest",
            "busybox:notlatest",
            false,
        ),
        (default.clone(), "busybox:latest", &x, false),
        (default.clone(), &x, "busybox:latest", true),
        (default.clone(), &x, &y, true),
        (default.clone(), "busybox:latest", "busybox", false),
        (
            PolicyReferenceMatch::MatchExact,
            &x,
            "busybox:latest",
            false,
        ),
        (PolicyReferenceMatch::MatchExact, &x, &x, true),
        (
            PolicyReferenceMatch::MatchRepository,
            "busybox:latest",
            "busybox",
            true,
        ),
        (
            PolicyReferenceMatch::MatchRepository,
            "busybox:latest",
            "busybox:1.2",
            true,
        ),
        (
            PolicyReferenceMatch::MatchRepository,
            "busybox:latest",
            &x,
            true,
        ),
        (
            default.clone(),
            "busybox:latest",
            "UPPERCASEISINVALID",
            false,
        ),
        (
            PolicyReferenceMatch::MatchRepository,
            "busybox:latest",
            "",
            false,
        ),
        (
            PolicyReferenceMatch::remap_identity("docker.io/library", "original.com").unwrap(),
            "copied:latest",
            "original.com/copied:latest",
            true,
        ),
        (
            PolicyReferenceMatch::remap_identity("mirror.example", "docker.io/library").unwrap(),
            "mirror.example/busybox:latest",
            "busybox:latest",
            true,
        ),
    ];
    for (m, image, sig, want) in cases {
        let intended = ImageReference::parse(image).unwrap();
        assert_eq!(
            m.matches(intended.docker_reference(), sig),
            want,
            "{m} {image} ~ {sig}"
        );
    }
}

// ---------------------------------------------------------------------------
// Scope lookup and policy-file fixtures
// ---------------------------------------------------------------------------

#[test]
fn scope_lookup_table() {
    let scopes = [
        "",
        "unmatched",
        "deep.com",
        "*.very.deep.com",
        "*.deep.com",
        "deep.com/n1",
        "deep.com/n1/n2",
        "deep.com/n1/n2/n3",
        "deep.com/n1/n2/n3/repo",
        "deep.com/n1/n2/n3/repo:tag2",
    ];
    let docker: serde_json::Map<String, serde_json::Value> = scopes
        .iter()
        .map(|k| (k.to_string(), serde_json::json!([{"type": "reject"}])))
        .collect();
    let doc =
        serde_json::json!({"default": [{"type": "reject"}], "transports": {"docker": docker}});
    let p = Policy::parse(
        &serde_json::to_vec(&doc).unwrap(),
        ParseOptions::POLICY_FILE,
    )
    .unwrap();
    let cases = [
        ("deep.com/n1/n2/n3/repo:tag2", "deep.com/n1/n2/n3/repo:tag2"),
        ("deep.com/n1/n2/n3/repo:nottag2", "deep.com/n1/n2/n3/repo"),
        ("deep.com/n1/n2/n3/notrepo:tag2", "deep.com/n1/n2/n3"),
        ("deep.com/n1/n2/notn3/repo:tag2", "deep.com/n1/n2"),
        ("deep.com/n1/notn2/n3/repo:tag2", "deep.com/n1"),
        ("deep.com/notn1/n2/n3/repo:tag2", "deep.com"),
        ("very.deep.com/n1/n2/n3/repo:tag2", "*.deep.com"),
        ("not.very.deep.com/n1/n2/n3/repo:tag2", "*.very.deep.com"),
        ("this.does-not/match:anything", ""),
    ];
    for (image, want) in cases {
        let m = p
            .requirements_for(&ImageReference::parse(image).unwrap())
            .unwrap();
        let want = if want.is_empty() {
            MatchedScope::TransportDefault
        } else {
            MatchedScope::Scope(want.to_string())
        };
        assert_eq!(m.scope, want, "{image}");
    }
    // Without "" in the transport, the global default.
    let p = Policy::parse(
        br#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"deep.com":[{"type":"reject"}]}}}"#,
        ParseOptions::POLICY_FILE,
    )
    .unwrap();
    let m = p
        .requirements_for(&ImageReference::parse("this.does-not/match:anything").unwrap())
        .unwrap();
    assert_eq!(m.scope, MatchedScope::Default);
    assert_eq!(m.requirements, [Requirement::InsecureAcceptAnything]);
}

fn upstream_policy() -> Policy {
    let bytes = std::fs::read(fixtures().join("policy.json")).unwrap();
    Policy::parse(&bytes, ParseOptions::POLICY_FILE).unwrap()
}

#[test]
fn upstream_policy_json_shape() {
    let p = upstream_policy();
    assert_eq!(p.default, Some(vec![Requirement::Reject]));
    assert_eq!(
        p.transports
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["dir", "docker"]
    );
    let dir = p.transport("dir").unwrap();
    assert_eq!(
        dir.scope("").unwrap().requirements,
        [Requirement::InsecureAcceptAnything]
    );
    let docker = p.transport("docker").unwrap();
    assert_eq!(
        docker
            .scopes()
            .iter()
            .map(|s| s.key.as_str())
            .collect::<Vec<_>>(),
        [
            "example.com/playground",
            "example.com/production",
            "example.com/hardened",
            "example.com/hardened-x509",
            "registry.access.redhat.com",
            "registry.redhat.io/beta",
            "private-mirror:5000/vendor-mirror",
            "*.access.redhat.com",
            "*.redhat.com",
            "*.com",
            "bogus/key-data-example",
            "bogus/signed-identity-example",
            "example.com/sigstore/key-data-example",
            "example.com/sigstore/key-path-example",
        ]
    );
    let reqs = |k: &str| &docker.scope(k).unwrap().requirements;
    assert_eq!(
        reqs("example.com/production"),
        &[Requirement::SignedBy(SignedBy {
            key_type: KeyType::GpgKeys,
            keys: KeySource::Path("/keys/employee-gpg-keyring".into()),
            signed_identity: PolicyReferenceMatch::MatchRepoDigestOrExact,
        })]
    );
    let hardened = reqs("example.com/hardened");
    assert_eq!(hardened.len(), 3);
    assert!(matches!(&hardened[1], Requirement::SignedBy(sb)
        if sb.key_type == KeyType::SignedByGpgKeys && sb.signed_identity == PolicyReferenceMatch::MatchExact));
    assert!(matches!(&hardened[2], Requirement::SignedBaseLayer(bl)
        if bl.base_layer_identity == PolicyReferenceMatch::ExactRepository { docker_repository: "registry.access.redhat.com/rhel7/rhel".into() }));
    assert!(
        matches!(&reqs("registry.redhat.io/beta")[0], Requirement::SignedBy(sb)
        if sb.keys == KeySource::Paths(vec!["/keys/RH-production-signing-key-gpg-keyring".into(), "/keys/RH-beta-signing-key-gpg-keyring".into()]))
    );
    assert!(
        matches!(&reqs("private-mirror:5000/vendor-mirror")[0], Requirement::SignedBy(sb)
        if sb.signed_identity == PolicyReferenceMatch::RemapIdentity { prefix: "private-mirror:5000/vendor-mirror".into(), signed_prefix: "vendor.example.com".into() })
    );
    assert!(
        matches!(&reqs("bogus/key-data-example")[0], Requirement::SignedBy(sb)
        if sb.keys == KeySource::Data(b"nonsense".to_vec()))
    );
    assert!(
        matches!(&reqs("example.com/sigstore/key-path-example")[0], Requirement::SigstoreSigned(ss)
        if ss.signed_identity == PolicyReferenceMatch::MatchRepository)
    );
    // lint names the scopes that can never match and the always-denying requirements.
    let warnings = lint(&p);
    let text: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    for needle in [
        "scope \"bogus/key-data-example\" can never match",
        "scope \"bogus/signed-identity-example\" can never match",
        "keyType \"signedByGPGKeys\" is not implemented",
        "keyType \"X509Certificates\" is not implemented",
        "signedBaseLayer is not implemented",
        "sigstoreSigned is not supported",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "{needle}: {text:#?}"
        );
    }
}

#[test]
fn upstream_policy_json_evaluation_without_signatures() {
    let p = upstream_policy();
    let keys = FilesystemKeyResolver::new();
    let verdict = |image: &str, signatures: Vec<StoredSignature>| -> (MatchedScope, Verdict) {
        let m = ImageMaterial::new(
            ImageReference::parse(image).unwrap(),
            Err("no manifest".into()),
            Ok(signatures),
        );
        let pv = p.is_running_image_allowed(&m, &keys).unwrap();
        (pv.scope.scope, pv.verdict)
    };
    let (scope, v) = verdict("example.com/playground/app:1", vec![]);
    assert_eq!(scope, MatchedScope::Scope("example.com/playground".into()));
    assert!(v.allowed);
    let (scope, v) = verdict("quay.io/x:1", vec![]);
    assert_eq!(scope, MatchedScope::Default);
    assert_eq!(
        v.reason.as_deref(),
        Some("Running image docker://quay.io/x:1 is rejected by policy.")
    );
    // signedByGPGKeys: no signature at all, then one (any blob).
    let (scope, v) = verdict("other.com/x:1", vec![]);
    assert_eq!(scope, MatchedScope::Scope("*.com".into()));
    assert_eq!(
        v.reason.as_deref(),
        Some("A signature was required, but no signature exists")
    );
    let blob = StoredSignature::SimpleSigning(vec![0xa3, 0x01]);
    let (_, v) = verdict("other.com/x:1", vec![blob.clone()]);
    assert_eq!(
        v.reason.as_deref(),
        Some("Unimplemented \"keyType\" value \"signedByGPGKeys\"")
    );
    let (scope, _) = verdict("a.access.redhat.com/x:1", vec![]);
    assert_eq!(scope, MatchedScope::Scope("*.access.redhat.com".into()));
    // The first signedBy of example.com/hardened reads a missing key file.
    let (_, v) = verdict("example.com/hardened/x:1", vec![blob]);
    assert_eq!(
        v.reason.as_deref(),
        Some("open /keys/employee-gpg-keyring: no such file or directory")
    );
    assert_eq!(v.requirements[1].outcome, RequirementOutcome::NotEvaluated);
    let (_, v) = verdict("example.com/sigstore/key-path-example/x:1", vec![]);
    assert!(
        v.reason
            .unwrap()
            .starts_with("sigstoreSigned is not supported yet")
    );
}

#[test]
fn upstream_default_policy_json() {
    let bytes = std::fs::read(cimage().join("upstream/default-policy.json")).unwrap();
    let p = Policy::parse(&bytes, ParseOptions::POLICY_FILE).unwrap();
    assert_eq!(p.default, Some(vec![Requirement::InsecureAcceptAnything]));
    assert_eq!(p.transports.len(), 1);
    assert_eq!(p.transports[0].name, "docker-daemon");
    assert_eq!(
        p.transports[0].scope("").unwrap().requirements,
        [Requirement::InsecureAcceptAnything]
    );
    let m = ImageMaterial::unfetched(ImageReference::parse("busybox").unwrap());
    let pv = p
        .is_running_image_allowed(&m, &FilesystemKeyResolver::new())
        .unwrap();
    assert!(pv.verdict.allowed);
    assert_eq!(pv.scope.scope, MatchedScope::Default);
    assert!(lint(&p).is_empty());
}

// ---------------------------------------------------------------------------
// Signature evaluation (needs the signature core: mechanism, payload,
// blob classification and manifest digests)
// ---------------------------------------------------------------------------

/// Reads a lookaside-layout directory: `manifest.json` and `signature-1`,
/// `signature-2`, … until the first missing one; blobs are classified as
/// c/image's lookaside reader does, and an unclassifiable blob fails the
/// whole read.
fn read_dir_image(dir: &Path, reference: &str) -> ImageMaterial {
    let manifest = go_read_file(&dir.join("manifest.json"));
    let mut signatures = Vec::new();
    let mut error = None;
    for n in 1.. {
        let path = dir.join(format!("signature-{n}"));
        match std::fs::read(&path) {
            Ok(blob) => match from_blob(&blob) {
                Ok(sig) => signatures.push(sig),
                Err(e) => {
                    error = Some(format!("parsing signature {}: {e}", path.display()));
                    break;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    ImageMaterial::new(
        ImageReference::parse(reference).unwrap(),
        manifest,
        match error {
            Some(e) => Err(e),
            None => Ok(signatures),
        },
    )
}

/// The manifest `image.manifest.json` (digest D) with the given signature
/// files, classified as a lookaside reader would.
fn material_with(reference: &str, signature_files: &[PathBuf]) -> ImageMaterial {
    let manifest = std::fs::read(fixtures().join("image.manifest.json")).unwrap();
    let signatures: Result<Vec<_>, String> = signature_files
        .iter()
        .map(|p| {
            from_blob(&std::fs::read(p).unwrap())
                .map_err(|e| format!("parsing signature {}: {e}", p.display()))
        })
        .collect();
    ImageMaterial::new(
        ImageReference::parse(reference).unwrap(),
        Ok(manifest),
        signatures,
    )
}

fn signed_by_req(keys: KeySource, identity: PolicyReferenceMatch) -> Requirement {
    Requirement::SignedBy(SignedBy {
        key_type: KeyType::GpgKeys,
        keys,
        signed_identity: identity,
    })
}

fn key(name: &str) -> KeySource {
    KeySource::Path(name.into())
}

/// Evaluates with key paths relative to the upstream fixtures directory
/// (`generated/…` reaches the generated keys).
fn eval(reqs: &[Requirement], m: &ImageMaterial) -> Verdict {
    is_running_image_allowed(reqs, m, &FilesystemKeyResolver::with_base_dir(fixtures()))
}

fn dir_policy(key_file: &str) -> Vec<Requirement> {
    vec![signed_by_req(
        key(key_file),
        PolicyReferenceMatch::MatchExact,
    )]
}

fn assert_allowed(v: &Verdict) {
    assert!(v.allowed, "expected allowed, got {:?}\n{v:#?}", v.reason);
    assert_eq!(v.reason, None);
}

fn assert_denied(v: &Verdict, reason: &str) {
    assert!(!v.allowed);
    assert_eq!(v.reason.as_deref(), Some(reason), "{v:#?}");
}

fn first_rejection_stage(v: &Verdict) -> RejectionStage {
    v.requirements
        .iter()
        .flat_map(|r| &r.signatures)
        .find_map(|s| match &s.outcome {
            SignatureOutcome::Rejected(r) => Some(r.stage),
            _ => None,
        })
        .expect("a rejected signature")
}

#[test]
fn dir_img_policy_cases() {
    let notlatest = "docker.io/testing/manifest:notlatest";
    let d = |name: &str| fixtures().join(name);
    let p = dir_policy("public-key.gpg");

    let v = eval(&p, &read_dir_image(&d("dir-img-valid"), TESTING_LATEST));
    assert_allowed(&v);
    let SignatureOutcome::Accepted(a) = &v.requirements[0].signatures[0].outcome else {
        panic!("{v:#?}")
    };
    assert_eq!(
        a.signer.primary_fingerprint,
        "08CD26E446E2E95249B7A405E932F44B23E8DD43"
    );
    assert_eq!(a.docker_reference, "testing/manifest:latest");
    assert_eq!(a.docker_manifest_digest.to_string(), D);

    assert_denied(
        &eval(&p, &read_dir_image(&d("dir-img-valid"), notlatest)),
        "Signature for identity \"testing/manifest:latest\" is not accepted",
    );
    assert_allowed(&eval(
        &p,
        &read_dir_image(&d("dir-img-valid-2"), TESTING_LATEST),
    ));
    assert_denied(
        &eval(&p, &read_dir_image(&d("dir-img-valid-2"), notlatest)),
        "None of the signatures were accepted, reasons: Signature for identity \"testing/manifest:latest\" is not accepted; Signature for identity \"testing/manifest:latest\" is not accepted",
    );
    let v = eval(&p, &read_dir_image(&d("dir-img-mixed"), TESTING_LATEST));
    assert_allowed(&v);
    assert!(matches!(
        &v.requirements[0].signatures[0].outcome,
        SignatureOutcome::Rejected(r) if r.stage == RejectionStage::Payload
    ));
    assert_denied(
        &eval(
            &p,
            &read_dir_image(&d("dir-img-modified-manifest"), TESTING_LATEST),
        ),
        &format!("Signature for digest {D} does not match"),
    );
    // The digest is checked before the identity.
    assert_denied(
        &eval(
            &p,
            &read_dir_image(&d("dir-img-modified-manifest"), notlatest),
        ),
        &format!("Signature for digest {D} does not match"),
    );
    assert_denied(
        &eval(
            &p,
            &read_dir_image(&d("dir-img-manifest-digest-error"), TESTING_LATEST),
        ),
        "error unmarshalling signatures: json: cannot unmarshal number into Go value of type []libtrust.jsParsedSignature",
    );
    assert_denied(
        &eval(
            &p,
            &read_dir_image(&d("dir-img-no-manifest"), TESTING_LATEST),
        ),
        &format!(
            "open {}: no such file or directory",
            d("dir-img-no-manifest").join("manifest.json").display()
        ),
    );
    assert_denied(
        &eval(&p, &read_dir_image(&d("dir-img-unsigned"), TESTING_LATEST)),
        "A signature was required, but no signature exists",
    );
    let v = eval(
        &dir_policy("public-key-with-subkey.gpg"),
        &read_dir_image(&d("dir-img-valid-subkey"), TESTING_LATEST),
    );
    assert_allowed(&v);
    let SignatureOutcome::Accepted(a) = &v.requirements[0].signatures[0].outcome else {
        panic!("{v:#?}")
    };
    assert_eq!(
        a.signer.primary_fingerprint,
        "B9F4CDB9FD8C475BFA340AC38D54A947EE396F36"
    );
    assert_eq!(
        a.signer.signing_key_fingerprint,
        "57D1D95BBC53BA0EAFF0718CD75B3109B3BAAEAF"
    );
}

#[test]
fn manifest_errors_matter_only_when_a_signature_is_checked() {
    let d = fixtures().join("dir-img-no-manifest");
    let m = read_dir_image(&d, TESTING_LATEST);
    assert!(m.manifest.is_err());
    assert_allowed(&eval(&[Requirement::InsecureAcceptAnything], &m));
    // A signature refused before the digest check never reads the manifest.
    let v = eval(&dir_policy("public-key-2.gpg"), &m);
    assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto);
}

#[test]
fn upstream_signatures_through_signed_by() {
    let f = |name: &str| fixtures().join(name);
    let key_gpg = || key("public-key.gpg");
    let all_matchers = [
        PolicyReferenceMatch::MatchExact,
        PolicyReferenceMatch::MatchRepoDigestOrExact,
        PolicyReferenceMatch::MatchRepository,
        PolicyReferenceMatch::exact_reference(TESTING_LATEST).unwrap(),
        PolicyReferenceMatch::exact_repository("testing/manifest").unwrap(),
        PolicyReferenceMatch::remap_identity("docker.io", "docker.io").unwrap(),
    ];

    // image.signature / no-optional-fields.signature: a name-only identity.
    for sig in ["image.signature", "no-optional-fields.signature"] {
        let m = material_with(TESTING_LATEST, &[f(sig)]);
        for (matcher, want) in all_matchers
            .iter()
            .zip([false, false, true, false, true, false])
        {
            let v = eval(&[signed_by_req(key_gpg(), matcher.clone())], &m);
            assert_eq!(v.allowed, want, "{sig} under {matcher}: {:?}", v.reason);
            if !want {
                assert_eq!(
                    v.reason.as_deref(),
                    Some("Signature for identity \"testing/manifest\" is not accepted")
                );
            }
        }
    }
    // Any tag of the repository under matchRepository.
    let m = material_with("docker.io/testing/manifest:other", &[f("image.signature")]);
    assert_allowed(&eval(
        &[signed_by_req(
            key_gpg(),
            PolicyReferenceMatch::MatchRepository,
        )],
        &m,
    ));

    let repo = || signed_by_req(key_gpg(), PolicyReferenceMatch::MatchRepository);
    for sig in [
        "corrupt.signature",
        "corrupt.signature-v3",
        "expired.signature",
        "unknown-key.signature",
        "unknown-key.signature-v3",
        "unsigned-literal.signature",
    ] {
        let v = eval(&[repo()], &material_with(TESTING_LATEST, &[f(sig)]));
        assert!(!v.allowed, "{sig}");
        assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto, "{sig}");
    }
    for sig in ["invalid-blob.signature", "invalid-blob.signature-v3"] {
        let v = eval(&[repo()], &material_with(TESTING_LATEST, &[f(sig)]));
        assert_denied(&v, "invalid character 'T' looking for beginning of value");
    }
    // The openpgp mechanism's wording for unknown signers (semantics §8).
    for sig in ["unknown-key.signature", "unknown-key.signature-v3"] {
        assert_denied(
            &eval(&[repo()], &material_with(TESTING_LATEST, &[f(sig)])),
            "Key not found for key ID 5f9470e3bc6c3b55 in signature",
        );
    }
    // Not a lookaside-readable blob: the whole signature read fails.
    for sig in [
        "invalid-cleartext.signature",
        "unsigned-encrypted.signature",
    ] {
        let m = material_with(TESTING_LATEST, &[f(sig)]);
        let err = m.signatures.clone().unwrap_err();
        assert!(err.contains("unrecognized signature format"), "{err}");
        assert_denied(&eval(&[repo()], &m), &err);
    }
    let m = material_with(TESTING_LATEST, &[f("invalid-reference.signature")]);
    for matcher in &all_matchers {
        let v = eval(&[signed_by_req(key_gpg(), matcher.clone())], &m);
        assert_denied(
            &v,
            "Signature for identity \"UPPERCASEISINVALID\" is not accepted",
        );
    }
    for sig in ["subkey.signature", "subkey.signature-v3"] {
        let m = material_with(TESTING_LATEST, &[f(sig)]);
        let default = PolicyReferenceMatch::MatchRepoDigestOrExact;
        assert_allowed(&eval(
            &[signed_by_req(
                key("public-key-with-subkey.gpg"),
                default.clone(),
            )],
            &m,
        ));
        let v = eval(&[signed_by_req(key_gpg(), default)], &m);
        assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto, "{sig}");
    }
    for sig in ["subkey-revoked.signature", "subkey-revoked.signature-v3"] {
        let m = material_with(TESTING_LATEST, &[f(sig)]);
        let v = eval(
            &[signed_by_req(
                key("public-key-with-revoked-subkey.gpg"),
                PolicyReferenceMatch::MatchRepoDigestOrExact,
            )],
            &m,
        );
        assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto, "{sig}");
    }
}

#[test]
fn key_sources() {
    let f = |name: &str| fixtures().join(name);
    let m = material_with(TESTING_LATEST, &[f("image.signature")]);
    let repo = |keys| signed_by_req(keys, PolicyReferenceMatch::MatchRepository);
    assert_allowed(&eval(&[repo(key("pubring.gpg"))], &m));
    assert_allowed(&eval(&[repo(key("public-key-1.gpg"))], &m));
    assert_allowed(&eval(
        &[repo(KeySource::Paths(vec![
            "public-key-2.gpg".into(),
            "public-key-1.gpg".into(),
        ]))],
        &m,
    ));
    let data = std::fs::read(f("public-key.gpg")).unwrap();
    assert_allowed(&eval(&[repo(KeySource::Data(data))], &m));
    // Keys that are not the signer's.
    assert_denied(
        &eval(&[repo(key("public-key-2.gpg"))], &m),
        "Key not found for key ID e932f44b23e8dd43 in signature",
    );
    assert_denied(
        &eval(&[repo(KeySource::Paths(vec![]))], &m),
        "No public keys imported",
    );
    assert_denied(
        &eval(&[repo(KeySource::Data(vec![]))], &m),
        "No public keys imported",
    );
    assert_denied(
        &eval(&[repo(KeySource::Data(b"nonsense".to_vec()))], &m),
        "No public keys imported",
    );
    assert_denied(
        &eval(&[repo(KeySource::Path("/nonexistent/key.gpg".into()))], &m),
        "open /nonexistent/key.gpg: no such file or directory",
    );
}

#[test]
fn requirements_are_satisfied_by_different_signatures() {
    let f = |name: &str| fixtures().join(name);
    let reqs = [
        signed_by_req(key("public-key.gpg"), PolicyReferenceMatch::MatchRepository),
        signed_by_req(
            key("public-key-with-subkey.gpg"),
            PolicyReferenceMatch::MatchRepoDigestOrExact,
        ),
    ];
    let both = material_with(
        TESTING_LATEST,
        &[f("image.signature"), f("subkey.signature")],
    );
    let v = eval(&reqs, &both);
    assert_allowed(&v);
    // The first requirement stops at its accepted signature.
    assert!(matches!(
        v.requirements[0].signatures[1].outcome,
        SignatureOutcome::NotChecked
    ));
    let one = material_with(TESTING_LATEST, &[f("image.signature")]);
    let v = eval(&reqs, &one);
    assert!(!v.allowed);
    assert_eq!(v.requirements[0].outcome, RequirementOutcome::Allowed);
    assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto);
    // insecureAcceptAnything is a no-op next to signedBy; reject anywhere denies.
    let v = eval(
        &[Requirement::InsecureAcceptAnything, reqs[0].clone()],
        &one,
    );
    assert_allowed(&v);
    let v = eval(&[reqs[0].clone(), Requirement::Reject], &one);
    assert_denied(
        &v,
        "Running image docker://testing/manifest:latest is rejected by policy.",
    );
}

#[test]
fn generated_signatures() {
    let g = |name: &str| generated().join(name);
    let default = || {
        signed_by_req(
            key("public-key.gpg"),
            PolicyReferenceMatch::MatchRepoDigestOrExact,
        )
    };
    let exact = || signed_by_req(key("public-key.gpg"), PolicyReferenceMatch::MatchExact);
    let repo = || signed_by_req(key("public-key.gpg"), PolicyReferenceMatch::MatchRepository);
    let busybox = "docker.io/library/busybox:latest";

    let gen_busybox = [g("gen-busybox.signature")];
    assert_allowed(&eval(&[default()], &material_with(busybox, &gen_busybox)));
    assert_allowed(&eval(
        &[default()],
        &material_with("busybox:latest", &gen_busybox),
    ));
    assert_denied(
        &eval(&[default()], &material_with("busybox:1.36", &gen_busybox)),
        "Signature for identity \"docker.io/library/busybox:latest\" is not accepted",
    );
    assert_allowed(&eval(
        &[repo()],
        &material_with("busybox:1.36", &gen_busybox),
    ));
    assert_allowed(&eval(
        &[default()],
        &material_with(&format!("busybox@{D}"), &gen_busybox),
    ));

    assert_allowed(&eval(
        &[default()],
        &material_with(busybox, &[g("gen-busybox-short.signature")]),
    ));

    let nametag = [g("gen-busybox-nametag-missing.signature")];
    let missing = "Signature for identity \"docker.io/library/busybox\" is not accepted";
    assert_denied(
        &eval(&[default()], &material_with(busybox, &nametag)),
        missing,
    );
    assert_denied(
        &eval(&[exact()], &material_with(busybox, &nametag)),
        missing,
    );
    assert_allowed(&eval(&[repo()], &material_with(busybox, &nametag)));

    let m = material_with(busybox, &[g("gen-busybox-armored.signature")]);
    let err = m.signatures.clone().unwrap_err();
    assert!(
        err.ends_with("unrecognized signature format, starting with binary 0x2d"),
        "{err}"
    );
    assert_denied(&eval(&[default()], &m), &err);

    let v = eval(
        &[default()],
        &material_with(busybox, &[g("gen-sha512-digest.signature")]),
    );
    let reason = v.reason.clone().unwrap();
    assert!(
        reason.starts_with("Signature for digest sha512:") && reason.ends_with(" does not match"),
        "{reason}"
    );
    assert_denied(
        &eval(
            &[default()],
            &material_with(busybox, &[g("gen-extra-critical-field.signature")]),
        ),
        "Unknown key \"unexpected\"",
    );
    assert_allowed(&eval(
        &[default()],
        &material_with(busybox, &[g("gen-unknown-optional-field.signature")]),
    ));
    assert_denied(
        &eval(
            &[default()],
            &material_with(busybox, &[g("gen-missing-optional.signature")]),
        ),
        "Key \"optional\" missing in a JSON object",
    );
    // Expired and revoked keys: imagegate takes gpgme's (strict) side.
    for (sig, keyring) in [
        ("gen-expired-key.signature", "gen-key-expired.gpg"),
        ("gen-revoked-key.signature", "gen-key-revoked.gpg"),
    ] {
        let keys = key(&format!("../../../generated/{keyring}"));
        let v = eval(
            &[signed_by_req(
                keys,
                PolicyReferenceMatch::MatchRepoDigestOrExact,
            )],
            &material_with(TESTING_LATEST, &[g(sig)]),
        );
        assert!(!v.allowed, "{sig}");
        assert_eq!(first_rejection_stage(&v), RejectionStage::Crypto, "{sig}");
    }
}

// ---------------------------------------------------------------------------
// Parser robustness
// ---------------------------------------------------------------------------

mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// A vocabulary that reaches deep into the policy grammar.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let keys = prop::sample::select(vec![
            "default",
            "transports",
            "docker",
            "",
            "type",
            "keyType",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyRef",
            "signedIdentity",
            "baseLayerIdentity",
            "dockerReference",
            "dockerRepository",
            "prefix",
            "signedPrefix",
            "fulcio",
            "pki",
            "caPath",
            "caData",
            "oidcIssuer",
            "subjectEmail",
            "rekorPublicKeyPath",
            "keyDatas",
            "secret",
            "key",
        ]);
        let strings = prop::sample::select(vec![
            "reject",
            "insecureAcceptAnything",
            "signedBy",
            "signedBaseLayer",
            "sigstoreSigned",
            "GPGKeys",
            "signedByGPGKeys",
            "matchExact",
            "matchRepository",
            "exactReference",
            "remapIdentity",
            "busybox",
            "example.com/ns",
            "*.example.com",
            "bm9uc2Vuc2U=",
            "",
            "UPPER",
            "a@b",
            "/k",
        ]);
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            strings.prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec((keys.clone(), inner), 0..5).prop_map(|members| {
                    serde_json::Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn parse_all_ways(bytes: &[u8]) {
        for options in [ParseOptions::POLICY_FILE, ParseOptions::KUBERNETES] {
            if let Ok(p) = Policy::parse(bytes, options) {
                let _ = lint(&p);
                let _ = p.requirements_for(&ImageReference::parse("example.com/ns/x:1").unwrap());
                // What the model writes back parses to the same model.
                let again = serde_json::to_vec(&p.to_json()).unwrap();
                assert_eq!(Policy::parse(&again, options).as_ref(), Ok(&p));
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            parse_all_ways(&bytes);
        }

        #[test]
        fn mutated_upstream_policy_never_panics(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)
        ) {
            let mut bytes = std::fs::read(fixtures().join("policy.json")).unwrap();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
            }
            parse_all_ways(&bytes);
        }

        #[test]
        fn structured_documents_never_panic(doc in json_value()) {
            parse_all_ways(&serde_json::to_vec(&doc).unwrap());
            let wrapped = serde_json::json!({"default": [doc.clone()], "transports": {"docker": {"a.com": doc}}});
            parse_all_ways(&serde_json::to_vec(&wrapped).unwrap());
        }
    }
}
