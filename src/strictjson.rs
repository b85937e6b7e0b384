//! c/image's "paranoid" JSON object parsing (`signature/internal/json.go`).
//!
//! containers-policy.json and the simple-signing payload are parsed with
//! rules that `serde`'s derive cannot express together: duplicate keys are
//! errors, unknown keys are errors with c/image's wording, and some objects
//! (the payload's `optional`) ignore unknown keys but still refuse
//! duplicates. We therefore parse into [`JsonValue`], a tree that keeps every
//! key in document order (duplicates included), and read it with
//! [`ObjectReader`], which applies c/image's checks where c/image applies
//! them and names the JSON path of every error.
//!
//! serde_json does the tokenising; its syntax-error texts differ from Go's
//! `encoding/json`, and c/image passes Go's texts through as rejection
//! reasons (`invalid character 'T' looking for beginning of value`), so
//! [`go_syntax_error`] translates the few classes that can occur.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON document that preserves key order and duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

/// An error with the JSON path where it was found (`$` is the document).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StrictJsonError {
    /// JSONPath-like location, e.g. `$.transports.docker["example.com"][0]`.
    pub path: String,
    /// The message in c/image's (Go's) words.
    pub message: String,
}

impl StrictJsonError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        StrictJsonError {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// `message (at path)`, the form used by `policy lint` and status.
    pub fn with_path(&self) -> String {
        format!("{} (at {})", self.message, self.path)
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = JsonValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
                Ok(JsonValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
                Ok(JsonValue::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
                Ok(JsonValue::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
                serde_json::Number::from_f64(v)
                    .map(JsonValue::Number)
                    .ok_or_else(|| E::custom("number out of range"))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
                Ok(JsonValue::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
                Ok(JsonValue::String(v))
            }
            fn visit_unit<E>(self) -> Result<JsonValue, E> {
                Ok(JsonValue::Null)
            }
            fn visit_none<E>(self) -> Result<JsonValue, E> {
                Ok(JsonValue::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(JsonValue::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, JsonValue>()? {
                    entries.push((k, v));
                }
                Ok(JsonValue::Object(entries))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Parses a whole JSON document (trailing data is an error, as in Go).
///
/// Invalid UTF-8 inside strings becomes U+FFFD, as Go's decoder does.
pub fn parse(bytes: &[u8]) -> Result<JsonValue, StrictJsonError> {
    let text = String::from_utf8_lossy(bytes);
    let mut de = serde_json::Deserializer::from_str(&text);
    let value = JsonValue::deserialize(&mut de).map_err(|e| go_syntax_error(&text, &e))?;
    de.end().map_err(|e| go_syntax_error(&text, &e))?;
    Ok(value)
}

/// Translates a serde_json error into the text Go's `encoding/json` gives
/// for the same input, so rejection reasons read as c/image's do.
pub fn go_syntax_error(text: &str, err: &serde_json::Error) -> StrictJsonError {
    let msg = err.to_string();
    if err.is_eof() {
        return StrictJsonError::new("$", "unexpected end of JSON input");
    }
    // serde_json reports 1-based line and column (in bytes) of the offending byte.
    let offending = text
        .lines()
        .nth(err.line().saturating_sub(1))
        .and_then(|l| l.get(err.column().saturating_sub(1)..))
        .and_then(|rest| rest.chars().next());
    let ch = match offending {
        Some(c) => go_quote_char(c),
        None => return StrictJsonError::new("$", "unexpected end of JSON input"),
    };
    let context = if msg.starts_with("trailing characters") {
        "after top-level value"
    } else if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("invalid escape") {
        "in string escape code"
    } else if msg.starts_with("control character") {
        "in string literal"
    } else if msg.starts_with("invalid number") {
        "in numeric literal"
    } else if msg.starts_with("expected ident") {
        "in literal"
    } else {
        "looking for beginning of value"
    };
    StrictJsonError::new("$", format!("invalid character {ch} {context}"))
}

/// Go's `quoteChar`: `'x'`, with `'\''` and `'"'` special-cased.
fn go_quote_char(c: char) -> String {
    match c {
        '\'' => r"'\''".to_string(),
        '"' => r#"'"'"#.to_string(),
        c if c.is_control() => format!("{:?}", c),
        c => format!("'{c}'"),
    }
}

impl JsonValue {
    /// How Go's `%s` prints the first token of this value, for
    /// `JSON object expected, got …`.
    fn go_token_description(&self) -> String {
        match self {
            JsonValue::Null => "<nil>".into(),
            JsonValue::Bool(b) => format!("%!s(bool={b})"),
            JsonValue::Number(n) => format!("%!s(float64={n})"),
            JsonValue::String(s) => format!("\"{s}\""),
            JsonValue::Array(_) => "\"[\"".into(),
            JsonValue::Object(_) => "\"{\"".into(),
        }
    }

    /// Go's name for the JSON kind, for `json: cannot unmarshal X into …`.
    fn go_kind(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "bool",
            JsonValue::Number(_) => "number",
            JsonValue::String(_) => "string",
            JsonValue::Array(_) => "array",
            JsonValue::Object(_) => "object",
        }
    }

    /// Serialises back to compact JSON (used to show values in messages).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.to_serde()).unwrap_or_default()
    }

    fn to_serde(&self) -> serde_json::Value {
        match self {
            JsonValue::Null => serde_json::Value::Null,
            JsonValue::Bool(b) => serde_json::Value::Bool(*b),
            JsonValue::Number(n) => serde_json::Value::Number(n.clone()),
            JsonValue::String(s) => serde_json::Value::String(s.clone()),
            JsonValue::Array(a) => {
                serde_json::Value::Array(a.iter().map(|v| v.to_serde()).collect())
            }
            JsonValue::Object(o) => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect(),
            ),
        }
    }
}

/// Appends an object key to a path: `$.a` or `$["a.b"]` for keys that are
/// not plain identifiers (scopes such as `example.com/ns`).
pub fn child_path(path: &str, key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

/// Appends an array index to a path.
pub fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The entries of a JSON object, checked like `ParanoidUnmarshalJSONObject`.
pub struct ObjectReader<'a> {
    path: String,
    entries: &'a [(String, JsonValue)],
}

impl<'a> ObjectReader<'a> {
    /// `value` must be an object (`JSON object expected, got …`).
    /// Duplicate keys are refused (`Duplicate key "k"`). Unknown keys are
    /// not checked here; see [`ObjectReader::only`].
    pub fn new(value: &'a JsonValue, path: &str) -> Result<Self, StrictJsonError> {
        let JsonValue::Object(entries) = value else {
            return Err(StrictJsonError::new(
                path,
                format!("JSON object expected, got {}", value.go_token_description()),
            ));
        };
        for (i, (k, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(seen, _)| seen == k) {
                return Err(StrictJsonError::new(
                    &child_path(path, k),
                    format!("Duplicate key \"{k}\""),
                ));
            }
        }
        Ok(ObjectReader {
            path: path.to_string(),
            entries,
        })
    }

    /// Refuses any key not in `allowed`, in document order (`Unknown key "k"`).
    pub fn only(self, allowed: &[&str]) -> Result<Self, StrictJsonError> {
        if let Some((k, _)) = self
            .entries
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            return Err(StrictJsonError::new(
                &child_path(&self.path, k),
                format!("Unknown key \"{k}\""),
            ));
        }
        Ok(self)
    }

    /// `ParanoidUnmarshalJSONObjectExactFields`: exactly these keys.
    pub fn exact(self, fields: &[&str]) -> Result<Self, StrictJsonError> {
        let reader = self.only(fields)?;
        for f in fields {
            if reader.get(f).is_none() {
                return Err(StrictJsonError::new(
                    &reader.path,
                    format!("Key \"{f}\" missing in a JSON object"),
                ));
            }
        }
        Ok(reader)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn path_of(&self, key: &str) -> String {
        child_path(&self.path, key)
    }

    pub fn entries(&self) -> &'a [(String, JsonValue)] {
        self.entries
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn get(&self, key: &str) -> Option<&'a JsonValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A field that must be present.
    pub fn required(&self, key: &str) -> Result<&'a JsonValue, StrictJsonError> {
        self.get(key).ok_or_else(|| {
            StrictJsonError::new(
                &self.path,
                format!("Key \"{key}\" missing in a JSON object"),
            )
        })
    }

    /// A string field decoded as Go does: `null` becomes `""`.
    pub fn go_string(&self, key: &str) -> Result<Option<String>, StrictJsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => go_string(v, &self.path_of(key)).map(Some),
        }
    }
}

/// Decodes a JSON value into a Go `string`: `null` is `""`, anything but a
/// string is `json: cannot unmarshal X into Go value of type string`.
pub fn go_string(value: &JsonValue, path: &str) -> Result<String, StrictJsonError> {
    match value {
        JsonValue::String(s) => Ok(s.clone()),
        JsonValue::Null => Ok(String::new()),
        other => Err(cannot_unmarshal(other, path, "string")),
    }
}

/// Decodes a JSON array of strings into a Go `[]string`; `null` is `None`
/// (Go's nil slice), which callers distinguish from `[]`.
pub fn go_string_list(
    value: &JsonValue,
    path: &str,
) -> Result<Option<Vec<String>>, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| go_string(v, &index_path(path, i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(cannot_unmarshal(other, path, "[]string")),
    }
}

/// Decodes a Go `bool`; `null` is `false`.
pub fn go_bool(value: &JsonValue, path: &str) -> Result<bool, StrictJsonError> {
    match value {
        JsonValue::Bool(b) => Ok(*b),
        JsonValue::Null => Ok(false),
        other => Err(cannot_unmarshal(other, path, "bool")),
    }
}

/// `json: cannot unmarshal <kind> into Go value of type <go_type>`.
pub fn cannot_unmarshal(value: &JsonValue, path: &str, go_type: &str) -> StrictJsonError {
    StrictJsonError::new(
        path,
        format!(
            "json: cannot unmarshal {} into Go value of type {go_type}",
            value.go_kind()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicates_and_order() {
        let v = parse(br#"{"b":1,"a":2,"b":3}"#).unwrap();
        let JsonValue::Object(e) = &v else { panic!() };
        assert_eq!(
            e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b", "a", "b"]
        );
        let err = ObjectReader::new(&v, "$").err().unwrap();
        assert_eq!(err.message, "Duplicate key \"b\"");
        assert_eq!(err.path, "$.b");
    }

    #[test]
    fn go_style_syntax_errors() {
        assert_eq!(
            parse(b"This is not JSON\n").unwrap_err().message,
            "invalid character 'T' looking for beginning of value"
        );
        assert_eq!(
            parse(b"{} x").unwrap_err().message,
            "invalid character 'x' after top-level value"
        );
        assert_eq!(
            parse(b"{\"a\":").unwrap_err().message,
            "unexpected end of JSON input"
        );
        assert_eq!(
            parse(b"").unwrap_err().message,
            "unexpected end of JSON input"
        );
        assert_eq!(
            parse(b"{\"a\" 1}").unwrap_err().message,
            "invalid character '1' after object key"
        );
    }

    #[test]
    fn reader_checks() {
        let v = parse(br#"{"type":"x","extra":1}"#).unwrap();
        let r = ObjectReader::new(&v, "$").unwrap();
        assert_eq!(
            r.only(&["type"]).err().unwrap().message,
            "Unknown key \"extra\""
        );
        let v = parse(br#"{"type":"x"}"#).unwrap();
        let r = ObjectReader::new(&v, "$").unwrap();
        assert_eq!(
            r.exact(&["type", "more"]).err().unwrap().message,
            "Key \"more\" missing in a JSON object"
        );
        let err = ObjectReader::new(&JsonValue::Null, "$.x").err().unwrap();
        assert_eq!(err.message, "JSON object expected, got <nil>");
        assert_eq!(err.with_path(), "JSON object expected, got <nil> (at $.x)");
    }

    #[test]
    fn paths() {
        assert_eq!(child_path("$", "transports"), "$.transports");
        assert_eq!(
            child_path("$.docker", "example.com/ns"),
            "$.docker[\"example.com/ns\"]"
        );
        assert_eq!(child_path("$.docker", ""), "$.docker[\"\"]");
        assert_eq!(index_path("$.default", 2), "$.default[2]");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_char() {
        let v = parse(b"\"a\xffb\"").unwrap();
        assert_eq!(v, JsonValue::String("a\u{fffd}b".into()));
    }
}
