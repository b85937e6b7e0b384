//! The containers-policy.json document model and its strict parser
//! (semantics §1.2, §2; c/image `policy_config.go`,
//! `policy_config_sigstore.go`, `internal/json.go`).
//!
//! c/image decodes with `ParanoidUnmarshalJSONObject`, which walks an object
//! in document order and, for each member, refuses a duplicate key, then an
//! unknown key, then decodes the value, so the *first* problem in document
//! order is the one reported. `paranoid_object` reproduces that walk over
//! a [`JsonValue`] tree (which keeps duplicates); the value decoders mimic Go's
//! `encoding/json` (`null` into a string is `""`, `[]byte` is standard base64,
//! and so on) so that errors read as c/image's do. Every error carries the
//! JSON path where it was found.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::identity::{PolicyReferenceMatch, validate_remapping_prefix};
use super::keys::{KeyRef, KeyRefKind, KeySource};
use crate::strictjson::{
    self, JsonValue, ObjectReader, StrictJsonError, cannot_unmarshal, child_path, go_string,
    go_string_list, index_path,
};

/// How strictly a document is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// `default` must be present (`Default policy is missing`), as in
    /// c/image. Kubernetes policy documents may omit it: such a document has
    /// no opinion on images outside its scopes.
    pub require_default: bool,
    /// Accept imagegate's `keyRef` as a fourth, exclusive key source of
    /// `signedBy` (otherwise it is an `Unknown key "keyRef"`, as in c/image).
    pub allow_key_ref: bool,
}

impl ParseOptions {
    /// A policy.json file (the CLI, a node's file): exactly c/image.
    pub const POLICY_FILE: ParseOptions = ParseOptions {
        require_default: true,
        allow_key_ref: false,
    };
    /// `spec.policy` of a ClusterImagePolicy / ImagePolicy.
    pub const KUBERNETES: ParseOptions = ParseOptions {
        require_default: false,
        allow_key_ref: true,
    };
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions::POLICY_FILE
    }
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The global default requirements. `None` only for documents parsed
    /// without [`ParseOptions::require_default`] that have no `default`.
    pub default: Option<Vec<Requirement>>,
    /// `transports`, in document order.
    pub transports: Vec<TransportScopes>,
}

/// The scopes of one transport (`transports.<name>`), in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportScopes {
    pub name: String,
    scopes: Vec<Scope>,
    /// Scope key → position in `scopes`, so a lookup costs a few hash
    /// probes however many scopes a document has (keys are unique: a
    /// duplicate is a parse error).
    index: std::collections::HashMap<String, usize>,
}

/// One scope: a key (`""`, a host, namespace, repository, identity or
/// `*.` wildcard) and its non-empty requirement list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub key: String,
    pub requirements: Vec<Requirement>,
}

/// One policy requirement (`PolicyRequirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy(SignedBy),
    SignedBaseLayer(SignedBaseLayer),
    SigstoreSigned(SigstoreSigned),
}

/// `signedBy`: GPG simple signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub key_type: KeyType,
    pub keys: KeySource,
    pub signed_identity: PolicyReferenceMatch,
}

/// `keyType` of `signedBy`. Only [`KeyType::GpgKeys`] is implemented by
/// c/image; the others parse and always reject at evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    GpgKeys,
    SignedByGpgKeys,
    X509Certificates,
    SignedByX509Cas,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "GPGKeys" => Some(KeyType::GpgKeys),
            "signedByGPGKeys" => Some(KeyType::SignedByGpgKeys),
            "X509Certificates" => Some(KeyType::X509Certificates),
            "signedByX509CAs" => Some(KeyType::SignedByX509Cas),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::GpgKeys => "GPGKeys",
            KeyType::SignedByGpgKeys => "signedByGPGKeys",
            KeyType::X509Certificates => "X509Certificates",
            KeyType::SignedByX509Cas => "signedByX509CAs",
        }
    }
}

/// `signedBaseLayer` (never satisfied: `signedBaseLayer not implemented yet!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBaseLayer {
    pub base_layer_identity: PolicyReferenceMatch,
}

/// `sigstoreSigned`, parsed and validated as c/image does. imagegate does
/// not verify sigstore signatures yet; evaluation denies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSigned {
    pub keys: SigstoreKeySource,
    pub rekor: Option<RekorKeys>,
    pub signed_identity: PolicyReferenceMatch,
}

/// Exactly one of `keyPath`, `keyPaths`, `keyData`, `keyDatas`, `fulcio`, `pki`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigstoreKeySource {
    KeyPath(String),
    KeyPaths(Vec<String>),
    KeyData(Vec<u8>),
    KeyDatas(Vec<Vec<u8>>),
    Fulcio(Fulcio),
    Pki(Pki),
}

/// At most one of `rekorPublicKeyPath(s)` / `rekorPublicKeyData(s)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RekorKeys {
    Path(String),
    Paths(Vec<String>),
    Data(Vec<u8>),
    Datas(Vec<Vec<u8>>),
}

/// A file path or inline bytes (`caPath`/`caData` and similar pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOrData {
    Path(String),
    Data(Vec<u8>),
}

/// `sigstoreSigned.fulcio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulcio {
    pub ca: PathOrData,
    pub oidc_issuer: String,
    pub subject_email: String,
}

/// `sigstoreSigned.pki`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca_roots: PathOrData,
    pub ca_intermediates: Option<PathOrData>,
    /// Empty when not given (at least one of the two subjects is set).
    pub subject_email: String,
    pub subject_hostname: String,
}

