//! The shared integration-test harness: a real registry, a lookaside web
//! server, GPG keys, hand-built OCI images, skopeo for pushing and signing,
//! and skopeo's own policy verdict (c/image, the reference implementation)
//! to compare imagegate against.
//!
//! Use it from an integration test file with `mod harness;`. Each test starts
//! its own [`Harness`] (about 0.1 s: a `docker-registry` process and an
//! in-process lookaside server, in a temporary directory removed on drop);
//! the GPG keys are generated once and shared ([`keys()`]).
//!
//! ```ignore
//! mod harness;
//! use harness::{Harness, PushOptions, keys};
//!
//! let h = Harness::start();
//! let img = h.build_image("hello");
//! let digest = h.push(&img, "e2e/hello:v1", PushOptions::signed_by(&keys().signer));
//! let policy = h.signed_by_policy(&h.image("e2e"), &keys().signer.public_armored);
//! let (accepted, message) = h.skopeo_verdict(&policy, &h.image("e2e/hello:v1"));
//! ```
//!
//! A suite that needs only a web server for signatures (no registry, keys
//! or skopeo) starts a [`LookasideServer`] on its own with
//! `LookasideServer::builder()`: optional HTTPS, canned statuses, redirects,
//! oversized, delayed and stalled bodies, and a log of every request with
//! its headers (see [`lookaside`]).
//!
//! Tools: `docker-registry`, `skopeo`, `gpg`, `gpgconf`, `tar`, `gzip` (a
//! missing one panics with the package to install; `scripts/test.sh`
//! installs them all).

// Each test binary uses a different subset of the harness (and of its
// re-exports).
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod faults;
pub mod keys;
pub mod lookaside;
pub mod oci;
pub mod registry;
pub mod tools;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

pub use keys::{EXPIRED_KEY_SIGN_TIME, Key, Keys, keys};
pub use lookaside::{CannedResponse, LookasideRequest, LookasideServer, LookasideServerBuilder};
pub use oci::{Instance, OciImage, Platform, sha256_digest};
pub use registry::Registry;

use tools::{command, copy_tree, make_private, run, run_ok};

/// An engine as the suites use it against the harness: TLS verification off
/// (the registry speaks plain HTTP on 127.0.0.1), linux/amd64 nodes, the
/// given caches and metrics.
pub fn engine(
    caches: imagegate::engine::CacheSettings,
    metrics: Option<std::sync::Arc<imagegate::metrics::Metrics>>,
) -> imagegate::engine::Engine {
    imagegate::ensure_crypto_provider();
    imagegate::engine::Engine::new(
        imagegate::engine::EngineConfig {
            registry: imagegate::registry::RegistryOptions {
                tls_verify: false,
                ..Default::default()
            },
            platforms: vec![imagegate::manifest::list::Platform::parse("linux/amd64").unwrap()],
            caches,
            ..Default::default()
        },
        metrics,
    )
    .expect("test engine")
}

/// Options for [`Harness::push`] and [`Harness::copy`] (`skopeo copy`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions<'a> {
    /// `--sign-by <fingerprint>`: sign the destination manifest(s), with the
    /// destination reference as the signed identity.
    pub sign_by: Option<&'a Key>,
    /// `--all`: copy every instance of an index (each instance and the index
    /// are then signed).
    pub all: bool,
    /// `--format v2s2`: convert to Docker schema 2 (a manifest list for an
    /// index).
    pub v2s2: bool,
    /// `--remove-signatures`: do not carry the source's signatures over.
    pub remove_signatures: bool,
}

impl<'a> PushOptions<'a> {
    /// No signing, single image.
    pub fn unsigned() -> Self {
        Self::default()
    }

    /// Signed by `key`.
    pub fn signed_by(key: &'a Key) -> Self {
        PushOptions {
            sign_by: Some(key),
            ..Self::default()
        }
    }

    /// Adds `--all`.
    pub fn all(mut self) -> Self {
        self.all = true;
        self
    }

    /// Adds `--format v2s2`.
    pub fn v2s2(mut self) -> Self {
        self.v2s2 = true;
        self
    }

    /// Adds `--remove-signatures`.
    pub fn remove_signatures(mut self) -> Self {
        self.remove_signatures = true;
        self
    }
}

