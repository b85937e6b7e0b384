//! Requirement evaluation: c/image's `IsRunningImageAllowed` (semantics
//! §2.3, §2.6, messages §8), with a structured report per requirement and
//! per signature for the CLI and audit output.
//!
//! All requirements of the selected list must pass, in list order; the
//! first failing one gives the reason and later ones are not evaluated
//! (c/image returns at once). Nothing here does I/O except through the
//! [`KeyResolver`]: the caller supplies the manifest and signatures in an
//! [`ImageMaterial`], and [`needs_image_material`] tells it whether fetching
//! them can matter at all.

use super::config::{Policy, Requirement};
use super::keys::KeyResolver;
use super::scope::ScopeMatch;
use super::signed_by;
use crate::reference::{Digest, ImageReference};
use crate::signature::blob::StoredSignature;

/// `List of verification policy requirements must not be empty`.
pub const EMPTY_REQUIREMENTS: &str = "List of verification policy requirements must not be empty";
/// `signedBaseLayer not implemented yet!`.
pub const SIGNED_BASE_LAYER_UNIMPLEMENTED: &str = "signedBaseLayer not implemented yet!";
/// imagegate's denial for `sigstoreSigned` (c/image would verify it).
pub const SIGSTORE_UNSUPPORTED: &str =
    "sigstoreSigned is not supported yet: imagegate verifies GPG simple signing (signedBy) only";

/// What policy evaluation may read about one image (c/image's
/// `UnparsedImage` for one per-platform instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMaterial {
    /// The user's reference (tag, or the list digest for multi-arch): the
    /// identity signatures are matched against.
    pub reference: ImageReference,
    /// The manifest bytes, or why they could not be read. Only consulted
    /// when a signature's digest is checked.
    pub manifest: Result<Vec<u8>, String>,
    /// The stored signatures in order (`signature-1`, `signature-2`, …), or
    /// why they could not be read. Only consulted by `signedBy`.
    pub signatures: Result<Vec<StoredSignature>, String>,
}

impl ImageMaterial {
    pub fn new(
        reference: ImageReference,
        manifest: Result<Vec<u8>, String>,
        signatures: Result<Vec<StoredSignature>, String>,
    ) -> Self {
        ImageMaterial {
            reference,
            manifest,
            signatures,
        }
    }

    /// Material with nothing fetched, for requirement lists where
    /// [`needs_image_material`] is false.
    pub fn unfetched(reference: ImageReference) -> Self {
        const NOT_FETCHED: &str = "internal error: image material was not fetched";
        ImageMaterial {
            reference,
            manifest: Err(NOT_FETCHED.into()),
            signatures: Err(NOT_FETCHED.into()),
        }
    }
}

/// The outcome of evaluating one requirement list against one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// When denied: the first failing requirement's reason, in c/image's
    /// words (without the `Source image rejected: ` wrapper).
    pub reason: Option<String>,
    /// One entry per requirement, in list order.
    pub requirements: Vec<RequirementReport>,
}

/// How one requirement fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementReport {
    /// 0-based position in the list.
    pub index: usize,
    pub requirement: Requirement,
    pub outcome: RequirementOutcome,
    /// For `signedBy`: one entry per stored signature.
    pub signatures: Vec<SignatureReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequirementOutcome {
    Allowed,
    Denied(String),
    /// An earlier requirement denied; c/image stops there.
    NotEvaluated,
}

/// How one stored signature fared against a `signedBy` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureReport {
    /// 1-based position in the stored list (`signature-N`).
    pub number: usize,
    pub outcome: SignatureOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureOutcome {
    Accepted(AcceptedSignature),
    Rejected(SignatureRejection),
    /// Not a simple-signing signature (a sigstore one).
    Ignored(String),
    /// An earlier signature was accepted; c/image stops there.
    NotChecked,
}

/// The key that made a cryptographically valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Upper-case hex fingerprint of the trusted primary key.
    pub primary_fingerprint: String,
    /// The key that signed: the primary itself or a signing subkey.
    pub signing_key_fingerprint: String,
}