impl Requirement {
    /// The `type` value in policy.json.
    pub fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy(_) => "signedBy",
            Requirement::SignedBaseLayer(_) => "signedBaseLayer",
            Requirement::SigstoreSigned(_) => "sigstoreSigned",
        }
    }

    /// c/image's `verifiesSignatures()`: `signedBy` and `sigstoreSigned`.
    pub fn verifies_signatures(&self) -> bool {
        matches!(
            self,
            Requirement::SignedBy(_) | Requirement::SigstoreSigned(_)
        )
    }

    /// This requirement as a policy.json value.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::from(self.type_name()));
        match self {
            Requirement::InsecureAcceptAnything | Requirement::Reject => {}
            Requirement::SignedBy(sb) => {
                m.insert("keyType".into(), Value::from(sb.key_type.as_str()));
                match &sb.keys {
                    KeySource::Path(p) => {
                        m.insert("keyPath".into(), Value::from(p.as_str()));
                    }
                    KeySource::Paths(ps) => {
                        m.insert("keyPaths".into(), Value::from(ps.clone()));
                    }
                    KeySource::Data(d) => {
                        m.insert("keyData".into(), b64(d));
                    }
                    KeySource::Ref(r) => {
                        let mut o = Map::new();
                        o.insert(r.kind.json_key().into(), Value::from(r.name.as_str()));
                        o.insert("key".into(), Value::from(r.key.as_str()));
                        m.insert("keyRef".into(), Value::Object(o));
                    }
                }
                m.insert("signedIdentity".into(), sb.signed_identity.to_json());
            }
            Requirement::SignedBaseLayer(bl) => {
                m.insert("baseLayerIdentity".into(), bl.base_layer_identity.to_json());
            }
            Requirement::SigstoreSigned(ss) => {
                match &ss.keys {
                    SigstoreKeySource::KeyPath(p) => {
                        m.insert("keyPath".into(), Value::from(p.as_str()));
                    }
                    SigstoreKeySource::KeyPaths(ps) => {
                        m.insert("keyPaths".into(), Value::from(ps.clone()));
                    }
                    SigstoreKeySource::KeyData(d) => {
                        m.insert("keyData".into(), b64(d));
                    }
                    SigstoreKeySource::KeyDatas(ds) => {
                        m.insert("keyDatas".into(), ds.iter().map(|d| b64(d)).collect());
                    }
                    SigstoreKeySource::Fulcio(f) => {
                        let mut o = Map::new();
                        path_or_data(&mut o, "caPath", "caData", &f.ca);
                        o.insert("oidcIssuer".into(), Value::from(f.oidc_issuer.as_str()));
                        o.insert("subjectEmail".into(), Value::from(f.subject_email.as_str()));
                        m.insert("fulcio".into(), Value::Object(o));
                    }
                    SigstoreKeySource::Pki(p) => {
                        let mut o = Map::new();
                        path_or_data(&mut o, "caRootsPath", "caRootsData", &p.ca_roots);
                        if let Some(i) = &p.ca_intermediates {
                            path_or_data(&mut o, "caIntermediatesPath", "caIntermediatesData", i);
                        }
                        if !p.subject_email.is_empty() {
                            o.insert("subjectEmail".into(), Value::from(p.subject_email.as_str()));
                        }
                        if !p.subject_hostname.is_empty() {
                            o.insert(
                                "subjectHostname".into(),
                                Value::from(p.subject_hostname.as_str()),
                            );
                        }
                        m.insert("pki".into(), Value::Object(o));
                    }
                }
                match &ss.rekor {
                    None => {}
                    Some(RekorKeys::Path(p)) => {
                        m.insert("rekorPublicKeyPath".into(), Value::from(p.as_str()));
                    }
                    Some(RekorKeys::Paths(ps)) => {
                        m.insert("rekorPublicKeyPaths".into(), Value::from(ps.clone()));
                    }
                    Some(RekorKeys::Data(d)) => {
                        m.insert("rekorPublicKeyData".into(), b64(d));
                    }
                    Some(RekorKeys::Datas(ds)) => {
                        m.insert(
                            "rekorPublicKeyDatas".into(),
                            ds.iter().map(|d| b64(d)).collect(),
                        );
                    }
                }
                m.insert("signedIdentity".into(), ss.signed_identity.to_json());
            }
        }
        Value::Object(m)
    }
}

fn b64(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn path_or_data(o: &mut Map<String, Value>, path_key: &str, data_key: &str, v: &PathOrData) {
    match v {
        PathOrData::Path(p) => o.insert(path_key.into(), Value::from(p.as_str())),
        PathOrData::Data(d) => o.insert(data_key.into(), b64(d)),
    };
}

impl PolicyReferenceMatch {
    /// This matcher as a policy.json value.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::from(self.type_name()));
        match self {
            PolicyReferenceMatch::ExactReference { docker_reference } => {
                m.insert(
                    "dockerReference".into(),
                    Value::from(docker_reference.as_str()),
                );
            }
            PolicyReferenceMatch::ExactRepository { docker_repository } => {
                m.insert(
                    "dockerRepository".into(),
                    Value::from(docker_repository.as_str()),
                );
            }
            PolicyReferenceMatch::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                m.insert("prefix".into(), Value::from(prefix.as_str()));
                m.insert("signedPrefix".into(), Value::from(signed_prefix.as_str()));
            }
            _ => {}
        }
        Value::Object(m)
    }
}

impl fmt::Display for Requirement {
    /// A one-line description for reports, e.g.
    /// `signedBy GPGKeys keyPath "/k.gpg" signedIdentity matchExact`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::SignedBy(sb) => write!(
                f,
                "signedBy {} {} signedIdentity {}",
                sb.key_type.as_str(),
                sb.keys,
                sb.signed_identity
            ),
            Requirement::SignedBaseLayer(bl) => {
                write!(
                    f,
                    "signedBaseLayer baseLayerIdentity {}",
                    bl.base_layer_identity
                )
            }
            Requirement::SigstoreSigned(ss) => {
                write!(f, "sigstoreSigned signedIdentity {}", ss.signed_identity)
            }
            other => f.write_str(other.type_name()),
        }
    }
}

impl Policy {
    /// Parses a policy document (`NewPolicyFromBytes`). Syntax errors and
    /// trailing data are reported in Go's words.
    pub fn parse(bytes: &[u8], options: ParseOptions) -> Result<Policy, StrictJsonError> {
        let value = strictjson::parse(bytes)?;
        Policy::from_json_value(&value, options)
    }

    /// Parses an already tokenised document (e.g. `spec.policy` of a
    /// Kubernetes object).
    pub fn from_json_value(
        value: &JsonValue,
        options: ParseOptions,
    ) -> Result<Policy, StrictJsonError> {
        let mut default = None;
        let mut transports = Vec::new();
        paranoid_object(value, "$", |key, v, path| match key {
            "default" => {
                default = Some(parse_requirements(v, &path, options)?);
                Ok(true)
            }
            "transports" => {
                transports = parse_transports(v, &path, options)?;
                Ok(true)
            }
            _ => Ok(false),
        })?;
        if default.is_none() && options.require_default {
            return Err(StrictJsonError::new("$", "Default policy is missing"));
        }
        Ok(Policy {
            default,
            transports,
        })
    }

    /// The scopes of `transport`, if the document has that section.
    pub fn transport(&self, name: &str) -> Option<&TransportScopes> {
        self.transports.iter().find(|t| t.name == name)
    }

    /// Applies `f` to every requirement of the document (default and every
    /// scope of every transport), stopping at the first error.
    pub fn try_for_each_requirement_mut<E>(
        &mut self,
        mut f: impl FnMut(&mut Requirement) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(d) = &mut self.default {
            d.iter_mut().try_for_each(&mut f)?;
        }
        for t in &mut self.transports {
            let mut scopes = t.scopes.clone();
            for s in &mut scopes {
                s.requirements.iter_mut().try_for_each(&mut f)?;
            }
            *t = TransportScopes::new(t.name.clone(), scopes);
        }
        Ok(())
    }

    /// This document as policy.json (keys in model order; `signedIdentity`
    /// always explicit).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(d) = &self.default {
            m.insert(
                "default".into(),
                d.iter().map(Requirement::to_json).collect(),
            );
        }
        if !self.transports.is_empty() {
            let mut ts = Map::new();
            for t in &self.transports {
                let mut scopes = Map::new();
                for s in &t.scopes {
                    scopes.insert(
                        s.key.clone(),
                        s.requirements.iter().map(Requirement::to_json).collect(),
                    );
                }
                ts.insert(t.name.clone(), Value::Object(scopes));
            }
            m.insert("transports".into(), Value::Object(ts));
        }
        Value::Object(m)
    }
}

impl TransportScopes {
    /// The scopes of transport `name`, in document order.
    pub fn new(name: String, scopes: Vec<Scope>) -> TransportScopes {
        let index = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.clone(), i))
            .collect();
        TransportScopes {
            name,
            scopes,
            index,
        }
    }

    /// Every scope, in document order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    pub fn scope(&self, key: &str) -> Option<&Scope> {
        self.index.get(key).map(|&i| &self.scopes[i])
    }
}

/// JSON path of a transport's scope list: `$.transports.docker["x"]`.
pub fn scope_path(transport: &str, key: &str) -> String {
    child_path(&child_path("$.transports", transport), key)
}

const EMPTY_LIST: &str = "List of verification policy requirements must not be empty";

