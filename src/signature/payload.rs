//! The simple-signing payload JSON (semantics §4.2).
//! INTERFACE SKELETON: bodies are filled in by the signature-core work.

use crate::strictjson::StrictJsonError;

/// The critical and optional fields of a signature, before its identity
/// and digest are checked against an image ("untrusted" until then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UntrustedSignature {
    /// `critical.image.docker-manifest-digest` (passed go-digest `Parse`).
    pub docker_manifest_digest: crate::reference::Digest,
    /// `critical.identity.docker-reference`, unvalidated.
    pub docker_reference: String,
    pub creator: Option<String>,
    pub timestamp: Option<i64>,
}

impl UntrustedSignature {
    pub fn new(_digest: crate::reference::Digest, _docker_reference: &str) -> Self {
        unimplemented!()
    }
    /// Strict parse; errors are c/image's `InvalidSignatureError` texts.
    pub fn parse(_payload: &[u8]) -> Result<UntrustedSignature, StrictJsonError> {
        unimplemented!()
    }
    /// Go's `json.Marshal` form: sorted keys, compact.
    pub fn to_json(&self) -> Vec<u8> {
        unimplemented!()
    }
}
