//! One AdmissionRequest in, one AdmissionResponse out: which requests need
//! work, which images they run, and what to answer. Transport-free; the
//! verification itself is behind [`ImageVerifier`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use crate::admission::decision::{ANNOTATION_DECISION, decide};
use crate::admission::images::{distinct_images, images_of, introduces_new_images};
use crate::admission::pinning::pinning_patch;
use crate::engine::ImageVerdict;

/// Verifies the images of one object against every policy document that
/// applies to its namespace.
pub trait ImageVerifier: Send + Sync {
    fn verify<'a>(
        &'a self,
        images: &'a [String],
        context: &'a RequestContext,
    ) -> Pin<Box<dyn Future<Output = Vec<ImageVerdict>> + Send + 'a>>;
}

/// Told about every answered review (Events, audit sinks). Must not block.
pub trait DecisionObserver: Send + Sync {
    fn observe(&self, request: &AdmissionRequest<DynamicObject>, summary: &ReviewSummary);
}

/// What the verifier may need to know about the request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub namespace: Option<String>,
    /// The pod (template)'s `imagePullSecrets` names.
    pub image_pull_secrets: Vec<String>,
    /// The pod (template)'s service account (`default` when unset).
    pub service_account: Option<String>,
}

/// Which endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`: deny, warn, annotate.
    Validate,
    /// `/mutate`: pin verified tags to digests (and deny what Enforce rejects).
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// Options of the review logic.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// Kinds whose images are pinned by `/mutate` (default: Pods only, so
    /// GitOps tools see no drift in the objects they own).
    pub mutate_kinds: Vec<String>,
}

impl Default for ReviewOptions {
    fn default() -> Self {
        ReviewOptions {
            mutate_kinds: vec!["Pod".into()],
        }
    }
}

/// How a review was answered, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSummary {
    /// `allowed`, `denied`, `warned`, `audited`, `skipped` (nothing to check) or `unchanged`.
    pub decision: &'static str,
    pub images: Vec<String>,
    pub reason: Option<String>,
}

/// Answers one request.
pub async fn review(
    request: &AdmissionRequest<DynamicObject>,
    endpoint: Endpoint,
    verifier: &dyn ImageVerifier,
    options: &ReviewOptions,
) -> (AdmissionResponse, ReviewSummary) {
    let skipped = |why: &str| {
        let mut response = AdmissionResponse::from(request);
        response
            .audit_annotations
            .insert(ANNOTATION_DECISION.to_string(), why.to_string());
        (
            response,
            ReviewSummary {
                decision: "skipped",
                images: vec![],
                reason: None,
            },
        )
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return skipped("skipped");
    }
    match request.sub_resource.as_deref() {
        None | Some("") | Some("ephemeralcontainers") => {}
        Some(_) => return skipped("skipped"),
    }
    let kind = request.kind.kind.as_str();
    let Some(object) = &request.object else {
        return skipped("skipped");
    };
    // Every pod spec lives under `spec`, which DynamicObject keeps (with
    // everything but apiVersion, kind and metadata) in `data`: read it in
    // place rather than converting the whole object again.
    let value = &object.data;
    let uses = match images_of(kind, value) {
        Ok(u) => u,
        Err(e) => return invalid(request, format!("malformed {kind}: {e}")),
    };
    if uses.is_empty() {
        return skipped("skipped");
    }
    if request.operation == Operation::Update {
        let old_uses = request
            .old_object
            .as_ref()
            .and_then(|o| images_of(kind, &o.data).ok())
            .unwrap_or_default();
        if !old_uses.is_empty() && !introduces_new_images(&old_uses, &uses) {
            let mut response = AdmissionResponse::from(request);
            response
                .audit_annotations
                .insert(ANNOTATION_DECISION.to_string(), "unchanged".into());
            return (
                response,
                ReviewSummary {
                    decision: "unchanged",
                    images: distinct_images(&uses),
                    reason: None,
                },
            );
        }
    }
    let images = distinct_images(&uses);
    let context = request_context(request, value, kind);
    let verdicts = verifier.verify(&images, &context).await;
    let decision = decide(&verdicts);
    let mut response = AdmissionResponse::from(request);
    response.audit_annotations = decision
        .audit_annotations
        .clone()
        .into_iter()
        .collect::<HashMap<_, _>>();
    let outcome = decision
        .audit_annotations
        .get(ANNOTATION_DECISION)
        .map(String::as_str)
        .unwrap_or("allowed");
    let summary_decision = match outcome {
        "denied" => "denied",
        "warned" => "warned",
        "audited" => "audited",
        _ => "allowed",
    };
    let summary = ReviewSummary {
        decision: summary_decision,
        images: images.clone(),
        reason: decision
            .message
            .clone()
            .or_else(|| decision.warnings.first().cloned()),
    };
    if !decision.allowed {
        return (response.deny(decision.message.unwrap_or_default()), summary);
    }
    match endpoint {
        Endpoint::Validate => {
            if !decision.warnings.is_empty() {
                response.warnings = Some(decision.warnings);
            }
        }
        Endpoint::Mutate => {
            if options.mutate_kinds.iter().any(|k| k == kind) {
                let ops = pinning_patch(&uses, &verdicts);
                if !ops.is_empty() {
                    match response.clone().with_patch(json_patch::Patch(ops)) {
                        Ok(r) => response = r,
                        Err(e) => {
                            return invalid(request, format!("cannot serialise the patch: {e}"));
                        }
                    }
                }
            }
        }
    }
    (response, summary)
}

