"""The security-relevant fields of the rendered chart: webhook failure
behaviour and scope, the restricted pod security context, least-privilege
RBAC, and the HA settings that keep a fail-closed webhook available."""

from __future__ import annotations

import re

import pytest
from conftest import (
    CHART,
    NAMESPACE,
    VALUE_SETS,
    find,
    one,
    pod_specs,
    rendered,
)

WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
ALWAYS_EXCLUDED = ["kube-system", "kube-node-lease", "kube-public", NAMESPACE]


def webhooks(objs: list[dict]) -> list[tuple[str, dict]]:
    return [(o["kind"], w) for o in objs if o["kind"] in WEBHOOK_KINDS for w in o["webhooks"]]


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(name: str, **extra: str) -> dict[str, str]:
    # The API server sets kubernetes.io/metadata.name on every namespace.
    return {"kubernetes.io/metadata.name": name, **extra}


def rule_resources(webhook: dict) -> set[tuple[str, str]]:
    out = set()
    for rule in webhook["rules"]:
        assert rule["apiVersions"] == ["v1"]
        assert rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["scope"] == "Namespaced"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.add((group, resource))
    return out


ALL_WORKLOADS = {
    ("", "pods"),
    ("", "pods/ephemeralcontainers"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}


# --- webhooks ---------------------------------------------------------------


def test_webhooks_fail_closed_with_a_short_timeout(value_set):
    expected_timeout = VALUE_SETS[value_set].get("webhook", {}).get("timeoutSeconds", 10)
    hooks = webhooks(rendered(value_set))
    assert hooks
    for kind, webhook in hooks:
        assert webhook["failurePolicy"] == "Fail", kind
        assert webhook["timeoutSeconds"] == expected_timeout, kind
        assert webhook["sideEffects"] == "None", kind
        assert webhook["admissionReviewVersions"] == ["v1"], kind
        assert webhook["matchPolicy"] == "Equivalent", kind
        service = webhook["clientConfig"]["service"]
        assert service["namespace"] == NAMESPACE and service["name"] == "imagegate"
        assert service["path"] == {"ValidatingWebhookConfiguration": "/validate", "MutatingWebhookConfiguration": "/mutate"}[kind]


def test_admission_budget_is_one_second_under_the_webhook_timeout(value_set):
    timeout = VALUE_SETS[value_set].get("webhook", {}).get("timeoutSeconds", 10)
    args = one(rendered(value_set), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--admission-timeout={timeout - 1}s" in args


def test_namespace_selector_excludes_system_release_and_ignored_namespaces(value_set):
    for kind, webhook in webhooks(rendered(value_set)):
        selector = webhook["namespaceSelector"]
        for ns in ALWAYS_EXCLUDED:
            assert not selector_matches(selector, namespace_labels(ns)), f"{kind} checks {ns}"
        assert not selector_matches(selector, namespace_labels("team-a", **{"imagegate.dev/ignore": "true", "team": "a"}))
        # Anything else is checked (opt-out, not opt-in).
        workload_ns = namespace_labels("team-a", team="a")
        assert selector_matches(selector, workload_ns), f"{kind} skips an ordinary namespace"
        assert selector_matches(selector, namespace_labels("team-a", team="a", **{"imagegate.dev/ignore": "false"}))


def test_extra_excluded_namespaces_and_expressions():
    for kind, webhook in webhooks(rendered("everything")):
        selector = webhook["namespaceSelector"]
        assert not selector_matches(selector, namespace_labels("ci-sandbox", team="ci"))
        # namespaceSelectorExpressions: only namespaces with a team label.
        assert not selector_matches(selector, namespace_labels("default"))
        assert selector_matches(selector, namespace_labels("payments", team="payments"))


def test_validating_rules_cover_pods_and_every_workload_kind():
    hook = one(rendered("default"), "ValidatingWebhookConfiguration")["webhooks"]
    assert len(hook) == 1
    assert rule_resources(hook[0]) == ALL_WORKLOADS


def test_mutation_is_pods_only_by_default():
    hook = one(rendered("default"), "MutatingWebhookConfiguration")["webhooks"]
    assert len(hook) == 1
    assert rule_resources(hook[0]) == {("", "pods"), ("", "pods/ephemeralcontainers")}
    assert hook[0]["reinvocationPolicy"] == "IfNeeded"
    args = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--mutate-kinds=Pod" in args


def test_mutation_can_be_switched_off():
    objs = rendered("no-mutation")
    assert not find(objs, "MutatingWebhookConfiguration")
    assert find(objs, "ValidatingWebhookConfiguration")
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--mutate-kinds")]
    role = one(objs, "ClusterRole", "imagegate")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "mutatingwebhookconfigurations" not in resources


def test_workload_mutation_and_narrower_validation():
    objs = rendered("everything")
    mutating = one(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert rule_resources(mutating) == {
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("apps", "deployments"),
        ("batch", "cronjobs"),
    }
    validating = one(objs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert rule_resources(validating) == {
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
    }
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--mutate-kinds=Pod,Deployment,CronJob" in args


# --- pods -------------------------------------------------------------------


def assert_restricted(where: str, spec: dict) -> None:
    """The Pod Security Standards "restricted" profile, plus imagegate's
    own rules (read-only root filesystem, no automounted token)."""
    pod_sc = spec.get("securityContext", {})
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(forbidden), f"{where}: {forbidden}"
    assert spec.get("automountServiceAccountToken") is not None, f"{where}: token mount left to the default"
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, f"{where}: hostPath volume"
    containers = spec["containers"] + spec.get("initContainers", [])
    for c in containers:
        sc = c["securityContext"]
        name = f"{where}/{c['name']}"
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert not sc["capabilities"].get("add"), name
        assert not sc.get("privileged"), name
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        assert run_as_non_root is True, name
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        assert isinstance(uid, int) and uid > 0, name
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile"))
        assert seccomp == {"type": "RuntimeDefault"}, name
        assert "limits" in c["resources"] and "memory" in c["resources"]["limits"], name
        assert "requests" in c["resources"], name
        for port in c.get("ports", []):
            assert "hostPort" not in port, name


def test_every_pod_is_restricted(value_set):
    specs = pod_specs(rendered(value_set))
    assert specs
    for where, spec in specs:
        assert_restricted(f"{value_set}: {where}", spec)


def test_imagegate_gets_only_a_projected_short_lived_token():
    objs = rendered("default")
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert one(objs, "ServiceAccount", "imagegate")["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    sources = volumes["kube-api-access"]["projected"]["sources"]
    token = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    assert token == [{"path": "token", "expirationSeconds": 3607}]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["kube-api-access"]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    assert mounts["kube-api-access"]["readOnly"] is True


def test_deployment_is_highly_available():
    objs = rendered("default")
    deployment = one(objs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    keys = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(keys) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in keys.values():
        assert constraint["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert constraint["maxSkew"] == 1
    pdb = one(objs, "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": spec["selector"]["matchLabels"]}}


def test_probes_use_the_health_endpoints():
    container = one(rendered("default"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8443, "metrics": 9090}


def test_serve_arguments_for_every_option():
    container = one(rendered("everything"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "serve"
    assert container["image"] == "registry.example.com/platform/imagegate:0.1.0@sha256:" + "a" * 64
    for expected in [
        "--listen=0.0.0.0:8443",
        "--metrics-listen=0.0.0.0:9090",
        "--service-name=imagegate",
        "--leader-election-lease=imagegate-leader",
        "--admission-timeout=14s",
        "--digest-cache-ttl=30s",
        "--verdict-cache-ttl=5m",
        "--negative-cache-ttl=10s",
        "--platform=linux/amd64",
        "--platform=linux/arm64/v8",
        "--pull-secret=registry-a",
        "--pull-secret=registry-b",
        "--authfile=/etc/imagegate/auth/.dockerconfigjson",
    ]:
        assert expected in args, expected
    env = {e["name"]: e for e in container["env"]}
    assert env["IMAGEGATE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["authfile"]["readOnly"] is True
    assert mounts["keys"]["mountPath"] == "/etc/pki/containers"


def test_serve_flags_exist_in_the_binary():
    """Every flag the chart passes is one `imagegate serve --help` lists.
    Needs a built binary that has the `serve` subcommand."""
    from conftest import imagegate_binary, run

    binary = imagegate_binary()
    if binary is None:
        pytest.skip("set IMAGEGATE_BIN to a built imagegate binary to run this check")
    result = run([str(binary), "serve", "--help"])
    if result.returncode != 0:
        pytest.skip("this imagegate build has no `serve` subcommand yet")
    helptext = result.stdout
    flags = set()
    for value_set in ("default", "cert-manager", "everything"):
        args = one(rendered(value_set), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        flags |= {a.split("=", 1)[0] for a in args if a.startswith("--")}
    missing = sorted(f for f in flags if not re.search(rf"(^|\s){re.escape(f)}[\s=,<]", helptext, re.M))
    assert missing == [], f"flags the chart passes but `imagegate serve` does not know: {missing}"


# --- RBAC -------------------------------------------------------------------


def rules_by_resource(role: dict) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), []).append(rule)
    return out


def verbs_of(rules: dict, group: str, resource: str) -> set[str]:
    return {v for rule in rules.get((group, resource), []) for v in rule["verbs"]}


def test_no_wildcards_anywhere(value_set):
    for role in find(rendered(value_set), "ClusterRole") + find(rendered(value_set), "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {field}"
            assert "nonResourceURLs" not in rule


def test_cluster_role_is_least_privilege():
    role = one(rendered("default"), "ClusterRole", "imagegate")
    rules = rules_by_resource(role)
    assert verbs_of(rules, "imagegate.dev", "clusterimagepolicies") == {"get", "list", "watch"}
    assert verbs_of(rules, "imagegate.dev", "imagepolicies") == {"get", "list", "watch"}
    assert verbs_of(rules, "imagegate.dev", "clusterimagepolicies/status") == {"update", "patch"}
    assert verbs_of(rules, "imagegate.dev", "imagepolicies/status") == {"update", "patch"}
    # Secrets and ConfigMaps: read by name on demand, never listed or watched.
    assert verbs_of(rules, "", "secrets") == {"get"}
    assert verbs_of(rules, "", "configmaps") == {"get"}
    assert verbs_of(rules, "", "serviceaccounts") == {"get"}
    assert verbs_of(rules, "", "nodes") == {"list", "watch"}
    assert verbs_of(rules, "events.k8s.io", "events") == {"create", "patch"}
    for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        (rule,) = rules[("admissionregistration.k8s.io", resource)]
        assert rule["verbs"] == ["get", "patch"]
        assert rule["resourceNames"] == ["imagegate"]
    assert set(rules) == {
        ("imagegate.dev", "clusterimagepolicies"),
        ("imagegate.dev", "imagepolicies"),
        ("imagegate.dev", "clusterimagepolicies/status"),
        ("imagegate.dev", "imagepolicies/status"),
        ("", "secrets"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("", "nodes"),
        ("events.k8s.io", "events"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    }
    never = {"delete", "deletecollection", "escalate", "bind", "impersonate"}
    for rule in role["rules"]:
        assert not never & set(rule["verbs"]), rule


def test_namespaced_role_writes_only_its_lease_and_certificate_secret():
    role = one(rendered("default"), "Role", "imagegate")
    assert role["metadata"]["namespace"] == NAMESPACE
    for rule in role["rules"]:
        writes = set(rule["verbs"]) - {"get", "list", "watch"}
        if writes - {"create"}:
            assert rule.get("resourceNames"), f"write without resourceNames: {rule}"
    rules = rules_by_resource(role)
    by_names = {
        (r["resources"][0], tuple(r.get("resourceNames", []))): set(r["verbs"])
        for rs in rules.values()
        for r in rs
    }
    assert by_names == {
        ("leases", ()): {"create"},
        ("leases", ("imagegate-leader",)): {"get", "update"},
        ("secrets", ("imagegate-tls",)): {"get", "update"},
    }


def test_cert_manager_mode_drops_certificate_permissions():
    objs = rendered("cert-manager")
    cluster = rules_by_resource(one(objs, "ClusterRole", "imagegate"))
    assert not [k for k in cluster if k[0] == "admissionregistration.k8s.io"]
    namespaced = rules_by_resource(one(objs, "Role", "imagegate"))
    assert ("", "secrets") not in namespaced


def test_bindings_name_the_imagegate_service_account():
    objs = rendered("default")
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = one(objs, kind, "imagegate")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "imagegate", "namespace": NAMESPACE}]
        assert binding["roleRef"]["name"] == "imagegate"


def test_every_rbac_rule_is_commented():
    # Each rule in the RBAC templates says why it exists.
    for template in ("rbac.yaml", "cleanup-hook.yaml"):
        lines = (CHART / "templates" / template).read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:") and "rules:" in "".join(lines[max(0, i - 40) : i]):
                previous = next(
                    (lines[j].strip() for j in range(i - 1, -1, -1) if not lines[j].strip().startswith("{{")),
                    "",
                )
                assert previous.startswith("#"), f"{template}:{i + 1}: rule without a comment"


# --- uninstall --------------------------------------------------------------


def test_post_delete_hook_removes_the_webhook_configurations():
    objs = rendered("default")
    job = one(objs, "Job", "imagegate-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    containers = {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}
    args = containers["cleanup"]["args"]
    assert args[0] == "delete" and "--ignore-not-found" in args
    assert "validatingwebhookconfiguration/imagegate" in args
    assert "mutatingwebhookconfiguration/imagegate" in args
    assert "lease/imagegate-leader" in containers["cleanup-lease"]["args"]
    # Its RBAC exists while it runs: hooks too, created before the Job.
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        obj = one(objs, kind, "imagegate-cleanup")
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
        assert int(obj["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
    role = one(objs, "ClusterRole", "imagegate-cleanup")
    (rule,) = role["rules"]
    assert rule["resourceNames"] == ["imagegate"] and set(rule["verbs"]) == {"get", "delete"}
    # It runs in the release namespace, which no imagegate webhook checks.
    assert job["metadata"]["namespace"] == NAMESPACE


def test_hook_can_be_disabled():
    assert not find(rendered("everything"), "Job")
