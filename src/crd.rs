//! The policy documents as Kubernetes resources (DESIGN decision 2):
//! cluster-scoped `ClusterImagePolicy` and namespaced `ImagePolicy`, group
//! `imagegate.dev`, version `v1alpha1`. `crds/` is generated from these
//! types (`imagegate crd`), and a test fails when it drifts.
//!
//! `spec.policy` is a containers-policy.json document kept verbatim: the
//! API server cannot check c/image's rules (duplicate keys, exact field
//! sets), so the schema only asks for an object and imagegate's strict
//! parser is the validator, reporting into `status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::Mode;

/// A cluster-wide containers-policy.json document, with the
/// containers-registries.d configuration telling where signatures are.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "imagegate.dev",
    version = "v1alpha1",
    kind = "ClusterImagePolicy",
    status = "PolicyStatus",
    shortname = "cip",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterImagePolicySpec {
    /// A containers-policy.json document, verbatim. `default` may be
    /// omitted: the document then has no opinion on images outside its scopes.
    #[schemars(schema_with = "any_object")]
    pub policy: serde_json::Value,
    /// A containers-registries.d document (`default-docker`, `docker`
    /// scopes with `lookaside`/`sigstore` URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_any_object")]
    pub lookaside: Option<serde_json::Value>,
    /// Enforce (deny), Warn (admit with a warning) or Audit (admit, record only).
    #[serde(default)]
    pub mode: Mode,
}

/// A namespaced containers-policy.json document: it applies to the
/// workloads of its namespace, in addition to every ClusterImagePolicy (a
/// namespace can tighten, never loosen, what the cluster enforces).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "imagegate.dev",
    version = "v1alpha1",
    kind = "ImagePolicy",
    namespaced,
    status = "PolicyStatus",
    shortname = "ip",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// A containers-policy.json document, verbatim (`default` optional).
    #[schemars(schema_with = "any_object")]
    pub policy: serde_json::Value,
    /// Enforce (deny), Warn (admit with a warning) or Audit (admit, record only).
    #[serde(default)]
    pub mode: Mode,
}

/// What imagegate found in a document.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The generation being enforced (the last valid one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The keys the document trusts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<TrustedKey>,
    /// Scopes that can never match, keys close to expiry, requirements that always deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A status condition (the shape of `metav1.Condition`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A trusted key as reported in status.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKey {
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn optional_any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The CustomResourceDefinitions, as multi-document YAML (`imagegate crd`).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [ClusterImagePolicy::crd(), ImagePolicy::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).expect("CRDs serialise"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_yaml_has_both_kinds() {
        let y = crd_yaml();
        assert!(y.contains("clusterimagepolicies.imagegate.dev"));
        assert!(y.contains("imagepolicies.imagegate.dev"));
        assert!(y.contains("x-kubernetes-preserve-unknown-fields"));
    }

    #[test]
    fn mode_defaults_to_enforce() {
        let spec: ImagePolicySpec =
            serde_json::from_str(r#"{"policy":{"default":[{"type":"reject"}]}}"#).unwrap();
        assert_eq!(spec.mode, Mode::Enforce);
        assert!(
            serde_json::from_str::<ImagePolicySpec>(r#"{"policy":{},"mode":"Bogus"}"#).is_err()
        );
    }
}
