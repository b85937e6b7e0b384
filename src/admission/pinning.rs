//! Digest pinning (DESIGN decision 6): the mutating endpoint rewrites each
//! verified tag to `repo:tag@sha256:…`, so the node pulls exactly the
//! manifest that was verified. CRI-O evaluates `repo:tag@digest` as
//! `repo@digest`, which the default `matchRepoDigestOrExact` still accepts
//! for signatures that name the tag.

use json_patch::{PatchOperation, ReplaceOperation, TestOperation};
use jsonptr::PointerBuf;

use crate::admission::images::ImageUse;
use crate::engine::ImageVerdict;
use crate::reference::Named;

/// The pinned form of `image` at `digest`, or `None` when the image
/// already carries a digest (pinning is idempotent) or does not parse.
pub fn pinned_image(image: &str, digest: &str) -> Option<String> {
    let named = Named::parse_normalized(image).ok()?;
    if named.digest().is_some() {
        return None;
    }
    // Keep the user's spelling of the name; make the implied tag explicit.
    let with_tag = if named.tag().is_some() {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    Some(format!("{with_tag}@{digest}"))
}

/// JSON Patch operations pinning every use of a verified image. Each
/// replacement is preceded by a `test` of the value that was verified, so a
/// patch can never rewrite an image it did not see.
pub fn pinning_patch(uses: &[ImageUse], verdicts: &[ImageVerdict]) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    for u in uses {
        let Some(verdict) = verdicts.iter().find(|v| v.image == u.image) else {
            continue;
        };
        if !verdict.verified() {
            continue;
        }
        let Some(digest) = verdict.digest.as_deref() else {
            continue;
        };
        let Some(pinned) = pinned_image(&u.image, digest) else {
            continue;
        };
        let Ok(path) = PointerBuf::parse(u.pointer.clone()) else {
            continue;
        };
        ops.push(PatchOperation::Test(TestOperation {
            path: path.clone(),
            value: serde_json::Value::String(u.image.clone()),
        }));
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path,
            value: serde_json::Value::String(pinned),
        }));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::images::{ImageField, images_of};
    use crate::engine::{
        DocumentVerdict, InstanceVerdict, MatchedScope, Mode, RequirementReport, SignatureReport,
    };

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn verified(image: &str, signed: bool) -> ImageVerdict {
        ImageVerdict {
            image: image.into(),
            reference: None,
            digest: Some(DIGEST.into()),
            documents: vec![DocumentVerdict {
                document: "ClusterImagePolicy/prod".into(),
                mode: Mode::Enforce,
                scope: Some(MatchedScope::Default),
                allowed: true,
                reason: None,
                instances: vec![InstanceVerdict {
                    digest: Some(DIGEST.into()),
                    platform: None,
                    allowed: true,
                    reason: None,
                    requirements: vec![RequirementReport {
                        requirement: "signedBy".into(),
                        passed: true,
                        reason: None,
                        signatures: vec![SignatureReport {
                            source: "signature-1".into(),
                            accepted: signed,
                            detail: String::new(),
                        }],
                    }],
                }],
            }],
        }
    }

    #[test]
    fn pinned_forms() {
        assert_eq!(
            pinned_image("nginx:1.25", DIGEST),
            Some(format!("nginx:1.25@{DIGEST}"))
        );
        assert_eq!(
            pinned_image("example.com/app", DIGEST),
            Some(format!("example.com/app:latest@{DIGEST}"))
        );
        assert_eq!(pinned_image(&format!("nginx@{DIGEST}"), DIGEST), None);
        assert_eq!(pinned_image(&format!("nginx:1@{DIGEST}"), DIGEST), None);
        assert_eq!(pinned_image("UPPER/x", DIGEST), None);
    }

    #[test]
    fn patch_applies_and_is_idempotent() {
        let mut pod: serde_json::Value = serde_json::json!({"spec": {"containers": [
            {"name": "a", "image": "registry.example.com/team/app:v1"},
            {"name": "b", "image": "registry.example.com/team/other:v1"}
        ]}});
        let uses = images_of("Pod", &pod).unwrap();
        assert_eq!(uses[0].field, ImageField::Container);
        let verdicts = vec![
            verified("registry.example.com/team/app:v1", true),
            verified("registry.example.com/team/other:v1", false),
        ];
        let ops = pinning_patch(&uses, &verdicts);
        assert_eq!(ops.len(), 2, "only the verified image is pinned");
        json_patch::patch(&mut pod, &ops).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            format!("registry.example.com/team/app:v1@{DIGEST}")
        );
        assert_eq!(
            pod["spec"]["containers"][1]["image"],
            "registry.example.com/team/other:v1"
        );
        let uses = images_of("Pod", &pod).unwrap();
        let verdicts = vec![verified(&uses[0].image, true)];
        assert!(pinning_patch(&uses, &verdicts).is_empty());
    }
}
