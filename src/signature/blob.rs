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