fn parse_transports(
    value: &JsonValue,
    path: &str,
    options: ParseOptions,
) -> Result<Vec<TransportScopes>, StrictJsonError> {
    let mut transports = Vec::new();
    // Transport names are not validated (c/image accepts unknown ones), and
    // the docker transport accepts any scope string.
    paranoid_object(value, path, |name, v, tpath| {
        let mut scopes = Vec::new();
        paranoid_object(v, &tpath, |key, reqs, spath| {
            scopes.push(Scope {
                key: key.to_string(),
                requirements: parse_requirements(reqs, &spath, options)?,
            });
            Ok(true)
        })?;
        transports.push(TransportScopes::new(name.to_string(), scopes));
        Ok(true)
    })?;
    Ok(transports)
}

/// `PolicyRequirements.UnmarshalJSON`.
pub fn parse_requirements(
    value: &JsonValue,
    path: &str,
    options: ParseOptions,
) -> Result<Vec<Requirement>, StrictJsonError> {
    match value {
        JsonValue::Null => Err(StrictJsonError::new(path, EMPTY_LIST)),
        JsonValue::Array(items) if items.is_empty() => Err(StrictJsonError::new(path, EMPTY_LIST)),
        JsonValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_requirement(item, &index_path(path, i), options))
            .collect(),
        other => Err(cannot_unmarshal(other, path, "[]json.RawMessage")),
    }
}

/// `newPolicyRequirementFromJSON`.
pub fn parse_requirement(
    value: &JsonValue,
    path: &str,
    options: ParseOptions,
) -> Result<Requirement, StrictJsonError> {
    let t = lenient_type_field(value, path, "prCommon", "prType")?;
    match t.as_str() {
        "insecureAcceptAnything" => {
            exact_type_only(value, path, &t)?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            exact_type_only(value, path, &t)?;
            Ok(Requirement::Reject)
        }
        "signedBy" => parse_signed_by(value, path, options).map(Requirement::SignedBy),
        "signedBaseLayer" => parse_signed_base_layer(value, path).map(Requirement::SignedBaseLayer),
        "sigstoreSigned" => parse_sigstore_signed(value, path).map(Requirement::SigstoreSigned),
        other => Err(StrictJsonError::new(
            path,
            format!("Unknown policy requirement type {}", go_quote(other)),
        )),
    }
}

/// The first, lenient read of `type` (`json.Unmarshal` into a struct with a
/// single `type` field): keys match case-insensitively, the last one wins,
/// `null` leaves the value unchanged, other keys are ignored.
fn lenient_type_field(
    value: &JsonValue,
    path: &str,
    go_struct: &str,
    go_field_type: &str,
) -> Result<String, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(String::new()),
        JsonValue::Object(entries) => {
            let mut t = String::new();
            for (k, v) in entries {
                if !k.eq_ignore_ascii_case("type") {
                    continue;
                }
                match v {
                    JsonValue::String(s) => t = s.clone(),
                    JsonValue::Null => {}
                    other => {
                        return Err(StrictJsonError::new(
                            &child_path(path, k),
                            format!(
                                "json: cannot unmarshal {} into Go struct field {go_struct}.type of type signature.{go_field_type}",
                                json_kind(other)
                            ),
                        ));
                    }
                }
            }
            Ok(t)
        }
        other => Err(cannot_unmarshal(
            other,
            path,
            &format!("signature.{go_struct}"),
        )),
    }
}

/// Go's name for a JSON value's kind in `json: cannot unmarshal <kind> …`.
fn json_kind(v: &JsonValue) -> &'static str {
    match v {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "bool",
        JsonValue::Number(_) => "number",
        JsonValue::String(_) => "string",
        JsonValue::Array(_) => "array",
        JsonValue::Object(_) => "object",
    }
}

/// `{"type": "<t>"}` and nothing else (`ParanoidUnmarshalJSONObjectExactFields`).
fn exact_type_only(value: &JsonValue, path: &str, expected: &str) -> Result<(), StrictJsonError> {
    let mut t = String::new();
    paranoid_exact(value, path, &["type"], |key, v, p| {
        if key != "type" {
            return Ok(false);
        }
        t = go_string(v, &p)?;
        Ok(true)
    })?;
    check_type(&t, expected, path)
}

fn check_type(found: &str, expected: &str, path: &str) -> Result<(), StrictJsonError> {
    if found != expected {
        return Err(StrictJsonError::new(
            path,
            format!("Unexpected policy requirement type {}", go_quote(found)),
        ));
    }
    Ok(())
}

