//! Classifying stored signature blobs by their first byte (semantics §5.4,
//! c/image `internal/signature.FromBlob`).
//!
//! Any error here is fatal for the whole signature read in c/image (the
//! caller wraps it as `parsing signature <url>: …`), not just for this blob.

use crate::manifest::go_field_eq;
use crate::signature::SignatureError;
use crate::strictjson::{self, JsonValue};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredSignature {
    /// A simple-signing OpenPGP message.
    SimpleSigning(Vec<u8>),
    /// A `0x00 "sigstore-json\n"` blob (ignored by `signedBy`).
    Sigstore(Vec<u8>),
}

/// The format name of a `0x00 <format> \n` simple-signing blob.
const SIMPLE_SIGNING_FORMAT: &[u8] = b"simple-signing";
/// The format name of a `0x00 <format> \n` sigstore blob.
const SIGSTORE_FORMAT: &[u8] = b"sigstore-json";

/// Classifies one stored blob as c/image's `FromBlob` does. Bare OpenPGP
/// messages are recognised by their first byte (compressed data,
/// one-pass signature or signature packet headers, including c/image's
/// `0x3d` and excluding `0x93`); newer blobs carry `0x00`, a printable
/// ASCII format name and a newline. A sigstore blob's JSON is checked as
/// c/image checks it, since a malformed one fails the read there too.
pub fn from_blob(blob: &[u8]) -> Result<StoredSignature, SignatureError> {
    let Some(&first) = blob.first() else {
        return Err(format_error("empty signature blob"));
    };
    match first {
        // Compressed data (old format, any length type; new format).
        0xa0..=0xa3 | 0xc8
        // One-pass signature: old format 0x90-0x92 and, as in c/image,
        // 0x3d (0x93 is not listed there), or new format.
        | 0x90..=0x92 | 0x3d | 0xc4
        // Signature (old format, any length type; new format).
        | 0x88..=0x8b | 0xc2 => Ok(StoredSignature::SimpleSigning(blob.to_vec())),
        0x00 => {
            let rest = &blob[1..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                return Err(format_error("invalid signature format, missing newline"));
            };
            let (format, chunk) = (&rest[..newline], &rest[newline + 1..]);
            if let Some(&b) = format.iter().find(|&&b| !(32..0x7f).contains(&b)) {
                return Err(format_error(format!(
                    "invalid signature format, non-ASCII byte {}",
                    go_hex(b)
                )));
            }
            if format == SIMPLE_SIGNING_FORMAT {
                Ok(StoredSignature::SimpleSigning(chunk.to_vec()))
            } else if format == SIGSTORE_FORMAT {
                check_sigstore_json(chunk)?;
                Ok(StoredSignature::Sigstore(chunk.to_vec()))
            } else {
                // Printable ASCII only, so Go's %q is plain quoting with
                // `"` and `\` escaped.
                let name = String::from_utf8_lossy(format)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                Err(format_error(format!(
                    "unrecognized signature format \"{name}\""
                )))
            }
        }
        b => Err(format_error(format!(
            "unrecognized signature format, starting with binary {}",
            go_hex(b)
        ))),
    }
}

/// Go's `%#x` of a byte: `0x2d`, `0x5` (no zero padding).
fn go_hex(b: u8) -> String {
    format!("{b:#x}")
}

fn format_error(message: impl Into<String>) -> SignatureError {
    SignatureError::Format(message.into())
}

