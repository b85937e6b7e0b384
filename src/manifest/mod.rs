//! Manifest digests as c/image computes them (semantics §4.5) and
//! manifest-list instance selection (§7.1, in [`list`]).
//!
//! `digest` is c/image's `manifest.Digest`: sha256 of the bytes, except for
//! a signed schema1 manifest (`GuessMIMEType` says `…v1+prettyjws`), whose
//! digest is taken over the JWS payload that libtrust's
//! `ParsePrettySignature` reconstructs. The type sniffing reproduces Go's
//! `encoding/json` decoding into c/image's partial structs: field names
//! match case-insensitively, later duplicates win, `null` leaves a field
//! alone, and any type mismatch makes the guess fail (`""`).
//!
//! One divergence: libtrust also parses each signature's `jwk` header into
//! a public key (checking the curve point and the `kid`) and fails on a
//! malformed one, e.g. `error unmarshalling public key: JWK Public Key
//! type: "kty" value not specified`; imagegate does not decode the keys
//! (c/image never verifies the JWS signatures either), so a schema1
//! manifest whose only defect is a malformed `jwk` gets its payload digest
//! here where c/image fails. No c/image signer can have signed such a
//! digest, since c/image cannot compute it.

pub mod list;

use base64::Engine as _;

use crate::reference::Digest;
use crate::strictjson::{self, JsonValue};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// `application/vnd.docker.distribution.manifest.v1+json`.
pub const DOCKER_V2_SCHEMA1_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.v1+json";
/// `application/vnd.docker.distribution.manifest.v1+prettyjws`.
pub const DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// `application/vnd.docker.distribution.manifest.v2+json`.
pub const DOCKER_V2_SCHEMA2_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.container.image.v1+json`.
pub const DOCKER_V2_SCHEMA2_CONFIG_MEDIA_TYPE: &str =
    "application/vnd.docker.container.image.v1+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`.
pub const DOCKER_V2_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_IMAGE_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_IMAGE_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const OCI_IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// `manifest.Digest`: sha256 of the bytes, or of the JWS payload for a
/// signed schema1 manifest.
pub fn digest(manifest: &[u8]) -> Result<Digest, ManifestError> {
    if guess_mime_type(manifest) == DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE {
        let payload = pretty_signature_payload(manifest).map_err(ManifestError)?;
        return Ok(Digest::sha256_of(&payload));
    }
    Ok(Digest::sha256_of(manifest))
}

/// `manifest.MatchesDigest`: only sha256 can ever match.
pub fn matches_digest(manifest: &[u8], expected: &Digest) -> Result<bool, ManifestError> {
    Ok(digest(manifest)? == *expected)
}

/// `GuessMIMEType`: the manifest's type judged from its bytes, or `""`
/// when unrecognised. Only this guess (never an HTTP Content-Type) decides
/// whether the schema1 payload rule applies.
pub fn guess_mime_type(manifest: &[u8]) -> &'static str {
    guess(manifest).unwrap_or("")
}

/// `GuessMIMEType`, with `None` for every path where Go returns `""`.
fn guess(manifest: &[u8]) -> Option<&'static str> {
    let doc = strictjson::parse(manifest).ok()?;
    // json.Unmarshal into a struct: `null` is a no-op, anything else but
    // an object is an error.
    let entries: &[(String, JsonValue)] = match &doc {
        JsonValue::Null => &[],
        JsonValue::Object(entries) => entries,
        _ => return None,
    };
    let mut media_type = String::new();
    let mut schema_version: i64 = 0;
    let mut signatures_set = false;
    for (key, value) in entries {
        if go_field_eq(key, "mediaType") {
            if let Some(s) = decode_string(value)? {
                media_type = s;
            }
        } else if go_field_eq(key, "schemaVersion") {
            if let Some(n) = decode_int(value)? {
                schema_version = n;
            }
        } else if go_field_eq(key, "signatures") {
            // An `any` field: `null` sets it back to nil.
            signatures_set = !matches!(value, JsonValue::Null);
        }
    }

    for known in [
        DOCKER_V2_SCHEMA2_MEDIA_TYPE,
        DOCKER_V2_LIST_MEDIA_TYPE,
        OCI_IMAGE_MANIFEST_MEDIA_TYPE,
        OCI_IMAGE_INDEX_MEDIA_TYPE,
    ] {
        if media_type == known {
            return Some(known);
        }
    }
    match schema_version {
        1 if signatures_set => Some(DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE),
        1 => Some(DOCKER_V2_SCHEMA1_MEDIA_TYPE),
        2 => guess_schema2(entries),
        _ => None,
    }
}

