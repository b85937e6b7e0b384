//! The simple-signing payload JSON (semantics §4.2).
//!
//! Parsing follows c/image's `untrustedSignature.strictUnmarshalJSON` step
//! by step, so that the first error reported is the one c/image reports:
//! the whole document is syntax-checked first (Go's `json.Unmarshal` does
//! that before calling the `UnmarshalJSON` method); then the top level must
//! hold exactly `critical` and `optional`; then `optional` is read (unknown
//! keys ignored, duplicates refused, `creator` a string, `timestamp` an
//! integral number); only then `critical` (exactly `type`, `image`,
//! `identity`), its type, the digest and the identity.
//!
//! Objects are walked in document order with `ParanoidUnmarshalJSONObject`'s
//! per-key sequence: duplicate check, unknown-key check, value decoding.

use crate::reference::Digest;
use crate::strictjson::{self, JsonValue, StrictJsonError};

/// The `critical.type` every simple-signing payload carries.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

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
    /// A payload for signing, stamped like c/image's
    /// `newUntrustedSignature`: `creator` names the signing software
    /// (`imagegate <version>`) and `timestamp` is now, in Unix seconds.
    pub fn new(digest: crate::reference::Digest, docker_reference: &str) -> Self {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        UntrustedSignature {
            docker_manifest_digest: digest,
            docker_reference: docker_reference.to_string(),
            creator: Some(format!("imagegate {}", env!("CARGO_PKG_VERSION"))),
            timestamp: Some(timestamp),
        }
    }

    /// Strict parse; errors are c/image's `InvalidSignatureError` texts.
    pub fn parse(payload: &[u8]) -> Result<UntrustedSignature, StrictJsonError> {
        let doc = strictjson::parse(payload)?;

        let mut critical = None;
        let mut optional = None;
        walk_exact(&doc, "$", &["critical", "optional"], |key, value| {
            match key {
                "critical" => critical = Some(value),
                _ => optional = Some(value),
            }
            Ok(())
        })?;
        let (Some(critical), Some(optional)) = (critical, optional) else {
            // walk_exact has already reported a missing key.
            return Err(StrictJsonError::new("$", "internal error: missing field"));
        };

        let mut creator = None;
        let mut timestamp = None;
        walk(optional, "$.optional", |key, value, path| {
            match key {
                "creator" => creator = Some(strictjson::go_string(value, path)?),
                "timestamp" => timestamp = Some(go_float64(value, path)?),
                // Any other key is decoded into an `any` and ignored.
                _ => {}
            }
            Ok(true)
        })?;
        let timestamp = match timestamp {
            None => None,
            Some(f) => {
                // Go's int64(f): Rust's `as` saturates where Go's result is
                // unspecified, but both then fail the round-trip check.
                let i = f as i64;
                if i as f64 != f {
                    return Err(StrictJsonError::new(
                        "$.optional.timestamp",
                        "Field optional.timestamp is not an integer",
                    ));
                }
                Some(i)
            }
        };

        let mut signature_type = String::new();
        let mut image = None;
        let mut identity = None;
        walk_exact(
            critical,
            "$.critical",
            &["type", "image", "identity"],
            |key, value| {
                match key {
                    "type" => signature_type = strictjson::go_string(value, "$.critical.type")?,
                    "image" => image = Some(value),
                    _ => identity = Some(value),
                }
                Ok(())
            },
        )?;
        if signature_type != SIGNATURE_TYPE {
            return Err(StrictJsonError::new(
                "$.critical.type",
                format!("Unrecognized signature type {signature_type}"),
            ));
        }
        let (Some(image), Some(identity)) = (image, identity) else {
            return Err(StrictJsonError::new(
                "$.critical",
                "internal error: missing field",
            ));
        };

        let mut digest_string = String::new();
        walk_exact(
            image,
            "$.critical.image",
            &["docker-manifest-digest"],
            |_, value| {
                digest_string =
                    strictjson::go_string(value, "$.critical.image[\"docker-manifest-digest\"]")?;
                Ok(())
            },
        )?;
        let docker_manifest_digest = Digest::parse(&digest_string).map_err(|e| {
            StrictJsonError::new(
                "$.critical.image[\"docker-manifest-digest\"]",
                format!(
                    "invalid docker-manifest-digest value {}: {e}",
                    go_quote(&digest_string)
                ),
            )
        })?;

        let mut docker_reference = String::new();
        walk_exact(
            identity,
            "$.critical.identity",
            &["docker-reference"],
            |_, value| {
                docker_reference =
                    strictjson::go_string(value, "$.critical.identity[\"docker-reference\"]")?;
                Ok(())
            },
        )?;

        Ok(UntrustedSignature {
            docker_manifest_digest,
            docker_reference,
            creator,
            timestamp,
        })
    }

    /// Go's `json.Marshal` form: sorted keys, compact, byte-identical to
    /// c/image's `untrustedSignature.MarshalJSON`. The fields are not
    /// validated here; c/image refuses to marshal an empty digest or
    /// reference, so signers must not pass one.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str(r#"{"critical":{"identity":{"docker-reference":"#);
        go_json_string(&mut out, &self.docker_reference);
        out.push_str(r#"},"image":{"docker-manifest-digest":"#);
        go_json_string(&mut out, &self.docker_manifest_digest.to_string());
        out.push_str(r#"},"type":"#);
        go_json_string(&mut out, SIGNATURE_TYPE);
        out.push_str(r#"},"optional":{"#);
        if let Some(creator) = &self.creator {
            out.push_str(r#""creator":"#);
            go_json_string(&mut out, creator);
            if self.timestamp.is_some() {
                out.push(',');
            }
        }
        if let Some(timestamp) = self.timestamp {
            out.push_str(r#""timestamp":"#);
            out.push_str(&timestamp.to_string());
        }
        out.push_str("}}");
        out.into_bytes()
    }
}

/// `ParanoidUnmarshalJSONObject`: `value` must be an object; each key in
/// document order is checked for duplicates, then offered to `field`,
/// which decodes the value and returns whether the key is known
/// (`Unknown key "k"` otherwise).
fn walk<'a>(
    value: &'a JsonValue,
    path: &str,
    mut field: impl FnMut(&str, &'a JsonValue, &str) -> Result<bool, StrictJsonError>,
) -> Result<(), StrictJsonError> {
    let JsonValue::Object(entries) = value else {
        return Err(StrictJsonError::new(
            path,
            format!("JSON object expected, got {}", go_token_v(value)),
        ));
    };
    for (i, (key, v)) in entries.iter().enumerate() {
        let key_path = strictjson::child_path(path, key);
        if entries[..i].iter().any(|(seen, _)| seen == key) {
            return Err(StrictJsonError::new(
                &key_path,
                format!("Duplicate key {}", go_quote(key)),
            ));
        }
        if !field(key, v, &key_path)? {
            return Err(StrictJsonError::new(
                &key_path,
                format!("Unknown key {}", go_quote(key)),
            ));
        }
    }
    Ok(())
}

/// `ParanoidUnmarshalJSONObjectExactFields`: exactly `fields`, each once.
/// A missing field is reported after the whole object was read.
fn walk_exact<'a>(
    value: &'a JsonValue,
    path: &str,
    fields: &[&str],
    mut field: impl FnMut(&str, &'a JsonValue) -> Result<(), StrictJsonError>,
) -> Result<(), StrictJsonError> {
    let mut seen: Vec<&str> = Vec::new();
    walk(value, path, |key, v, _| {
        let Some(known) = fields.iter().find(|f| **f == key) else {
            return Ok(false);
        };
        seen.push(*known);
        field(key, v)?;
        Ok(true)
    })?;
    // Go iterates a map here, so with several missing keys the one named is
    // arbitrary; we name the first in field order.
    if let Some(missing) = fields.iter().find(|f| !seen.contains(f)) {
        return Err(StrictJsonError::new(
            path,
            format!("Key {} missing in a JSON object", go_quote(missing)),
        ));
    }
    Ok(())
}

/// Decodes a JSON value into a Go `float64`: `null` leaves the zero value.
fn go_float64(value: &JsonValue, path: &str) -> Result<f64, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(0.0),
        JsonValue::Number(n) => n.as_f64().ok_or_else(|| {
            StrictJsonError::new(
                path,
                "json: cannot unmarshal number into Go value of type float64",
            )
        }),
        other => Err(strictjson::cannot_unmarshal(other, path, "float64")),
    }
}

/// Go's `%#v` of the first token of a value, as `ParanoidUnmarshalJSONObject`
/// prints it in `JSON object expected, got %#v`.
fn go_token_v(value: &JsonValue) -> String {
    match value {
        JsonValue::Null => "<nil>".to_string(),
        JsonValue::Bool(b) => b.to_string(),
        JsonValue::Number(n) => go_float_v(n.as_f64().unwrap_or(0.0)),
        JsonValue::String(s) => go_quote(s),
        // json.Delim is a rune type without a GoString method: `%#v` prints
        // its code point.
        JsonValue::Array(_) => "91".to_string(),
        JsonValue::Object(_) => "123".to_string(),
    }
}

/// Go's `%v` for a float64: the shortest representation, with an exponent
/// (`1e+21`, `1e-05`) outside [1e-4, 1e21).
fn go_float_v(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exp = f.abs().log10().floor();
    if (-4.0..21.0).contains(&exp) {
        return format!("{f}");
    }
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exponent),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            format!("{mantissa}e{sign}{digits}")
        }
        None => s,
    }
}

/// Go's `%q` for a string: double-quoted with Go escapes; printable
/// Unicode is kept as is.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint`: not a control character,
/// not a separator other than U+0020, not a private-use or unassigned
/// special; close enough for the keys and digests quoted here.
fn is_go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{a0}' | '\u{ad}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        )
        || ('\u{2000}'..='\u{200f}').contains(&c)
        || ('\u{e000}'..='\u{f8ff}').contains(&c)
        || c == '\u{fffe}'
        || c == '\u{ffff}')
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it:
/// `<`, `>`, `&`, U+2028 and U+2029 are escaped as `\u00XX`/`\u20XX`,
/// control characters use `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`.
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
