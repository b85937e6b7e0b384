//! From per-image verdicts to one admission decision: modes applied,
//! messages worded, audit annotations recorded (DESIGN decisions 3 and 6).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{ImageVerdict, Mode};

/// The audit annotation keys imagegate writes. kube-apiserver prefixes
/// each with the webhook's name (`validate.imagegate.dev/decision`) and
/// refuses keys that already have a prefix, so these are bare names.
pub const ANNOTATION_DECISION: &str = "decision";
pub const ANNOTATION_VERDICTS: &str = "verdicts";

/// What the webhook answers, before it is put into an AdmissionResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// The denial message: every Enforce rejection, one per line.
    pub message: Option<String>,
    /// Warn-mode rejections, returned to the user as API warnings.
    pub warnings: Vec<String>,
    /// `imagegate.dev/…` audit annotations (every outcome, including Audit mode).
    pub audit_annotations: BTreeMap<String, String>,
}

/// One line of the `verdicts` audit annotation.
#[derive(Serialize)]
struct AnnotatedVerdict<'a> {
    image: &'a str,
    document: &'a str,
    mode: Mode,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Applies each document's mode to the verdicts of every image of one object.
pub fn decide(verdicts: &[ImageVerdict]) -> Decision {
    let mut denials = Vec::new();
    let mut warnings = Vec::new();
    let mut audited = 0usize;
    for verdict in verdicts {
        for (mode, message) in verdict.rejection_messages() {
            match mode {
                Mode::Enforce => denials.push(message),
                Mode::Warn => warnings.push(message),
                Mode::Audit => audited += 1,
            }
        }
    }
    let annotated: Vec<AnnotatedVerdict> = verdicts
        .iter()
        .flat_map(|v| {
            v.documents
                .iter()
                .filter(|d| d.scope.is_some())
                .map(move |d| AnnotatedVerdict {
                    image: &v.image,
                    document: &d.document,
                    mode: d.mode,
                    allowed: d.allowed,
                    scope: d.scope.as_ref().map(|s| s.to_string()),
                    reason: d.reason.as_deref(),
                })
        })
        .collect();
    let allowed = denials.is_empty();
    let mut audit_annotations = BTreeMap::new();
    let outcome = if !allowed {
        "denied"
    } else if !warnings.is_empty() {
        "warned"
    } else if audited > 0 {
        "audited"
    } else {
        "allowed"
    };
    audit_annotations.insert(ANNOTATION_DECISION.to_string(), outcome.to_string());
    if !annotated.is_empty() {
        audit_annotations.insert(
            ANNOTATION_VERDICTS.to_string(),
            serde_json::to_string(&annotated).unwrap_or_default(),
        );
    }
    Decision {
        allowed,
        message: (!allowed).then(|| denials.join("\n")),
        warnings,
        audit_annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DocumentVerdict, MatchedScope};

    fn doc(name: &str, mode: Mode, allowed: bool) -> DocumentVerdict {
        DocumentVerdict {
            document: name.into(),
            mode,
            scope: Some(MatchedScope::Scope("registry.example.com/team".into())),
            allowed,
            reason: (!allowed).then(|| "A signature was required, but no signature exists".into()),
            instances: vec![],
        }
    }

    fn image(docs: Vec<DocumentVerdict>) -> ImageVerdict {
        ImageVerdict {
            image: "registry.example.com/team/app:v1".into(),
            reference: None,
            digest: None,
            documents: docs,
        }
    }

    #[test]
    fn enforce_denies_with_the_full_message() {
        let d = decide(&[image(vec![doc(
            "ClusterImagePolicy/prod",
            Mode::Enforce,
            false,
        )])]);
        assert!(!d.allowed);
        assert_eq!(
            d.message.as_deref(),
            Some(
                "image registry.example.com/team/app:v1 rejected by ClusterImagePolicy/prod \
                 (scope registry.example.com/team): A signature was required, but no signature exists"
            )
        );
        assert_eq!(d.audit_annotations["decision"], "denied");
    }

    #[test]
    fn warn_admits_with_a_warning_and_audit_admits_silently() {
        let d = decide(&[image(vec![doc(
            "ImagePolicy/team/strict",
            Mode::Warn,
            false,
        )])]);
        assert!(d.allowed);
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.audit_annotations["decision"], "warned");
        let d = decide(&[image(vec![doc(
            "ClusterImagePolicy/audit",
            Mode::Audit,
            false,
        )])]);
        assert!(d.allowed);
        assert!(d.warnings.is_empty());
        assert_eq!(d.audit_annotations["decision"], "audited");
        assert!(d.audit_annotations["verdicts"].contains("\"allowed\":false"));
    }

    #[test]
    fn every_document_must_accept() {
        let d = decide(&[image(vec![
            doc("ClusterImagePolicy/base", Mode::Enforce, true),
            doc("ImagePolicy/team/strict", Mode::Enforce, false),
        ])]);
        assert!(!d.allowed);
        assert!(d.message.unwrap().contains("ImagePolicy/team/strict"));
        let d = decide(&[image(vec![doc(
            "ClusterImagePolicy/base",
            Mode::Enforce,
            true,
        )])]);
        assert!(d.allowed);
        assert_eq!(d.audit_annotations["decision"], "allowed");
    }
}