/// The `schemaVersion: 2` branch of `GuessMIMEType`: an OCI manifest or
/// index that predates the top-level `mediaType` field.
fn guess_schema2(entries: &[(String, JsonValue)]) -> Option<&'static str> {
    // struct { Config struct { MediaType string } }
    let mut config_media_type = String::new();
    for (key, value) in entries {
        if !go_field_eq(key, "config") {
            continue;
        }
        match value {
            JsonValue::Null => {}
            JsonValue::Object(fields) => {
                for (k, v) in fields {
                    if go_field_eq(k, "mediaType")
                        && let Some(s) = decode_string(v)?
                    {
                        config_media_type = s;
                    }
                }
            }
            _ => return None,
        }
    }
    if config_media_type == OCI_IMAGE_CONFIG_MEDIA_TYPE {
        return Some(OCI_IMAGE_MANIFEST_MEDIA_TYPE);
    }
    if config_media_type == DOCKER_V2_SCHEMA2_CONFIG_MEDIA_TYPE {
        return Some(DOCKER_V2_SCHEMA2_MEDIA_TYPE);
    }

    // struct { Manifests []imgspecv1.Descriptor }
    let mut manifests = 0usize;
    for (key, value) in entries {
        if !go_field_eq(key, "manifests") {
            continue;
        }
        match value {
            JsonValue::Null => manifests = 0,
            JsonValue::Array(items) => {
                for item in items {
                    check_descriptor(item)?;
                }
                manifests = items.len();
            }
            _ => return None,
        }
    }
    if manifests != 0 {
        if config_media_type.is_empty() {
            return Some(OCI_IMAGE_INDEX_MEDIA_TYPE);
        }
        // c/image returns the *config* media type here (its FIXME). Only
        // a handful of strings can be returned as `&'static str`; an
        // unknown config type is reported as unrecognised.
        return KNOWN_MEDIA_TYPES
            .iter()
            .copied()
            .find(|t| *t == config_media_type);
    }
    Some(OCI_IMAGE_MANIFEST_MEDIA_TYPE)
}

/// Media types `guess_mime_type` can name.
const KNOWN_MEDIA_TYPES: &[&str] = &[
    DOCKER_V2_SCHEMA1_MEDIA_TYPE,
    DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE,
    DOCKER_V2_SCHEMA2_MEDIA_TYPE,
    DOCKER_V2_SCHEMA2_CONFIG_MEDIA_TYPE,
    DOCKER_V2_LIST_MEDIA_TYPE,
    OCI_IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_CONFIG_MEDIA_TYPE,
];

/// Whether a value decodes into an OCI `Descriptor` without a Go type
/// error (its fields: strings, an int64 size, a string list, a string map,
/// base64 `data`, and a platform object).
fn check_descriptor(value: &JsonValue) -> Option<()> {
    let fields = match value {
        JsonValue::Null => return Some(()),
        JsonValue::Object(fields) => fields,
        _ => return None,
    };
    for (key, v) in fields {
        if ["mediaType", "digest", "artifactType"]
            .iter()
            .any(|f| go_field_eq(key, f))
        {
            decode_string(v)?;
        } else if go_field_eq(key, "size") {
            decode_int(v)?;
        } else if go_field_eq(key, "urls") {
            decode_string_list(v)?;
        } else if go_field_eq(key, "annotations") {
            decode_string_map(v)?;
        } else if go_field_eq(key, "data") {
            if let Some(s) = decode_string(v)? {
                crate::signature::blob::go_std_base64(&s).ok()?;
            }
        } else if go_field_eq(key, "platform") {
            match v {
                JsonValue::Null => {}
                JsonValue::Object(platform) => {
                    for (pk, pv) in platform {
                        if ["architecture", "os", "os.version", "variant"]
                            .iter()
                            .any(|f| go_field_eq(pk, f))
                        {
                            decode_string(pv)?;
                        } else if go_field_eq(pk, "os.features") {
                            decode_string_list(pv)?;
                        }
                    }
                }
                _ => return None,
            }
        }
    }
    Some(())
}

