"""Shared helpers of the chart tests: rendering the chart with named value
sets (as `helm template` would), and reading the repository's files."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "imagegate"
RELEASE = "imagegate"
NAMESPACE = "imagegate-system"
KUBE_VERSION = "1.33"


def _example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def binary_key_base64() -> str:
    """The example release key of examples/values-policies.yaml in binary
    form, base64-encoded (the armour's body without its checksum line)."""
    armored = _example("values-policies.yaml")["trustedKeys"]["armored"]["release.asc"]
    body = armored.split("\n\n", 1)[1].split("-----END", 1)[0]
    return "".join(line for line in body.split() if not line.startswith("="))


# Value sets the chart is rendered with. Every test that loops over them
# checks each one; "policies" is the documented example values file.
VALUE_SETS: dict[str, dict] = {
    "default": {},
    "cert-manager": {"certManager": {"enabled": True}},
    "cert-manager-cluster-issuer": {
        "certManager": {
            "enabled": True,
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"},
        }
    },
    "no-mutation": {"mutation": {"enabled": False}},
    "netpol-monitoring": {
        "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.1/32"]},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "policies": _example("values-policies.yaml"),
    "everything": {
        "replicaCount": 5,
        "image": {
            "repository": "registry.example.com/platform/imagegate",
            "tag": "0.1.0",
            "digest": "sha256:" + "a" * 64,
        },
        "imagePullSecrets": ["platform-pull"],
        "webhook": {
            "timeoutSeconds": 15,
            "excludedNamespaces": ["ci-sandbox"],
            "namespaceSelectorExpressions": [
                {"key": "team", "operator": "Exists"},
            ],
            "workloadKinds": ["Deployment", "StatefulSet"],
        },
        "mutation": {"kinds": ["Pod", "Deployment", "CronJob"]},
        "admission": {
            "platforms": ["linux/amd64", "linux/arm64/v8"],
            "digestCacheTTL": "30s",
            "verdictCacheTTL": "5m",
            "negativeCacheTTL": "10s",
        },
        "registryAuth": {
            "pullSecrets": ["registry-a", "registry-b"],
            "authfileSecret": "registries-auth",
        },
        "networkPolicy": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"maxUnavailable": "34%"},
        "topologySpread": {"whenUnsatisfiable": "DoNotSchedule"},
        "trustedKeys": {"binary": {"release.gpg": binary_key_base64()}},
        "extraVolumes": [{"name": "keys", "configMap": {"name": "node-keys"}}],
        "extraVolumeMounts": [{"name": "keys", "mountPath": "/etc/pki/containers", "readOnly": True}],
        "cleanupHook": {"enabled": False},
    },
}


@functools.lru_cache(maxsize=None)
def _render_cached(name: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(render_files(VALUE_SETS[name]).items()))


def render_files(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` (values validated
    against values.schema.json first)."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(copy.deepcopy(values), name=name, namespace=namespace)


def objects_of(files: dict[str, str] | tuple[tuple[str, str], ...]) -> list[dict]:
    items = files.items() if isinstance(files, dict) else files
    out = []
    for path, text in sorted(items):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template__", path)
                out.append(doc)
    return out


def rendered(value_set: str) -> list[dict]:
    """The objects the chart renders for a named value set (fresh copies)."""
    return copy.deepcopy(objects_of(_render_cached(value_set)))


def notes(value_set: str) -> str:
    return dict(_render_cached(value_set))[f"{CHART.name}/templates/NOTES.txt"]


def strip_meta(obj: dict) -> dict:
    obj = dict(obj)
    obj.pop("__template__", None)
    return obj


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[dict]) -> list[tuple[str, dict]]:
    """(object name, pod spec) of every Deployment and Job."""
    out = []
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
    return out


def imagegate_binary() -> Path | None:
    """The imagegate binary named by $IMAGEGATE_BIN (built from the same
    commit: a stale binary in a target directory would make the checks that
    use it meaningless). None when unset."""
    explicit = os.environ.get("IMAGEGATE_BIN")
    if not explicit:
        return None
    path = Path(explicit)
    if not path.is_absolute():
        path = ROOT / path
    assert path.is_file() and os.access(path, os.X_OK), f"IMAGEGATE_BIN={explicit} is not an executable file"
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(params=sorted(VALUE_SETS))
def value_set(request) -> str:
    return request.param


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
