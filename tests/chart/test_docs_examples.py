"""The chart README's values table is generated from values.yaml and up to
date; the documentation's links resolve; every example validates (Kubernetes
schemas, the CRDs' schemas, the chart's values schema) and the scripts parse."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import CHART, KUBE_VERSION, ROOT, have, imagegate_binary, run, strip_meta
from test_chart_render import crd_schemas, validate_custom_resource


def load_generator():
    spec = importlib.util.spec_from_file_location("chart_values_doc", ROOT / "scripts" / "chart-values-doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the values table -------------------------------------------------------


def test_readme_values_table_is_up_to_date():
    generator = load_generator()
    readme = (CHART / "README.md").read_text()
    values_text = (CHART / "values.yaml").read_text()
    assert generator.render_readme(readme, values_text) == readme, (
        "charts/imagegate/README.md is out of date: run scripts/chart-values-doc.py"
    )


def test_every_value_is_documented():
    generator = load_generator()
    values_text = (CHART / "values.yaml").read_text()
    documented = {path for path, _, _ in generator.documented_keys(values_text)}
    values = yaml.safe_load(values_text)
    for key, value in values.items():
        if key in documented:
            continue
        assert isinstance(value, dict), f"values.yaml: {key} has no '# --' description"
        for child, child_value in value.items():
            path = f"{key}.{child}"
            if path in documented:
                continue
            assert isinstance(child_value, dict), f"values.yaml: {path} has no '# --' description"
            for grandchild in child_value:
                assert f"{path}.{grandchild}" in documented, f"values.yaml: {path}.{grandchild} has no description"


def test_generator_reads_descriptions_defaults_and_nesting():
    generator = load_generator()
    text = (
        "# -- Top.\n"
        "top: 1\n"
        "outer:\n"
        "  # -- Inner, over\n"
        "  # two lines.\n"
        "  # @default -- computed\n"
        "  inner: \"\"\n"
        "  undocumented: {}\n"
        "\n"
        "# -- A list.\n"
        "items:\n"
        "  - a: 1\n"
    )
    assert generator.documented_keys(text) == [
        ("top", "Top.", None),
        ("outer.inner", "Inner, over two lines.", "computed"),
        ("items", "A list.", None),
    ]
    table = generator.table(text)
    assert "| `outer.inner` | string | computed | Inner, over two lines. |" in table
    assert '| `items` | list | `[{"a":1}]` | A list. |' in table


# --- links ------------------------------------------------------------------

MARKDOWN = sorted(
    [*(ROOT / "docs").glob("*.md"), CHART / "README.md", *(ROOT / "examples").rglob("*.md")]
)


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path) -> set[str]:
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]: (\S+)$", text, re.M)
    assert links or doc.name == "README.md"
    for link in links:
        if re.match(r"^[a-z]+://", link) or link.startswith("mailto:"):
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), f"{doc.relative_to(ROOT)}: broken link {link}"
        if anchor:
            assert path.suffix == ".md", f"{doc.relative_to(ROOT)}: anchor into a non-Markdown file: {link}"
            assert anchor in anchors_of(path), f"{doc.relative_to(ROOT)}: no heading for #{anchor} in {path.name}"


# --- examples ---------------------------------------------------------------

# Kinds from other projects, with the fields the examples must set.
OTHER_KINDS = {
    ("argoproj.io/v1alpha1", "Application"): ["spec.source.repoURL", "spec.destination.server", "spec.project"],
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): ["spec.url", "spec.interval"],
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): ["spec.chart.spec.chart", "spec.chart.spec.sourceRef.name", "spec.interval"],
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): ["spec.path", "spec.sourceRef.name", "spec.interval"],
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): ["resources"],
}

EXAMPLE_MANIFESTS = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.name != "values-policies.yaml")


def dig(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = obj[part]
    return obj


@pytest.mark.parametrize("path", EXAMPLE_MANIFESTS, ids=[str(p.relative_to(ROOT)) for p in EXAMPLE_MANIFESTS])
def test_example_manifests_validate(path):
    schemas = crd_schemas()
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        where = f"{path.relative_to(ROOT)}: {doc['kind']}"
        if key in schemas:
            validate_custom_resource(doc, schemas[key])
        elif key in OTHER_KINDS:
            for field in OTHER_KINDS[key]:
                assert dig(doc, field), f"{where}: {field} is empty"
        else:
            try:
                kubernetes_validate.validate(strip_meta(doc), KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")


def test_kustomization_lists_existing_files():
    root = ROOT / "examples" / "gitops" / "policies"
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    listed = {(root / r).resolve() for r in kustomization["resources"]}
    present = {p.resolve() for p in root.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


def test_team_example_matches_the_gitops_copy():
    copy_ = [d for d in yaml.safe_load_all((ROOT / "examples" / "team-imagepolicy.yaml").read_text()) if d]
    gitops = ROOT / "examples" / "gitops" / "policies" / "teams" / "payments" / "imagepolicy.yaml"
    assert copy_ == [d for d in yaml.safe_load_all(gitops.read_text()) if d]


def chart_values_error(values: dict) -> str | None:
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.validate_schema(chart.merge_values(values))
            chart.render(values, name="imagegate", namespace="imagegate-system")
        except helm.HelmError as e:
            return str(e)
    return None


def test_gitops_chart_values_are_valid():
    argo = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "imagegate.yaml").read_text())
    assert argo["spec"]["source"]["path"] == "charts/imagegate"
    assert chart_values_error(argo["spec"]["source"]["helm"]["valuesObject"]) is None
    ignored = {(d.get("group", ""), d["kind"]) for d in argo["spec"]["ignoreDifferences"]}
    assert ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") in ignored
    assert ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") in ignored
    assert "IncludeMutationWebhook=true" in (ROOT / "examples" / "gitops" / "argocd" / "imagegate.yaml").read_text()
    flux = yaml.safe_load((ROOT / "examples" / "gitops" / "flux" / "imagegate.yaml").read_text())
    assert flux["spec"]["chart"]["spec"]["chart"] == "./charts/imagegate"
    assert chart_values_error(flux["spec"]["values"]) is None
    policies = yaml.safe_load((ROOT / "examples" / "gitops" / "flux" / "policies.yaml").read_text())
    assert (ROOT / policies["spec"]["path"]).is_dir()
    argo_policies = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "policies.yaml").read_text())
    assert (ROOT / argo_policies["spec"]["source"]["path"]).is_dir()


def test_example_policies_pass_imagegates_strict_parser(tmp_path):
    binary = imagegate_binary()
    if binary is None:
        pytest.skip("set IMAGEGATE_BIN to a built imagegate binary to run this check")
    checked = 0
    for path in EXAMPLE_MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == "imagegate.dev/v1alpha1":
                policy = tmp_path / f"{checked}.json"
                policy.write_text(__import__("json").dumps(doc["spec"]["policy"]))
                result = run([str(binary), "policy", "lint", "--allow-missing-default", str(policy)])
                assert result.returncode == 0, f"{path.relative_to(ROOT)}: {result.stdout}{result.stderr}"
                checked += 1
    assert checked >= 3


# --- scripts ----------------------------------------------------------------

SCRIPTS = [ROOT / "examples" / "kind" / "demo.sh", ROOT / "scripts" / "test-chart.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_parse(script):
    assert run(["bash", "-n", str(script)]).returncode == 0
    if have("shellcheck"):
        result = run(["shellcheck", str(script)])
        assert result.returncode == 0, result.stdout


def test_kind_demo_values_are_valid(tmp_path):
    """The values file demo.sh writes (its here-document, expanded by bash
    with a real armoured key) passes the chart's schema and renders."""
    script = (ROOT / "examples" / "kind" / "demo.sh").read_text()
    heredoc = re.search(r'cat > "\$work/values.yaml" <<EOF\n(.*?\n)EOF\n', script, re.S)
    assert heredoc, "demo.sh no longer writes values.yaml with a here-document"
    armored = yaml.safe_load((ROOT / "examples" / "values-policies.yaml").read_text())["trustedKeys"]["armored"]["release.asc"]
    (tmp_path / "demo.asc").write_text(armored)
    expanded = subprocess.run(
        ["bash", "-c", f'work="$1"\ncat <<EOF\n{heredoc.group(1)}EOF\n', "bash", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = yaml.safe_load(expanded)
    assert chart_values_error(values) is None
    policy = values["clusterImagePolicies"]["demo"]["policy"]["transports"]["docker"]
    assert policy["docker.io/library/busybox"][0]["keyRef"]["configMap"] == "imagegate-trusted-keys"
    assert values["trustedKeys"]["armored"]["demo.asc"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