/// A Go `string` field: `Some(None)` for `null` (field untouched),
/// `None` for a type error.
fn decode_string(value: &JsonValue) -> Option<Option<String>> {
    match value {
        JsonValue::Null => Some(None),
        JsonValue::String(s) => Some(Some(s.clone())),
        _ => None,
    }
}

/// A Go `int`/`int64` field: the number must be an integer literal that
/// fits (`1.0` and `1e0` are type errors in Go).
fn decode_int(value: &JsonValue) -> Option<Option<i64>> {
    match value {
        JsonValue::Null => Some(None),
        JsonValue::Number(n) => n.as_i64().map(Some),
        _ => None,
    }
}

fn decode_string_list(value: &JsonValue) -> Option<()> {
    match value {
        JsonValue::Null => Some(()),
        JsonValue::Array(items) => items.iter().try_for_each(|i| decode_string(i).map(drop)),
        _ => None,
    }
}

fn decode_string_map(value: &JsonValue) -> Option<()> {
    match value {
        JsonValue::Null => Some(()),
        JsonValue::Object(items) => items
            .iter()
            .try_for_each(|(_, v)| decode_string(v).map(drop)),
        _ => None,
    }
}

/// Go `encoding/json` field matching: exact, or equal under Go's simple
/// case folding (ASCII case, plus `ſ` ~ `s` and the Kelvin sign ~ `k`).
pub(crate) fn go_field_eq(key: &str, field: &str) -> bool {
    fn fold(c: char) -> char {
        match c {
            '\u{17f}' => 'S',
            '\u{212a}' => 'K',
            c => c.to_ascii_uppercase(),
        }
    }
    key == field || key.chars().map(fold).eq(field.chars().map(fold))
}

/// The part of one `signatures` element (libtrust `jsParsedSignature`)
/// that the payload depends on.
#[derive(Default)]
struct ParsedSignature {
    protected: String,
}

/// libtrust `ParsePrettySignature(manifest, "signatures")` followed by
/// `Payload()`: the manifest bytes up to `formatLength`, then the decoded
/// `formatTail`. Errors carry libtrust's (and Go's) texts.
fn pretty_signature_payload(content: &[u8]) -> Result<Vec<u8>, String> {
    let doc = strictjson::parse(content)
        .map_err(|e| format!("error unmarshalling content: {}", e.message))?;
    // GuessMIMEType only says prettyjws for objects; `null` would decode
    // to an empty map.
    let entries: &[(String, JsonValue)] = match &doc {
        JsonValue::Object(entries) => entries,
        _ => &[],
    };
    // map[string]json.RawMessage: exact key, the last duplicate wins.
    let signatures = entries
        .iter()
        .rev()
        .find(|(k, _)| k == "signatures")
        .map(|(_, v)| v)
        .ok_or_else(|| "missing signature key".to_string())?;

    let blocks = parse_signature_blocks(signatures)
        .map_err(|e| format!("error unmarshalling signatures: {e}"))?;

    let mut format_length: i64 = 0;
    let mut format_tail: Vec<u8> = Vec::new();
    for block in &blocks {
        let protected = jose_base64url_decode(&block.protected)
            .map_err(|e| format!("base64 decode error: {e}"))?;
        let header = strictjson::parse(&protected)
            .map_err(|e| format!("error unmarshalling protected header: {}", e.message))?;
        let header_fields: &[(String, JsonValue)] = match &header {
            JsonValue::Null => &[],
            JsonValue::Object(fields) => fields,
            other => {
                return Err(format!(
                    "error unmarshalling protected header: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    json_kind(other)
                ));
            }
        };
        // map[string]interface{}: exact keys, the last duplicate wins.
        let lookup = |name: &str| {
            header_fields
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        };
        let length = match lookup("formatLength") {
            // Go's int(float64) truncates toward zero.
            Some(JsonValue::Number(n)) => go_int_of_float(n.as_f64().unwrap_or(0.0)),
            _ => return Err("missing formatted length".to_string()),
        };
        let encoded_tail = match lookup("formatTail") {
            Some(JsonValue::String(s)) => s.clone(),
            _ => return Err("missing formatted tail".to_string()),
        };
        let tail = jose_base64url_decode(&encoded_tail)
            .map_err(|e| format!("base64 decode error on tail: {e}"))?;
        if format_length == 0 {
            format_length = length;
        } else if format_length != length {
            return Err("conflicting format length".to_string());
        }
        if format_tail.is_empty() {
            format_tail = tail;
        } else if format_tail != tail {
            return Err("conflicting format tail".to_string());
        }
    }
    let length = usize::try_from(format_length)
        .ok()
        .filter(|l| *l <= content.len())
        .ok_or_else(|| "invalid format length".to_string())?;
    let mut payload = content[..length].to_vec();
    payload.extend_from_slice(&format_tail);
    Ok(payload)
}

