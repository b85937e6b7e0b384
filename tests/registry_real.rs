//! The registry client against a real registry: the harness's
//! `docker-registry` (distribution 2.8) on 127.0.0.1, filled by `skopeo
//! copy` from OCI layouts the harness builds. Every expectation comes from
//! skopeo (c/image) itself: the raw bytes it reads, the errors it reports,
//! and the instance it pulls for an architecture.
//!
//! Needs the harness's tools (`scripts/test.sh` installs them); a missing
//! one fails the test with the package to install.

mod harness;

use harness::{Harness, PushOptions};
use imagegate::manifest::list::{self, ListKind, Platform, instances_for_platforms};
use imagegate::reference::{Digest, Named};
use imagegate::registry::{Anonymous, RegistryClient, RegistryErrorKind, RegistryOptions};

/// The platforms of the multi-arch images, in index order.
const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

fn client() -> RegistryClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RegistryClient::new(RegistryOptions {
        tls_verify: false,
        ..RegistryOptions::default()
    })
    .expect("client")
}

/// `path` (`repo:tag`, `repo@digest`) in the harness registry, parsed.
fn reference(h: &Harness, path: &str) -> Named {
    Named::parse_normalized(&h.image(path)).expect("reference")
}

fn digest(text: &str) -> Digest {
    Digest::parse(text).expect("digest")
}

#[tokio::test]
async fn single_image_bytes_and_digest_match_skopeo() {
    let h = Harness::start();
    let pushed = h.push(
        &h.build_image("hello"),
        "e2e/hello:v1",
        PushOptions::unsigned(),
    );
    let image = reference(&h, "e2e/hello:v1");

    let c = client();
    let m = c.resolve(&image, &Anonymous).await.expect("resolve");
    let expected = h.raw_manifest("e2e/hello:v1");
    assert_eq!(&m.bytes[..], &expected[..], "exact bytes");
    assert_eq!(m.digest, Digest::sha256_of(&expected));
    assert_eq!(m.digest, digest(&pushed));
    assert_eq!(m.media_type, list::OCI_MANIFEST_MEDIA_TYPE);
    assert!(!m.is_list());

    let by_digest = image.with_digest_only(m.digest.clone());
    assert_eq!(
        c.resolve(&by_digest, &Anonymous).await.expect("by digest"),
        m
    );
    assert_eq!(
        c.fetch_manifest(&image, &m.digest, &Anonymous)
            .await
            .expect("fetch_manifest"),
        m
    );
    // distribution does not advertise the signature extension.
    assert!(!c.supports_signatures(&image).await.expect("ping"));
}

/// Resolves the multi-arch `repo_tag` and checks bytes, list kind, and for
/// each architecture the instance skopeo pulls and its bytes.
async fn check_multi_arch(h: &Harness, repo: &str, tag: &str, kind: ListKind) {
    let repo_tag = format!("{repo}:{tag}");
    let image = reference(h, &repo_tag);
    let c = client();
    let top = c.resolve(&image, &Anonymous).await.expect("resolve list");
    let expected = h.raw_manifest(&repo_tag);
    assert_eq!(&top.bytes[..], &expected[..], "exact list bytes");
    assert_eq!(top.digest, Digest::sha256_of(&expected));
    assert_eq!(top.media_type, kind.media_type());
    assert!(top.is_list());
    let list = top.list().expect("parse list");
    assert_eq!(list.kind, kind);

    let mut chosen = Vec::new();
    for platform in PLATFORMS {
        let ours = list
            .choose_for_platform(&Platform::parse(platform).unwrap())
            .expect("choose");
        assert_eq!(
            ours,
            digest(&h.pulled_digest(&repo_tag, Some(platform))),
            "instance for {platform}"
        );
        let instance = c
            .fetch_manifest(&image, &ours, &Anonymous)
            .await
            .expect("fetch instance");
        let instance_raw = h.raw_manifest(&format!("{repo}@{ours}"));
        assert_eq!(&instance.bytes[..], &instance_raw[..]);
        assert_eq!(instance.digest, ours);
        assert!(!instance.is_list());
        chosen.push(ours);
    }
    assert_ne!(chosen[0], chosen[1]);
    // One instance per platform, listed in that order.
    let listed: Vec<(String, Digest)> = h
        .instance_digests(&repo_tag)
        .into_iter()
        .map(|(platform, d)| (platform, digest(&d)))
        .collect();
    let wanted: Vec<(String, Digest)> = PLATFORMS
        .iter()
        .map(|p| p.to_string())
        .zip(chosen.iter().cloned())
        .collect();
    assert_eq!(listed, wanted);
    let all = instances_for_platforms(&list, &PLATFORMS.map(|p| Platform::parse(p).unwrap()))
        .expect("instances");
    assert_eq!(all, chosen);

    // The list by its own digest.
    let pinned = image.with_digest_only(top.digest.clone());
    assert_eq!(
        c.resolve(&pinned, &Anonymous).await.expect("by digest"),
        top
    );

    // No s390x instance: c/image's error, for both list kinds.
    let e = list
        .choose_for_platform(&Platform::new("linux", "s390x", None))
        .unwrap_err();
    let what = match kind {
        ListKind::OciIndex => "image index",
        ListKind::DockerSchema2List => "manifest list",
    };
    assert_eq!(
        e.0,
        format!(r#"no image found in {what} for architecture "s390x", variant "", OS "linux""#)
    );
}

#[tokio::test]
async fn oci_index_instance_selection_matches_skopeo() {
    let h = Harness::start();
    h.push_unsigned(&h.build_index("hello from", &PLATFORMS), "e2e/multi:v1");
    check_multi_arch(&h, "e2e/multi", "v1", ListKind::OciIndex).await;
}

#[tokio::test]
async fn docker_manifest_list_instance_selection_matches_skopeo() {
    let h = Harness::start();
    h.push(
        &h.build_index("hello from", &PLATFORMS),
        "e2e/multi:v2s2",
        PushOptions::unsigned().all().v2s2(),
    );
    check_multi_arch(&h, "e2e/multi", "v2s2", ListKind::DockerSchema2List).await;
}

#[tokio::test]
async fn missing_tags_and_repositories_fail_like_skopeo() {
    let h = Harness::start();
    h.push_unsigned(&h.build_image("hello"), "e2e/hello:v1");
    let c = client();
    for missing in ["e2e/hello:missing", "e2e/nothere:v1"] {
        let image = reference(&h, missing);
        let e = c.resolve(&image, &Anonymous).await.unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::NotFound, "{e}");
        let tag = image.tag().expect("tag");
        assert!(
            e.message()
                .starts_with(&format!("reading manifest {tag} in {}: ", image.name())),
            "{e}"
        );
        let skopeo_error = h.try_raw_manifest(missing).unwrap_err();
        assert!(
            skopeo_error.contains(e.message()),
            "skopeo says {skopeo_error:?}, we say {:?}",
            e.message()
        );
    }
    // An unknown digest in an existing repository.
    let unknown = Digest::sha256_of(b"no such manifest");
    let e = c
        .fetch_manifest(&reference(&h, "e2e/hello"), &unknown, &Anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), RegistryErrorKind::NotFound, "{e}");
}
