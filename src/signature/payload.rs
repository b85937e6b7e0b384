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
                // Go's int64(f) is only meaningful inside the int64 range
                // (outside it amd64 yields i64::MIN, which then fails the
                // round trip); Rust's `as` would saturate instead.
                const TWO_POW_63: f64 = (1u64 << 63) as f64;
                let in_range = (-TWO_POW_63..TWO_POW_63).contains(&f);
                let i = f as i64;
                if !in_range || i as f64 != f {
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

use crate::gofmt::go_quote;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";

    /// Byte-exact payload of upstream `subkey.signature` (MANIFEST.md).
    const SUBKEY_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"testing/manifest:latest"},"image":{"docker-manifest-digest":"sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"},"type":"atomic container signature"},"optional":{}}"#;
    /// Byte-exact payload of upstream `image.signature` (MANIFEST.md).
    const IMAGE_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"testing/manifest"},"image":{"docker-manifest-digest":"sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"},"type":"atomic container signature"},"optional":{"creator":"atomic ","timestamp":1458239713}}"#;

    fn err(payload: &str) -> String {
        UntrustedSignature::parse(payload.as_bytes())
            .unwrap_err()
            .message
    }

    /// A payload with `critical` and `optional` bodies substituted.
    fn with(critical: &str, optional: &str) -> String {
        format!(r#"{{"critical":{critical},"optional":{optional}}}"#)
    }

    fn critical(identity: &str, image: &str, typ: &str) -> String {
        format!(r#"{{"type":{typ},"image":{image},"identity":{identity}}}"#)
    }

    fn good_critical() -> String {
        critical(
            r#"{"docker-reference":"busybox:latest"}"#,
            &format!(r#"{{"docker-manifest-digest":"{D}"}}"#),
            r#""atomic container signature""#,
        )
    }

    #[test]
    fn byte_exact_upstream_payloads_round_trip() {
        let sig = UntrustedSignature::parse(SUBKEY_PAYLOAD.as_bytes()).unwrap();
        assert_eq!(sig.docker_reference, "testing/manifest:latest");
        assert_eq!(sig.docker_manifest_digest.to_string(), D);
        assert_eq!((sig.creator.as_deref(), sig.timestamp), (None, None));
        assert_eq!(sig.to_json(), SUBKEY_PAYLOAD.as_bytes());

        let sig = UntrustedSignature::parse(IMAGE_PAYLOAD.as_bytes()).unwrap();
        assert_eq!(sig.docker_reference, "testing/manifest");
        assert_eq!(sig.creator.as_deref(), Some("atomic "));
        assert_eq!(sig.timestamp, Some(1458239713));
        assert_eq!(sig.to_json(), IMAGE_PAYLOAD.as_bytes());
    }

    #[test]
    fn to_json_is_go_json_marshal() {
        let mut sig = UntrustedSignature::parse(SUBKEY_PAYLOAD.as_bytes()).unwrap();
        sig.creator = Some("a <b> & \"c\" \\ \n\t\u{1}\u{8}\u{c}\u{2028}é".into());
        sig.timestamp = None;
        assert_eq!(
            String::from_utf8(sig.to_json()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"testing/manifest:latest"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"atomic container signature"}},"optional":{{"creator":"a \u003cb\u003e \u0026 \"c\" \\ \n\t\u0001\b\f\u2028é"}}}}"#
            )
        );
        sig.creator = None;
        sig.timestamp = Some(-5);
        assert!(
            String::from_utf8(sig.to_json())
                .unwrap()
                .ends_with(r#""optional":{"timestamp":-5}}"#)
        );
        // Whatever to_json writes parses back to the same value.
        assert_eq!(UntrustedSignature::parse(&sig.to_json()).unwrap(), sig);
    }

    #[test]
    fn new_stamps_creator_and_time() {
        let sig = UntrustedSignature::new(
            Digest::parse(D).unwrap(),
            "docker.io/library/busybox:latest",
        );
        assert_eq!(
            sig.creator.as_deref(),
            Some(concat!("imagegate ", env!("CARGO_PKG_VERSION")))
        );
        assert!(sig.timestamp.unwrap() > 1_700_000_000);
        assert_eq!(UntrustedSignature::parse(&sig.to_json()).unwrap(), sig);
    }

    #[test]
    fn syntax_errors_are_go_texts() {
        assert_eq!(
            err("This is not JSON\n"),
            "invalid character 'T' looking for beginning of value"
        );
        assert_eq!(
            err(&format!("{} x", with(&good_critical(), "{}"))),
            "invalid character 'x' after top-level value"
        );
        assert_eq!(err(""), "unexpected end of JSON input");
    }

    #[test]
    fn top_level_is_exactly_critical_and_optional() {
        assert_eq!(
            err(&format!(r#"{{"critical":{}}}"#, good_critical())),
            "Key \"optional\" missing in a JSON object"
        );
        assert_eq!(
            err(r#"{"optional":{}}"#),
            "Key \"critical\" missing in a JSON object"
        );
        assert_eq!(
            err(&format!(
                r#"{{"critical":{},"optional":{{}},"x":1}}"#,
                good_critical()
            )),
            "Unknown key \"x\""
        );
        assert_eq!(
            err(&format!(
                r#"{{"critical":{0},"critical":{0},"optional":{{}}}}"#,
                good_critical()
            )),
            "Duplicate key \"critical\""
        );
        assert_eq!(err("null"), "JSON object expected, got <nil>");
        assert_eq!(err("[]"), "JSON object expected, got 91");
        assert_eq!(err(r#""str""#), "JSON object expected, got \"str\"");
        assert_eq!(err("12"), "JSON object expected, got 12");
        assert_eq!(err("true"), "JSON object expected, got true");
        assert_eq!(err(&with("null", "{}")), "JSON object expected, got <nil>");
        assert_eq!(
            err(&with(&good_critical(), "[1]")),
            "JSON object expected, got 91"
        );
        // Keys are case-sensitive.
        assert_eq!(
            err(&format!(
                r#"{{"Critical":{},"optional":{{}}}}"#,
                good_critical()
            )),
            "Unknown key \"Critical\""
        );
    }

    #[test]
    fn optional_ignores_unknown_keys_but_not_duplicates() {
        let sig = UntrustedSignature::parse(
            with(
                &good_critical(),
                r#"{"creator":"x","unexpected":{"nested":[1,2]},"other":null}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(sig.creator.as_deref(), Some("x"));
        assert_eq!(
            err(&with(&good_critical(), r#"{"creator":"x","creator":"y"}"#)),
            "Duplicate key \"creator\""
        );
        assert_eq!(
            err(&with(&good_critical(), r#"{"u":1,"u":2}"#)),
            "Duplicate key \"u\""
        );
        assert_eq!(
            err(&with(&good_critical(), r#"{"creator":5}"#)),
            "json: cannot unmarshal number into Go value of type string"
        );
    }

    #[test]
    fn timestamp_must_be_integral() {
        let ts = |v: &str| {
            UntrustedSignature::parse(
                with(&good_critical(), &format!(r#"{{"timestamp":{v}}}"#)).as_bytes(),
            )
        };
        assert_eq!(ts("1e3").unwrap().timestamp, Some(1000));
        assert_eq!(ts("1.0").unwrap().timestamp, Some(1));
        assert_eq!(ts("-7").unwrap().timestamp, Some(-7));
        assert_eq!(ts("null").unwrap().timestamp, Some(0));
        assert_eq!(
            ts("1.5").unwrap_err().message,
            "Field optional.timestamp is not an integer"
        );
        assert_eq!(
            ts("1e30").unwrap_err().message,
            "Field optional.timestamp is not an integer"
        );
        // 2^63 does not fit an int64.
        assert_eq!(
            ts("9223372036854775808").unwrap_err().message,
            "Field optional.timestamp is not an integer"
        );
        assert_eq!(
            ts("-9223372036854775808").unwrap().timestamp,
            Some(i64::MIN)
        );
        assert_eq!(
            ts(r#""1""#).unwrap_err().message,
            "json: cannot unmarshal string into Go value of type float64"
        );
    }

    #[test]
    fn go_null_quirks() {
        let sig = UntrustedSignature::parse(
            with(
                &critical(
                    r#"{"docker-reference":null}"#,
                    &format!(r#"{{"docker-manifest-digest":"{D}"}}"#),
                    r#""atomic container signature""#,
                ),
                r#"{"creator":null}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(sig.docker_reference, "");
        assert_eq!(sig.creator.as_deref(), Some(""));
        // A null type is "" and unrecognised.
        assert_eq!(
            err(&with(
                &critical(
                    r#"{"docker-reference":"x"}"#,
                    &format!(r#"{{"docker-manifest-digest":"{D}"}}"#),
                    "null"
                ),
                "{}"
            )),
            "Unrecognized signature type "
        );
        // A null digest is "" and invalid.
        assert_eq!(
            err(&with(
                &critical(
                    r#"{"docker-reference":"x"}"#,
                    r#"{"docker-manifest-digest":null}"#,
                    r#""atomic container signature""#
                ),
                "{}"
            )),
            "invalid docker-manifest-digest value \"\": invalid checksum digest format"
        );
    }

    #[test]
    fn critical_is_exact() {
        let image = format!(r#"{{"docker-manifest-digest":"{D}"}}"#);
        let typ = r#""atomic container signature""#;
        let id = r#"{"docker-reference":"x"}"#;
        assert_eq!(
            err(&with(
                &format!(r#"{{"type":{typ},"image":{image},"identity":{id},"unexpected":1}}"#),
                "{}"
            )),
            "Unknown key \"unexpected\""
        );
        assert_eq!(
            err(&with(&format!(r#"{{"type":{typ},"image":{image}}}"#), "{}")),
            "Key \"identity\" missing in a JSON object"
        );
        assert_eq!(
            err(&with(
                &critical(id, &image, r#""atomic container signaturE""#),
                "{}"
            )),
            "Unrecognized signature type atomic container signaturE"
        );
        assert_eq!(
            err(&with(&critical(id, &image, "5"), "{}")),
            "json: cannot unmarshal number into Go value of type string"
        );
        assert_eq!(
            err(&with(
                &critical(id, r#"{"docker-manifest-digest":"x","y":1}"#, typ),
                "{}"
            )),
            "Unknown key \"y\""
        );
        assert_eq!(
            err(&with(
                &critical(
                    r#"{"docker-reference":"x","docker-reference":"y"}"#,
                    &image,
                    typ
                ),
                "{}"
            )),
            "Duplicate key \"docker-reference\""
        );
        assert_eq!(
            err(&with(&critical("[]", &image, typ), "{}")),
            "JSON object expected, got 91"
        );
        assert_eq!(
            err(&with(
                &critical(r#"{"docker-reference":1}"#, &image, typ),
                "{}"
            )),
            "json: cannot unmarshal number into Go value of type string"
        );
        // Document order: an unknown key before a bad value is reported first.
        assert_eq!(
            err(&with(r#"{"zzz":1,"type":5}"#, "{}")),
            "Unknown key \"zzz\""
        );
        assert_eq!(
            err(&with(r#"{"type":5,"zzz":1}"#, "{}")),
            "json: cannot unmarshal number into Go value of type string"
        );
    }

    #[test]
    fn digest_values_follow_go_digest() {
        let check = |d: &str| {
            err(&with(
                &critical(
                    r#"{"docker-reference":"x"}"#,
                    &format!(
                        r#"{{"docker-manifest-digest":{}}}"#,
                        serde_json::to_string(d).unwrap()
                    ),
                    r#""atomic container signature""#,
                ),
                "{}",
            ))
        };
        assert_eq!(
            check("sha256:abc"),
            "invalid docker-manifest-digest value \"sha256:abc\": invalid checksum digest length"
        );
        assert_eq!(
            check(&format!("sha256:{}", "A".repeat(64))),
            format!(
                "invalid docker-manifest-digest value \"sha256:{}\": invalid checksum digest format",
                "A".repeat(64)
            )
        );
        assert_eq!(
            check(&format!("md5:{}", "a".repeat(32))),
            format!(
                "invalid docker-manifest-digest value \"md5:{}\": unsupported digest algorithm",
                "a".repeat(32)
            )
        );
        assert_eq!(
            check("nocolon"),
            "invalid docker-manifest-digest value \"nocolon\": invalid checksum digest format"
        );
        assert_eq!(
            check("a\"b\n"),
            "invalid docker-manifest-digest value \"a\\\"b\\n\": invalid checksum digest format"
        );
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let sig = UntrustedSignature::parse(
            with(
                &critical(
                    r#"{"docker-reference":"x"}"#,
                    &format!(r#"{{"docker-manifest-digest":"{sha512}"}}"#),
                    r#""atomic container signature""#,
                ),
                "{}",
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(sig.docker_manifest_digest.to_string(), sha512);
    }

    #[test]
    fn optional_is_checked_before_critical() {
        // c/image decodes `optional` first; with both broken, its error wins.
        assert_eq!(
            err(&with(r#"{"bogus":1}"#, r#"{"timestamp":0.5}"#)),
            "Field optional.timestamp is not an integer"
        );
        assert_eq!(err(&with(r#"{"bogus":1}"#, "{}")), "Unknown key \"bogus\"");
    }

    #[test]
    fn errors_carry_json_paths() {
        let e =
            UntrustedSignature::parse(with(&good_critical(), r#"{"timestamp":0.5}"#).as_bytes())
                .unwrap_err();
        assert_eq!(e.path, "$.optional.timestamp");
        let e = UntrustedSignature::parse(with(r#"{"x":1}"#, "{}").as_bytes()).unwrap_err();
        assert_eq!(e.path, "$.critical.x");
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float_v(12.0), "12");
        assert_eq!(go_float_v(1.5), "1.5");
        assert_eq!(go_float_v(1e21), "1e+21");
        assert_eq!(go_float_v(1e20), "100000000000000000000");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_float_v(-2.5e-7), "-2.5e-07");
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = UntrustedSignature::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_json_like_text(s in r#"[{}\[\]":,a-z0-9. \-e]{0,120}"#) {
            let _ = UntrustedSignature::parse(s.as_bytes());
        }

        #[test]
        fn to_json_round_trips(reference in ".{0,40}", creator in proptest::option::of(".{0,40}"), ts in proptest::option::of(any::<i64>())) {
            let sig = UntrustedSignature {
                docker_manifest_digest: Digest::parse(D).unwrap(),
                docker_reference: reference,
                creator,
                timestamp: ts,
            };
            let back = UntrustedSignature::parse(&sig.to_json());
            // Timestamps beyond 2^53 are not exact in Go's float64 either.
            if ts.is_none_or(|t| t.unsigned_abs() < (1 << 53)) {
                prop_assert_eq!(back.unwrap(), sig);
            }
        }
    }
}