/// Go's `int(f)` for the float64 values JSON numbers decode to, on a
/// 64-bit platform; out-of-range values give the amd64 result.
fn go_int_of_float(f: f64) -> i64 {
    /// 2^63, exactly representable.
    const TWO_POW_63: f64 = (1u64 << 63) as f64;
    if (-TWO_POW_63..TWO_POW_63).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

/// `json.Unmarshal` of the `signatures` value into
/// `[]jsParsedSignature`, with Go's error texts for type mismatches (the
/// first one in document order, as Go keeps decoding after one).
fn parse_signature_blocks(value: &JsonValue) -> Result<Vec<ParsedSignature>, String> {
    let items = match value {
        JsonValue::Null => return Ok(Vec::new()),
        JsonValue::Array(items) => items,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type []libtrust.jsParsedSignature",
                json_kind(other)
            ));
        }
    };
    let mut first_error: Option<String> = None;
    let mut note = |e: String| {
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    let struct_field = |value: &JsonValue, strukt: &str, field: &str, go_type: &str| {
        format!(
            "json: cannot unmarshal {} into Go struct field {strukt}.{field} of type {go_type}",
            json_kind(value)
        )
    };
    let mut blocks = Vec::with_capacity(items.len());
    for item in items {
        let mut block = ParsedSignature::default();
        match item {
            JsonValue::Null => {}
            JsonValue::Object(fields) => {
                for (key, v) in fields {
                    if go_field_eq(key, "header") {
                        match v {
                            JsonValue::Null => {}
                            JsonValue::Object(header) => {
                                for (hk, hv) in header {
                                    if go_field_eq(hk, "alg") {
                                        if decode_string(hv).is_none() {
                                            note(struct_field(
                                                hv,
                                                "jsParsedHeader",
                                                "header.alg",
                                                "string",
                                            ));
                                        }
                                    } else if go_field_eq(hk, "x5c") {
                                        match hv {
                                            JsonValue::Null => {}
                                            JsonValue::Array(chain) => {
                                                for c in chain {
                                                    if decode_string(c).is_none() {
                                                        note(struct_field(
                                                            c,
                                                            "jsParsedHeader",
                                                            "header.x5c",
                                                            "string",
                                                        ));
                                                    }
                                                }
                                            }
                                            other => note(struct_field(
                                                other,
                                                "jsParsedHeader",
                                                "header.x5c",
                                                "[]string",
                                            )),
                                        }
                                    }
                                }
                            }
                            other => note(struct_field(
                                other,
                                "jsParsedSignature",
                                "header",
                                "libtrust.jsParsedHeader",
                            )),
                        }
                    } else if go_field_eq(key, "signature") {
                        if decode_string(v).is_none() {
                            note(struct_field(v, "jsParsedSignature", "signature", "string"));
                        }
                    } else if go_field_eq(key, "protected") {
                        match decode_string(v) {
                            Some(Some(s)) => block.protected = s,
                            Some(None) => {}
                            None => {
                                note(struct_field(v, "jsParsedSignature", "protected", "string"))
                            }
                        }
                    }
                }
            }
            other => note(format!(
                "json: cannot unmarshal {} into Go value of type libtrust.jsParsedSignature",
                json_kind(other)
            )),
        }
        blocks.push(block);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(blocks),
    }
}

/// libtrust's `joseBase64UrlDecode`: newlines and spaces removed, padding
/// restored, then URL-safe base64.
fn jose_base64url_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let mut s: String = s.chars().filter(|c| *c != '\n' && *c != ' ').collect();
    match s.len() % 4 {
        0 => {}
        2 => s.push_str("=="),
        3 => s.push('='),
        _ => return Err("illegal base64url string".to_string()),
    }
    // Go's decoder also skips carriage returns.
    let s: String = s.chars().filter(|c| *c != '\r').collect();
    ENGINE.decode(s.as_bytes()).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(offset, _) => offset,
            base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            base64::DecodeError::InvalidLength(len) => len,
            base64::DecodeError::InvalidPadding => s.len(),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

