//! containers-policy.json: the document model and strict parser, scope
//! lookup, `signedIdentity` matching and requirement evaluation, laid out
//! like c/image's `signature/` package:
//!
//! - [`config`]: the model and its strict parser (`policy_config*.go`);
//! - [`scope`]: which requirement list applies to an image
//!   (`requirementsForImageRef`);
//! - [`identity`]: `signedIdentity` matchers (`policy_reference_match.go`);
//! - [`eval`]: `IsRunningImageAllowed` with per-requirement and
//!   per-signature reports;
//! - [`signed_by`]: `signedBy` evaluation, verify-and-extract;
//! - [`keys`]: key sources and how their bytes are read;
//! - [`lint`](mod@lint): warnings for scopes and requirements that cannot work.

pub mod compose;
pub mod config;
pub mod eval;
pub mod identity;
pub mod keys;
pub mod lint;
pub mod scope;
pub mod signed_by;

pub use config::{
    Fulcio, KeyType, ParseOptions, PathOrData, Pki, Policy, RekorKeys, Requirement, Scope,
    SignedBaseLayer, SignedBy, SigstoreKeySource, SigstoreSigned, TransportScopes,
};
pub use eval::{
    AcceptedSignature, ImageMaterial, PolicyVerdict, RejectionStage, RequirementOutcome,
    RequirementReport, SignatureOutcome, SignatureRejection, SignatureReport, Signer, Verdict,
    is_running_image_allowed, needs_image_material,
};
pub use identity::PolicyReferenceMatch;
pub use keys::{FilesystemKeyResolver, KeyRef, KeyRefKind, KeyResolver, KeySource};
pub use lint::{LintWarning, lint};
pub use scope::{DOCKER_TRANSPORT, MatchedScope, ScopeMatch};
