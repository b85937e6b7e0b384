//! `signedBy` evaluation (semantics §2.3; c/image `policy_eval_signedby.go`
//! and `verifyAndExtractSignature` in `simple.go`).
//!
//! One accepted simple-signing signature satisfies the requirement. Each
//! signature goes through, in this order and stopping at the first failure:
//! the key type, the keys (read now, at every evaluation), the OpenPGP
//! verification, the trusted primary fingerprint, the strict payload, the
//! manifest digest, and the `signedIdentity` matcher. Because the digest is
//! checked before the identity, a signature wrong in both reports the digest.

use super::config::go_quote;
use super::config::{KeyType, SignedBy};
use super::eval::{
    AcceptedSignature, ImageMaterial, RejectionStage, SignatureOutcome, SignatureRejection,
    SignatureReport, Signer,
};
use super::identity::PolicyReferenceMatch;
use super::keys::KeyResolver;
use crate::signature::blob::StoredSignature;
use crate::signature::mechanism::Keyring;
use crate::signature::payload::UntrustedSignature;

/// `A signature was required, but no signature exists`.
pub const NO_SIGNATURE: &str = "A signature was required, but no signature exists";
/// `No public keys imported`.
pub const NO_PUBLIC_KEYS: &str = "No public keys imported";

/// The keyring of one requirement, built from the resolver on first use
/// and shared by the signatures of this evaluation.
struct TrustedKeys {
    keyring: Keyring,
    fingerprints: Vec<String>,
}

/// Evaluates one `signedBy` requirement: `Ok(())` if a signature was
/// accepted, otherwise c/image's summary reason; plus one report per stored
/// signature.
pub(crate) fn evaluate(
    requirement: &SignedBy,
    image: &ImageMaterial,
    keys: &dyn KeyResolver,
) -> (Result<(), String>, Vec<SignatureReport>) {
    let signatures = match &image.signatures {
        Ok(s) => s,
        Err(e) => return (Err(e.clone()), Vec::new()),
    };
    let mut trusted: Option<Result<TrustedKeys, String>> = None;
    let mut reports = Vec::with_capacity(signatures.len());
    let mut rejections: Vec<String> = Vec::new();
    let mut accepted = false;
    for (i, stored) in signatures.iter().enumerate() {
        let number = i + 1;
        let outcome = match stored {
            // UnparsedImage.Signatures() hands signedBy simple-signing blobs only.
            StoredSignature::Sigstore(_) => SignatureOutcome::Ignored(
                "sigstore signature: signedBy reads simple-signing signatures only".into(),
            ),
            // c/image stops at the first accepted signature.
            StoredSignature::SimpleSigning(_) if accepted => SignatureOutcome::NotChecked,
            StoredSignature::SimpleSigning(blob) => {
                match check_signature(requirement, blob, image, keys, &mut trusted) {
                    Ok(a) => {
                        accepted = true;
                        SignatureOutcome::Accepted(a)
                    }
                    Err(r) => {
                        rejections.push(r.reason.clone());
                        SignatureOutcome::Rejected(r)
                    }
                }
            }
        };
        reports.push(SignatureReport { number, outcome });
    }
    let result = if accepted {
        Ok(())
    } else {
        Err(match rejections.len() {
            0 => NO_SIGNATURE.to_string(),
            1 => rejections.remove(0),
            _ => format!(
                "None of the signatures were accepted, reasons: {}",
                rejections.join("; ")
            ),
        })
    };
    (result, reports)
}

/// `isSignatureAuthorAccepted` for one simple-signing blob.
fn check_signature(
    requirement: &SignedBy,
    blob: &[u8],
    image: &ImageMaterial,
    keys: &dyn KeyResolver,
    trusted: &mut Option<Result<TrustedKeys, String>>,
) -> Result<AcceptedSignature, SignatureRejection> {
    if requirement.key_type != KeyType::GpgKeys {
        return Err(SignatureRejection::new(
            RejectionStage::KeyType,
            format!(
                "Unimplemented \"keyType\" value \"{}\"",
                requirement.key_type.as_str()
            ),
        ));
    }
    let trusted = trusted.get_or_insert_with(|| {
        keys.key_blobs(&requirement.keys).map(|blobs| {
            let keyring = Keyring::from_blobs(&blobs);
            let fingerprints = keyring.fingerprints();
            TrustedKeys {
                keyring,
                fingerprints,
            }
        })
    });
    let trusted = match trusted {
        Ok(t) => t,
        Err(e) => return Err(SignatureRejection::new(RejectionStage::Keys, e.clone())),
    };
    if trusted.fingerprints.is_empty() {
        return Err(SignatureRejection::new(
            RejectionStage::Keys,
            NO_PUBLIC_KEYS.to_string(),
        ));
    }
    verify_and_extract(
        &trusted.keyring,
        &trusted.fingerprints,
        blob,
        &requirement.signed_identity,
        image,
    )
}

/// `verifyAndExtractSignature` with `signedBy`'s acceptance rules: checks
/// one simple-signing blob against `keyring` (whose primary fingerprints are
/// `trusted_fingerprints`), the image's manifest and `signed_identity`.
pub fn verify_and_extract(
    keyring: &Keyring,
    trusted_fingerprints: &[String],
    blob: &[u8],
    signed_identity: &PolicyReferenceMatch,
    image: &ImageMaterial,
) -> Result<AcceptedSignature, SignatureRejection> {
    let verified = keyring
        .verify(blob)
        .map_err(|e| SignatureRejection::new(RejectionStage::Crypto, e.to_string()))?;
    let signer = Signer {
        primary_fingerprint: verified.primary_fingerprint.clone(),
        signing_key_fingerprint: verified.signing_key_fingerprint.clone(),
    };
    let reject = |stage, reason: String| SignatureRejection {
        stage,
        reason,
        signer: Some(signer.clone()),
    };
    if !trusted_fingerprints.contains(&verified.primary_fingerprint) {
        // Unreachable with an ephemeral keyring holding only trusted keys,
        // kept because the check is part of the acceptance rules.
        let reason = if verified.signing_key_fingerprint == verified.primary_fingerprint {
            format!(
                "signature by key {} is not accepted",
                signer.primary_fingerprint
            )
        } else {
            format!(
                "signature by key {} of {} is not accepted",
                signer.signing_key_fingerprint, signer.primary_fingerprint
            )
        };
        return Err(reject(RejectionStage::KeyIdentity, reason));
    }
    // The payload is parsed only after the cryptographic check succeeded.
    let payload = UntrustedSignature::parse(&verified.payload)
        .map_err(|e| reject(RejectionStage::Payload, e.message))?;
    let digest = &payload.docker_manifest_digest;
    let manifest = image
        .manifest
        .as_ref()
        .map_err(|e| reject(RejectionStage::Digest, e.clone()))?;
    match crate::manifest::matches_digest(manifest, digest) {
        Ok(true) => {}
        Ok(false) => {
            return Err(reject(
                RejectionStage::Digest,
                format!("Signature for digest {digest} does not match"),
            ));
        }
        Err(e) => return Err(reject(RejectionStage::Digest, e.0)),
    }
    if !signed_identity.matches(
        image.reference.docker_reference(),
        &payload.docker_reference,
    ) {
        return Err(reject(
            RejectionStage::Identity,
            format!(
                "Signature for identity {} is not accepted",
                go_quote(&payload.docker_reference)
            ),
        ));
    }
    Ok(AcceptedSignature {
        signer,
        docker_reference: payload.docker_reference,
        docker_manifest_digest: payload.docker_manifest_digest,
    })
}
