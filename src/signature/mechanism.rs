//! OpenPGP verification and signing with Sequoia (semantics §4.3, §4.4).
//!
//! c/image has three interchangeable mechanisms (gpgme, x/crypto/openpgp,
//! Sequoia) that disagree on edge cases. imagegate implements the strict
//! intersection recommended by the semantics document:
//!
//! - only **binary** signed messages are verified; an ASCII-armoured or
//!   cleartext blob is refused before any parsing (the lookaside path never
//!   delivers one, §5.4, and the openpgp build refuses them everywhere);
//! - the message must carry **exactly one** signature. Zero (a literal-only
//!   message) and two or more are refused with gpgme's wording,
//!   `Unexpected GPG signature count N`; an encrypted message is refused
//!   with `not signed: the message is encrypted`, which says more than
//!   gpgme's count of 0;
//! - the signer must be a key of the keyring: the trusted identity is the
//!   **primary** fingerprint, and a signing-capable subkey bound to a
//!   trusted primary is reported as that primary. An unknown signer gives
//!   the openpgp wording `Key not found for key ID <hex> in signature`;
//! - revoked keys and subkeys are refused, as are expired signatures
//!   (`Signature expired on <time>`, openpgp wording);
//! - key validity is evaluated **now**, not only when the signature was
//!   made: a signature by a key that has expired since is refused, as gpgme
//!   does (`KEY_EXPIRED`). The openpgp build would accept it; we take the
//!   strict side;
//! - Sequoia's `StandardPolicy` applies, so signatures over SHA-1 or MD5,
//!   and keys it deems too weak (RSA below 2048 bits), are refused. gpgme
//!   and openpgp still accept them: an intentional, stricter divergence.
//!
//! Other rejections, in imagegate's own words (gpgme only dumps a status
//! struct there): `Key <fpr> is revoked`, `Signing subkey <fpr> of key
//! <fpr> is revoked`, `Key <fpr> expired on <time>`, `Key <fpr> is not
//! signing-capable`, and `signature error: …` for corrupt, truncated or
//! policy-refused signatures (the openpgp build's prefix). The payload is
//! only released after the signature checked out.
//!
//! Sequoia's errors and certificates are never `Debug`-formatted (that dumps
//! key material); every message here is written out by hand.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password};
use openpgp::packet::Signature;
use openpgp::packet::key::{PublicParts, SecretParts, UnspecifiedRole};
use openpgp::parse::stream::{
    GoodChecksum, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Compressor, LiteralWriter, Message, Signer};
use openpgp::types::{CompressionAlgorithm, Curve, DataFormat, HashAlgorithm, RevocationStatus};
use openpgp::{Cert, Fingerprint, KeyHandle, KeyID};

use crate::signature::SignatureError;

/// The policy every verification and key evaluation runs under.
static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// The trusted keys of one `signedBy` requirement: an ephemeral keyring
/// holding only the configured key blobs.
#[derive(Clone, Default)]
pub struct Keyring {
    /// Primary fingerprints of every imported certificate, in import order,
    /// duplicates kept (gpgme reports each import).
    imported: Vec<Fingerprint>,
    /// One certificate per primary fingerprint; a key imported twice is
    /// merged, so a revocation in any blob applies (as in a GnuPG keyring).
    certs: Vec<Cert>,
}

/// Only fingerprints: a derived `Debug` would print the key material.
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("fingerprints", &self.fingerprints())
            .finish()
    }
}

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
    pub fn from_blobs(blobs: &[Vec<u8>]) -> Keyring {
        let mut keyring = Keyring::default();
        for blob in blobs {
            for cert in parse_certs(blob) {
                keyring.add(cert.strip_secret_key_material());
            }
        }
        keyring
    }

    fn add(&mut self, cert: Cert) {
        let fingerprint = cert.fingerprint();
        self.imported.push(fingerprint.clone());
        match self
            .certs
            .iter()
            .position(|c| c.fingerprint() == fingerprint)
        {
            Some(i) => {
                let existing = self.certs[i].clone();
                // Merging two copies of one certificate cannot fail (the
                // fingerprints are equal); keep the first copy if it does.
                if let Ok(merged) = existing.merge_public(cert) {
                    self.certs[i] = merged;
                }
            }
            None => self.certs.push(cert),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.imported.is_empty()
    }

    /// Primary fingerprints, in import order (duplicates kept).
    pub fn fingerprints(&self) -> Vec<String> {
        self.imported.iter().map(|f| f.to_hex()).collect()
    }

    /// One entry per distinct key, in first-import order, evaluated now.
    pub fn key_info(&self) -> Vec<KeyInfo> {
        let now = SystemTime::now();
        self.certs
            .iter()
            .map(|cert| {
                let primary = cert.primary_key();
                let expires = cert
                    .with_policy(&POLICY, now)
                    .ok()
                    .and_then(|vc| vc.primary_key().key_expiration_time())
                    .map(unix_seconds);
                KeyInfo {
                    fingerprint: cert.fingerprint().to_hex(),
                    user_ids: cert
                        .userids()
                        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                        .collect(),
                    algorithm: algorithm_name(primary.key().role_as_unspecified()),
                    created: unix_seconds(primary.key().creation_time()),
                    expires,
                    revoked: matches!(
                        cert.revocation_status(&POLICY, now),
                        RevocationStatus::Revoked(_)
                    ),
                }
            })
            .collect()
    }

    /// Verifies a binary OpenPGP signed message made by one of these keys.
    pub fn verify(&self, blob: &[u8]) -> Result<VerifiedMessage, SignatureError> {
        match blob.first() {
            None => return Err(invalid("signature error: empty signature")),
            // Every binary OpenPGP packet header has bit 7 set; armour and
            // cleartext signatures start with ASCII. Refusing here also keeps
            // Sequoia's armour autodetection out of the picture.
            Some(b) if b & 0x80 == 0 => {
                return Err(invalid(
                    "signature error: not a binary OpenPGP message \
                     (ASCII-armoured and cleartext signatures are not accepted)",
                ));
            }
            Some(_) => {}
        }

        let outcome = Mutex::new(Outcome::Pending);
        let helper = Helper {
            keyring: self,
            outcome: &outcome,
        };
        let read = (|| -> openpgp::Result<Vec<u8>> {
            // `None`: verify relative to now, with Sequoia's clock-skew
            // tolerance for signatures made slightly in the future.
            let mut verifier =
                VerifierBuilder::from_bytes(blob)?.with_policy(&POLICY, None, helper)?;
            let mut payload = Vec::new();
            verifier.read_to_end(&mut payload)?;
            Ok(payload)
        })();
        let outcome = outcome
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (outcome, read) {
            (Outcome::Rejected(e), _) => Err(e),
            (
                Outcome::Accepted {
                    primary,
                    signing_key,
                },
                Ok(payload),
            ) => Ok(VerifiedMessage {
                payload,
                primary_fingerprint: primary,
                signing_key_fingerprint: signing_key,
            }),
            (_, Err(_)) if is_encrypted(blob) => {
                Err(invalid("not signed: the message is encrypted"))
            }
            (_, Err(e)) => Err(invalid(format!(
                "signature error: {}",
                describe_openpgp_error(&e)
            ))),
            // The payload was released without a signature check: only
            // possible for a message Sequoia did not consider finished.
            (Outcome::Pending, Ok(_)) => {
                Err(invalid(format!("Unexpected GPG signature count {}", 0)))
            }
        }
    }
}

