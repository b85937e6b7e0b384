//! The registry client against a real registry: Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1, filled by `skopeo copy` from OCI layouts
//! built here by hand. Every expectation comes from skopeo (c/image) itself:
//! the raw bytes it reads, and the instance it copies for an architecture.
//!
//! Needs `docker-registry` and `skopeo` (`apt-get install docker-registry
//! skopeo`); the tests fail with that hint when they are missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use imagegate::manifest::list::{self, ListKind, Platform, instances_for_platforms};
use imagegate::reference::{Digest, Named};
use imagegate::registry::{Anonymous, RegistryClient, RegistryErrorKind, RegistryOptions};

/// Finds a tool on `PATH` (or `/usr/bin`), failing the test with an install
/// hint when it is absent.
fn tool(name: &str) -> PathBuf {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: these tests need Debian's docker-registry and skopeo \
                 (apt-get install -y docker-registry skopeo)"
            )
        })
}

/// A `docker-registry serve` process on a free 127.0.0.1 port with its
/// config and storage in a temporary directory; killed on drop.
struct LocalRegistry {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl LocalRegistry {
    fn start() -> LocalRegistry {
        let binary = tool("docker-registry");
        // The port is found free and then handed over, so another process
        // could take it in between; a registry that exits is retried.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut registry = LocalRegistry {
                child,
                host: format!("127.0.0.1:{port}"),
                dir,
            };
            if registry.wait_ready() {
                return registry;
            }
        }
        panic!("docker-registry did not start on 127.0.0.1");
    }

    /// Polls `GET /v2/` until it answers 200; false if the process exits.
    fn wait_ready(&mut self) -> bool {
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.0 200")
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!(
            "docker-registry on {} never became ready; log:\n{log}",
            self.host
        );
    }

    fn reference(&self, repo_and_tag: &str) -> Named {
        Named::parse_normalized(&format!("{}/{repo_and_tag}", self.host)).expect("reference")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo with the given arguments; its stdout on success.
fn skopeo(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(tool("skopeo"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo copy` from an OCI layout to the registry (`extra`: `--all`, `--format v2s2`).
fn push(layout: &Path, tag: &str, dest: &Named, extra: &[&str]) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{dest}");
    let mut args = vec!["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&src, &dst]);
    skopeo(&args).unwrap_or_else(|e| panic!("skopeo copy {src} {dst}: {e}"));
}

/// `skopeo inspect --raw`: the bytes c/image reads for a reference.
fn raw(image: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ])
    .unwrap_or_else(|e| panic!("skopeo inspect --raw {image}: {e}"))
}

/// The digest of the instance c/image pulls for `arch`: skopeo copies it to
/// a `dir:` destination unchanged, so the digest of the copied manifest is
/// the digest of the instance it chose.
fn skopeo_choice(image: &Named, arch: &str) -> Digest {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("dir:{}", out.path().join("img").display());
    skopeo(&[
        "--insecure-policy",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &dest,
    ])
    .unwrap_or_else(|e| panic!("skopeo copy {image} for {arch}: {e}"));
    let manifest = std::fs::read(out.path().join("img/manifest.json")).expect("manifest.json");
    Digest::sha256_of(&manifest)
}

fn client() -> RegistryClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RegistryClient::new(RegistryOptions {
        tls_verify: false,
        ..RegistryOptions::default()
    })
    .expect("client")
}

// ---- OCI layouts built by hand ----

/// One regular file in an uncompressed tar archive.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, format!("{:011o}\0", 1_704_067_200u64).as_bytes()); // 2024-01-01T00:00:00Z
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Writes `data` as a blob of the layout; returns its digest and size.
fn blob(layout: &Path, data: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256_of(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::write(dir.join(d.encoded()), data).expect("write blob");
    (d, data.len())
}

/// A one-layer image for `arch` in `layout`; returns the manifest descriptor JSON.
fn image_blobs(layout: &Path, arch: &str, text: &str) -> String {
    let layer = tar_with_file("hello.txt", format!("{text}\n").as_bytes());
    let (ld, ls) = blob(layout, &layer);
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/hello"]}},"rootfs":{{"type":"layers","diff_ids":["{ld}"]}}}}"#
    );
    let (cd, cs) = blob(layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#,
        list::OCI_MANIFEST_MEDIA_TYPE
    );
    let (md, ms) = blob(layout, manifest.as_bytes());
    format!(
        r#"{{"mediaType":"{}","digest":"{md}","size":{ms},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
        list::OCI_MANIFEST_MEDIA_TYPE
    )
}

fn write_layout_index(layout: &Path, tag: &str, descriptor: &str) {
    let tagged = descriptor.replacen(
        '{',
        &format!(r#"{{"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}},"#),
        1,
    );
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    std::fs::write(
        layout.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{tagged}]}}"#),
    )
    .expect("index.json");
}

/// An OCI layout whose `tag` is a single amd64 image.
fn single_image_layout(layout: &Path, tag: &str, text: &str) {
    let desc = image_blobs(layout, "amd64", text);
    write_layout_index(layout, tag, &desc);
}

/// An OCI layout whose `tag` is an image index of amd64 and arm64 images.
fn multi_arch_layout(layout: &Path, tag: &str) {
    let entries: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|arch| image_blobs(layout, arch, &format!("hello from {arch}")))
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        list::OCI_INDEX_MEDIA_TYPE,
        entries.join(",")
    );
    let (d, s) = blob(layout, index.as_bytes());
    let desc = format!(
        r#"{{"mediaType":"{}","digest":"{d}","size":{s}}}"#,
        list::OCI_INDEX_MEDIA_TYPE
    );
    write_layout_index(layout, tag, &desc);
}

// ---- tests ----

#[tokio::test]
async fn single_image_bytes_and_digest_match_skopeo() {
    let reg = LocalRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    single_image_layout(work.path(), "v1", "hello");
    let image = reg.reference("e2e/hello:v1");
    push(work.path(), "v1", &image, &[]);

    let c = client();
    let m = c.resolve(&image, &Anonymous).await.expect("resolve");
    let expected = raw(&image.to_string());
    assert_eq!(&m.bytes[..], &expected[..], "exact bytes");
    assert_eq!(m.digest, Digest::sha256_of(&expected));
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

/// Resolves a multi-arch tag and checks bytes, list kind, and for each
/// architecture the instance skopeo would pull and its bytes.
async fn check_multi_arch(image: &Named, kind: ListKind) {
    let c = client();
    let top = c.resolve(image, &Anonymous).await.expect("resolve list");
    let expected = raw(&image.to_string());
    assert_eq!(&top.bytes[..], &expected[..], "exact list bytes");
    assert_eq!(top.digest, Digest::sha256_of(&expected));
    assert_eq!(top.media_type, kind.media_type());
    assert!(top.is_list());
    let list = top.list().expect("parse list");
    assert_eq!(list.kind, kind);

    let mut chosen = Vec::new();
    for arch in ["amd64", "arm64"] {
        let ours = list
            .choose_for_platform(&Platform::new("linux", arch, None))
            .expect("choose");
        assert_eq!(ours, skopeo_choice(image, arch), "instance for {arch}");
        let instance = c
            .fetch_manifest(image, &ours, &Anonymous)
            .await
            .expect("fetch instance");
        let instance_raw = raw(&format!("{}@{ours}", image.trimmed()));
        assert_eq!(&instance.bytes[..], &instance_raw[..]);
        assert_eq!(instance.digest, ours);
        assert!(!instance.is_list());
        chosen.push(ours);
    }
    assert_ne!(chosen[0], chosen[1]);
    let all = instances_for_platforms(
        &list,
        &[
            Platform::parse("linux/amd64").unwrap(),
            Platform::parse("linux/arm64").unwrap(),
        ],
    )
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
    let reg = LocalRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    multi_arch_layout(work.path(), "multi");
    let image = reg.reference("e2e/multi:v1");
    push(work.path(), "multi", &image, &["--all"]);
    check_multi_arch(&image, ListKind::OciIndex).await;
}

#[tokio::test]
async fn docker_manifest_list_instance_selection_matches_skopeo() {
    let reg = LocalRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    multi_arch_layout(work.path(), "multi");
    let image = reg.reference("e2e/multi:v2s2");
    push(work.path(), "multi", &image, &["--all", "--format", "v2s2"]);
    check_multi_arch(&image, ListKind::DockerSchema2List).await;
}

#[tokio::test]
async fn missing_tags_and_repositories_fail_like_skopeo() {
    let reg = LocalRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    single_image_layout(work.path(), "v1", "hello");
    push(work.path(), "v1", &reg.reference("e2e/hello:v1"), &[]);
    let c = client();
    for missing in ["e2e/hello:missing", "e2e/nothere:v1"] {
        let image = reg.reference(missing);
        let e = c.resolve(&image, &Anonymous).await.unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::NotFound, "{e}");
        let tag = image.tag().expect("tag");
        assert!(
            e.message()
                .starts_with(&format!("reading manifest {tag} in {}: ", image.name())),
            "{e}"
        );
        let skopeo_error = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])
        .unwrap_err();
        assert!(
            skopeo_error.contains(e.message()),
            "skopeo says {skopeo_error:?}, we say {:?}",
            e.message()
        );
    }
    // An unknown digest in an existing repository.
    let unknown = Digest::sha256_of(b"no such manifest");
    let e = c
        .fetch_manifest(&reg.reference("e2e/hello"), &unknown, &Anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), RegistryErrorKind::NotFound, "{e}");
}