/// Everything one test needs, on 127.0.0.1, in a temporary directory.
pub struct Harness {
    registry: Registry,
    lookaside: LookasideServer,
    /// Served by the lookaside server and written by skopeo as
    /// `lookaside-staging`: one directory, so signatures skopeo makes are
    /// immediately readable over HTTP.
    sigstore: PathBuf,
    registries_d: PathBuf,
    gnupg: PathBuf,
    /// A GNUPGHOME whose gpg.conf fakes the system time, for signing with
    /// the expired key; made on first use.
    gnupg_past: OnceLock<PathBuf>,
    accept_all: PathBuf,
    seq: AtomicUsize,
    /// Last, so it drops (and the directory goes) after the processes.
    root: tempfile::TempDir,
}

impl Harness {
    /// Starts a registry and a lookaside server, writes registries.d, and
    /// sets up a GNUPGHOME holding every test key's secret.
    pub fn start() -> Harness {
        for tool in ["docker-registry", "skopeo", "gpg", "gpgconf", "tar", "gzip"] {
            tools::require(tool);
        }
        let keys = keys();
        let keep = std::env::var_os("IMAGEGATE_HARNESS_KEEP").is_some();
        let root = tempfile::Builder::new()
            .prefix("imagegate-harness-")
            .disable_cleanup(keep)
            .tempdir()
            .expect("test harness: create the harness tempdir");
        let dir = root.path();
        let sigstore = dir.join("sigstore");
        let registries_d = dir.join("registries.d");
        let gnupg = dir.join("gnupg");
        for d in [&sigstore, &registries_d] {
            std::fs::create_dir_all(d).expect("mkdir in harness dir");
        }
        copy_tree(&keys.gnupg_template, &gnupg).expect("copy the test GNUPGHOME");
        make_private(&gnupg);

        let accept_all = dir.join("policy-accept-all.json");
        std::fs::write(
            &accept_all,
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("write accept-all policy");

        let lookaside = LookasideServer::start(&sigstore);
        let registry = Registry::start(dir);
        std::fs::write(
            registries_d.join("harness.yaml"),
            format!(
                "docker:\n  {}:\n    lookaside: {}\n    lookaside-staging: file://{}\n",
                registry.host(),
                lookaside.url(),
                sigstore.display()
            ),
        )
        .expect("write registries.d/harness.yaml");

        let harness = Harness {
            registry,
            lookaside,
            sigstore,
            registries_d,
            gnupg,
            gnupg_past: OnceLock::new(),
            accept_all,
            seq: AtomicUsize::new(0),
            root,
        };
        if keep {
            eprintln!("test harness: keeping {}", harness.dir().display());
        }
        harness
    }

    // ----- where things are -------------------------------------------------

    /// The harness's temporary directory (removed on drop unless the
    /// environment variable `IMAGEGATE_HARNESS_KEEP` is set).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// A fresh, unique path inside the harness directory (not created).
    pub fn unique_path(&self, stem: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir().join(format!("{stem}-{n}"))
    }

    /// The registry's `127.0.0.1:PORT`.
    pub fn registry(&self) -> String {
        self.registry.host()
    }

    /// The registry's port.
    pub fn registry_port(&self) -> u16 {
        self.registry.port()
    }

    /// The registry's log file.
    pub fn registry_log(&self) -> &Path {
        self.registry.log()
    }

    /// `127.0.0.1:PORT/<path>`: an image or namespace in this registry,
    /// e.g. `h.image("e2e/hello:v1")`, `h.image("e2e")`.
    pub fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.registry())
    }

    /// `http://127.0.0.1:PORT` of the lookaside server (no trailing slash).
    pub fn lookaside_url(&self) -> String {
        self.lookaside.url()
    }

    /// The directory the lookaside server serves (also skopeo's
    /// `lookaside-staging`).
    pub fn lookaside_dir(&self) -> &Path {
        &self.sigstore
    }

    /// The registries.d directory: `harness.yaml` maps this registry to the
    /// lookaside server (read) and directory (write). Add more `.yaml` files
    /// here freely.
    pub fn registries_d(&self) -> &Path {
        &self.registries_d
    }

    /// The GNUPGHOME holding every test key's secret (revoked key unrevoked).
    pub fn gnupghome(&self) -> &Path {
        &self.gnupg
    }

    /// The lookaside server, for request logs and fault injection.
    pub fn lookaside(&self) -> &LookasideServer {
        &self.lookaside
    }

    /// Every lookaside request so far, oldest first.
    pub fn lookaside_requests(&self) -> Vec<LookasideRequest> {
        self.lookaside.requests()
    }

    /// Forgets the lookaside requests recorded so far.
    pub fn clear_lookaside_requests(&self) {
        self.lookaside.clear_requests()
    }

    // ----- files ------------------------------------------------------------

    /// Writes `bytes` to `name` in the harness directory; returns the path.
    pub fn write_file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir for write_file");
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Writes a policy.json document to a new file; returns its path.
    pub fn write_policy(&self, policy: &serde_json::Value) -> PathBuf {
        let path = self.unique_path("policy").with_extension("json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(policy).expect("serialize policy"),
        )
        .expect("write policy");
        path
    }

    /// A policy that rejects everything except images in `scope` (a
    /// policy.json docker scope, e.g. `h.image("e2e")`), which must be
    /// `signedBy` a key in `key_file` (default `signedIdentity`).
    pub fn signed_by_policy(&self, scope: &str, key_file: &Path) -> PathBuf {
        self.write_policy(&json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {scope: [{
                "type": "signedBy",
                "keyType": "GPGKeys",
                "keyPath": key_file.to_string_lossy(),
            }]}},
        }))
    }

    // ----- images -----------------------------------------------------------

    /// A single-image linux/amd64 layout whose content is `text`.
    pub fn build_image(&self, text: &str) -> OciImage {
        self.build_image_for(text, "linux/amd64")
    }

    /// A single-image layout for `platform` (`os/arch[/variant]`).
    pub fn build_image_for(&self, text: &str, platform: &str) -> OciImage {
        oci::build_image(&self.unique_path("oci"), text, platform)
    }

    /// An OCI index with one image per platform.
    pub fn build_index(&self, text: &str, platforms: &[&str]) -> OciImage {
        oci::build_index(&self.unique_path("oci"), text, platforms)
    }

    /// Pushes a layout to `repo_tag` in this registry (e.g. `e2e/hello:v1`)
    /// with `skopeo copy`; returns the digest the tag now points to. Without
    /// `all`, an index is reduced to the instance for this machine. Note:
    /// pushing to a repo@digest that already has signatures replaces them
    /// with the source's (none, for a layout) plus the new one.
    pub fn push(&self, image: &OciImage, repo_tag: &str, opts: PushOptions<'_>) -> String {
        let dest = format!("docker://{}", self.image(repo_tag));
        self.skopeo_copy(&image.skopeo_ref(), &dest, opts);
        self.manifest_digest(repo_tag)
    }

    /// `push` without signing (with `--all` for an index).
    pub fn push_unsigned(&self, image: &OciImage, repo_tag: &str) -> String {
        let mut opts = PushOptions::unsigned();
        opts.all = image.is_index();
        self.push(image, repo_tag, opts)
    }

    /// `push` signed by `key` (with `--all` for an index).
    pub fn push_signed(&self, image: &OciImage, repo_tag: &str, key: &Key) -> String {
        let mut opts = PushOptions::signed_by(key);
        opts.all = image.is_index();
        self.push(image, repo_tag, opts)
    }

    /// Copies `src` to `dest` within this registry (`repo:tag` or
    /// `repo@digest` paths), carrying the source's signatures over unless
    /// `remove_signatures`. Copying an image onto itself with `sign_by`
    /// appends one signature. Returns the digest `dest` points to.
    pub fn copy(&self, src: &str, dest: &str, opts: PushOptions<'_>) -> String {
        self.skopeo_copy(
            &format!("docker://{}", self.image(src)),
            &format!("docker://{}", self.image(dest)),
            opts,
        );
        self.manifest_digest(dest)
    }

    fn skopeo_copy(&self, src: &str, dest: &str, opts: PushOptions<'_>) {
        let mut cmd = self.skopeo();
        cmd.args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg("--policy")
        .arg(&self.accept_all)
        .arg("--registries.d")
        .arg(&self.registries_d);
        if let Some(key) = opts.sign_by {
            cmd.env("GNUPGHOME", self.gnupghome_for(key))
                .args(["--sign-by", &key.fingerprint]);
        }
        if opts.all {
            cmd.arg("--all");
        }
        if opts.v2s2 {
            cmd.args(["--format", "v2s2"]);
        }
        if opts.remove_signatures {
            cmd.arg("--remove-signatures");
        }
        run_ok(cmd.args([src, dest]), None);
    }

    /// The raw manifest (or list) `path` (`repo:tag` or `repo@digest`)
    /// resolves to in this registry.
    pub fn raw_manifest(&self, path: &str) -> Vec<u8> {
        self.try_raw_manifest(path)
            .unwrap_or_else(|e| panic!("test harness: skopeo inspect --raw {path}: {e}"))
    }

    /// [`Harness::raw_manifest`], or skopeo's error message when it cannot
    /// read one (the `msg` of its fatal log line, as [`skopeo_message`]
    /// gives it, e.g. for a missing tag or repository).
    pub fn try_raw_manifest(&self, path: &str) -> Result<Vec<u8>, String> {
        let output = run(
            self.skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}", self.image(path))),
            None,
        );
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(skopeo_message(&String::from_utf8_lossy(&output.stderr)))
        }
    }

    /// The manifest c/image pulls for `path` (`repo:tag` or `repo@digest`)
    /// on `platform` (`os/arch[/variant]`; `None`: this machine's): skopeo
    /// copies the image to a `dir:` destination, which keeps the manifest it
    /// chose unchanged, so for a manifest list this is the instance skopeo
    /// selects for that platform, byte for byte.
    pub fn pulled_manifest(&self, path: &str, platform: Option<&str>) -> Vec<u8> {
        let dest = self.unique_path("pulled");
        let mut cmd = self.skopeo();
        platform_args(&mut cmd, platform);
        cmd.args(["copy", "-q", "--src-tls-verify=false"])
            .arg("--policy")
            .arg(&self.accept_all)
            .arg("--registries.d")
            .arg(&self.registries_d)
            .arg(format!("docker://{}", self.image(path)))
            .arg(format!("dir:{}", dest.display()));
        run_ok(&mut cmd, None);
        let manifest = std::fs::read(dest.join("manifest.json"))
            .unwrap_or_else(|e| panic!("test harness: read the manifest skopeo pulled: {e}"));
        let _ = std::fs::remove_dir_all(&dest);
        manifest
    }

    /// `sha256:<hex>` of [`Harness::pulled_manifest`]: for a manifest list,
    /// the digest of the instance c/image selects for `platform`.
    pub fn pulled_digest(&self, path: &str, platform: Option<&str>) -> String {
        sha256_digest(&self.pulled_manifest(path, platform))
    }

    /// `sha256:<hex>` of [`Harness::raw_manifest`]: the digest c/image uses.
    pub fn manifest_digest(&self, path: &str) -> String {
        sha256_digest(&self.raw_manifest(path))
    }

    /// For a manifest list / index at `path`: each entry's platform
    /// (`os/arch[/variant]`) and digest, in list order.
    pub fn instance_digests(&self, path: &str) -> Vec<(String, String)> {
        let raw = self.raw_manifest(path);
        let list: serde_json::Value = serde_json::from_slice(&raw).expect("manifest is JSON");
        let entries = list["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} is not a manifest list or index"));
        entries
            .iter()
            .map(|entry| {
                let p = &entry["platform"];
                let mut platform = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or_default(),
                    p["architecture"].as_str().unwrap_or_default()
                );
                if let Some(variant) = p["variant"].as_str() {
                    platform.push('/');
                    platform.push_str(variant);
                }
                let digest = entry["digest"].as_str().expect("entry digest").to_string();
                (platform, digest)
            })
            .collect()
    }

    // ----- signatures -------------------------------------------------------

    /// `skopeo standalone-sign`: a signature by `key` claiming `identity`
    /// (e.g. `h.image("e2e/hello:v1")`) for the digest of `manifest`.
    pub fn standalone_sign(&self, manifest: &[u8], identity: &str, key: &Key) -> Vec<u8> {
        let manifest_path = self.unique_path("manifest").with_extension("json");
        std::fs::write(&manifest_path, manifest).expect("write manifest");
        let out = self.unique_path("standalone").with_extension("sig");
        run_ok(
            self.skopeo()
                .env("GNUPGHOME", self.gnupghome_for(key))
                .arg("standalone-sign")
                .arg(&manifest_path)
                .arg(identity)
                .arg(&key.fingerprint)
                .arg("-o")
                .arg(&out),
            None,
        );
        std::fs::read(&out).expect("read standalone signature")
    }

    /// `gpg --sign` of arbitrary `payload` bytes by `key`: a binary signed
    /// message like skopeo's (compressed, one signature), for crafted
    /// payloads. `extra_args` go to gpg as is (e.g. `--armor`,
    /// `--clearsign`, `--digest-algo SHA1`, `--compress-algo none`, another
    /// `-u FPR!` for a second signer).
    pub fn gpg_sign_with(&self, key: &Key, payload: &[u8], extra_args: &[&str]) -> Vec<u8> {
        let mut cmd = keys::gpg(&self.gnupghome_for(key));
        cmd.arg("--local-user")
            .arg(format!("{}!", key.signing_fingerprint))
            .args(extra_args);
        if !extra_args
            .iter()
            .any(|a| matches!(*a, "--clearsign" | "--clear-sign" | "--detach-sign" | "-b"))
        {
            cmd.arg("--sign");
        }
        run_ok(cmd.args(["--output", "-"]), Some(payload))
    }

    /// `gpg --sign` of `payload` by `key`, no extra options.
    pub fn gpg_sign(&self, key: &Key, payload: &[u8]) -> Vec<u8> {
        self.gpg_sign_with(key, payload, &[])
    }

    /// A simple-signing payload as c/image writes it: `critical` (identity,
    /// manifest digest, type) and `optional` (creator, timestamp).
    pub fn payload(identity: &str, manifest_digest: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": identity},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": "atomic container signature",
            },
            "optional": {"creator": "imagegate test harness", "timestamp": 1_700_000_000},
        }))
        .expect("serialize payload")
    }

    /// The lookaside directory for `repo` (the repository path without the
    /// registry host, e.g. `e2e/hello`) at `digest` (`sha256:<hex>`):
    /// `<lookaside>/<repo>@sha256=<hex>`.
    pub fn signature_dir(&self, repo: &str, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest
            .split_once(':')
            .unwrap_or_else(|| panic!("digest {digest:?} is not algo:hex"));
        self.sigstore.join(format!("{repo}@{algorithm}={hex}"))
    }

    /// The lookaside URL path of `signature-<n>` for `repo`@`digest`, as the
    /// server logs it.
    pub fn signature_url_path(&self, repo: &str, digest: &str, n: usize) -> String {
        let (algorithm, hex) = digest.split_once(':').expect("digest is algo:hex");
        format!("/{repo}@{algorithm}={hex}/signature-{n}")
    }

    /// Places `blob` as `signature-<n>` (1-based) for `repo`@`digest`;
    /// returns the file's path. Existing files are overwritten.
    pub fn put_signature(&self, repo: &str, digest: &str, n: usize, blob: &[u8]) -> PathBuf {
        assert!(n >= 1, "signature numbers start at 1");
        let dir = self.signature_dir(repo, digest);
        std::fs::create_dir_all(&dir).expect("mkdir signature dir");
        let path = dir.join(format!("signature-{n}"));
        std::fs::write(&path, blob).expect("write signature");
        path
    }

    /// The signatures stored for `repo`@`digest`: `signature-1`,
    /// `signature-2`, … up to the first missing one.
    pub fn signatures(&self, repo: &str, digest: &str) -> Vec<Vec<u8>> {
        let dir = self.signature_dir(repo, digest);
        (1..)
            .map_while(|n| std::fs::read(dir.join(format!("signature-{n}"))).ok())
            .collect()
    }

    /// Every `repo@algo=hex` directory in the lookaside, sorted, relative to
    /// the lookaside root.
    pub fn signature_dirs(&self) -> Vec<String> {
        let mut found = Vec::new();
        collect_signature_dirs(&self.sigstore, &self.sigstore, &mut found);
        found.sort();
        found
    }

    // ----- the reference verdict ------------------------------------------

    /// c/image's verdict through skopeo: `skopeo copy --policy <policy>
    /// --registries.d <harness registries.d> docker://<image> dir:<tmp>`.
    /// `image` may carry the `docker://` prefix or not. Returns whether the
    /// copy succeeded and skopeo's message (the `msg="…"` of its fatal log
    /// line, unescaped, e.g. `Source image rejected: A signature was
    /// required, but no signature exists`; empty on success).
    pub fn skopeo_verdict(&self, policy: &Path, image: &str) -> (bool, String) {
        self.skopeo_verdict_with(policy, image, None, &self.registries_d)
    }

    /// [`Harness::skopeo_verdict`] for another platform (`os/arch[/variant]`,
    /// selects the instance of a manifest list).
    pub fn skopeo_verdict_on(&self, policy: &Path, image: &str, platform: &str) -> (bool, String) {
        self.skopeo_verdict_with(policy, image, Some(platform), &self.registries_d)
    }

    /// [`Harness::skopeo_verdict`] with every knob: an optional platform and
    /// another registries.d directory.
    pub fn skopeo_verdict_with(
        &self,
        policy: &Path,
        image: &str,
        platform: Option<&str>,
        registries_d: &Path,
    ) -> (bool, String) {
        let image = image.strip_prefix("docker://").unwrap_or(image);
        let mut cmd = self.skopeo();
        platform_args(&mut cmd, platform);
        let dest = self.unique_path("verdict");
        cmd.args(["copy", "-q", "--src-tls-verify=false"])
            .arg("--registries.d")
            .arg(registries_d)
            .arg("--policy")
            .arg(policy)
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dest.display()));
        let output = run(&mut cmd, None);
        let _ = std::fs::remove_dir_all(&dest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        (output.status.success(), skopeo_message(&stderr))
    }

    /// A skopeo command with no ambient GNUPGHOME.
    fn skopeo(&self) -> Command {
        let mut cmd = command("skopeo");
        cmd.env("GNUPGHOME", &self.gnupg);
        cmd
    }

    /// The GNUPGHOME gpg must use to sign with `key`: the expired key signs
    /// only at a faked time (set in gpg.conf so skopeo's gpgme honours it).
    fn gnupghome_for(&self, key: &Key) -> PathBuf {
        let Some(time) = key.sign_time else {
            return self.gnupg.clone();
        };
        self.gnupg_past
            .get_or_init(|| {
                let home = self.dir().join("gnupg-past");
                copy_tree(&keys().gnupg_template, &home).expect("copy GNUPGHOME");
                make_private(&home);
                std::fs::write(home.join("gpg.conf"), format!("faked-system-time {time}\n"))
                    .expect("write gpg.conf");
                home
            })
            .clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        keys::kill_agents(&self.gnupg);
        if let Some(home) = self.gnupg_past.get() {
            keys::kill_agents(home);
        }
        // The registry and lookaside server stop as their fields drop, then
        // the directory is removed (unless kept, see `Harness::dir`).
    }
}