/// A signature that satisfied a `signedBy` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSignature {
    pub signer: Signer,
    /// The identity the signature claims (raw string from the payload).
    pub docker_reference: String,
    pub docker_manifest_digest: Digest,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRejection {
    pub stage: RejectionStage,
    /// c/image's words for this signature.
    pub reason: String,
    /// Known once the OpenPGP verification succeeded.
    pub signer: Option<Signer>,
}

impl SignatureRejection {
    pub(crate) fn new(stage: RejectionStage, reason: String) -> Self {
        SignatureRejection {
            stage,
            reason,
            signer: None,
        }
    }
}

/// The check that refused a signature, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionStage {
    /// `keyType` other than `GPGKeys`.
    KeyType,
    /// The keys could not be read, or held no public key.
    Keys,
    /// OpenPGP verification failed (unknown key, bad or expired signature…).
    Crypto,
    /// The signer's primary key is not trusted.
    KeyIdentity,
    /// The signed payload violates the simple-signing format.
    Payload,
    /// The manifest could not be read or hashed, or its digest differs.
    Digest,
    /// `signedIdentity` refused the claimed reference.
    Identity,
}

/// `IsRunningImageAllowed` for one selected requirement list.
pub fn is_running_image_allowed(
    requirements: &[Requirement],
    image: &ImageMaterial,
    keys: &dyn KeyResolver,
) -> Verdict {
    if requirements.is_empty() {
        return Verdict {
            allowed: false,
            reason: Some(EMPTY_REQUIREMENTS.to_string()),
            requirements: Vec::new(),
        };
    }
    let mut reason: Option<String> = None;
    let mut reports = Vec::with_capacity(requirements.len());
    for (index, requirement) in requirements.iter().enumerate() {
        let (result, signatures) = if reason.is_some() {
            (None, Vec::new())
        } else {
            let (r, s) = evaluate_requirement(requirement, image, keys);
            (Some(r), s)
        };
        let outcome = match result {
            None => RequirementOutcome::NotEvaluated,
            Some(Ok(())) => RequirementOutcome::Allowed,
            Some(Err(why)) => {
                reason = Some(why.clone());
                RequirementOutcome::Denied(why)
            }
        };
        reports.push(RequirementReport {
            index,
            requirement: requirement.clone(),
            outcome,
            signatures,
        });
    }
    Verdict {
        allowed: reason.is_none(),
        reason,
        requirements: reports,
    }
}

/// `isRunningImageAllowed` of one requirement.
fn evaluate_requirement(
    requirement: &Requirement,
    image: &ImageMaterial,
    keys: &dyn KeyResolver,
) -> (Result<(), String>, Vec<SignatureReport>) {
    match requirement {
        Requirement::InsecureAcceptAnything => (Ok(()), Vec::new()),
        Requirement::Reject => (
            Err(format!(
                "Running image {} is rejected by policy.",
                image.reference.image_name()
            )),
            Vec::new(),
        ),
        Requirement::SignedBy(sb) => signed_by::evaluate(sb, image, keys),
        Requirement::SignedBaseLayer(_) => {
            (Err(SIGNED_BASE_LAYER_UNIMPLEMENTED.to_string()), Vec::new())
        }
        Requirement::SigstoreSigned(_) => (Err(SIGSTORE_UNSUPPORTED.to_string()), Vec::new()),
    }
}

/// Whether evaluating `requirements` can read the image's manifest or
/// signatures. False when a requirement that decides without them
/// (`reject`, `signedBaseLayer`, `sigstoreSigned` here) comes before any
/// `signedBy`, or when there is no `signedBy`: then the caller contacts no
/// registry ("no network before policy") and passes
/// [`ImageMaterial::unfetched`], with the very same verdict.
pub fn needs_image_material(requirements: &[Requirement]) -> bool {
    for requirement in requirements {
        match requirement {
            Requirement::InsecureAcceptAnything => continue,
            Requirement::SignedBy(_) => return true,
            Requirement::Reject
            | Requirement::SignedBaseLayer(_)
            | Requirement::SigstoreSigned(_) => return false,
        }
    }
    false
}

/// A verdict together with the scope that selected the requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict<'a> {
    pub scope: ScopeMatch<'a>,
    pub verdict: Verdict,
}

