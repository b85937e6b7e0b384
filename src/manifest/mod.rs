//! Manifest digests as c/image computes them (semantics §4.5) and
//! manifest-list instance selection (§7.1, in [`list`]).
//! INTERFACE SKELETON: bodies are filled in by the signature-core work.

pub mod list;

use crate::reference::Digest;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// `manifest.Digest`: sha256 of the bytes, or of the JWS payload for a
/// signed schema1 manifest.
pub fn digest(_manifest: &[u8]) -> Result<Digest, ManifestError> {
    unimplemented!()
}

/// `manifest.MatchesDigest`: only sha256 can ever match.
pub fn matches_digest(_manifest: &[u8], _expected: &Digest) -> Result<bool, ManifestError> {
    unimplemented!()
}

/// `GuessMIMEType`.
pub fn guess_mime_type(_manifest: &[u8]) -> &'static str {
    unimplemented!()
}
