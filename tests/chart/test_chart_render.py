"""The chart lints, renders under every value set, and every rendered object
is valid: Kubernetes objects against the Kubernetes 1.33 schemas (strict:
unknown fields are errors), imagegate's own custom resources against the
openAPIV3Schema of its CRDs."""

from __future__ import annotations

import functools
import json

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml
from conftest import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    VALUE_SETS,
    find,
    imagegate_binary,
    notes,
    objects_of,
    one,
    render_files,
    rendered,
    run,
    strip_meta,
)

# The schema files are large; kubernetes-validate reads them on every call.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

# Kinds of other projects' CRDs, which no offline schema describes; the
# tests below check the fields the chart sets on them.
THIRD_PARTY_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of the chart's CRDs."""
    out = {}
    for crd in yaml.safe_load_all((CHART / "crds" / "imagegate.dev.yaml").read_text()):
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", crd["spec"]["names"]["kind"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return out


def validate_custom_resource(obj: dict, schema: dict) -> None:
    """Validates a custom resource as the API server would check its
    structural schema: the body against openAPIV3Schema, with
    `nullable` honoured and the metadata left to the API server."""

    def to_jsonschema(node):
        if isinstance(node, dict):
            node = {k: to_jsonschema(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            return node
        if isinstance(node, list):
            return [to_jsonschema(v) for v in node]
        return node

    body = {k: v for k, v in strip_meta(obj).items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.Draft7Validator(to_jsonschema(schema)).validate(body)


def test_crds_in_chart_equal_the_repository_crds():
    # The chart installs crds/ verbatim; they must be the generated ones.
    chart_crds = (CHART / "crds" / "imagegate.dev.yaml").read_bytes()
    repo_crds = (ROOT / "crds" / "imagegate.dev.yaml").read_bytes()
    assert chart_crds == repo_crds, (
        "charts/imagegate/crds/imagegate.dev.yaml differs from crds/imagegate.dev.yaml: "
        "copy it (cp crds/imagegate.dev.yaml charts/imagegate/crds/)"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["imagegate.dev.yaml"]


def test_crds_are_valid_kubernetes_objects():
    for crd in yaml.safe_load_all((CHART / "crds" / "imagegate.dev.yaml").read_text()):
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)


def test_lint_default_values_strict():
    report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_lint_every_value_set(value_set):
    report = helm.lint(str(CHART), VALUE_SETS[value_set], namespace=NAMESPACE)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 3] == []


def test_every_rendered_object_validates(value_set):
    schemas = crd_schemas()
    objs = rendered(value_set)
    assert objs, "nothing rendered"
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        where = f"{value_set}: {obj['__template__']}: {obj['kind']}/{obj['metadata']['name']}"
        if key in schemas:
            try:
                validate_custom_resource(obj, schemas[key])
            except jsonschema.ValidationError as e:
                pytest.fail(f"{where}: {e.message} at {list(e.absolute_path)}")
        elif key in THIRD_PARTY_KINDS:
            assert obj["metadata"].get("namespace") == NAMESPACE, where
            assert isinstance(obj.get("spec"), dict), where
        else:
            try:
                kubernetes_validate.validate(strip_meta(obj), KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")


def test_namespaced_objects_are_in_the_release_namespace(value_set):
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ClusterImagePolicy",
    }
    for obj in rendered(value_set):
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["kind"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_rendering_is_deterministic(value_set):
    # No random certificate, no timestamp: GitOps tools see no change
    # between two renders of the same values.
    first = render_files(VALUE_SETS[value_set])
    second = render_files(VALUE_SETS[value_set])
    assert first == second
    text = "\n".join(first.values())
    for marker in ("BEGIN CERTIFICATE", "PRIVATE KEY"):
        assert marker not in text, f"{value_set}: rendered output contains {marker!r}"
    # The caBundle is filled in the cluster; a value in the manifest would
    # be reset by every upgrade or sync.
    for obj in objects_of(first):
        for webhook in obj.get("webhooks", []):
            assert "caBundle" not in webhook["clientConfig"], obj["kind"]


def test_default_render_has_the_expected_objects():
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered("default"))
    assert kinds == sorted(
        [
            ("ClusterRole", "imagegate"),
            ("ClusterRole", "imagegate-cleanup"),
            ("ClusterRoleBinding", "imagegate"),
            ("ClusterRoleBinding", "imagegate-cleanup"),
            ("Deployment", "imagegate"),
            ("Job", "imagegate-cleanup"),
            ("MutatingWebhookConfiguration", "imagegate"),
            ("PodDisruptionBudget", "imagegate"),
            ("Role", "imagegate"),
            ("Role", "imagegate-cleanup"),
            ("RoleBinding", "imagegate"),
            ("RoleBinding", "imagegate-cleanup"),
            ("Secret", "imagegate-tls"),
            ("Service", "imagegate"),
            ("ServiceAccount", "imagegate"),
            ("ServiceAccount", "imagegate-cleanup"),
            ("ValidatingWebhookConfiguration", "imagegate"),
        ]
    )


def test_release_name_is_used_as_prefix():
    files = render_files({}, name="prod", namespace="security")
    objs = [o for o in yaml.safe_load_all("\n---\n".join(v for k, v in files.items() if k.endswith(".yaml"))) if o]
    deployment = one(objs, "Deployment")
    assert deployment["metadata"]["name"] == "prod-imagegate"
    webhook = one(objs, "ValidatingWebhookConfiguration")
    assert webhook["webhooks"][0]["clientConfig"]["service"] == {
        "name": "prod-imagegate",
        "namespace": "security",
        "path": "/validate",
        "port": 443,
    }


def test_cert_manager_resources():
    objs = rendered("cert-manager")
    assert not find(objs, "Secret"), "cert-manager writes the TLS Secret, the chart must not"
    issuers = {o["metadata"]["name"]: o["spec"] for o in find(objs, "Issuer")}
    assert issuers == {
        "imagegate-selfsigned": {"selfSigned": {}},
        "imagegate-ca": {"ca": {"secretName": "imagegate-ca"}},
    }
    ca = one(objs, "Certificate", "imagegate-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"]["name"] == "imagegate-selfsigned"
    serving = one(objs, "Certificate", "imagegate-serving")
    assert serving["spec"]["secretName"] == "imagegate-tls"
    assert serving["spec"]["issuerRef"] == {"name": "imagegate-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert serving["spec"]["dnsNames"] == [
        f"imagegate.{NAMESPACE}.svc",
        f"imagegate.{NAMESPACE}.svc.cluster.local",
    ]
    assert "server auth" in serving["spec"]["usages"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        webhook = one(objs, kind)
        assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/imagegate-serving"
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--tls-cert=/etc/imagegate/tls/tls.crt" in container["args"]
    assert "--tls-key=/etc/imagegate/tls/tls.key" in container["args"]
    assert not [a for a in container["args"] if a.startswith(("--cert-secret", "--webhook-name"))]
    volumes = {v["name"]: v for v in one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "imagegate-tls"


def test_cert_manager_with_an_existing_issuer():
    objs = rendered("cert-manager-cluster-issuer")
    assert not find(objs, "Issuer")
    assert [c["metadata"]["name"] for c in find(objs, "Certificate")] == ["imagegate-serving"]
    serving = one(objs, "Certificate")
    assert serving["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_self_managed_certificates():
    objs = rendered("default")
    secret = one(objs, "Secret", "imagegate-tls")
    # Empty: imagegate fills it; data in the manifest would be reset by upgrades.
    assert "data" not in secret and "stringData" not in secret
    assert secret["type"] == "Opaque"
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cert-secret=imagegate-tls" in args
    assert "--webhook-name=imagegate" in args
    assert not find(objs, "Certificate")


def test_network_policy_and_service_monitor():
    objs = rendered("netpol-monitoring")
    policy = one(objs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "imagegate"
    webhook_in, metrics_in = policy["ingress"][:2]
    assert webhook_in["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert webhook_in["from"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert metrics_in["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_in["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    assert [(53, "TCP"), (53, "UDP")] in egress_ports
    assert [(443, "TCP"), (6443, "TCP")] in egress_ports
    assert [(80, "TCP"), (443, "TCP")] in egress_ports
    api_rule = policy["egress"][1]
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]

    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "imagegate",
        "app.kubernetes.io/instance": "imagegate",
    }
    service = one(objs, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"https": "https", "metrics": "metrics"}


def test_cluster_image_policies_render_verbatim():
    values = VALUE_SETS["policies"]
    objs = rendered("policies")
    policies = {o["metadata"]["name"]: o for o in find(objs, "ClusterImagePolicy")}
    assert sorted(policies) == sorted(values["clusterImagePolicies"])
    for name, doc in values["clusterImagePolicies"].items():
        spec = policies[name]["spec"]
        assert spec["policy"] == doc["policy"], "the policy document must be carried verbatim"
        assert spec["mode"] == doc.get("mode", "Enforce")
        assert spec.get("lookaside") == doc.get("lookaside")
        assert "namespace" not in policies[name]["metadata"]
    example = policies["registry-example-apps"]["spec"]
    requirement = example["policy"]["transports"]["docker"]["registry.example.com/apps"][0]
    assert requirement["keyRef"] == {"configMap": "imagegate-trusted-keys", "key": "release.asc"}
    assert example["lookaside"]["docker"]["registry.example.com"]["lookaside"].startswith("https://")
    keys = one(objs, "ConfigMap", "imagegate-trusted-keys")
    assert keys["data"]["release.asc"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    assert keys["data"]["release.asc"].rstrip().endswith("-----END PGP PUBLIC KEY BLOCK-----")


def test_mode_defaults_to_enforce():
    values = {"clusterImagePolicies": {"strict": {"policy": {"default": [{"type": "reject"}]}}}}
    objs = [o for o in yaml.safe_load_all(render_files(values)["imagegate/templates/clusterimagepolicies.yaml"]) if o]
    assert objs[0]["spec"] == {"mode": "Enforce", "policy": {"default": [{"type": "reject"}]}}


def test_binary_keys_render_as_binary_data():
    keys = one(rendered("everything"), "ConfigMap", "imagegate-trusted-keys")
    assert keys["binaryData"] == {"release.gpg": VALUE_SETS["everything"]["trustedKeys"]["binary"]["release.gpg"]}
    assert "data" not in keys


def test_rendered_policies_pass_imagegates_strict_parser(tmp_path):
    """Each rendered spec.policy through `imagegate policy lint
    --allow-missing-default`, the parser the webhook uses. Needs a built
    binary whose lint works (the test checks that on a known-good file)."""
    binary = imagegate_binary()
    if binary is None:
        pytest.skip("set IMAGEGATE_BIN to a built imagegate binary to run this check")
    probe = tmp_path / "probe.json"
    probe.write_text('{"default":[{"type":"reject"}]}')
    if run([str(binary), "policy", "lint", str(probe)]).returncode != 0:
        pytest.skip("this imagegate build has no working `policy lint` yet")
    bad = tmp_path / "bad.json"
    bad.write_text('{"default":[]}')
    assert run([str(binary), "policy", "lint", str(bad)]).returncode != 0, "lint accepts an empty requirement list"
    checked = 0
    for value_set in VALUE_SETS:
        for obj in find(rendered(value_set), "ClusterImagePolicy"):
            path = tmp_path / f"{value_set}-{obj['metadata']['name']}.json"
            path.write_text(json.dumps(obj["spec"]["policy"]))
            result = run([str(binary), "policy", "lint", "--allow-missing-default", str(path)])
            assert result.returncode == 0, f"{value_set}/{obj['metadata']['name']}: {result.stdout}{result.stderr}"
            checked += 1
    assert checked >= 2


def test_notes_tell_how_to_check_it_works(value_set):
    text = notes(value_set)
    assert "rollout status deployment/imagegate" in text
    assert "--dry-run=server" in text
    assert "caBundle" in text
    assert "imagegate.dev/ignore=true" in text
