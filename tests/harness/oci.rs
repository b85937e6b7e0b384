//! Image builders: OCI image layouts made by hand (no Docker, no network).
//!
//! Everything is deterministic: the same text and platform always give the
//! same bytes and digests, and different texts give different digests.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::tools::{command, run_ok};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The tag every harness-built layout stores its image under.
pub const LAYOUT_TAG: &str = "img";

/// One platform, parsed from `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/amd64` or `linux/arm/v7`; panics on anything else.
    pub fn parse(text: &str) -> Platform {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            },
            [os, arch, variant] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            },
            _ => panic!("test harness: platform {text:?} is not os/arch[/variant]"),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut value = json!({"architecture": self.architecture, "os": self.os});
        if let Some(variant) = &self.variant {
            value["variant"] = json!(variant);
        }
        value
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// One single-platform image manifest inside a layout.
#[derive(Debug, Clone)]
pub struct Instance {
    pub platform: Platform,
    /// `sha256:<hex>` of [`Instance::manifest`].
    pub digest: String,
    /// The exact manifest bytes.
    pub manifest: Vec<u8>,
}

/// An OCI image layout on disk holding one tagged image: a single manifest
/// or an index over several.
#[derive(Debug, Clone)]
pub struct OciImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// `sha256:<hex>` of the tagged manifest or index.
    pub digest: String,
    /// The tagged manifest or index, exact bytes.
    pub manifest: Vec<u8>,
    /// Media type of [`OciImage::manifest`].
    pub media_type: &'static str,
    /// The per-platform images (one for a single image).
    pub instances: Vec<Instance>,
}

impl OciImage {
    /// The skopeo source reference, `oci:<layout>:<tag>`.
    pub fn skopeo_ref(&self) -> String {
        format!("oci:{}:{LAYOUT_TAG}", self.layout.display())
    }

    /// True for an image index.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds a one-layer image for `platform` whose only file, `/hello.txt`,
/// holds `text`, in a new layout at `layout`.
pub fn build_image(layout: &Path, text: &str, platform: &str) -> OciImage {
    let platform = Platform::parse(platform);
    let instance = write_instance(layout, text, &platform);
    let descriptor = json!({
        "mediaType": OCI_MANIFEST,
        "digest": instance.digest,
        "size": instance.manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": LAYOUT_TAG},
        "platform": platform.to_json(),
    });
    write_layout_index(layout, descriptor);
    OciImage {
        layout: layout.to_path_buf(),
        digest: instance.digest.clone(),
        manifest: instance.manifest.clone(),
        media_type: OCI_MANIFEST,
        instances: vec![instance],
    }
}

/// Builds an image index with one image per platform (each image's file
/// holds `"<text> <platform>"`), in a new layout at `layout`.
pub fn build_index(layout: &Path, text: &str, platforms: &[&str]) -> OciImage {
    assert!(
        !platforms.is_empty(),
        "an index needs at least one platform"
    );
    let instances: Vec<Instance> = platforms
        .iter()
        .map(|p| {
            let platform = Platform::parse(p);
            write_instance(layout, &format!("{text} {platform}"), &platform)
        })
        .collect();
    let manifests: Vec<serde_json::Value> = instances
        .iter()
        .map(|i| {
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": i.digest,
                "size": i.manifest.len(),
                "platform": i.platform.to_json(),
            })
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("serialize index");
    let digest = put_blob(layout, &index);
    write_layout_index(
        layout,
        json!({
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": LAYOUT_TAG},
        }),
    );
    OciImage {
        layout: layout.to_path_buf(),
        digest,
        manifest: index,
        media_type: OCI_INDEX,
        instances,
    }
}

/// Writes layer, config and manifest blobs for one image; returns it.
fn write_instance(layout: &Path, text: &str, platform: &Platform) -> Instance {
    let layer_tar = layer_tar(text);
    let diff_id = sha256_digest(&layer_tar);
    let layer = gzip(&layer_tar);
    let layer_digest = put_blob(layout, &layer);
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    let config = serde_json::to_vec(&config).expect("serialize config");
    let config_digest = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
    }))
    .expect("serialize manifest");
    let digest = put_blob(layout, &manifest);
    Instance {
        platform: platform.clone(),
        digest,
        manifest,
    }
}

/// A tar archive holding `hello.txt` = `text` + newline, with fixed owner,
/// mode and time so it is byte-for-byte reproducible.
fn layer_tar(text: &str) -> Vec<u8> {
    let work = tempfile::tempdir().expect("tempdir for a layer");
    std::fs::write(work.path().join("hello.txt"), format!("{text}\n")).expect("write hello.txt");
    run_ok(
        command("tar")
            .args([
                "--format=ustar",
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=0644",
                "--mtime=2024-01-01 00:00Z",
                "-C",
            ])
            .arg(work.path())
            .args(["-cf", "-", "hello.txt"]),
        None,
    )
}

/// gzip without a file name or time stamp, so the output is reproducible.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    run_ok(command("gzip").args(["-n", "-9", "-c"]), Some(bytes))
}

/// Stores `bytes` as a blob in the layout; returns its digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let dir = layout.join("blobs").join("sha256");
    std::fs::create_dir_all(&dir).expect("mkdir blobs/sha256");
    std::fs::write(dir.join(&digest["sha256:".len()..]), bytes).expect("write blob");
    digest
}

fn write_layout_index(layout: &Path, descriptor: serde_json::Value) {
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("serialize index.json"),
    )
    .expect("write index.json");
}
