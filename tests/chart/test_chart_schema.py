"""values.schema.json accepts every documented value set and rejects wrong
types, invalid enum values, unknown keys and malformed policy documents
before anything reaches the cluster (Helm checks it on install, upgrade,
template and lint)."""

from __future__ import annotations

import json

import helm_python as helm
import pytest
from conftest import CHART, NAMESPACE, VALUE_SETS, render_files


def schema_error(values: dict) -> str | None:
    """The schema's complaint about the values merged over the defaults, or None."""
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.validate_schema(chart.merge_values(values))
        except helm.HelmValuesError as e:
            return str(e)
    return None


def test_schema_is_valid_json_schema():
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


def test_accepts_every_value_set(value_set):
    assert schema_error(VALUE_SETS[value_set]) is None


POLICY = {"transports": {"docker": {"registry.example.com": [{"type": "reject"}]}}}

BAD_VALUES = [
    ("replica count as text", {"replicaCount": "three"}, "/replicaCount"),
    ("no replicas", {"replicaCount": 0}, "/replicaCount"),
    ("failurePolicy in lower case", {"webhook": {"failurePolicy": "fail"}}, "/webhook/failurePolicy"),
    ("timeout above the API maximum", {"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
    ("timeout as text", {"webhook": {"timeoutSeconds": "10s"}}, "/webhook/timeoutSeconds"),
    ("unknown workload kind", {"webhook": {"workloadKinds": ["Deployments"]}}, "/webhook/workloadKinds/0"),
    ("unknown mutation kind", {"mutation": {"kinds": ["Pods"]}}, "/mutation/kinds/0"),
    ("mutation without kinds", {"mutation": {"kinds": []}}, "/mutation/kinds"),
    ("mutation flag as text", {"mutation": {"enabled": "yes"}}, "/mutation/enabled"),
    ("misspelt top-level key", {"certmanager": {"enabled": True}}, "certmanager"),
    ("misspelt nested key", {"certManager": {"enable": True}}, "enable"),
    ("issuer kind", {"certManager": {"issuerRef": {"name": "x", "kind": "Issuers"}}}, "/certManager/issuerRef/kind"),
    ("duration without unit", {"admission": {"digestCacheTTL": "60"}}, "/admission/digestCacheTTL"),
    ("duration in words", {"admission": {"verdictCacheTTL": "10 minutes"}}, "/admission/verdictCacheTTL"),
    ("platform without arch", {"admission": {"platforms": ["linux"]}}, "/admission/platforms/0"),
    ("short digest", {"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ("pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("spread mode", {"topologySpread": {"whenUnsatisfiable": "Never"}}, "/topologySpread/whenUnsatisfiable"),
    ("policy mode", {"clusterImagePolicies": {"p": {"mode": "Enforcing", "policy": POLICY}}}, "/clusterImagePolicies/p/mode"),
    ("policy without a document", {"clusterImagePolicies": {"p": {"mode": "Warn"}}}, "policy"),
    ("policy name not a DNS name", {"clusterImagePolicies": {"Bad_Name": {"policy": POLICY}}}, "Bad_Name"),
    (
        "empty requirement list",
        {"clusterImagePolicies": {"p": {"policy": {"default": []}}}},
        "/clusterImagePolicies/p/policy/default",
    ),
    (
        "unknown requirement type",
        {"clusterImagePolicies": {"p": {"policy": {"default": [{"type": "signedby"}]}}}},
        "/clusterImagePolicies/p/policy/default/0/type",
    ),
    (
        "unknown policy.json key",
        {"clusterImagePolicies": {"p": {"policy": {"defaults": [{"type": "reject"}]}}}},
        "defaults",
    ),
    (
        "unknown registries.d key",
        {"clusterImagePolicies": {"p": {"policy": POLICY, "lookaside": {"default_docker": {}}}}},
        "default_docker",
    ),
    ("armoured key that is not one", {"trustedKeys": {"armored": {"k.asc": "hello"}}}, "/trustedKeys/armored/k.asc"),
    ("service port out of range", {"service": {"port": 70000}}, "/service/port"),
]


@pytest.mark.parametrize("values,where", [(v, w) for _, v, w in BAD_VALUES], ids=[n for n, _, _ in BAD_VALUES])
def test_rejects_bad_values(values, where):
    error = schema_error(values)
    assert error is not None, "accepted"
    assert where in error, error


def test_render_refuses_values_the_schema_rejects():
    with pytest.raises(helm.HelmValuesError, match="/webhook/failurePolicy"):
        render_files({"webhook": {"failurePolicy": "Sometimes"}})


def test_lint_reports_values_the_schema_rejects():
    report = helm.lint(str(CHART), {"replicaCount": "three"}, namespace=NAMESPACE)
    assert any("/replicaCount" in e for e in report["errors"] + [m["error"] for m in report["messages"]])


def test_template_guards_what_the_schema_cannot():
    # A service account that is not created must be named.
    with pytest.raises(helm.HelmRenderError, match="serviceAccount.name is required"):
        render_files({"serviceAccount": {"create": False}})