/// skopeo's global `--override-os/-arch/-variant` options for `platform`
/// (`os/arch[/variant]`); nothing for `None`.
fn platform_args(cmd: &mut Command, platform: Option<&str>) {
    if let Some(platform) = platform {
        let p = Platform::parse(platform);
        cmd.args(["--override-os", &p.os, "--override-arch", &p.architecture]);
        if let Some(variant) = &p.variant {
            cmd.args(["--override-variant", variant]);
        }
    }
}

/// The message of skopeo's fatal log line (`level=fatal msg="…"`),
/// unescaped; otherwise all of stderr, trimmed.
pub fn skopeo_message(stderr: &str) -> String {
    let fatal = stderr
        .lines()
        .rev()
        .find(|line| line.contains("level=fatal"))
        .and_then(|line| line.split_once(" msg=\"").map(|(_, rest)| rest));
    match fatal {
        Some(rest) => unquote_logfmt(rest),
        None => stderr.trim().to_string(),
    }
}

/// Reads a logrus quoted value (after the opening quote) up to its closing
/// quote, undoing Go's `%q` escapes.
fn unquote_logfmt(rest: &str) -> String {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

fn collect_signature_dirs(root: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains('@') {
            let relative = path.strip_prefix(root).expect("under root");
            found.push(relative.to_string_lossy().into_owned());
        } else {
            collect_signature_dirs(root, &path, found);
        }
    }
}
