//! Classifying stored signature blobs by their first byte (semantics §5.4, `FromBlob`).
//! INTERFACE SKELETON: bodies are filled in by the signature-core work.

use crate::signature::SignatureError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredSignature {
    /// A simple-signing OpenPGP message.
    SimpleSigning(Vec<u8>),
    /// A `0x00 "sigstore-json\n"` blob (ignored by `signedBy`).
    Sigstore(Vec<u8>),
}

pub fn from_blob(_blob: &[u8]) -> Result<StoredSignature, SignatureError> {
    unimplemented!()
}