/// Whether the message starts with an encryption layer (a session-key
/// packet or encrypted data), which the verifier reports only as a
/// malformed message.
fn is_encrypted(blob: &[u8]) -> bool {
    use openpgp::packet::Tag;
    let Ok(PacketParserResult::Some(pp)) = PacketParser::from_bytes(blob) else {
        return false;
    };
    matches!(
        pp.packet.tag(),
        Tag::PKESK | Tag::SKESK | Tag::SEIP | Tag::SED | Tag::AED
    )
}

/// Every certificate in one key blob. Armoured blobs may hold several
/// armour blocks one after another (as `gpg --export -a a b` or `cat`
/// produce), each parsed on its own; unparseable parts are skipped.
fn parse_certs(blob: &[u8]) -> Vec<Cert> {
    const BEGIN: &[u8] = b"-----BEGIN PGP";
    let starts: Vec<usize> = blob
        .windows(BEGIN.len())
        .enumerate()
        .filter(|(_, w)| *w == BEGIN)
        .map(|(i, _)| i)
        .collect();
    let looks_binary = blob.first().is_some_and(|b| b & 0x80 != 0);
    if looks_binary || starts.is_empty() {
        return certs_of(blob);
    }
    let mut certs = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(blob.len());
        certs.extend(certs_of(&blob[start..end]));
    }
    certs
}

fn certs_of(bytes: &[u8]) -> Vec<Cert> {
    match CertParser::from_bytes(bytes) {
        Ok(parser) => parser.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

/// Where the verification helper leaves its verdict, since a failing
/// `check` only surfaces as an opaque error from Sequoia.
enum Outcome {
    Pending,
    Accepted {
        primary: String,
        signing_key: String,
    },
    Rejected(SignatureError),
}

struct Helper<'a> {
    keyring: &'a Keyring,
    outcome: &'a Mutex<Outcome>,
}

impl Helper<'_> {
    fn set(&self, outcome: Outcome) {
        let mut slot = self
            .outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = outcome;
    }

    fn reject(&self, e: SignatureError) -> openpgp::Result<()> {
        let message = e.to_string();
        self.set(Outcome::Rejected(e));
        Err(anyhow::anyhow!(message))
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // Only certificates holding a key the signature names as issuer;
        // Sequoia matches the issuer against their keys again.
        Ok(self
            .keyring
            .certs
            .iter()
            .filter(|cert| cert.keys().key_handles(ids.iter()).next().is_some())
            .cloned()
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut results = Vec::new();
        for layer in structure {
            match layer {
                MessageLayer::Compression { .. } => {}
                MessageLayer::Encryption { .. } => {
                    return self.reject(invalid("not signed: the message is encrypted"));
                }
                MessageLayer::SignatureGroup { results: group } => results.extend(group),
            }
        }
        if results.len() != 1 {
            return self.reject(invalid(format!(
                "Unexpected GPG signature count {}",
                results.len()
            )));
        }
        match results.remove(0) {
            Ok(GoodChecksum { sig, ka }) => {
                let cert = ka.cert();
                let key = ka.key().fingerprint();
                // Sequoia judged the key as of the signature's creation
                // time; gpgme also requires it to be valid now. A signature
                // made slightly in the future (within Sequoia's clock-skew
                // tolerance) is judged at its own time, which Sequoia did.
                let now = SystemTime::now();
                let at = sig.signature_creation_time().map_or(now, |t| t.max(now));
                if let Some(problem) = key_problem(cert, &key, at) {
                    return self.reject(problem);
                }
                self.set(Outcome::Accepted {
                    primary: cert.fingerprint().to_hex(),
                    signing_key: key.to_hex(),
                });
                Ok(())
            }
            Err(e) => {
                let problem = verification_problem(&e);
                self.reject(problem)
            }
        }
    }
}

/// Our message for a signature Sequoia could not verify.
fn verification_problem(e: &VerificationError<'_>) -> SignatureError {
    match e {
        VerificationError::MissingKey { sig } => key_not_found(sig),
        VerificationError::UnboundKey { sig, cert, .. } => {
            let key = issuing_key(sig, cert);
            match key.as_ref().and_then(|k| {
                key_problem(cert, k, sig.signature_creation_time().unwrap_or(UNIX_EPOCH))
            }) {
                Some(problem) => problem,
                None => invalid(format!(
                    "Key {} is not validly bound to key {} when the signature was made",
                    key.map(|k| k.to_hex()).unwrap_or_default(),
                    cert.fingerprint().to_hex()
                )),
            }
        }
        VerificationError::BadKey { sig, ka, .. } => {
            let key = ka.key().fingerprint();
            let when = sig.signature_creation_time().unwrap_or(UNIX_EPOCH);
            key_problem(ka.cert(), &key, when).unwrap_or_else(|| {
                invalid(format!("Key {} cannot make this signature", key.to_hex()))
            })
        }
        VerificationError::BadSignature { sig, error, .. } => {
            if let Some(openpgp::Error::Expired(t)) = error.downcast_ref::<openpgp::Error>() {
                invalid(format!("Signature expired on {}", go_time(*t)))
            } else if let Some(openpgp::Error::NotYetLive(t)) =
                error.downcast_ref::<openpgp::Error>()
            {
                invalid(format!("Signature not valid before {}", go_time(*t)))
            } else if let Some(openpgp::Error::PolicyViolation(what, _)) =
                error.downcast_ref::<openpgp::Error>()
            {
                invalid(format!(
                    "signature error: signature rejected by policy: {what} (hash {})",
                    sig.hash_algo()
                ))
            } else {
                invalid("signature error: invalid signature: verification failed")
            }
        }
        VerificationError::MalformedSignature { .. } => {
            invalid("signature error: malformed signature packet")
        }
        VerificationError::UnknownSignature { .. } => {
            invalid("signature error: unsupported or unparseable signature packet")
        }
        _ => invalid("signature error: invalid signature"),
    }
}

/// `Key not found for key ID %x in signature`: the issuer's key ID as
/// lower-case hex without leading zeros, as x/crypto/openpgp prints it.
fn key_not_found(sig: &Signature) -> SignatureError {
    let Some(issuer) = sig.get_issuers().into_iter().next() else {
        return invalid("signature error: the signature does not name its issuer key");
    };
    let id = KeyID::from(issuer);
    let v = id
        .as_bytes()
        .iter()
        .rev()
        .take(8)
        .rev()
        .fold(0u64, |v, b| (v << 8) | u64::from(*b));
    invalid(format!("Key not found for key ID {v:x} in signature"))
}

/// The key of `cert` that the signature names as its issuer.
fn issuing_key(sig: &Signature, cert: &Cert) -> Option<Fingerprint> {
    let issuers = sig.get_issuers();
    cert.keys()
        .key_handles(issuers.iter())
        .next()
        .map(|ka| ka.key().fingerprint())
}

/// Why `key` of `cert` may not make signatures at time `t`, or `None`
/// if it may: the certificate must be valid under the policy, alive and
/// not revoked, and so must the key, which must also be signing-capable.
fn key_problem(cert: &Cert, key: &Fingerprint, t: SystemTime) -> Option<SignatureError> {
    let primary = cert.fingerprint().to_hex();
    let vc = match cert.with_policy(&POLICY, t) {
        Ok(vc) => vc,
        Err(_) => {
            return Some(invalid(format!(
                "Key {primary} has no valid self-signature under the signature policy"
            )));
        }
    };
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Some(invalid(format!("Key {primary} is revoked")));
    }
    if vc.alive().is_err() {
        return Some(expired(
            &format!("Key {primary}"),
            vc.primary_key().key_expiration_time(),
        ));
    }
    let is_primary = *key == cert.fingerprint();
    let name = if is_primary {
        format!("Key {primary}")
    } else {
        format!("Signing subkey {} of key {primary}", key.to_hex())
    };
    let Some(ka) = vc.keys().key_handle(key.clone()).next() else {
        return Some(invalid(format!(
            "{name} is not validly bound under the signature policy"
        )));
    };
    if let RevocationStatus::Revoked(_) = ka.revocation_status() {
        return Some(invalid(format!("{name} is revoked")));
    }
    if ka.alive().is_err() {
        return Some(expired(&name, ka.key_expiration_time()));
    }
    if !ka.for_signing() {
        return Some(invalid(format!("{name} is not signing-capable")));
    }
    None
}

