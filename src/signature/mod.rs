//! Simple-signing signatures: the blob format, the payload, OpenPGP
//! verification and signing, and where signatures are stored
//! (containers-registries.d and lookaside servers).

pub mod blob;
pub mod lookaside;
pub mod mechanism;
pub mod payload;
pub mod registries_d;

/// Why a signature blob could not be used, in c/image's words where it has
/// them (openpgp-mechanism wording for crypto failures, semantics §8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A cryptographic or key failure (`InvalidSignatureError` in c/image):
    /// what [`mechanism::Keyring::verify`] returns.
    #[error("{0}")]
    Invalid(String),
    /// The blob's storage format is not recognised
    /// ([`blob::from_blob`]); fatal for the whole signature read.
    #[error("{0}")]
    Format(String),
    /// Anything else (I/O, bad secret key, signing failure …).
    #[error("{0}")]
    Other(String),
}
