//! OpenPGP verification and signing with Sequoia (semantics §4.3, §4.4).
//! INTERFACE SKELETON: bodies are filled in by the signature-core work.

use crate::signature::SignatureError;

/// The trusted keys of one `signedBy` requirement: an ephemeral keyring
/// holding only the configured key blobs.
#[derive(Clone, Debug, Default)]
pub struct Keyring {}

/// What a successful cryptographic verification yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedMessage {
    /// The signed literal data, byte for byte (the JSON payload).
    pub payload: Vec<u8>,
    /// Upper-case hex V4 fingerprint of the trusted *primary* key.
    pub primary_fingerprint: String,
    /// Upper-case hex fingerprint of the key that made the signature
    /// (a signing subkey, or the primary itself).
    pub signing_key_fingerprint: String,
}

/// A key as reported by `policy lint` and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub fingerprint: String,
    pub user_ids: Vec<String>,
    pub algorithm: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `None` for keys that do not expire.
    pub expires: Option<i64>,
    pub revoked: bool,
}

impl Keyring {
    /// Imports every key of every blob (binary or ASCII-armoured, one or
    /// several keys each). Blobs that hold no parseable key import nothing,
    /// as gpgme does; an empty result is then `No public keys imported`.
    pub fn from_blobs(_blobs: &[Vec<u8>]) -> Keyring {
        unimplemented!()
    }
    pub fn is_empty(&self) -> bool {
        unimplemented!()
    }
    /// Primary fingerprints, in import order (duplicates kept).
    pub fn fingerprints(&self) -> Vec<String> {
        unimplemented!()
    }
    pub fn key_info(&self) -> Vec<KeyInfo> {
        unimplemented!()
    }
    /// Verifies a binary OpenPGP signed message made by one of these keys.
    pub fn verify(&self, _blob: &[u8]) -> Result<VerifiedMessage, SignatureError> {
        unimplemented!()
    }
}

/// A secret key able to make simple-signing signatures.
pub struct SigningKey {}

impl SigningKey {
    pub fn from_bytes(
        _secret_key: &[u8],
        _passphrase: Option<&str>,
    ) -> Result<SigningKey, SignatureError> {
        unimplemented!()
    }
    pub fn fingerprint(&self) -> String {
        unimplemented!()
    }
    /// A binary signed message over `payload`, as `gpg --sign` makes it.
    pub fn sign(&self, _payload: &[u8]) -> Result<Vec<u8>, SignatureError> {
        unimplemented!()
    }
}