/// `<name> expired on <time>`, or `<name> is not live` for a key whose
/// creation time is in the future.
fn expired(name: &str, at: Option<SystemTime>) -> SignatureError {
    match at {
        Some(t) if t <= SystemTime::now() => invalid(format!("{name} expired on {}", go_time(t))),
        _ => invalid(format!("{name} is not live")),
    }
}

/// A short description of an error from Sequoia's message parser, without
/// anything that could carry key material.
fn describe_openpgp_error(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<openpgp::Error>() {
            return match err {
                openpgp::Error::MalformedMessage(_) | openpgp::Error::MalformedPacket(_) => {
                    "malformed OpenPGP message".to_string()
                }
                openpgp::Error::ManipulatedMessage => {
                    "malformed OpenPGP message: unexpected packets around the signed data"
                        .to_string()
                }
                openpgp::Error::UnsupportedCompressionAlgorithm(a) => {
                    format!("unsupported compression algorithm {a}")
                }
                openpgp::Error::PolicyViolation(what, _) => {
                    format!("rejected by policy: {what}")
                }
                _ => "unreadable OpenPGP message".to_string(),
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "truncated or corrupt OpenPGP message".to_string();
        }
    }
    "unreadable OpenPGP message".to_string()
}

fn invalid(message: impl Into<String>) -> SignatureError {
    SignatureError::Invalid(message.into())
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Go's `time.Time.String()` for a UTC time, as c/image's openpgp
/// mechanism prints it: `2025-06-24 05:59:37 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{} +0000 UTC",
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// GnuPG-style algorithm names (`rsa3072`, `ed25519`, `nistp256`).
fn algorithm_name(key: &openpgp::packet::Key<PublicParts, UnspecifiedRole>) -> String {
    use openpgp::crypto::mpi::PublicKey as Mpi;
    let bits = key.mpis().bits().unwrap_or(0);
    match key.mpis() {
        Mpi::RSA { .. } => format!("rsa{bits}"),
        Mpi::DSA { .. } => format!("dsa{bits}"),
        Mpi::ElGamal { .. } => format!("elg{bits}"),
        Mpi::ECDSA { curve, .. } | Mpi::EdDSA { curve, .. } | Mpi::ECDH { curve, .. } => {
            match curve {
                Curve::NistP256 => "nistp256".to_string(),
                Curve::NistP384 => "nistp384".to_string(),
                Curve::NistP521 => "nistp521".to_string(),
                Curve::BrainpoolP256 => "brainpoolP256r1".to_string(),
                Curve::BrainpoolP384 => "brainpoolP384r1".to_string(),
                Curve::BrainpoolP512 => "brainpoolP512r1".to_string(),
                Curve::Ed25519 => "ed25519".to_string(),
                Curve::Cv25519 => "cv25519".to_string(),
                _ => "unknown-curve".to_string(),
            }
        }
        Mpi::Ed25519 { .. } => "ed25519".to_string(),
        Mpi::Ed448 { .. } => "ed448".to_string(),
        Mpi::X25519 { .. } => "x25519".to_string(),
        Mpi::X448 { .. } => "x448".to_string(),
        _ => key.pk_algo().to_string().to_lowercase(),
    }
}

/// A secret key able to make simple-signing signatures.
pub struct SigningKey {
    keypair: KeyPair,
    primary: Fingerprint,
}

impl SigningKey {
    /// Loads a transferable secret key (armoured or binary, as
    /// `gpg --export-secret-keys` writes it) and unlocks its signing key
    /// with `passphrase` if it is protected. The signing key is the first
    /// valid, live, unrevoked, signing-capable key with secret material.
    pub fn from_bytes(
        secret_key: &[u8],
        passphrase: Option<&str>,
    ) -> Result<SigningKey, SignatureError> {
        let tsks: Vec<Cert> = parse_certs(secret_key)
            .into_iter()
            .filter(Cert::is_tsk)
            .collect();
        let cert = match tsks.as_slice() {
            [] => return Err(other("no OpenPGP secret key found in the key data")),
            [cert] => cert,
            _ => {
                return Err(other(
                    "the key data holds several secret keys; give exactly one",
                ));
            }
        };
        let primary = cert.fingerprint();
        let vc = cert.with_policy(&POLICY, None).map_err(|_| {
            other(format!(
                "secret key {} has no valid self-signature under the signature policy",
                primary.to_hex()
            ))
        })?;
        let key = vc
            .keys()
            .secret()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .ok_or_else(|| {
                other(format!(
                    "secret key {} has no live, unrevoked signing key with secret material",
                    primary.to_hex()
                ))
            })?;
        let key: openpgp::packet::Key<SecretParts, UnspecifiedRole> = key.key().clone();
        let key = if key.secret().is_encrypted() {
            let Some(passphrase) = passphrase else {
                return Err(other(format!(
                    "secret key {} is protected by a passphrase, and none was given",
                    primary.to_hex()
                )));
            };
            key.decrypt_secret(&Password::from(passphrase))
                .map_err(|_| {
                    other(format!(
                        "cannot unlock secret key {}: wrong passphrase?",
                        primary.to_hex()
                    ))
                })?
        } else {
            key
        };
        let keypair = key.into_keypair().map_err(|_| {
            other(format!(
                "secret key {} cannot be used for signing",
                primary.to_hex()
            ))
        })?;
        Ok(SigningKey { keypair, primary })
    }

    /// Upper-case hex fingerprint of the primary key: the identity that
    /// `Keyring::verify` reports and that policies trust.
    pub fn fingerprint(&self) -> String {
        self.primary.to_hex()
    }

    /// A binary signed message over `payload`, as `gpg --sign` makes it:
    /// a ZIP-compressed one-pass-signature, literal data and signature.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let mut sink = Vec::new();
        let signed = (|| -> openpgp::Result<()> {
            let message = Message::new(&mut sink);
            let message = Compressor::new(message)
                .algo(CompressionAlgorithm::Zip)
                .build()?;
            let message = Signer::new(message, self.keypair.clone())?
                .hash_algo(HashAlgorithm::SHA256)?
                .build()?;
            let mut literal = LiteralWriter::new(message)
                .format(DataFormat::Binary)
                .build()?;
            literal.write_all(payload)?;
            literal.finalize()?;
            Ok(())
        })();
        signed.map_err(|e| other(format!("signing failed: {}", describe_openpgp_error(&e))))?;
        Ok(sink)
    }
}