impl Policy {
    /// Scope lookup and evaluation in one step; `None` when the document
    /// has no opinion on this image (no `default`, no matching scope).
    pub fn is_running_image_allowed(
        &self,
        image: &ImageMaterial,
        keys: &dyn KeyResolver,
    ) -> Option<PolicyVerdict<'_>> {
        let scope = self.requirements_for(&image.reference)?;
        let verdict = is_running_image_allowed(scope.requirements, image, keys);
        Some(PolicyVerdict { scope, verdict })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{KeyType, ParseOptions, SignedBy};
    use crate::policy::identity::PolicyReferenceMatch;
    use crate::policy::keys::{FilesystemKeyResolver, KeySource};

    fn image(r: &str) -> ImageReference {
        ImageReference::parse(r).unwrap()
    }

    fn material(r: &str, sigs: Vec<StoredSignature>) -> ImageMaterial {
        ImageMaterial::new(image(r), Err("no manifest".into()), Ok(sigs))
    }

    fn signed_by(key_type: KeyType, keys: KeySource) -> Requirement {
        Requirement::SignedBy(SignedBy {
            key_type,
            keys,
            signed_identity: PolicyReferenceMatch::MatchRepoDigestOrExact,
        })
    }

    fn no_keys() -> FilesystemKeyResolver {
        FilesystemKeyResolver::new()
    }

    #[test]
    fn simple_requirements() {
        let m = ImageMaterial::unfetched(image("busybox"));
        let v = is_running_image_allowed(&[Requirement::InsecureAcceptAnything], &m, &no_keys());
        assert!(v.allowed);
        assert_eq!(v.reason, None);
        let v = is_running_image_allowed(&[Requirement::Reject], &m, &no_keys());
        assert!(!v.allowed);
        assert_eq!(
            v.reason.as_deref(),
            Some("Running image docker://busybox:latest is rejected by policy.")
        );
        let m = ImageMaterial::unfetched(image("quay.io/ns/app:v1"));
        let v = is_running_image_allowed(
            &[Requirement::InsecureAcceptAnything, Requirement::Reject],
            &m,
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("Running image docker://quay.io/ns/app:v1 is rejected by policy.")
        );
        assert_eq!(v.requirements[0].outcome, RequirementOutcome::Allowed);
        let v = is_running_image_allowed(&[], &m, &no_keys());
        assert_eq!(v.reason.as_deref(), Some(EMPTY_REQUIREMENTS));
    }

    #[test]
    fn first_failure_wins_and_stops() {
        let m = ImageMaterial::unfetched(image("busybox"));
        let base = crate::policy::config::SignedBaseLayer {
            base_layer_identity: PolicyReferenceMatch::MatchRepository,
        };
        let reqs = [
            Requirement::SignedBaseLayer(base),
            Requirement::Reject,
            signed_by(KeyType::GpgKeys, KeySource::Path("/x".into())),
        ];
        let v = is_running_image_allowed(&reqs, &m, &no_keys());
        assert_eq!(v.reason.as_deref(), Some(SIGNED_BASE_LAYER_UNIMPLEMENTED));
        assert_eq!(v.requirements[1].outcome, RequirementOutcome::NotEvaluated);
        assert_eq!(v.requirements[2].outcome, RequirementOutcome::NotEvaluated);
        assert!(!needs_image_material(&reqs));
    }

    #[test]
    fn sigstore_signed_denies_clearly() {
        let p = Policy::parse(
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/k"}]}"#,
            ParseOptions::POLICY_FILE,
        )
        .unwrap();
        let m = ImageMaterial::unfetched(image("busybox"));
        let pv = p.is_running_image_allowed(&m, &no_keys()).unwrap();
        assert!(!pv.verdict.allowed);
        assert!(
            pv.verdict
                .reason
                .unwrap()
                .starts_with("sigstoreSigned is not supported yet")
        );
    }