fn invalid(
    request: &AdmissionRequest<DynamicObject>,
    message: String,
) -> (AdmissionResponse, ReviewSummary) {
    (
        AdmissionResponse::from(request).deny(&message),
        ReviewSummary {
            decision: "denied",
            images: vec![],
            reason: Some(message),
        },
    )
}

/// The namespace, pull secrets and service account of the pod (template).
fn request_context(
    request: &AdmissionRequest<DynamicObject>,
    value: &serde_json::Value,
    kind: &str,
) -> RequestContext {
    let spec = crate::admission::images::pod_spec_pointer(kind).and_then(|p| value.pointer(p));
    let image_pull_secrets = spec
        .and_then(|s| s.get("imagePullSecrets"))
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("name").and_then(|n| n.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let service_account = spec
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(|s| s.as_str())
        .map(String::from);
    RequestContext {
        namespace: request.namespace.clone(),
        image_pull_secrets,
        service_account,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        DocumentVerdict, InstanceVerdict, MatchedScope, Mode, RequirementReport, SignatureReport,
    };
    use kube::core::admission::AdmissionReview;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Accepts images whose name contains "signed", rejects the rest.
    struct FakeVerifier {
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl ImageVerifier for FakeVerifier {
        fn verify<'a>(
            &'a self,
            images: &'a [String],
            _context: &'a RequestContext,
        ) -> Pin<Box<dyn Future<Output = Vec<ImageVerdict>> + Send + 'a>> {
            self.calls.lock().unwrap().push(images.to_vec());
            Box::pin(async move {
                images
                    .iter()
                    .map(|i| {
                        let ok = i.contains("signed") && !i.contains("unsigned");
                        ImageVerdict {
                            image: i.clone(),
                            reference: None,
                            digest: Some(DIGEST.into()),
                            documents: vec![DocumentVerdict {
                                document: "ClusterImagePolicy/prod".into(),
                                mode: if i.contains("warn") {
                                    Mode::Warn
                                } else {
                                    Mode::Enforce
                                },
                                scope: Some(MatchedScope::Scope("registry.example.com".into())),
                                allowed: ok,
                                reason: (!ok).then(|| {
                                    "A signature was required, but no signature exists".into()
                                }),
                                instances: vec![InstanceVerdict {
                                    digest: Some(DIGEST.into()),
                                    platform: None,
                                    allowed: ok,
                                    reason: None,
                                    requirements: vec![RequirementReport {
                                        requirement: "signedBy".into(),
                                        passed: ok,
                                        reason: None,
                                        signatures: vec![SignatureReport {
                                            source: "signature-1".into(),
                                            accepted: ok,
                                            detail: String::new(),
                                        }],
                                    }],
                                }],
                            }],
                        }
                    })
                    .collect()
            })
        }
    }

    fn request(
        kind: &str,
        operation: &str,
        object: serde_json::Value,
        old: Option<serde_json::Value>,
    ) -> AdmissionRequest<DynamicObject> {
        let (group, version) = match kind {
            "Pod" => ("", "v1"),
            _ => ("apps", "v1"),
        };
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
                "name": "x", "namespace": "team", "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object, "oldObject": old, "dryRun": false
            }
        });
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(review).unwrap();
        review.try_into().unwrap()
    }

    fn pod(images: &[&str]) -> serde_json::Value {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, im)| serde_json::json!({"name": format!("c{i}"), "image": im}))
            .collect();
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "team"}, "spec": {"containers": containers}})
    }

    fn verifier() -> FakeVerifier {
        FakeVerifier {
            calls: Default::default(),
        }
    }

    #[tokio::test]
    async fn denies_with_message_and_verifies_each_image_once() {
        let v = verifier();
        let req = request(
            "Pod",
            "CREATE",
            pod(&[
                "registry.example.com/unsigned:v1",
                "registry.example.com/unsigned:v1",
            ]),
            None,
        );
        let (resp, summary) = review(&req, Endpoint::Validate, &v, &ReviewOptions::default()).await;
        assert!(!resp.allowed);
        assert!(resp.result.message.contains("image registry.example.com/unsigned:v1 rejected by ClusterImagePolicy/prod (scope registry.example.com)"));
        assert_eq!(summary.decision, "denied");
        assert_eq!(
            v.calls.lock().unwrap().as_slice(),
            [vec!["registry.example.com/unsigned:v1".to_string()]]
        );
    }

    #[tokio::test]
    async fn warn_mode_returns_warnings() {
        let v = verifier();
        let req = request(
            "Pod",
            "CREATE",
            pod(&["registry.example.com/warn:v1"]),
            None,
        );
        let (resp, summary) = review(&req, Endpoint::Validate, &v, &ReviewOptions::default()).await;
        assert!(resp.allowed);
        assert_eq!(resp.warnings.unwrap().len(), 1);
        assert_eq!(summary.decision, "warned");
    }

    #[tokio::test]
    async fn update_without_new_images_does_no_work() {
        let v = verifier();
        let req = request(
            "Pod",
            "UPDATE",
            pod(&["registry.example.com/unsigned:v1"]),
            Some(pod(&["registry.example.com/unsigned:v1"])),
        );
        let (resp, summary) = review(&req, Endpoint::Validate, &v, &ReviewOptions::default()).await;
        assert!(resp.allowed);
        assert_eq!(summary.decision, "unchanged");
        assert!(v.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn other_operations_and_subresources_are_skipped() {
        let v = verifier();
        let req = request(
            "Pod",
            "DELETE",
            pod(&["registry.example.com/unsigned:v1"]),
            None,
        );
        assert!(
            review(&req, Endpoint::Validate, &v, &ReviewOptions::default())
                .await
                .0
                .allowed
        );
        let mut req = request(
            "Pod",
            "UPDATE",
            pod(&["registry.example.com/unsigned:v2"]),
            Some(pod(&["registry.example.com/unsigned:v1"])),
        );
        req.sub_resource = Some("status".into());
        assert!(
            review(&req, Endpoint::Validate, &v, &ReviewOptions::default())
                .await
                .0
                .allowed
        );
        req.sub_resource = Some("ephemeralcontainers".into());
        assert!(
            !review(&req, Endpoint::Validate, &v, &ReviewOptions::default())
                .await
                .0
                .allowed
        );
        assert!(v.calls.lock().unwrap().len() == 1);
    }

    #[tokio::test]
    async fn mutate_pins_pods_only_by_default() {
        let v = verifier();
        let req = request(
            "Pod",
            "CREATE",
            pod(&["registry.example.com/signed:v1"]),
            None,
        );
        let (resp, _) = review(&req, Endpoint::Mutate, &v, &ReviewOptions::default()).await;
        let patch: serde_json::Value =
            serde_json::from_slice(resp.patch.as_ref().unwrap()).unwrap();
        assert_eq!(
            patch[1]["value"],
            format!("registry.example.com/signed:v1@{DIGEST}")
        );
        let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "registry.example.com/signed:v1"}]}}}});
        let req = request("Deployment", "CREATE", deployment, None);
        let (resp, _) = review(&req, Endpoint::Mutate, &v, &ReviewOptions::default()).await;
        assert!(resp.allowed && resp.patch.is_none());
        let opts = ReviewOptions {
            mutate_kinds: vec!["Pod".into(), "Deployment".into()],
        };
        let (resp, _) = review(&req, Endpoint::Mutate, &v, &opts).await;
        assert!(resp.patch.is_some());
    }

    #[tokio::test]
    async fn malformed_objects_are_denied_clearly() {
        let v = verifier();
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"name": "a", "image": 7}]}});
        let req = request("Pod", "CREATE", bad, None);
        let (resp, _) = review(&req, Endpoint::Validate, &v, &ReviewOptions::default()).await;
        assert!(!resp.allowed);
        assert!(resp.result.message.contains("image must be a string"));
    }
}