fn other(message: impl Into<String>) -> SignatureError {
    SignatureError::Other(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::signature::payload::UntrustedSignature;
    use openpgp::cert::CipherSuite;
    use openpgp::types::{KeyFlags, ReasonForRevocation};
    use proptest::prelude::*;
    use std::time::Duration;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cimage");
    const MAIN_KEY: &str = "08CD26E446E2E95249B7A405E932F44B23E8DD43";
    const SUBKEY_PRIMARY: &str = "B9F4CDB9FD8C475BFA340AC38D54A947EE396F36";
    const SUBKEY: &str = "57D1D95BBC53BA0EAFF0718CD75B3109B3BAAEAF";
    const DIGEST_D: &str =
        "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";

    fn upstream(name: &str) -> Vec<u8> {
        read(&format!("upstream/signature/fixtures/{name}"))
    }

    fn generated(name: &str) -> Vec<u8> {
        read(&format!("generated/{name}"))
    }

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{path}")).expect("fixture")
    }

    fn keyring(files: &[&str]) -> Keyring {
        Keyring::from_blobs(&files.iter().map(|f| read(f)).collect::<Vec<_>>())
    }

    fn main_keyring() -> Keyring {
        keyring(&["upstream/signature/fixtures/public-key.gpg"])
    }

    fn image_manifest() -> Vec<u8> {
        upstream("image.manifest.json")
    }

    /// The error message of a rejected verification.
    fn rejection(k: &Keyring, blob: &[u8]) -> String {
        match k.verify(blob) {
            Ok(m) => panic!("unexpectedly verified, signer {}", m.primary_fingerprint),
            Err(e) => e.to_string(),
        }
    }

    /// Crypto, trusted signer, payload and digest, in c/image's order.
    fn accepted_payload(k: &Keyring, blob: &[u8], primary: &str) -> UntrustedSignature {
        let m = k.verify(blob).expect("verifies");
        assert_eq!(m.primary_fingerprint, primary);
        assert!(k.fingerprints().contains(&m.primary_fingerprint));
        let sig = UntrustedSignature::parse(&m.payload).expect("payload parses");
        assert!(manifest::matches_digest(&image_manifest(), &sig.docker_manifest_digest).unwrap());
        sig
    }

    // ---- Keys --------------------------------------------------------

    #[test]
    fn key_fixtures_import_their_primary_fingerprints() {
        let cases: &[(&str, &[&str])] = &[
            ("upstream/signature/fixtures/public-key.gpg", &[MAIN_KEY]),
            ("upstream/signature/fixtures/public-key-1.gpg", &[MAIN_KEY]),
            (
                "upstream/signature/fixtures/public-key-2.gpg",
                &["F2B501009F78B0B340221A12A3CD242DA6028093"],
            ),
            (
                "upstream/signature/fixtures/public-key-with-subkey.gpg",
                &[SUBKEY_PRIMARY],
            ),
            (
                "upstream/signature/fixtures/public-key-with-revoked-subkey.gpg",
                &["6D88C5A1993648A17B2BB0DC6B8499AF63388D63"],
            ),
            (
                "upstream/signature/fixtures/pubring.gpg",
                &[
                    "F2B501009F78B0B340221A12A3CD242DA6028093",
                    MAIN_KEY,
                    SUBKEY_PRIMARY,
                    "6D88C5A1993648A17B2BB0DC6B8499AF63388D63",
                ],
            ),
            (
                "generated/gen-key-expired.gpg",
                &["B53B072E5343CDF6AD511C41DE137AB3CCAE0718"],
            ),
            (
                "generated/gen-key-revoked.gpg",
                &["7DCD82C6AA1B36D2D83F15B0419A3E6AFC9D5DE8"],
            ),
        ];
        for (file, expected) in cases {
            let k = keyring(&[file]);
            assert!(!k.is_empty(), "{file}");
            assert_eq!(k.fingerprints(), *expected, "{file}");
        }
    }

    #[test]
    fn importing_twice_keeps_duplicates_in_fingerprints() {
        let k = keyring(&[
            "upstream/signature/fixtures/pubring.gpg",
            "upstream/signature/fixtures/pubring.gpg",
        ]);
        let f = k.fingerprints();
        assert_eq!(f.len(), 8);
        assert_eq!(f[..4], f[4..]);
        // Distinct keys are reported once.
        assert_eq!(k.key_info().len(), 4);
    }

    #[test]
    fn key_info_reports_algorithm_expiry_and_revocation() {
        let info = main_keyring().key_info();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].fingerprint, MAIN_KEY);
        assert_eq!(info[0].user_ids, ["skopeo testing key"]);
        assert_eq!(info[0].algorithm, "rsa3072");
        assert_eq!(info[0].expires, None);
        assert!(!info[0].revoked);

        let expired = keyring(&["generated/gen-key-expired.gpg"]).key_info();
        assert_eq!(expired[0].created, 1_577_836_800); // 2020-01-01
        assert_eq!(expired[0].expires, Some(1_577_923_200)); // 2020-01-02
        assert!(!expired[0].revoked);

        let revoked = keyring(&["generated/gen-key-revoked.gpg"]).key_info();
        assert!(revoked[0].revoked);
    }

    #[test]
    fn unparseable_key_blobs_import_nothing() {
        assert!(Keyring::from_blobs(&[]).is_empty());
        assert!(Keyring::from_blobs(&[Vec::new()]).is_empty());
        assert!(Keyring::from_blobs(&[b"nonsense".to_vec()]).is_empty());
        assert!(
            Keyring::from_blobs(&[b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n".to_vec()])
                .is_empty()
        );
        // A bad blob next to a good one does not spoil the good one.
        let k = Keyring::from_blobs(&[b"nonsense".to_vec(), upstream("public-key.gpg")]);
        assert_eq!(k.fingerprints(), [MAIN_KEY]);
    }

    #[test]
    fn concatenated_armour_blocks_all_import() {
        let mut blob = upstream("public-key.gpg");
        blob.extend_from_slice(b"\nsome text between blocks\n");
        blob.extend(upstream("public-key-with-subkey.gpg"));
        let k = Keyring::from_blobs(&[blob]);
        assert_eq!(k.fingerprints(), [MAIN_KEY, SUBKEY_PRIMARY]);
        // Binary keys concatenated.
        let mut blob = upstream("public-key-1.gpg");
        blob.extend(upstream("public-key-2.gpg"));
        assert_eq!(
            Keyring::from_blobs(&[blob]).fingerprints(),
            [MAIN_KEY, "F2B501009F78B0B340221A12A3CD242DA6028093"]
        );
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let text = format!("{:?}", main_keyring());
        assert_eq!(
            text,
            format!("Keyring {{ fingerprints: [\"{MAIN_KEY}\"] }}")
        );
    }

    // ---- Upstream signatures -----------------------------------------

    #[test]
    fn image_signature_and_v3_variants_verify() {
        let k = main_keyring();
        let sig = accepted_payload(&k, &upstream("image.signature"), MAIN_KEY);
        assert_eq!(sig.docker_reference, "testing/manifest");
        assert_eq!(sig.creator.as_deref(), Some("atomic "));
        assert_eq!(sig.timestamp, Some(1_458_239_713));
        let m = k.verify(&upstream("image.signature")).unwrap();
        assert_eq!(m.signing_key_fingerprint, MAIN_KEY);
        assert_eq!(
            m.payload,
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"testing/manifest\"}},\
                 \"image\":{{\"docker-manifest-digest\":\"{DIGEST_D}\"}},\
                 \"type\":\"atomic container signature\"}},\
                 \"optional\":{{\"creator\":\"atomic \",\"timestamp\":1458239713}}}}"
            )
            .into_bytes()
        );
        // The binary copy of the key verifies the same signature.
        let binary = keyring(&["upstream/signature/fixtures/public-key-1.gpg"]);
        assert_eq!(binary.verify(&upstream("image.signature")).unwrap(), m);
    }

    #[test]
    fn no_optional_fields_signature_verifies() {
        let sig = accepted_payload(
            &main_keyring(),
            &upstream("no-optional-fields.signature"),
            MAIN_KEY,
        );
        assert_eq!(sig.docker_reference, "testing/manifest");
        assert_eq!((sig.creator, sig.timestamp), (None, None));
    }

    #[test]
    fn corrupt_signatures_are_rejected() {
        let k = main_keyring();
        for f in ["corrupt.signature", "corrupt.signature-v3"] {
            let e = rejection(&k, &upstream(f));
            assert!(e.starts_with("signature error: "), "{f}: {e}");
        }
    }

    #[test]
    fn expired_signature_is_rejected() {
        assert_eq!(
            rejection(&main_keyring(), &upstream("expired.signature")),
            "Signature expired on 2025-06-24 10:00:00 +0000 UTC"
        );
    }

    #[test]
    fn invalid_blob_verifies_but_payload_is_not_json() {
        let k = main_keyring();
        for f in ["invalid-blob.signature", "invalid-blob.signature-v3"] {
            let m = k.verify(&upstream(f)).unwrap();
            assert_eq!(m.payload, b"This is not JSON\n");
            assert_eq!(
                UntrustedSignature::parse(&m.payload).unwrap_err().message,
                "invalid character 'T' looking for beginning of value"
            );
        }
    }

    #[test]
    fn cleartext_and_armoured_messages_are_refused() {
        let k = main_keyring();
        for blob in [
            upstream("invalid-cleartext.signature"),
            generated("gen-busybox-armored.signature"),
        ] {
            let e = rejection(&k, &blob);
            assert!(e.contains("not a binary OpenPGP message"), "{e}");
        }
    }

    #[test]
    fn invalid_reference_signature_verifies_with_its_raw_identity() {
        let sig = accepted_payload(
            &main_keyring(),
            &upstream("invalid-reference.signature"),
            MAIN_KEY,
        );
        assert_eq!(sig.docker_reference, "UPPERCASEISINVALID");
    }

    #[test]
    fn subkey_signatures_are_reported_as_their_primary() {
        let k = keyring(&["upstream/signature/fixtures/public-key-with-subkey.gpg"]);
        for f in ["subkey.signature", "subkey.signature-v3"] {
            let sig = accepted_payload(&k, &upstream(f), SUBKEY_PRIMARY);
            assert_eq!(sig.docker_reference, "testing/manifest:latest");
            let m = k.verify(&upstream(f)).unwrap();
            assert_eq!(m.signing_key_fingerprint, SUBKEY);
            assert_eq!(
                m.payload,
                format!(
                    "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"testing/manifest:latest\"}},\
                     \"image\":{{\"docker-manifest-digest\":\"{DIGEST_D}\"}},\
                     \"type\":\"atomic container signature\"}},\"optional\":{{}}}}"
                )
                .into_bytes()
            );
        }
        // Not trusted by the main key.
        assert_eq!(
            rejection(&main_keyring(), &upstream("subkey.signature")),
            "Key not found for key ID d75b3109b3baaeaf in signature"
        );
        // A keyring with several keys still maps the subkey to its primary.
        let ring = keyring(&["upstream/signature/fixtures/pubring.gpg"]);
        let m = ring.verify(&upstream("subkey.signature")).unwrap();
        assert_eq!(m.primary_fingerprint, SUBKEY_PRIMARY);
    }

    #[test]
    fn revoked_subkey_signatures_are_rejected() {
        let k = keyring(&["upstream/signature/fixtures/public-key-with-revoked-subkey.gpg"]);
        for f in ["subkey-revoked.signature", "subkey-revoked.signature-v3"] {
            assert_eq!(
                rejection(&k, &upstream(f)),
                "Signing subkey 4D33404E00B470050709F3233EF0F93A1F602997 of key \
                 6D88C5A1993648A17B2BB0DC6B8499AF63388D63 is revoked",
                "{f}"
            );
        }
    }

    #[test]
    fn unknown_key_signatures_are_rejected() {
        let k = main_keyring();
        for f in ["unknown-key.signature", "unknown-key.signature-v3"] {
            assert_eq!(
                rejection(&k, &upstream(f)),
                "Key not found for key ID 5f9470e3bc6c3b55 in signature"
            );
        }
    }

    #[test]
    fn unsigned_messages_are_rejected() {
        let k = main_keyring();
        assert_eq!(
            rejection(&k, &upstream("unsigned-literal.signature")),
            "Unexpected GPG signature count 0"
        );
        assert_eq!(
            rejection(&k, &upstream("unsigned-encrypted.signature")),
            "not signed: the message is encrypted"
        );
    }

    #[test]
    fn empty_keyring_verifies_nothing() {
        let k = Keyring::default();
        assert!(k.is_empty());
        assert_eq!(
            rejection(&k, &upstream("image.signature")),
            "Key not found for key ID e932f44b23e8dd43 in signature"
        );
    }

    /// The `dir-img-*` lookaside-layout directories, through blob
    /// classification, verification, payload and digest (the identity and
    /// policy checks belong to the policy module).
    #[test]
    fn dir_img_fixtures_at_the_signature_level() {
        use crate::signature::blob::{StoredSignature, from_blob};
        let k = main_keyring();
        let dir = |d: &str, n: usize| {
            let blob = upstream(&format!("{d}/signature-{n}"));
            match from_blob(&blob).unwrap() {
                StoredSignature::SimpleSigning(m) => m,
                StoredSignature::Sigstore(_) => panic!("{d}: sigstore blob"),
            }
        };
        let check = |k: &Keyring, d: &str, n: usize| -> Result<UntrustedSignature, String> {
            let m = k.verify(&dir(d, n)).map_err(|e| e.to_string())?;
            let sig = UntrustedSignature::parse(&m.payload).map_err(|e| e.message)?;
            let manifest = upstream(&format!("{d}/manifest.json"));
            match manifest::matches_digest(&manifest, &sig.docker_manifest_digest) {
                Ok(true) => Ok(sig),
                Ok(false) => Err(format!(
                    "Signature for digest {} does not match",
                    sig.docker_manifest_digest
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        let valid = check(&k, "dir-img-valid", 1).unwrap();
        assert_eq!(valid.docker_reference, "testing/manifest:latest");
        assert_eq!(valid.creator.as_deref(), Some("atomic 0.1.13-dev"));
        assert_eq!(valid.timestamp, Some(1_464_398_954));
        assert_eq!(check(&k, "dir-img-valid-2", 1).unwrap(), valid);
        assert_eq!(
            check(&k, "dir-img-valid-2", 2).unwrap().timestamp,
            Some(1_464_640_051)
        );
        assert_eq!(
            check(&k, "dir-img-mixed", 1).unwrap_err(),
            "invalid character 'T' looking for beginning of value"
        );
        assert_eq!(check(&k, "dir-img-mixed", 2).unwrap(), valid);
        assert_eq!(
            check(&k, "dir-img-modified-manifest", 1).unwrap_err(),
            format!("Signature for digest {DIGEST_D} does not match")
        );
        assert!(
            check(&k, "dir-img-manifest-digest-error", 1)
                .unwrap_err()
                .starts_with("error unmarshalling signatures: ")
        );
        let subkey = keyring(&["upstream/signature/fixtures/public-key-with-subkey.gpg"]);
        let sig = check(&subkey, "dir-img-valid-subkey", 1).unwrap();
        assert_eq!(sig.docker_reference, "testing/manifest:latest");
        // dir-img-no-manifest: the signature is fine, the manifest is absent.
        assert!(k.verify(&dir("dir-img-no-manifest", 1)).is_ok());
        assert!(
            std::fs::metadata(format!(
                "{FIXTURES}/upstream/signature/fixtures/dir-img-no-manifest/manifest.json"
            ))
            .is_err()
        );
        assert!(
            std::fs::metadata(format!(
                "{FIXTURES}/upstream/signature/fixtures/dir-img-unsigned/signature-1"
            ))
            .is_err()
        );
    }

    // ---- Generated signatures ----------------------------------------

    #[test]
    fn generated_busybox_signatures() {
        let k = main_keyring();
        let sig = accepted_payload(&k, &generated("gen-busybox.signature"), MAIN_KEY);
        assert_eq!(sig.docker_reference, "docker.io/library/busybox:latest");
        assert_eq!(
            sig.creator.as_deref(),
            Some("cimage-spec conformance fixture")
        );
        assert_eq!(sig.timestamp, Some(1_750_000_000));
        // c/image writes these payloads; re-marshalling gives the same bytes.
        let m = k.verify(&generated("gen-busybox.signature")).unwrap();
        assert_eq!(sig.to_json(), m.payload);

        let sig = accepted_payload(&k, &generated("gen-busybox-short.signature"), MAIN_KEY);
        assert_eq!(sig.docker_reference, "busybox:latest");
        let sig = accepted_payload(
            &k,
            &generated("gen-busybox-nametag-missing.signature"),
            MAIN_KEY,
        );
        assert_eq!(sig.docker_reference, "docker.io/library/busybox");
    }

    #[test]
    fn generated_sha512_digest_never_matches() {
        let m = main_keyring()
            .verify(&generated("gen-sha512-digest.signature"))
            .unwrap();
        let sig = UntrustedSignature::parse(&m.payload).unwrap();
        assert_eq!(sig.docker_manifest_digest.algorithm(), "sha512");
        assert!(!manifest::matches_digest(&image_manifest(), &sig.docker_manifest_digest).unwrap());
    }

    #[test]
    fn generated_strict_json_violations() {
        let k = main_keyring();
        let payload = |f: &str| k.verify(&generated(f)).unwrap().payload;
        assert_eq!(
            UntrustedSignature::parse(&payload("gen-extra-critical-field.signature"))
                .unwrap_err()
                .message,
            "Unknown key \"unexpected\""
        );
        assert_eq!(
            UntrustedSignature::parse(&payload("gen-missing-optional.signature"))
                .unwrap_err()
                .message,
            "Key \"optional\" missing in a JSON object"
        );
        let sig =
            UntrustedSignature::parse(&payload("gen-unknown-optional-field.signature")).unwrap();
        assert_eq!(sig.creator.as_deref(), Some("x"));
        assert!(manifest::matches_digest(&image_manifest(), &sig.docker_manifest_digest).unwrap());
    }

    #[test]
    fn generated_expired_key_signature_is_rejected() {
        let k = keyring(&["generated/gen-key-expired.gpg"]);
        assert_eq!(
            rejection(&k, &generated("gen-expired-key.signature")),
            "Key B53B072E5343CDF6AD511C41DE137AB3CCAE0718 expired on 2020-01-02 00:00:00 +0000 UTC"
        );
        // Trusted by other keys, it is simply unknown.
        assert!(
            rejection(&main_keyring(), &generated("gen-expired-key.signature"))
                .starts_with("Key not found for key ID ")
        );
    }

    #[test]
    fn generated_revoked_key_signature_is_rejected() {
        let k = keyring(&["generated/gen-key-revoked.gpg"]);
        assert_eq!(
            rejection(&k, &generated("gen-revoked-key.signature")),
            "Key 7DCD82C6AA1B36D2D83F15B0419A3E6AFC9D5DE8 is revoked"
        );
    }

    // ---- Keys and messages made here ---------------------------------

    fn days_ago(days: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(days * 86_400)
    }

    /// An Ed25519 certificate whose primary key can sign.
    fn signing_cert(created: SystemTime, validity: Option<Duration>) -> Cert {
        CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(created)
            .set_validity_period(validity)
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_userid("imagegate test <test@example.invalid>")
            .generate()
            .unwrap()
            .0
    }

    fn public(cert: &Cert) -> Vec<u8> {
        use openpgp::serialize::Serialize;
        let mut out = Vec::new();
        cert.serialize(&mut out).unwrap();
        out
    }

    fn tsk(cert: &Cert) -> Vec<u8> {
        use openpgp::serialize::Serialize;
        let mut out = Vec::new();
        cert.as_tsk().serialize(&mut out).unwrap();
        out
    }

    fn keypair_of(cert: &Cert, fpr: &Fingerprint) -> KeyPair {
        cert.keys()
            .secret()
            .key_handle(fpr.clone())
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap()
    }

    /// A signed message with explicit signers, creation time and layout.
    fn sign_raw(
        signers: Vec<KeyPair>,
        at: SystemTime,
        hash: HashAlgorithm,
        compress: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut sink = Vec::new();
        let mut message = Message::new(&mut sink);
        if compress {
            message = Compressor::new(message)
                .algo(CompressionAlgorithm::Zip)
                .build()
                .unwrap();
        }
        let mut signers = signers.into_iter();
        let mut signer = Signer::new(message, signers.next().unwrap()).unwrap();
        for s in signers {
            signer = signer.add_signer(s).unwrap();
        }
        let message = signer
            .creation_time(at)
            .hash_algo(hash)
            .unwrap()
            .build()
            .unwrap();
        let mut w = LiteralWriter::new(message).build().unwrap();
        w.write_all(payload).unwrap();
        w.finalize().unwrap();
        sink
    }

    #[test]
    fn signing_key_round_trip() {
        let cert = signing_cert(days_ago(1), None);
        let key = SigningKey::from_bytes(&tsk(&cert), None).unwrap();
        assert_eq!(key.fingerprint(), cert.fingerprint().to_hex());
        let payload = UntrustedSignature::new(
            crate::reference::Digest::parse(DIGEST_D).unwrap(),
            "docker.io/library/busybox:latest",
        )
        .to_json();
        let blob = key.sign(&payload).unwrap();
        // gpg's layout: a compressed-data packet first, classified as a
        // simple-signing blob.
        assert_eq!(blob[0], 0xc8);
        assert!(matches!(
            crate::signature::blob::from_blob(&blob).unwrap(),
            crate::signature::blob::StoredSignature::SimpleSigning(_)
        ));
        let k = Keyring::from_blobs(&[public(&cert)]);
        let m = k.verify(&blob).unwrap();
        assert_eq!(m.payload, payload);
        assert_eq!(m.primary_fingerprint, key.fingerprint());
        assert_eq!(m.signing_key_fingerprint, key.fingerprint());
        // An armoured secret key loads too.
        let armoured = {
            use openpgp::serialize::SerializeInto;
            cert.as_tsk().armored().to_vec().unwrap()
        };
        let again = SigningKey::from_bytes(&armoured, None).unwrap();
        assert!(k.verify(&again.sign(b"x").unwrap()).is_ok());
        // Another key's keyring does not trust it.
        assert!(main_keyring().verify(&blob).is_err());
    }

    #[test]
    fn signing_subkey_is_used_and_reported_as_primary() {
        let (cert, _) = CertBuilder::general_purpose(Some("sub <s@example.invalid>"))
            .set_cipher_suite(CipherSuite::Cv25519)
            .generate()
            .unwrap();
        let key = SigningKey::from_bytes(&tsk(&cert), None).unwrap();
        let blob = key.sign(b"payload").unwrap();
        let m = Keyring::from_blobs(&[public(&cert)]).verify(&blob).unwrap();
        assert_eq!(m.primary_fingerprint, cert.fingerprint().to_hex());
        assert_ne!(m.signing_key_fingerprint, m.primary_fingerprint);
    }

    #[test]
    fn passphrase_protected_secret_keys() {
        let (cert, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_userid("pw")
            .set_password(Some("correct horse".into()))
            .generate()
            .unwrap();
        let bytes = tsk(&cert);
        let no_pass = SigningKey::from_bytes(&bytes, None).err().unwrap();
        assert!(
            no_pass.to_string().contains("protected by a passphrase"),
            "{no_pass}"
        );
        let wrong = SigningKey::from_bytes(&bytes, Some("wrong")).err().unwrap();
        assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
        let key = SigningKey::from_bytes(&bytes, Some("correct horse")).unwrap();
        let blob = key.sign(b"p").unwrap();
        assert!(Keyring::from_blobs(&[public(&cert)]).verify(&blob).is_ok());
    }

    #[test]
    fn public_keys_are_not_signing_keys() {
        let e = SigningKey::from_bytes(&upstream("public-key.gpg"), None)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "no OpenPGP secret key found in the key data");
        assert!(SigningKey::from_bytes(b"", None).is_err());
    }

    #[test]
    fn exactly_one_signature_is_required() {
        let a = signing_cert(days_ago(1), None);
        let b = signing_cert(days_ago(1), None);
        let k = Keyring::from_blobs(&[public(&a), public(&b)]);
        let now = SystemTime::now();
        let two = sign_raw(
            vec![
                keypair_of(&a, &a.fingerprint()),
                keypair_of(&b, &b.fingerprint()),
            ],
            now,
            HashAlgorithm::SHA256,
            true,
            b"p",
        );
        assert_eq!(rejection(&k, &two), "Unexpected GPG signature count 2");
        // Uncompressed single signatures are fine.
        let one = sign_raw(
            vec![keypair_of(&a, &a.fingerprint())],
            now,
            HashAlgorithm::SHA256,
            false,
            b"p",
        );
        assert_eq!(one[0] & 0x80, 0x80);
        assert_eq!(
            k.verify(&one).unwrap().primary_fingerprint,
            a.fingerprint().to_hex()
        );
    }

    #[test]
    fn key_expired_since_signing_is_rejected() {
        let cert = signing_cert(days_ago(10), Some(Duration::from_secs(5 * 86_400)));
        let blob = sign_raw(
            vec![keypair_of(&cert, &cert.fingerprint())],
            days_ago(9),
            HashAlgorithm::SHA256,
            true,
            b"p",
        );
        let e = rejection(&Keyring::from_blobs(&[public(&cert)]), &blob);
        assert!(
            e.starts_with(&format!("Key {} expired on ", cert.fingerprint().to_hex())),
            "{e}"
        );
        assert!(e.ends_with(" +0000 UTC"), "{e}");
    }

    #[test]
    fn soft_revocation_after_signing_is_rejected() {
        let cert = signing_cert(days_ago(10), None);
        let blob = sign_raw(
            vec![keypair_of(&cert, &cert.fingerprint())],
            days_ago(9),
            HashAlgorithm::SHA256,
            true,
            b"p",
        );
        let k = Keyring::from_blobs(&[public(&cert)]);
        assert!(k.verify(&blob).is_ok());
        // "Retired" is a soft reason: the key was still good at signing time.
        let mut signer = keypair_of(&cert, &cert.fingerprint());
        let rev = CertRevocationBuilder::new()
            .set_reason_for_revocation(ReasonForRevocation::KeyRetired, b"retired")
            .unwrap()
            .build(&mut signer, &cert, None)
            .unwrap();
        let revoked = cert.clone().insert_packets(rev).unwrap().0;
        let k = Keyring::from_blobs(&[public(&revoked)]);
        assert_eq!(
            rejection(&k, &blob),
            format!("Key {} is revoked", cert.fingerprint().to_hex())
        );
        // A revocation in a second copy of the key applies too (merged).
        let k = Keyring::from_blobs(&[public(&cert), public(&revoked)]);
        assert!(k.verify(&blob).is_err());
    }

    #[test]
    fn soft_subkey_revocation_after_signing_is_rejected() {
        let (cert, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(days_ago(10))
            .add_userid("sub")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let sub = cert.keys().subkeys().next().unwrap().key().fingerprint();
        let blob = sign_raw(
            vec![keypair_of(&cert, &sub)],
            days_ago(9),
            HashAlgorithm::SHA256,
            true,
            b"p",
        );
        assert!(Keyring::from_blobs(&[public(&cert)]).verify(&blob).is_ok());
        let mut signer = keypair_of(&cert, &cert.fingerprint());
        let subkey = cert.keys().subkeys().next().unwrap().key().clone();
        let rev = SubkeyRevocationBuilder::new()
            .set_reason_for_revocation(ReasonForRevocation::KeySuperseded, b"new key")
            .unwrap()
            .build(&mut signer, &cert, &subkey, None)
            .unwrap();
        let revoked = cert.clone().insert_packets(rev).unwrap().0;
        assert_eq!(
            rejection(&Keyring::from_blobs(&[public(&revoked)]), &blob),
            format!(
                "Signing subkey {} of key {} is revoked",
                sub.to_hex(),
                cert.fingerprint().to_hex()
            )
        );
    }

    #[test]
    fn certification_only_primary_may_not_sign() {
        let (cert, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(days_ago(1))
            .add_userid("certify only")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let blob = sign_raw(
            vec![keypair_of(&cert, &cert.fingerprint())],
            SystemTime::now(),
            HashAlgorithm::SHA256,
            true,
            b"p",
        );
        assert_eq!(
            rejection(&Keyring::from_blobs(&[public(&cert)]), &blob),
            format!("Key {} is not signing-capable", cert.fingerprint().to_hex())
        );
    }

    #[test]
    fn sha1_signatures_are_refused_by_policy() {
        let cert = signing_cert(days_ago(1), None);
        let blob = sign_raw(
            vec![keypair_of(&cert, &cert.fingerprint())],
            SystemTime::now(),
            HashAlgorithm::SHA1,
            true,
            b"p",
        );
        let e = rejection(&Keyring::from_blobs(&[public(&cert)]), &blob);
        assert!(e.starts_with("signature error: "), "{e}");
    }

    #[test]
    fn truncated_and_garbage_messages_are_clear_errors() {
        let k = main_keyring();
        let good = upstream("image.signature");
        assert_eq!(rejection(&k, b""), "signature error: empty signature");
        for len in [1, 2, 10, good.len() / 2, good.len() - 1] {
            let e = rejection(&k, &good[..len]);
            assert!(
                e.starts_with("signature error: ")
                    || e.starts_with("Unexpected GPG signature count"),
                "{len}: {e}"
            );
        }
    }

    #[test]
    fn data_after_the_message_is_refused() {
        let cert = signing_cert(days_ago(1), None);
        let k = Keyring::from_blobs(&[public(&cert)]);
        for compress in [true, false] {
            let good = sign_raw(
                vec![keypair_of(&cert, &cert.fingerprint())],
                SystemTime::now(),
                HashAlgorithm::SHA256,
                compress,
                b"p",
            );
            assert!(k.verify(&good).is_ok());
            let mut twice = good.clone();
            twice.extend_from_slice(&good);
            // Sequoia refuses what follows a message with definite-length
            // packets; for gpg's indeterminate-length compressed packet
            // (0xa3), trailing bytes are inside that packet, after the end
            // of its deflate stream, where gpg ignores them too.
            let e = rejection(&k, &twice);
            assert!(
                e.starts_with("signature error: malformed OpenPGP message"),
                "{e}"
            );
            let mut garbage = good.clone();
            garbage.extend_from_slice(b"\x00garbage");
            let e = rejection(&k, &garbage);
            assert!(
                e.starts_with("signature error: malformed OpenPGP message"),
                "{e}"
            );
        }
    }

    /// `gpg` in a private home directory.
    struct Gpg {
        home: tempfile::TempDir,
    }

    impl Gpg {
        /// `None` (after a notice) when gpg is not installed.
        fn new() -> Option<Gpg> {
            if std::process::Command::new("gpg")
                .arg("--version")
                .output()
                .is_err()
            {
                eprintln!("NOTICE: gpg is not installed; skipping the gpg interoperability check");
                return None;
            }
            let home = tempfile::Builder::new()
                .prefix("ig-gpg")
                .tempdir_in("/tmp")
                .unwrap();
            Some(Gpg { home })
        }

        fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
            use std::process::{Command, Stdio};
            let mut child = Command::new("gpg")
                .env("GNUPGHOME", self.home.path())
                .args(["--batch", "--no-tty", "--quiet"])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            if let Some(data) = stdin {
                input.write_all(data).unwrap();
            }
            drop(input);
            child.wait_with_output().unwrap()
        }

        fn file(&self, name: &str, data: &[u8]) -> String {
            let path = self.home.path().join(name);
            std::fs::write(&path, data).unwrap();
            path.to_str().unwrap().to_string()
        }

        /// Whether `gpg --verify` accepts `blob` as signed by the key whose
        /// primary fingerprint is `fingerprint` (the last VALIDSIG field).
        fn verifies(&self, blob: &[u8], fingerprint: &str) -> bool {
            let path = self.file("message.sig", blob);
            let out = self.run(&["--status-fd", "1", "--verify", &path], None);
            let status = String::from_utf8_lossy(&out.stdout);
            out.status.success()
                && status.lines().any(|l| {
                    l.starts_with("[GNUPG:] VALIDSIG ")
                        && l.split_whitespace().last() == Some(fingerprint)
                })
        }
    }

    impl Drop for Gpg {
        fn drop(&mut self) {
            let _ = std::process::Command::new("gpgconf")
                .env("GNUPGHOME", self.home.path())
                .args(["--kill", "all"])
                .output();
        }
    }

    #[test]
    fn gpg_accepts_signatures_by_a_sequoia_generated_key() {
        let Some(gpg) = Gpg::new() else { return };
        for cipher in [CipherSuite::Cv25519, CipherSuite::RSA2k] {
            let (cert, _) = CertBuilder::general_purpose(Some("seq <seq@example.invalid>"))
                .set_cipher_suite(cipher)
                .generate()
                .unwrap();
            let out = gpg.run(&["--import"], Some(&public(&cert)));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let key = SigningKey::from_bytes(&tsk(&cert), None).unwrap();
            let payload = UntrustedSignature::new(
                crate::reference::Digest::parse(DIGEST_D).unwrap(),
                "docker.io/library/busybox:latest",
            )
            .to_json();
            let blob = key.sign(&payload).unwrap();
            assert!(gpg.verifies(&blob, &key.fingerprint()));
            // gpg extracts the payload byte for byte.
            let out = gpg.run(&["--decrypt"], Some(&blob));
            assert_eq!(out.stdout, payload);
        }
    }

    #[test]
    fn gpg_generated_key_signs_through_sequoia_for_gpg_and_skopeo() {
        let Some(gpg) = Gpg::new() else { return };
        let out = gpg.run(
            &[
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-gen-key",
                "gpg made <gpg@example.invalid>",
                "ed25519",
                "sign",
                "never",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = gpg.run(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--export-secret-keys",
            ],
            None,
        );
        assert!(secret.status.success() && !secret.stdout.is_empty());
        let public_key = gpg.run(&["--export", "--armor"], None).stdout;

        let key = SigningKey::from_bytes(&secret.stdout, None).unwrap();
        let manifest = image_manifest();
        let payload = UntrustedSignature::new(
            manifest::digest(&manifest).unwrap(),
            "docker.io/library/busybox:latest",
        )
        .to_json();
        let blob = key.sign(&payload).unwrap();
        assert!(gpg.verifies(&blob, &key.fingerprint()));
        let keyring = Keyring::from_blobs(&[public_key]);
        assert_eq!(keyring.fingerprints(), [key.fingerprint()]);
        let m = keyring.verify(&blob).unwrap();
        assert_eq!(
            (m.payload, m.primary_fingerprint),
            (payload, key.fingerprint())
        );

        // skopeo (gpgme) on the same keyring, when installed.
        if std::process::Command::new("skopeo")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("NOTICE: skopeo is not installed; skipping standalone-verify");
            return;
        }
        let manifest_path = gpg.file("manifest.json", &manifest);
        let sig_path = gpg.file("signature-1", &blob);
        let out = std::process::Command::new("skopeo")
            .env("GNUPGHOME", gpg.home.path())
            .args([
                "standalone-verify",
                &manifest_path,
                "docker.io/library/busybox:latest",
                &key.fingerprint(),
                &sig_path,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn from_blobs_never_panics(blobs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..400), 0..3)) {
            let _ = Keyring::from_blobs(&blobs);
        }

        #[test]
        fn from_blobs_survives_damaged_keys(i in 0usize..2000, b in any::<u8>(), cut in 0usize..2000) {
            let mut key = upstream("public-key-1.gpg");
            let i = i % key.len();
            key[i] = b;
            key.truncate(cut.max(1).min(key.len()));
            let _ = Keyring::from_blobs(&[key]);
        }

        #[test]
        fn verify_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = main_keyring().verify(&blob);
        }

        #[test]
        fn verify_survives_damaged_signatures(i in 0usize..1000, b in any::<u8>(), cut in 0usize..1000) {
            let mut sig = upstream("image.signature");
            let i = i % sig.len();
            sig[i] = b;
            sig.truncate(cut.max(1).min(sig.len()));
            let _ = main_keyring().verify(&sig);
        }
    }
}