fn json_kind(value: &JsonValue) -> &'static str {
    match value {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "bool",
        JsonValue::Number(_) => "number",
        JsonValue::String(_) => "string",
        JsonValue::Array(_) => "array",
        JsonValue::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cimage/upstream/signature/fixtures"
    );
    const D: &str = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55";

    /// A signed schema1 manifest laid out as libtrust writes it (JWS
    /// header without `jwk`, so that c/image accepts it). Every expected
    /// digest and error below was obtained with `skopeo manifest-digest`
    /// (c/image with gpgme, skopeo 1.9.3) on the same bytes.
    const SIGNED_V2S1: &str = "{\n   \"schemaVersion\": 1,\n   \"name\": \"ns/app\",\n   \"tag\": \"v1\",\n   \"architecture\": \"amd64\",\n   \"fsLayers\": [\n      {\n         \"blobSum\": \"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4\"\n      }\n   ],\n   \"history\": [\n      {\n         \"v1Compatibility\": \"{\\\"id\\\":\\\"x\\\"}\"\n      }\n   ],\n   \"signatures\": [\n      {\n         \"header\": {\n            \"alg\": \"ES256\"\n         },\n         \"signature\": \"c2lnbmF0dXJl\",\n         \"protected\": \"eyJmb3JtYXRMZW5ndGgiOjMwNCwiZm9ybWF0VGFpbCI6IkNuMCIsInRpbWUiOiIyMDE2LTAxLTAxVDAwOjAwOjAwWiJ9\"\n      }\n   ]\n}";
    const PROTECTED: &str = "eyJmb3JtYXRMZW5ndGgiOjMwNCwiZm9ybWF0VGFpbCI6IkNuMCIsInRpbWUiOiIyMDE2LTAxLTAxVDAwOjAwOjAwWiJ9";
    /// sha256 of the JWS payload (the manifest without `signatures`).
    const PAYLOAD_DIGEST: &str =
        "sha256:1683c5abdb68711c07c39ecf758dc08dde515a997777d9cae40c44f1c6c873ce";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn b64url(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// The payload (before `signatures`) with its closing brace.
    fn unsigned_v2s1() -> String {
        let cut = SIGNED_V2S1.find(",\n   \"signatures\"").unwrap();
        format!("{}\n}}", &SIGNED_V2S1[..cut])
    }

    fn digest_of(s: &str) -> Result<String, String> {
        digest(s.as_bytes()).map(|d| d.to_string()).map_err(|e| e.0)
    }

    fn raw(s: &str) -> Result<String, String> {
        Ok(Digest::sha256_of(s.as_bytes()).to_string())
    }

    #[test]
    fn plain_manifests_hash_their_bytes() {
        let m = fixture("image.manifest.json");
        assert_eq!(guess_mime_type(&m), DOCKER_V2_SCHEMA2_MEDIA_TYPE);
        assert_eq!(digest(&m).unwrap().to_string(), D);
        let d = Digest::parse(D).unwrap();
        assert!(matches_digest(&m, &d).unwrap());
        let modified = fixture("dir-img-modified-manifest/manifest.json");
        assert_eq!(
            digest(&modified).unwrap().to_string(),
            "sha256:2edc21ff514c75c0acb47d466dccce1d6acc592176d29d9e995cb5daba9c18ac"
        );
        assert!(!matches_digest(&modified, &d).unwrap());
        // Only sha256 can ever match, even with the right sha512.
        let sha512 = Digest::parse(&format!("sha512:{}", {
            use sha2::Digest as _;
            hex::encode(sha2::Sha512::digest(&m))
        }))
        .unwrap();
        assert!(!matches_digest(&m, &sha512).unwrap());
        // Not JSON at all: hashed as bytes.
        assert_eq!(guess_mime_type(b"not json"), "");
        assert_eq!(digest(b"not json").unwrap(), Digest::sha256_of(b"not json"));
    }

    #[test]
    fn invalid_signatures_fixture_fails_like_libtrust() {
        for f in [
            "v2s1-invalid-signatures.manifest.json",
            "dir-img-manifest-digest-error/manifest.json",
        ] {
            let m = fixture(f);
            assert_eq!(guess_mime_type(&m), DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE);
            let e = digest(&m).unwrap_err().0;
            assert_eq!(
                e,
                "error unmarshalling signatures: json: cannot unmarshal number into Go value of type []libtrust.jsParsedSignature"
            );
            assert!(matches_digest(&m, &Digest::parse(D).unwrap()).is_err());
        }
    }

    #[test]
    fn signed_schema1_uses_the_jws_payload() {
        assert_eq!(
            guess_mime_type(SIGNED_V2S1.as_bytes()),
            DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE
        );
        assert_eq!(digest_of(SIGNED_V2S1).unwrap(), PAYLOAD_DIGEST);
        // The payload is exactly the manifest without its signatures.
        assert_eq!(raw(&unsigned_v2s1()).unwrap(), PAYLOAD_DIGEST);
        assert!(
            matches_digest(
                SIGNED_V2S1.as_bytes(),
                &Digest::parse(PAYLOAD_DIGEST).unwrap()
            )
            .unwrap()
        );
        // The raw-bytes digest does not match (gen-v2s1-raw-digest case).
        assert!(
            !matches_digest(
                SIGNED_V2S1.as_bytes(),
                &Digest::sha256_of(SIGNED_V2S1.as_bytes())
            )
            .unwrap()
        );
        // Unsigned schema1 is hashed raw.
        assert_eq!(
            guess_mime_type(unsigned_v2s1().as_bytes()),
            DOCKER_V2_SCHEMA1_MEDIA_TYPE
        );
    }

    #[test]
    fn schema1_edge_cases_match_skopeo() {
        let sub = |from: &str, to: &str| {
            assert!(SIGNED_V2S1.contains(from), "{from}");
            SIGNED_V2S1.replace(from, to)
        };
        let unsigned = unsigned_v2s1();
        let with_signatures = |v: &str| {
            format!(
                "{},\n   \"signatures\": {v}\n}}",
                &unsigned[..unsigned.len() - 2]
            )
        };
        let protected = |json: &str| sub(PROTECTED, &b64url(json));

        let cases: Vec<(String, Result<String, String>)> = vec![
            // Go matches struct fields case-insensitively, libtrust's map
            // lookup is exact.
            (sub("\"signatures\"", "\"Signatures\""), Err("missing signature key".into())),
            (sub("\"signatures\"", "\"\u{17f}ignatures\""), Err("missing signature key".into())),
            (
                sub("\"schemaVersion\"", "\"\u{17f}chemaVersion\""),
                Ok("sha256:60551956cf0d13a2cbd817c2e351cf70c26c09ab2327a00fce5d6c4db5585861".into()),
            ),
            (with_signatures("null"), raw(&with_signatures("null"))),
            (
                with_signatures("[]"),
                Ok("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
            ),
            (
                sub("\"schemaVersion\": 1", "\"schemaVersion\": 1.0"),
                raw(&sub("\"schemaVersion\": 1", "\"schemaVersion\": 1.0")),
            ),
            (
                sub(
                    "\"schemaVersion\": 1,",
                    "\"schemaVersion\": 1, \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",",
                ),
                raw(&sub(
                    "\"schemaVersion\": 1,",
                    "\"schemaVersion\": 1, \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",",
                )),
            ),
            (
                sub(
                    "   ]\n}",
                    &format!(
                        "   ,{{\"header\":{{\"alg\":\"x\"}},\"protected\":\"{}\"}}]\n}}",
                        b64url(r#"{"formatLength": 303, "formatTail": "Cn0"}"#)
                    ),
                ),
                Err("conflicting format length".into()),
            ),
            (
                sub(PROTECTED, "e!!!"),
                Err("base64 decode error: illegal base64 data at input byte 1".into()),
            ),
            (
                sub(PROTECTED, "abcde"),
                Err("base64 decode error: illegal base64url string".into()),
            ),
            (
                protected(r#"{"formatLength": 100000, "formatTail": "Cn0"}"#),
                Err("invalid format length".into()),
            ),
            (
                with_signatures("[1]"),
                Err("error unmarshalling signatures: json: cannot unmarshal number into Go value of type libtrust.jsParsedSignature".into()),
            ),
            (
                with_signatures(r#"[{"header":{},"protected":5}]"#),
                Err("error unmarshalling signatures: json: cannot unmarshal number into Go struct field jsParsedSignature.protected of type string".into()),
            ),
            (
                sub("\"header\": {\n            \"alg\": \"ES256\"\n         }", "\"header\": 7"),
                Err("error unmarshalling signatures: json: cannot unmarshal number into Go struct field jsParsedSignature.header of type libtrust.jsParsedHeader".into()),
            ),
            (
                sub("\"alg\": \"ES256\"", "\"alg\": 7"),
                Err("error unmarshalling signatures: json: cannot unmarshal number into Go struct field jsParsedHeader.header.alg of type string".into()),
            ),
            // A missing header is no error.
            (
                sub("\"header\": {\n            \"alg\": \"ES256\"\n         },", ""),
                Ok(PAYLOAD_DIGEST.into()),
            ),
            (
                protected("[1]"),
                Err("error unmarshalling protected header: json: cannot unmarshal array into Go value of type map[string]interface {}".into()),
            ),
            (
                protected(r#"{"formatLength":304,"#),
                Err("error unmarshalling protected header: unexpected end of JSON input".into()),
            ),
            (protected(r#"{"formatTail":"Cn0"}"#), Err("missing formatted length".into())),
            (
                protected(r#"{"formatLength":"5","formatTail":"Cn0"}"#),
                Err("missing formatted length".into()),
            ),
            (protected(r#"{"formatLength":304}"#), Err("missing formatted tail".into())),
            (
                protected(r#"{"formatLength":304,"formatTail":"C"}"#),
                Err("base64 decode error on tail: illegal base64url string".into()),
            ),
        ];
        for (manifest, expected) in cases {
            assert_eq!(digest_of(&manifest), expected, "{manifest}");
        }
    }

    #[test]
    fn guess_mime_type_follows_c_image() {
        let g = |s: &str| guess_mime_type(s.as_bytes());
        assert_eq!(
            g(
                r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"},"layers":[]}"#
            ),
            OCI_IMAGE_MANIFEST_MEDIA_TYPE
        );
        assert_eq!(
            g(
                r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json"}}"#
            ),
            DOCKER_V2_SCHEMA2_MEDIA_TYPE
        );
        assert_eq!(
            g(
                r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","size":1,"digest":"sha256:00"}]}"#
            ),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        assert_eq!(
            g(r#"{"schemaVersion":2,"config":{"mediaType":"application/x-custom"},"layers":[]}"#),
            OCI_IMAGE_MANIFEST_MEDIA_TYPE
        );
        assert_eq!(
            g(r#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        assert_eq!(
            g(r#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#),
            DOCKER_V2_LIST_MEDIA_TYPE
        );
        assert_eq!(g(r#"{"schemaVersion":3}"#), "");
        assert_eq!(g("[]"), "");
        assert_eq!(g("null"), "");
        // Type errors make the whole guess fail.
        assert_eq!(g(r#"{"schemaVersion":"1","signatures":[]}"#), "");
        assert_eq!(g(r#"{"mediaType":5,"schemaVersion":1}"#), "");
        assert_eq!(g(r#"{"schemaVersion":2,"manifests":[{"size":"big"}]}"#), "");
        assert_eq!(g(r#"{"schemaVersion":2,"manifests":[{"data":"!!"}]}"#), "");
        // `null` leaves a field alone; a later `null` for an `any` clears it.
        assert_eq!(
            g(r#"{"schemaVersion":1,"schemaVersion":null,"signatures":[]}"#),
            DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE
        );
        assert_eq!(
            g(r#"{"schemaVersion":1,"signatures":[],"SIGNATURES":null}"#),
            DOCKER_V2_SCHEMA1_MEDIA_TYPE
        );
        // A list-typed config media type is what c/image returns (sic).
        assert_eq!(
            g(
                r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"},"manifests":[{}]}"#
            ),
            DOCKER_V2_SCHEMA2_MEDIA_TYPE
        );
    }

    proptest! {
        #[test]
        fn digest_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = digest(&bytes);
            let _ = guess_mime_type(&bytes);
        }

        #[test]
        fn schema1_digest_never_panics(
            length in any::<i64>(),
            tail in "[A-Za-z0-9_=\\- ]{0,8}",
            cut in 0usize..700,
        ) {
            let protected = b64url(&format!(r#"{{"formatLength":{length},"formatTail":"{tail}"}}"#));
            let m = SIGNED_V2S1.replace(PROTECTED, &protected);
            let _ = digest(m.as_bytes());
            let cut = cut.min(m.len());
            let _ = digest(&m.as_bytes()[..cut]);
        }
    }
}