/// `json.Unmarshal` of a sigstore chunk into c/image's
/// `sigstoreJSONRepresentation` (`mimeType` string, `payload` base64
/// bytes, `annotations` string map; Go matches field names
/// case-insensitively and ignores other fields). Returns Go's error text.
fn check_sigstore_json(chunk: &[u8]) -> Result<(), SignatureError> {
    const STRUCT: &str = "sigstoreJSONRepresentation";
    let doc = strictjson::parse(chunk).map_err(|e| format_error(e.message))?;
    let entries = match &doc {
        JsonValue::Null => return Ok(()),
        JsonValue::Object(entries) => entries,
        other => {
            return Err(format_error(format!(
                "json: cannot unmarshal {} into Go value of type signature.{STRUCT}",
                kind(other)
            )));
        }
    };
    let field_error = |value: &JsonValue, field: &str, go_type: &str| {
        format_error(format!(
            "json: cannot unmarshal {} into Go struct field {STRUCT}.{field} of type {go_type}",
            kind(value)
        ))
    };
    // Go reports the first type error but keeps decoding; a base64 error
    // aborts at once.
    let mut first_type_error = None;
    for (key, value) in entries {
        let error = if go_field_eq(key, "mimeType") {
            match value {
                JsonValue::Null | JsonValue::String(_) => None,
                other => Some(field_error(other, "mimeType", "string")),
            }
        } else if go_field_eq(key, "payload") {
            match value {
                JsonValue::Null => None,
                JsonValue::String(s) => {
                    go_std_base64(s).map_err(format_error)?;
                    None
                }
                other => Some(field_error(other, "payload", "[]uint8")),
            }
        } else if go_field_eq(key, "annotations") {
            match value {
                JsonValue::Null => None,
                JsonValue::Object(items) => items.iter().find_map(|(_, v)| match v {
                    JsonValue::Null | JsonValue::String(_) => None,
                    other => Some(field_error(other, "annotations", "string")),
                }),
                other => Some(field_error(other, "annotations", "map[string]string")),
            }
        } else {
            None
        };
        if first_type_error.is_none() {
            first_type_error = error;
        }
    }
    match first_type_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Go's name for a JSON value's kind in `json: cannot unmarshal X …`.
fn kind(value: &JsonValue) -> &'static str {
    match value {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "bool",
        JsonValue::Number(_) => "number",
        JsonValue::String(_) => "string",
        JsonValue::Array(_) => "array",
        JsonValue::Object(_) => "object",
    }
}