/// `prSignedBy.UnmarshalJSON` and `newPRSignedBy`, plus `keyRef`.
fn parse_signed_by(
    value: &JsonValue,
    path: &str,
    options: ParseOptions,
) -> Result<SignedBy, StrictJsonError> {
    let mut t = String::new();
    let mut key_type: Option<KeyType> = None;
    let mut key_path: Option<String> = None;
    let mut key_paths: Option<Option<Vec<String>>> = None;
    let mut key_data: Option<Option<Vec<u8>>> = None;
    let mut key_ref: Option<KeyRef> = None;
    let mut signed_identity: Option<(&JsonValue, String)> = None;
    paranoid_object(value, path, |key, v, p| {
        match key {
            "type" => t = go_string(v, &p)?,
            "keyType" => key_type = Some(parse_key_type(v, &p)?),
            "keyPath" => key_path = Some(go_string(v, &p)?),
            "keyPaths" => key_paths = Some(go_string_list(v, &p)?),
            "keyData" => key_data = Some(go_bytes(v, &p)?),
            "keyRef" if options.allow_key_ref => key_ref = Some(parse_key_ref(v, &p)?),
            "signedIdentity" => signed_identity = Some((v, p)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    check_type(&t, "signedBy", path)?;
    let signed_identity = match signed_identity {
        None => PolicyReferenceMatch::MatchRepoDigestOrExact,
        Some((v, p)) => parse_reference_match(v, &p)?,
    };

    let present = [
        key_path.is_some(),
        key_paths.is_some(),
        key_data.is_some(),
        key_ref.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    // c/image's messages are kept verbatim unless keyRef is involved.
    let sources = if options.allow_key_ref && (key_ref.is_some() || present == 0) {
        "keyPath, keyPaths, keyData and keyRef"
    } else {
        "keyPath, keyPaths and keyData"
    };
    match present {
        0 => {
            return Err(StrictJsonError::new(
                path,
                format!("Exactly one of {sources} must be specified, none of them present"),
            ));
        }
        1 => {}
        _ => {
            return Err(StrictJsonError::new(
                path,
                format!("Exactly one of {sources} must be specified, more than one present"),
            ));
        }
    }
    // newPRSignedBy: the key type first, then whether the one key source is set.
    let Some(key_type) = key_type else {
        return Err(StrictJsonError::new(path, "invalid keyType \"\""));
    };
    let not_set = || {
        StrictJsonError::new(
            path,
            "exactly one of keyPath, keyPaths and keyData must be specified",
        )
    };
    let keys = if let Some(p) = key_path {
        if p.is_empty() {
            return Err(not_set());
        }
        KeySource::Path(p)
    } else if let Some(ps) = key_paths {
        KeySource::Paths(ps.ok_or_else(not_set)?)
    } else if let Some(d) = key_data {
        KeySource::Data(d.ok_or_else(not_set)?)
    } else if let Some(r) = key_ref {
        KeySource::Ref(r)
    } else {
        return Err(not_set());
    };
    Ok(SignedBy {
        key_type,
        keys,
        signed_identity,
    })
}

/// `sbKeyType.UnmarshalJSON`: `null` reads as `""`, which is unrecognised.
fn parse_key_type(v: &JsonValue, path: &str) -> Result<KeyType, StrictJsonError> {
    let s = go_string(v, path)?;
    KeyType::parse(&s).ok_or_else(|| {
        StrictJsonError::new(path, format!("Unrecognized keyType value {}", go_quote(&s)))
    })
}

/// imagegate's `keyRef`: `{"configMap"|"secret": NAME, "key": KEY}`.
fn parse_key_ref(v: &JsonValue, path: &str) -> Result<KeyRef, StrictJsonError> {
    let mut config_map = None;
    let mut secret = None;
    let mut key = None;
    let mut name_path = path.to_string();
    let mut key_path = path.to_string();
    paranoid_object(v, path, |k, val, p| {
        match k {
            "configMap" => {
                config_map = Some(go_string(val, &p)?);
                name_path = p;
            }
            "secret" => {
                secret = Some(go_string(val, &p)?);
                name_path = p;
            }
            "key" => {
                key = Some(go_string(val, &p)?);
                key_path = p;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (kind, name) = match (config_map, secret) {
        (Some(n), None) => (KeyRefKind::ConfigMap, n),
        (None, Some(n)) => (KeyRefKind::Secret, n),
        _ => {
            return Err(StrictJsonError::new(
                path,
                "keyRef: exactly one of configMap and secret must be specified",
            ));
        }
    };
    if !is_dns_subdomain(&name) {
        return Err(StrictJsonError::new(
            &name_path,
            format!(
                "keyRef: invalid {} name {}: must be a lower-case RFC 1123 subdomain",
                kind.json_key(),
                go_quote(&name)
            ),
        ));
    }
    let Some(key) = key else {
        return Err(StrictJsonError::new(path, "keyRef: key must be specified"));
    };
    if key.is_empty()
        || key.len() > 253
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(StrictJsonError::new(
            &key_path,
            format!(
                "keyRef: invalid key {}: must consist of alphanumeric characters, '-', '_' or '.'",
                go_quote(&key)
            ),
        ));
    }
    Ok(KeyRef { kind, name, key })
}

/// Kubernetes object names: RFC 1123 subdomains.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `prSignedBaseLayer.UnmarshalJSON`.
fn parse_signed_base_layer(
    value: &JsonValue,
    path: &str,
) -> Result<SignedBaseLayer, StrictJsonError> {
    let mut t = String::new();
    let mut identity: Option<(&JsonValue, String)> = None;
    paranoid_exact(value, path, &["type", "baseLayerIdentity"], |key, v, p| {
        match key {
            "type" => t = go_string(v, &p)?,
            "baseLayerIdentity" => identity = Some((v, p)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    check_type(&t, "signedBaseLayer", path)?;
    let Some((v, p)) = identity else {
        return Err(StrictJsonError::new(
            path,
            "baseLayerIdentity not specified",
        ));
    };
    Ok(SignedBaseLayer {
        base_layer_identity: parse_reference_match(v, &p)?,
    })
}

/// `prSigstoreSigned.UnmarshalJSON` and `newPRSigstoreSigned`.
fn parse_sigstore_signed(value: &JsonValue, path: &str) -> Result<SigstoreSigned, StrictJsonError> {
    let mut t = String::new();
    let mut key_path = None;
    let mut key_paths = None;
    let mut key_data = None;
    let mut key_datas = None;
    let mut fulcio = None;
    let mut pki = None;
    let mut rekor_path = None;
    let mut rekor_paths = None;
    let mut rekor_data = None;
    let mut rekor_datas = None;
    let mut signed_identity: Option<(&JsonValue, String)> = None;
    paranoid_object(value, path, |key, v, p| {
        match key {
            "type" => t = go_string(v, &p)?,
            "keyPath" => key_path = Some(go_string(v, &p)?),
            "keyPaths" => key_paths = Some(go_string_list(v, &p)?),
            "keyData" => key_data = Some(go_bytes(v, &p)?),
            "keyDatas" => key_datas = Some(go_bytes_list(v, &p)?),
            "fulcio" => fulcio = Some(parse_fulcio(v, &p)?),
            "rekorPublicKeyPath" => rekor_path = Some(go_string(v, &p)?),
            "rekorPublicKeyPaths" => rekor_paths = Some(go_string_list(v, &p)?),
            "rekorPublicKeyData" => rekor_data = Some(go_bytes(v, &p)?),
            "rekorPublicKeyDatas" => rekor_datas = Some(go_bytes_list(v, &p)?),
            "pki" => pki = Some(parse_pki(v, &p)?),
            "signedIdentity" => signed_identity = Some((v, p)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    check_type(&t, "sigstoreSigned", path)?;
    let signed_identity = match signed_identity {
        None => PolicyReferenceMatch::MatchRepoDigestOrExact,
        Some((v, p)) => parse_reference_match(v, &p)?,
    };
    let err = |m: &str| StrictJsonError::new(path, m);

    // The option functions run in this order; the list ones refuse empty lists.
    let non_empty = |list: Option<Option<Vec<String>>>, what: &str| match list {
        None => Ok(None),
        Some(Some(l)) if !l.is_empty() => Ok(Some(l)),
        Some(_) => Err(err(&format!("\"{what}\" contains no entries"))),
    };
    let non_empty_bytes = |list: Option<Option<Vec<Option<Vec<u8>>>>>, what: &str| match list {
        None => Ok(None),
        Some(Some(l)) if !l.is_empty() => Ok(Some(
            l.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>(),
        )),
        Some(_) => Err(err(&format!("\"{what}\" contains no entries"))),
    };
    let key_path = key_path.filter(|p: &String| !p.is_empty());
    let key_paths = non_empty(key_paths, "keyPaths")?;
    let key_data = key_data.flatten();
    let key_datas = non_empty_bytes(key_datas, "keyDatas")?;
    let rekor_path = rekor_path.filter(|p: &String| !p.is_empty());
    let rekor_paths = non_empty(rekor_paths, "rekorPublickeyPaths")?;
    let rekor_data = rekor_data.flatten();
    let rekor_datas = non_empty_bytes(rekor_datas, "rekorPublickeyDatas")?;

    let mut keys = Vec::new();
    keys.extend(key_path.map(SigstoreKeySource::KeyPath));
    keys.extend(key_paths.map(SigstoreKeySource::KeyPaths));
    keys.extend(key_data.map(SigstoreKeySource::KeyData));
    keys.extend(key_datas.map(SigstoreKeySource::KeyDatas));
    keys.extend(fulcio.map(SigstoreKeySource::Fulcio));
    keys.extend(pki.map(SigstoreKeySource::Pki));
    if keys.len() != 1 {
        return Err(err(
            "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified",
        ));
    }
    let keys = keys.remove(0);

    let mut rekor = Vec::new();
    rekor.extend(rekor_path.map(RekorKeys::Path));
    rekor.extend(rekor_paths.map(RekorKeys::Paths));
    rekor.extend(rekor_data.map(RekorKeys::Data));
    rekor.extend(rekor_datas.map(RekorKeys::Datas));
    if rekor.len() > 1 {
        return Err(err(
            "at most one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously",
        ));
    }
    let rekor = rekor.pop();
    if matches!(keys, SigstoreKeySource::Fulcio(_)) && rekor.is_none() {
        return Err(err(
            "At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used",
        ));
    }
    if matches!(keys, SigstoreKeySource::Pki(_)) && rekor.is_some() {
        return Err(err(
            "rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas are not supported for pki",
        ));
    }
    Ok(SigstoreSigned {
        keys,
        rekor,
        signed_identity,
    })
}

/// Picks the one set member of a path/data pair; `None` when neither is set.
fn one_of(
    path: Option<String>,
    data: Option<Vec<u8>>,
    both: &str,
    at: &str,
) -> Result<Option<PathOrData>, StrictJsonError> {
    match (path.filter(|p| !p.is_empty()), data) {
        (Some(_), Some(_)) => Err(StrictJsonError::new(at, both)),
        (Some(p), None) => Ok(Some(PathOrData::Path(p))),
        (None, Some(d)) => Ok(Some(PathOrData::Data(d))),
        (None, None) => Ok(None),
    }
}

/// `prSigstoreSignedFulcio.UnmarshalJSON` and `newPRSigstoreSignedFulcio`.
fn parse_fulcio(value: &JsonValue, path: &str) -> Result<Fulcio, StrictJsonError> {
    let (mut ca_path, mut ca_data, mut issuer, mut email) = (None, None, None, None);
    paranoid_object(value, path, |key, v, p| {
        match key {
            "caPath" => ca_path = Some(go_string(v, &p)?),
            "caData" => ca_data = go_bytes(v, &p)?,
            "oidcIssuer" => issuer = Some(go_string(v, &p)?),
            "subjectEmail" => email = Some(go_string(v, &p)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let ca = one_of(
        ca_path,
        ca_data,
        "caPath and caData cannot be used simultaneously",
        path,
    )?
    .ok_or_else(|| {
        StrictJsonError::new(path, "At least one of caPath and caData must be specified")
    })?;
    let oidc_issuer = issuer.unwrap_or_default();
    if oidc_issuer.is_empty() {
        return Err(StrictJsonError::new(path, "oidcIssuer not specified"));
    }
    let subject_email = email.unwrap_or_default();
    if subject_email.is_empty() {
        return Err(StrictJsonError::new(path, "subjectEmail not specified"));
    }
    Ok(Fulcio {
        ca,
        oidc_issuer,
        subject_email,
    })
}

/// `prSigstoreSignedPKI.UnmarshalJSON` and `newPRSigstoreSignedPKI`.
fn parse_pki(value: &JsonValue, path: &str) -> Result<Pki, StrictJsonError> {
    let (mut roots_path, mut roots_data, mut int_path, mut int_data) = (None, None, None, None);
    let (mut email, mut hostname) = (String::new(), String::new());
    paranoid_object(value, path, |key, v, p| {
        match key {
            "caRootsPath" => roots_path = Some(go_string(v, &p)?),
            "caRootsData" => roots_data = go_bytes(v, &p)?,
            "caIntermediatesPath" => int_path = Some(go_string(v, &p)?),
            "caIntermediatesData" => int_data = go_bytes(v, &p)?,
            "subjectEmail" => email = go_string(v, &p)?,
            "subjectHostname" => hostname = go_string(v, &p)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let ca_roots = one_of(
        roots_path,
        roots_data,
        "caRootsPath and caRootsData cannot be used simultaneously",
        path,
    )?
    .ok_or_else(|| {
        StrictJsonError::new(
            path,
            "At least one of caRootsPath and caRootsData must be specified",
        )
    })?;
    let ca_intermediates = one_of(
        int_path,
        int_data,
        "caIntermediatesPath and caIntermediatesData cannot be used simultaneously",
        path,
    )?;
    if email.is_empty() && hostname.is_empty() {
        return Err(StrictJsonError::new(
            path,
            "At least one of subjectEmail, subjectHostname must be specified",
        ));
    }
    Ok(Pki {
        ca_roots,
        ca_intermediates,
        subject_email: email,
        subject_hostname: hostname,
    })
}

/// `newPolicyReferenceMatchFromJSON` and the matcher constructors.
pub fn parse_reference_match(
    value: &JsonValue,
    path: &str,
) -> Result<PolicyReferenceMatch, StrictJsonError> {
    let t = lenient_type_field(value, path, "prmCommon", "prmType")?;
    let mut found_type = String::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let exact: &[&str] = match t.as_str() {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => &["type"],
        "exactReference" => &["type", "dockerReference"],
        "exactRepository" => &["type", "dockerRepository"],
        "remapIdentity" => &["type", "prefix", "signedPrefix"],
        other => {
            return Err(StrictJsonError::new(
                path,
                format!("Unknown policy reference match type {}", go_quote(other)),
            ));
        }
    };
    paranoid_exact(value, path, exact, |key, v, p| {
        if !exact.contains(&key) {
            return Ok(false);
        }
        let s = go_string(v, &p)?;
        if key == "type" {
            found_type = s;
        } else {
            fields.push((key.to_string(), s));
        }
        Ok(true)
    })?;
    check_type(&found_type, &t, path)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let at = |name: &str| child_path(path, name);
    match t.as_str() {
        "matchExact" => Ok(PolicyReferenceMatch::MatchExact),
        "matchRepoDigestOrExact" => Ok(PolicyReferenceMatch::MatchRepoDigestOrExact),
        "matchRepository" => Ok(PolicyReferenceMatch::MatchRepository),
        "exactReference" => PolicyReferenceMatch::exact_reference(field("dockerReference"))
            .map_err(|m| StrictJsonError::new(&at("dockerReference"), m)),
        "exactRepository" => PolicyReferenceMatch::exact_repository(field("dockerRepository"))
            .map_err(|m| StrictJsonError::new(&at("dockerRepository"), m)),
        _ => {
            let (prefix, signed) = (field("prefix"), field("signedPrefix"));
            validate_remapping_prefix(prefix)
                .map_err(|m| StrictJsonError::new(&at("prefix"), m))?;
            validate_remapping_prefix(signed)
                .map_err(|m| StrictJsonError::new(&at("signedPrefix"), m))?;
            PolicyReferenceMatch::remap_identity(prefix, signed)
                .map_err(|m| StrictJsonError::new(path, m))
        }
    }
}

/// `ParanoidUnmarshalJSONObject`: walks `value`'s members in document
/// order; for each, a duplicate key is an error, then `member` either
/// decodes the value (`Ok(true)`) or does not know the key (`Ok(false)`,
/// `Unknown key "k"`). `member` gets the member's JSON path.
pub(crate) fn paranoid_object<'a>(
    value: &'a JsonValue,
    path: &str,
    mut member: impl FnMut(&'a str, &'a JsonValue, String) -> Result<bool, StrictJsonError>,
) -> Result<(), StrictJsonError> {
    let JsonValue::Object(entries) = value else {
        return Err(not_an_object(value, path));
    };
    let mut seen = HashSet::with_capacity(entries.len());
    for (key, v) in entries {
        let p = child_path(path, key);
        if !seen.insert(key.as_str()) {
            return Err(StrictJsonError::new(
                &p,
                format!("Duplicate key {}", go_quote(key)),
            ));
        }
        if !member(key, v, p.clone())? {
            return Err(StrictJsonError::new(
                &p,
                format!("Unknown key {}", go_quote(key)),
            ));
        }
    }
    Ok(())
}

/// `ParanoidUnmarshalJSONObjectExactFields`: as [`paranoid_object`], and
/// every one of `fields` must be present.
pub(crate) fn paranoid_exact<'a>(
    value: &'a JsonValue,
    path: &str,
    fields: &[&str],
    member: impl FnMut(&'a str, &'a JsonValue, String) -> Result<bool, StrictJsonError>,
) -> Result<(), StrictJsonError> {
    paranoid_object(value, path, member)?;
    if let JsonValue::Object(entries) = value {
        for f in fields {
            if !entries.iter().any(|(k, _)| k == f) {
                return Err(StrictJsonError::new(
                    path,
                    format!("Key {} missing in a JSON object", go_quote(f)),
                ));
            }
        }
    }
    Ok(())
}

/// `JSON object expected, got …`, worded by the shared strict reader.
fn not_an_object(value: &JsonValue, path: &str) -> StrictJsonError {
    match ObjectReader::new(value, path) {
        Err(e) => e,
        Ok(_) => StrictJsonError::new(path, "JSON object expected"),
    }
}

/// Go `[]byte`: `null` is nil (`None`), a string is standard base64 with
/// padding (`\r` and `\n` ignored), and an array of numbers is decoded
/// element by element.
pub(crate) fn go_bytes(value: &JsonValue, path: &str) -> Result<Option<Vec<u8>>, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::String(s) => go_base64(s)
            .map(Some)
            .map_err(|m| StrictJsonError::new(path, m)),
        JsonValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| go_uint8(item, &index_path(path, i)))
            .collect::<Result<Vec<u8>, _>>()
            .map(Some),
        other => Err(cannot_unmarshal(other, path, "[]uint8")),
    }
}

/// Go `[][]byte`; an element `null` is a nil slice.
fn go_bytes_list(
    value: &JsonValue,
    path: &str,
) -> Result<Option<Vec<Option<Vec<u8>>>>, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| go_bytes(item, &index_path(path, i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(cannot_unmarshal(other, path, "[][]uint8")),
    }
}

fn go_uint8(value: &JsonValue, path: &str) -> Result<u8, StrictJsonError> {
    match value {
        JsonValue::Null => Ok(0),
        JsonValue::Number(n) => n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| {
                StrictJsonError::new(
                    path,
                    format!("json: cannot unmarshal number {n} into Go value of type uint8"),
                )
            }),
        other => Err(cannot_unmarshal(other, path, "uint8")),
    }
}

/// `base64.StdEncoding.Decode` as `encoding/json` uses it: padding
/// required, `\r`/`\n` skipped, non-zero trailing bits tolerated.
fn go_base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::alphabet::STANDARD;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let mut stripped = Vec::with_capacity(s.len());
    let mut origin = Vec::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b != b'\r' && b != b'\n' {
            stripped.push(b);
            origin.push(i);
        }
    }
    GO_STD.decode(&stripped).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _) => i,
            base64::DecodeError::InvalidLastSymbol(i, _) => i,
            // Go reports an incomplete or badly padded final quantum at its start.
            _ => (stripped.len().saturating_sub(1) / 4) * 4,
        };
        let at = origin.get(at).copied().unwrap_or(s.len());
        format!("illegal base64 data at input byte {at}")
    })
}

pub use crate::gofmt::go_quote;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Policy, StrictJsonError> {
        Policy::parse(s.as_bytes(), ParseOptions::POLICY_FILE)
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().message
    }

    fn req(s: &str) -> Result<Requirement, StrictJsonError> {
        let v = strictjson::parse(s.as_bytes()).unwrap();
        parse_requirement(&v, "$", ParseOptions::POLICY_FILE)
    }

    fn req_err(s: &str) -> String {
        req(s).unwrap_err().message
    }

    fn k8s_req(s: &str) -> Result<Requirement, StrictJsonError> {
        let v = strictjson::parse(s.as_bytes()).unwrap();
        parse_requirement(&v, "$", ParseOptions::KUBERNETES)
    }

    #[test]
    fn minimal_and_structure() {
        let p = parse(r#"{"default":[{"type":"reject"}]}"#).unwrap();
        assert_eq!(p.default, Some(vec![Requirement::Reject]));
        assert!(p.transports.is_empty());
        let p = parse(
            r#"{"default":[{"type":"insecureAcceptAnything"}],
                "transports":{"docker":{"b.com":[{"type":"reject"}],"a.com":[{"type":"reject"}]},
                              "foo":{"anything goes":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        let docker = p.transport("docker").unwrap();
        // Document order is kept.
        assert_eq!(
            docker
                .scopes
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>(),
            ["b.com", "a.com"]
        );
        assert!(p.transport("foo").is_some());
    }

    #[test]
    fn top_level_errors() {
        assert_eq!(err(r#"{}"#), "Default policy is missing");
        assert_eq!(err(r#"{"transports":{}}"#), "Default policy is missing");
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}],"extra":1}"#),
            "Unknown key \"extra\""
        );
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#),
            "Duplicate key \"default\""
        );
        assert_eq!(err(r#"{"default":[]}"#), EMPTY_LIST);
        assert_eq!(err(r#"{"default":null}"#), EMPTY_LIST);
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}],"transports":null}"#),
            "JSON object expected, got <nil>"
        );
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}],"transports":{"docker":null}}"#),
            "JSON object expected, got <nil>"
        );
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}],"transports":{"docker":{"x":[]}}}"#),
            EMPTY_LIST
        );
        assert_eq!(
            err(r#"{"default":[{"type":"reject"}]} x"#),
            "invalid character 'x' after top-level value"
        );
        assert_eq!(err("null"), "JSON object expected, got <nil>");
        assert_eq!(
            err(r#"{"default":{}}"#),
            "json: cannot unmarshal object into Go value of type []json.RawMessage"
        );
        // Document order decides which error is reported.
        assert_eq!(
            err(r#"{"bogus":1,"default":[],"default":[]}"#),
            "Unknown key \"bogus\""
        );
        assert_eq!(err(r#"{"default":[],"bogus":1}"#), EMPTY_LIST);
    }

    #[test]
    fn error_paths() {
        let e = parse(
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"example.com/ns":[{"type":"reject"},{"type":"nope"}]}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.message, "Unknown policy requirement type \"nope\"");
        assert_eq!(e.path, "$.transports.docker[\"example.com/ns\"][1]");
        let e = parse(r#"{"default":[{"type":"signedBy","keyType":"bogus","keyPath":"/x"}]}"#)
            .unwrap_err();
        assert_eq!(e.path, "$.default[0].keyType");
        let e = parse(r#"{"default":[{"type":"reject","x":1}]}"#).unwrap_err();
        assert_eq!(e.path, "$.default[0].x");
    }

    #[test]
    fn kubernetes_documents_may_omit_default() {
        let p = Policy::parse(
            br#"{"transports":{"docker":{"a.com":[{"type":"reject"}]}}}"#,
            ParseOptions::KUBERNETES,
        )
        .unwrap();
        assert_eq!(p.default, None);
        let p = Policy::parse(br#"{}"#, ParseOptions::KUBERNETES).unwrap();
        assert_eq!(p.default, None);
    }

    #[test]
    fn requirement_types() {
        assert_eq!(req(r#"{"type":"reject"}"#).unwrap(), Requirement::Reject);
        assert_eq!(
            req(r#"{"type":"insecureAcceptAnything"}"#).unwrap(),
            Requirement::InsecureAcceptAnything
        );
        assert_eq!(req_err(r#"{"type":"reject","x":1}"#), "Unknown key \"x\"");
        assert_eq!(
            req_err(r#"{"type":"Reject"}"#),
            "Unknown policy requirement type \"Reject\""
        );
        assert_eq!(
            req_err(r#"{"type":"x\"y"}"#),
            "Unknown policy requirement type \"x\\\"y\""
        );
        assert_eq!(req_err(r#"{}"#), "Unknown policy requirement type \"\"");
        assert_eq!(req_err(r#"null"#), "Unknown policy requirement type \"\"");
        assert_eq!(
            req_err(r#""reject""#),
            "json: cannot unmarshal string into Go value of type signature.prCommon"
        );
        assert_eq!(
            req_err(r#"{"type":1}"#),
            "json: cannot unmarshal number into Go struct field prCommon.type of type signature.prType"
        );
        // The first read of "type" is case-insensitive; the strict one is not.
        assert_eq!(req_err(r#"{"TYPE":"reject"}"#), "Unknown key \"TYPE\"");
        assert_eq!(
            req_err(r#"{"type":"reject","type":"reject"}"#),
            "Duplicate key \"type\""
        );
    }

    #[test]
    fn signed_by_parsing() {
        let r = req(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}"#).unwrap();
        assert_eq!(
            r,
            Requirement::SignedBy(SignedBy {
                key_type: KeyType::GpgKeys,
                keys: KeySource::Path("/k".into()),
                signed_identity: PolicyReferenceMatch::MatchRepoDigestOrExact,
            })
        );
        let r = req(r#"{"type":"signedBy","keyType":"GPGKeys","keyPaths":[]}"#).unwrap();
        assert!(
            matches!(r, Requirement::SignedBy(SignedBy { keys: KeySource::Paths(ref p), .. }) if p.is_empty())
        );
        let r = req(r#"{"type":"signedBy","keyType":"GPGKeys","keyData":""}"#).unwrap();
        assert!(
            matches!(r, Requirement::SignedBy(SignedBy { keys: KeySource::Data(ref d), .. }) if d.is_empty())
        );
        let r = req(
            "{\"type\":\"signedBy\",\"keyType\":\"GPGKeys\",\"keyData\":\"bm9u\\r\\nc2Vuc2U=\"}",
        )
        .unwrap();
        assert!(
            matches!(r, Requirement::SignedBy(SignedBy { keys: KeySource::Data(ref d), .. }) if d == b"nonsense")
        );
        for kt in ["signedByGPGKeys", "X509Certificates", "signedByX509CAs"] {
            let r = req(&format!(
                r#"{{"type":"signedBy","keyType":"{kt}","keyPath":"/k"}}"#
            ))
            .unwrap();
            let Requirement::SignedBy(sb) = r else {
                panic!()
            };
            assert_eq!(sb.key_type.as_str(), kt);
        }
    }

    #[test]
    fn signed_by_errors() {
        let none =
            "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present";
        let more =
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present";
        let not_set = "exactly one of keyPath, keyPaths and keyData must be specified";
        assert_eq!(req_err(r#"{"type":"signedBy","keyType":"GPGKeys"}"#), none);
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":""}"#),
            more
        );
        assert_eq!(
            req_err(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyPaths":["/b"],"keyData":""}"#
            ),
            more
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":""}"#),
            not_set
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":null}"#),
            not_set
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPaths":null}"#),
            not_set
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyData":null}"#),
            not_set
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyPath":"/k"}"#),
            "invalid keyType \"\""
        );
        // The key sources are checked before the key type.
        assert_eq!(req_err(r#"{"type":"signedBy"}"#), none);
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"pgp","keyPath":"/k"}"#),
            "Unrecognized keyType value \"pgp\""
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":null,"keyPath":"/k"}"#),
            "Unrecognized keyType value \"\""
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":1,"keyPath":"/k"}"#),
            "json: cannot unmarshal number into Go value of type string"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPaths":"/k"}"#),
            "json: cannot unmarshal string into Go value of type []string"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyData":"!!!!"}"#),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyData":"bm9uc2Vuc2U"}"#),
            "illegal base64 data at input byte 8"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyData":1}"#),
            "json: cannot unmarshal number into Go value of type []uint8"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyRef":{}}"#),
            "Unknown key \"keyRef\""
        );
        assert_eq!(
            req_err(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":null}"#
            ),
            "Unknown policy reference match type \"\""
        );
        assert_eq!(
            req_err(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","KeyPath":"/k"}"#),
            "Unknown key \"KeyPath\""
        );
    }

    #[test]
    fn key_ref_extension() {
        let r = k8s_req(
            r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"secret":"signing-keys","key":"pub.gpg"}}"#,
        )
        .unwrap();
        let Requirement::SignedBy(sb) = r else {
            panic!()
        };
        assert_eq!(
            sb.keys,
            KeySource::Ref(KeyRef {
                kind: KeyRefKind::Secret,
                name: "signing-keys".into(),
                key: "pub.gpg".into()
            })
        );
        let e = |s: &str| k8s_req(s).unwrap_err().message;
        assert_eq!(
            e(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyRef":{"configMap":"a","key":"b"}}"#
            ),
            "Exactly one of keyPath, keyPaths, keyData and keyRef must be specified, more than one present"
        );
        assert_eq!(
            e(r#"{"type":"signedBy","keyType":"GPGKeys"}"#),
            "Exactly one of keyPath, keyPaths, keyData and keyRef must be specified, none of them present"
        );
        // Without keyRef the messages are c/image's.
        assert_eq!(
            e(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyData":""}"#),
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present"
        );
        assert_eq!(
            e(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"a","secret":"b","key":"k"}}"#
            ),
            "keyRef: exactly one of configMap and secret must be specified"
        );
        assert_eq!(
            e(r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"a"}}"#),
            "keyRef: key must be specified"
        );
        assert_eq!(
            e(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"Bad_Name","key":"k"}}"#
            ),
            "keyRef: invalid configMap name \"Bad_Name\": must be a lower-case RFC 1123 subdomain"
        );
        assert!(
            e(r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"a","key":"a/b"}}"#)
                .starts_with("keyRef: invalid key \"a/b\"")
        );
        assert_eq!(
            e(
                r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"a","key":"k","x":1}}"#
            ),
            "Unknown key \"x\""
        );
        assert_eq!(
            e(r#"{"type":"signedBy","keyType":"GPGKeys","keyRef":null}"#),
            "JSON object expected, got <nil>"
        );
    }

    #[test]
    fn reference_matchers() {
        let m = |s: &str| {
            let v = strictjson::parse(s.as_bytes()).unwrap();
            parse_reference_match(&v, "$.signedIdentity")
        };
        assert_eq!(
            m(r#"{"type":"matchExact"}"#).unwrap(),
            PolicyReferenceMatch::MatchExact
        );
        assert_eq!(
            m(r#"{"type":"matchRepository"}"#).unwrap(),
            PolicyReferenceMatch::MatchRepository
        );
        assert_eq!(
            m(r#"{"type":"matchExact","x":1}"#).unwrap_err().message,
            "Unknown key \"x\""
        );
        assert_eq!(
            m(r#"{"type":"exactReference"}"#).unwrap_err().message,
            "Key \"dockerReference\" missing in a JSON object"
        );
        let e = m(r#"{"type":"exactReference","dockerReference":"busybox"}"#).unwrap_err();
        assert_eq!(
            e.message,
            "dockerReference \"busybox\" contains neither a tag nor digest"
        );
        assert_eq!(e.path, "$.signedIdentity.dockerReference");
        assert_eq!(
            m(r#"{"type":"exactReference","dockerReference":"UPPER:x"}"#)
                .unwrap_err()
                .message,
            "Invalid format of dockerReference \"UPPER:x\": invalid reference format: repository name must be lowercase"
        );
        assert!(m(r#"{"type":"exactRepository","dockerRepository":"busybox"}"#).is_ok());
        let e = m(r#"{"type":"remapIdentity","prefix":"example.com","signedPrefix":"ex@mple"}"#)
            .unwrap_err();
        assert_eq!(e.message, "prefix \"ex@mple\" is not valid");
        assert_eq!(e.path, "$.signedIdentity.signedPrefix");
        let e = m(r#"{"type":"remapIdentity","prefix":"ex@mple","signedPrefix":"example.com"}"#)
            .unwrap_err();
        assert_eq!(e.path, "$.signedIdentity.prefix");
        assert_eq!(
            m(r#"{"type":"nope"}"#).unwrap_err().message,
            "Unknown policy reference match type \"nope\""
        );
        assert_eq!(
            m(r#"[]"#).unwrap_err().message,
            "json: cannot unmarshal array into Go value of type signature.prmCommon"
        );
    }

    #[test]
    fn signed_base_layer() {
        assert!(matches!(
            req(r#"{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchRepository"}}"#)
                .unwrap(),
            Requirement::SignedBaseLayer(_)
        ));
        assert_eq!(
            req_err(r#"{"type":"signedBaseLayer"}"#),
            "Key \"baseLayerIdentity\" missing in a JSON object"
        );
        assert_eq!(
            req_err(r#"{"type":"signedBaseLayer","baseLayerIdentity":null}"#),
            "Unknown policy reference match type \"\""
        );
    }

    #[test]
    fn sigstore_signed() {
        let ok = |s: &str| req(s).unwrap();
        let e = |s: &str| req_err(s);
        assert!(matches!(
            ok(r#"{"type":"sigstoreSigned","keyData":"bm9uc2Vuc2U="}"#),
            Requirement::SigstoreSigned(SigstoreSigned {
                keys: SigstoreKeySource::KeyData(_),
                rekor: None,
                ..
            })
        ));
        let exactly = "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified";
        assert_eq!(e(r#"{"type":"sigstoreSigned"}"#), exactly);
        assert_eq!(e(r#"{"type":"sigstoreSigned","keyPath":""}"#), exactly);
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","keyPath":"/a","keyData":""}"#),
            exactly
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","keyPaths":[]}"#),
            "\"keyPaths\" contains no entries"
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","keyDatas":null}"#),
            "\"keyDatas\" contains no entries"
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","keyPath":"/a","rekorPublicKeyPaths":[]}"#),
            "\"rekorPublickeyPaths\" contains no entries"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","keyPath":"/a","rekorPublicKeyPath":"/r","rekorPublicKeyData":""}"#
            ),
            "at most one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously"
        );
        let fulcio = r#""fulcio":{"caPath":"/ca","oidcIssuer":"https://i","subjectEmail":"a@b"}"#;
        assert_eq!(
            e(&format!(r#"{{"type":"sigstoreSigned",{fulcio}}}"#)),
            "At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used"
        );
        assert!(matches!(
            ok(&format!(
                r#"{{"type":"sigstoreSigned",{fulcio},"rekorPublicKeyPath":"/r"}}"#
            )),
            Requirement::SigstoreSigned(SigstoreSigned {
                keys: SigstoreKeySource::Fulcio(_),
                rekor: Some(RekorKeys::Path(_)),
                ..
            })
        ));
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","caData":"","oidcIssuer":"i","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}"#
            ),
            "caPath and caData cannot be used simultaneously"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","fulcio":{"oidcIssuer":"i","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}"#
            ),
            "At least one of caPath and caData must be specified"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}"#
            ),
            "oidcIssuer not specified"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","oidcIssuer":"i"},"rekorPublicKeyPath":"/r"}"#
            ),
            "subjectEmail not specified"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","oidcIssuer":"i","subjectEmail":"e","x":1},"rekorPublicKeyPath":"/r"}"#
            ),
            "Unknown key \"x\""
        );
        let pki = r#""pki":{"caRootsPath":"/r","subjectHostname":"h"}"#;
        assert!(matches!(
            ok(&format!(r#"{{"type":"sigstoreSigned",{pki}}}"#)),
            Requirement::SigstoreSigned(SigstoreSigned {
                keys: SigstoreKeySource::Pki(_),
                ..
            })
        ));
        assert_eq!(
            e(&format!(
                r#"{{"type":"sigstoreSigned",{pki},"rekorPublicKeyPath":"/r"}}"#
            )),
            "rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas are not supported for pki"
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","pki":{"caRootsPath":"/r"}}"#),
            "At least one of subjectEmail, subjectHostname must be specified"
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","pki":{"subjectEmail":"e"}}"#),
            "At least one of caRootsPath and caRootsData must be specified"
        );
        assert_eq!(
            e(
                r#"{"type":"sigstoreSigned","pki":{"caRootsPath":"/r","caIntermediatesPath":"/i","caIntermediatesData":"","subjectEmail":"e"}}"#
            ),
            "caIntermediatesPath and caIntermediatesData cannot be used simultaneously"
        );
        assert_eq!(
            e(r#"{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"x"}}"#),
            "Unknown policy reference match type \"x\""
        );
    }

    #[test]
    fn go_helpers() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(go_quote("\u{200b}"), "\"\\u200b\"");
        assert_eq!(go_base64("YQ==").unwrap(), b"a");
        assert_eq!(go_base64("YR==").unwrap(), b"a");
        assert_eq!(go_base64("").unwrap(), b"");
        assert!(go_base64("YQ").is_err());
        let v = strictjson::parse(b"[110, 111]").unwrap();
        assert_eq!(go_bytes(&v, "$").unwrap(), Some(b"no".to_vec()));
        let v = strictjson::parse(b"[300]").unwrap();
        assert_eq!(
            go_bytes(&v, "$").unwrap_err().message,
            "json: cannot unmarshal number 300 into Go value of type uint8"
        );
    }

    #[test]
    fn to_json_round_trips() {
        let text = r#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "a.com":[{"type":"signedBy","keyType":"GPGKeys","keyData":"bm9uc2Vuc2U=","signedIdentity":{"type":"remapIdentity","prefix":"a.com","signedPrefix":"b.com"}}],
            "b.com":[{"type":"signedBy","keyType":"signedByGPGKeys","keyPaths":["/a","/b"]},{"type":"insecureAcceptAnything"}],
            "c.com":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"exactRepository","dockerRepository":"x.com/y"}}],
            "d.com":[{"type":"sigstoreSigned","pki":{"caRootsData":"bm9u","caIntermediatesPath":"/i","subjectEmail":"e"}}],
            "e.com":[{"type":"sigstoreSigned","fulcio":{"caData":"bm9u","oidcIssuer":"i","subjectEmail":"e"},"rekorPublicKeyDatas":["bm9u"]}]}}}"#;
        let p = parse(text).unwrap();
        let again = serde_json::to_vec(&p.to_json()).unwrap();
        assert_eq!(Policy::parse(&again, ParseOptions::POLICY_FILE).unwrap(), p);
        let k = Policy::parse(
            br#"{"transports":{"docker":{"a.com":[{"type":"signedBy","keyType":"GPGKeys","keyRef":{"configMap":"k","key":"a.gpg"}}]}}}"#,
            ParseOptions::KUBERNETES,
        )
        .unwrap();
        let again = serde_json::to_vec(&k.to_json()).unwrap();
        assert_eq!(Policy::parse(&again, ParseOptions::KUBERNETES).unwrap(), k);
    }
}