    #[test]
    fn signed_by_without_signatures() {
        let req = signed_by(KeyType::GpgKeys, KeySource::Path("/nonexistent".into()));
        let v = is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![]),
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("A signature was required, but no signature exists")
        );
        // Sigstore blobs are not signedBy's business.
        let v = is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![StoredSignature::Sigstore(b"{}".to_vec())]),
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("A signature was required, but no signature exists")
        );
        assert!(matches!(
            v.requirements[0].signatures[0].outcome,
            SignatureOutcome::Ignored(_)
        ));
        // A signature read failure is the reason.
        let m = ImageMaterial::new(
            image("busybox"),
            Ok(vec![]),
            Err("reading signature from https://x/sig: status 500 (Internal Server Error)".into()),
        );
        let v = is_running_image_allowed(std::slice::from_ref(&req), &m, &no_keys());
        assert_eq!(
            v.reason.as_deref(),
            Some("reading signature from https://x/sig: status 500 (Internal Server Error)")
        );
    }

    #[test]
    fn unimplemented_key_types_reject_each_signature() {
        let sig = StoredSignature::SimpleSigning(vec![0xa3, 1, 2]);
        let req = signed_by(KeyType::SignedByGpgKeys, KeySource::Path("/k".into()));
        let v = is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![sig.clone()]),
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("Unimplemented \"keyType\" value \"signedByGPGKeys\"")
        );
        let v = is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![sig.clone(), sig]),
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some(
                "None of the signatures were accepted, reasons: Unimplemented \"keyType\" value \"signedByGPGKeys\"; Unimplemented \"keyType\" value \"signedByGPGKeys\""
            )
        );
        let report = &v.requirements[0].signatures[1];
        assert_eq!(report.number, 2);
        assert!(
            matches!(&report.outcome, SignatureOutcome::Rejected(r) if r.stage == RejectionStage::KeyType)
        );
    }

    #[test]
    fn key_read_errors_are_rejections() {
        let sig = StoredSignature::SimpleSigning(vec![0xa3, 1, 2]);
        let req = signed_by(
            KeyType::GpgKeys,
            KeySource::Path("/nonexistent/imagegate.gpg".into()),
        );
        let v = is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![sig]),
            &no_keys(),
        );
        assert_eq!(
            v.reason.as_deref(),
            Some("open /nonexistent/imagegate.gpg: no such file or directory")
        );
    }

    #[test]
    fn key_files_are_read_at_every_evaluation_and_once_per_requirement() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = AtomicUsize::new(0);
        let resolver = |_: &KeySource| -> Result<Vec<Vec<u8>>, String> {
            calls.fetch_add(1, Ordering::SeqCst);
            Err("unreadable".into())
        };
        let sig = StoredSignature::SimpleSigning(vec![0xa3]);
        let req = signed_by(KeyType::GpgKeys, KeySource::Path("/k".into()));
        let m = material("busybox", vec![sig.clone(), sig]);
        let v = is_running_image_allowed(std::slice::from_ref(&req), &m, &resolver);
        assert_eq!(
            v.reason.as_deref(),
            Some("None of the signatures were accepted, reasons: unreadable; unreadable")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        is_running_image_allowed(std::slice::from_ref(&req), &m, &resolver);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // No signature, no key read.
        is_running_image_allowed(
            std::slice::from_ref(&req),
            &material("busybox", vec![]),
            &resolver,
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn needs_material() {
        let sb = signed_by(KeyType::GpgKeys, KeySource::Path("/k".into()));
        assert!(!needs_image_material(&[
            Requirement::InsecureAcceptAnything
        ]));
        assert!(!needs_image_material(&[Requirement::Reject, sb.clone()]));
        assert!(needs_image_material(&[
            Requirement::InsecureAcceptAnything,
            sb.clone()
        ]));
        assert!(needs_image_material(&[sb.clone(), Requirement::Reject]));
        assert!(sb.verifies_signatures());
        assert!(!Requirement::Reject.verifies_signatures());
    }

    #[test]
    fn policy_without_opinion() {
        let p = Policy::parse(
            br#"{"transports":{"docker":{"a.com":[{"type":"reject"}]}}}"#,
            ParseOptions::KUBERNETES,
        )
        .unwrap();
        let m = ImageMaterial::unfetched(image("b.com/x:1"));
        assert!(p.is_running_image_allowed(&m, &no_keys()).is_none());
        let m = ImageMaterial::unfetched(image("a.com/x:1"));
        let pv = p.is_running_image_allowed(&m, &no_keys()).unwrap();
        assert_eq!(
            pv.verdict.reason.as_deref(),
            Some("Running image docker://a.com/x:1 is rejected by policy.")
        );
        assert_eq!(pv.scope.json_path(), "$.transports.docker[\"a.com\"]");
    }
}
