#!/usr/bin/env bash
# Chart, image and documentation tests (tests/chart/, pytest).
#
# Creates .venv-chart with the pinned packages of tests/chart/requirements.txt
# when it is missing or the requirements changed (helm-python-sdk bundles the
# Helm v4 SDK, so no helm binary is needed; kubernetes-validate bundles the
# Kubernetes JSON schemas), then runs pytest. Extra arguments go to pytest.
# Exit status: pytest's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-chart"
requirements="$root/tests/chart/requirements.txt"
python="${PYTHON:-python3}"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "test-chart: installing tests/chart/requirements.txt into .venv-chart" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input --requirement "$requirements"
  echo "$want" > "$stamp"
fi

cd "$root/tests/chart"
exec "$venv/bin/python" -m pytest "$@"