/// Decodes a Go `[]byte` JSON value: standard base64 with padding, `\r`
/// and `\n` ignored, non-zero trailing bits tolerated.
pub(crate) fn go_std_base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    ENGINE.decode(cleaned.as_bytes()).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(offset, _) => offset,
            base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            base64::DecodeError::InvalidLength(len) => len,
            base64::DecodeError::InvalidPadding => cleaned.len(),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cimage/upstream/signature/fixtures"
    );

    fn message(blob: &[u8]) -> String {
        from_blob(blob).unwrap_err().to_string()
    }

    #[test]
    fn openpgp_first_bytes_are_simple_signing() {
        for b in [
            0xa0u8, 0xa1, 0xa2, 0xa3, 0xc8, 0x90, 0x91, 0x92, 0x3d, 0xc4, 0x88, 0x89, 0x8a, 0x8b,
            0xc2,
        ] {
            let blob = [b, 1, 2, 3];
            assert_eq!(
                from_blob(&blob).unwrap(),
                StoredSignature::SimpleSigning(blob.to_vec()),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn other_first_bytes_are_refused() {
        // 0x93 (one-pass signature, indeterminate length) is missing from
        // c/image's list.
        assert_eq!(
            message(&[0x93, 0]),
            "unrecognized signature format, starting with binary 0x93"
        );
        assert_eq!(
            message(b"-----BEGIN PGP MESSAGE-----"),
            "unrecognized signature format, starting with binary 0x2d"
        );
        // Go's %#x does not pad.
        assert_eq!(
            message(&[0x05]),
            "unrecognized signature format, starting with binary 0x5"
        );
        for b in 0..=255u8 {
            let listed = matches!(
                b,
                0x00 | 0xa0..=0xa3 | 0xc8 | 0x90..=0x92 | 0x3d | 0xc4 | 0x88..=0x8b | 0xc2
            );
            let result = from_blob(&[b, b'\n']);
            if !listed {
                assert_eq!(
                    result.unwrap_err(),
                    SignatureError::Format(format!(
                        "unrecognized signature format, starting with binary {b:#x}"
                    ))
                );
            }
        }
    }

    #[test]
    fn empty_blob() {
        assert_eq!(
            from_blob(b"").unwrap_err(),
            SignatureError::Format("empty signature blob".into())
        );
    }

    #[test]
    fn format_prefixed_blobs() {
        assert_eq!(
            from_blob(b"\x00simple-signing\n\xa3abc").unwrap(),
            StoredSignature::SimpleSigning(b"\xa3abc".to_vec())
        );
        // The chunk is not sniffed again.
        assert_eq!(
            from_blob(b"\x00simple-signing\n-armour").unwrap(),
            StoredSignature::SimpleSigning(b"-armour".to_vec())
        );
        let sigstore = br#"{"mimeType":"application/vnd.dev.cosign.simplesigning.v1+json","payload":"eyJhIjoxfQ==","annotations":{"dev.cosignproject.cosign/signature":"MEUC"}}"#;
        let mut blob = b"\x00sigstore-json\n".to_vec();
        blob.extend_from_slice(sigstore);
        assert_eq!(
            from_blob(&blob).unwrap(),
            StoredSignature::Sigstore(sigstore.to_vec())
        );
        assert_eq!(
            message(b"\x00cosign\nxyz"),
            "unrecognized signature format \"cosign\""
        );
        assert_eq!(
            message(b"\x00a\"b\\c\nxyz"),
            "unrecognized signature format \"a\\\"b\\\\c\""
        );
        assert_eq!(
            message(b"\x00"),
            "invalid signature format, missing newline"
        );
        assert_eq!(
            message(b"\x00simple-signing"),
            "invalid signature format, missing newline"
        );
        assert_eq!(
            message(b"\x00simple\x01\n"),
            "invalid signature format, non-ASCII byte 0x1"
        );
        assert_eq!(
            message(b"\x00simple\xc3\xa9\n"),
            "invalid signature format, non-ASCII byte 0xc3"
        );
        assert_eq!(
            message(b"\x00\x7f\n"),
            "invalid signature format, non-ASCII byte 0x7f"
        );
        // An empty format name is printable and unknown.
        assert_eq!(message(b"\x00\nabc"), "unrecognized signature format \"\"");
    }

    #[test]
    fn malformed_sigstore_json_fails_like_go() {
        let sigstore = |json: &str| {
            let mut blob = b"\x00sigstore-json\n".to_vec();
            blob.extend_from_slice(json.as_bytes());
            from_blob(&blob)
        };
        assert!(
            sigstore("not json")
                .unwrap_err()
                .to_string()
                .starts_with("invalid character 'o'")
        );
        assert!(sigstore("{").is_err());
        assert_eq!(
            sigstore("[]").unwrap_err().to_string(),
            "json: cannot unmarshal array into Go value of type signature.sigstoreJSONRepresentation"
        );
        assert_eq!(
            sigstore(r#"{"mimeType":1}"#).unwrap_err().to_string(),
            "json: cannot unmarshal number into Go struct field sigstoreJSONRepresentation.mimeType of type string"
        );
        assert_eq!(
            sigstore(r#"{"MIMETYPE":true}"#).unwrap_err().to_string(),
            "json: cannot unmarshal bool into Go struct field sigstoreJSONRepresentation.mimeType of type string"
        );
        assert_eq!(
            sigstore(r#"{"payload":"!!!!"}"#).unwrap_err().to_string(),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            sigstore(r#"{"annotations":{"a":1}}"#)
                .unwrap_err()
                .to_string(),
            "json: cannot unmarshal number into Go struct field sigstoreJSONRepresentation.annotations of type string"
        );
        assert!(sigstore("null").is_ok());
        assert!(sigstore(r#"{"other":[1],"payload":"YQ==\n"}"#).is_ok());
    }

    #[test]
    fn upstream_fixture_blobs() {
        for f in [
            "image.signature",
            "corrupt.signature",
            "expired.signature",
            "invalid-blob.signature",
            "subkey.signature",
            "unknown-key.signature-v3",
            "unsigned-literal.signature",
        ] {
            let blob = std::fs::read(format!("{FIXTURES}/{f}")).unwrap();
            assert_eq!(
                from_blob(&blob).unwrap(),
                StoredSignature::SimpleSigning(blob),
                "{f}"
            );
        }
        // A public-key encrypted message starts with a PKESK packet.
        let encrypted = std::fs::read(format!("{FIXTURES}/unsigned-encrypted.signature")).unwrap();
        assert_eq!(
            message(&encrypted),
            "unrecognized signature format, starting with binary 0x84"
        );
        let armoured = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cimage/generated/gen-busybox-armored.signature"
        ))
        .unwrap();
        let cleartext = std::fs::read(format!("{FIXTURES}/invalid-cleartext.signature")).unwrap();
        for blob in [cleartext, armoured] {
            assert_eq!(
                message(&blob),
                "unrecognized signature format, starting with binary 0x2d"
            );
        }
    }

    proptest! {
        #[test]
        fn from_blob_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = from_blob(&blob);
        }

        #[test]
        fn format_prefixed_blobs_never_panic(format in "[ -~]{0,20}", rest in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut blob = vec![0u8];
            blob.extend_from_slice(format.as_bytes());
            blob.push(b'\n');
            blob.extend_from_slice(&rest);
            let _ = from_blob(&blob);
        }
    }
}
