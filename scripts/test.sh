#!/usr/bin/env bash
# The test command (README and .ci/run call exactly this).
#
# Installs what the tests need on a Debian 12 machine if it is missing, then
# runs every step below and exits non-zero if any failed. Steps run in order;
# a failing step does not stop later ones (so one run shows every problem),
# except `deps`.
#
#   scripts/test.sh              all steps
#   scripts/test.sh fmt clippy   only the named steps (deps always runs)
#
# To add a step: write a `step_NAME` function and add NAME to STEPS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# `tests` goes last so the test runner's summary is the run's last word.
STEPS=(fmt clippy e2e demo chart tests)

step_deps() {
  ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}"
  ensure_rust
  command -v go >/dev/null 2>&1 || die "go not found: the test control plane is built from Go modules (Go >= 1.26)"
}

# The Go test infrastructure (e2e/: the control plane, e2e-node): gofmt,
# go vet, and the binaries (cached by go.sum; the cold build takes minutes,
# timed here so it is not hidden inside the first real-cluster test).
step_e2e() {
  local bad
  bad=$(cd e2e && gofmt -l .)
  [ -z "$bad" ] || die "gofmt: $bad"
  (cd e2e && go vet ./...)
  scripts/cluster.sh build
}

step_fmt() {
  cargo fmt --all -- --check
}

step_clippy() {
  cargo clippy --all-targets --locked -- -D warnings
}

# Unit and integration tests with nextest if it is installed (each test in
# its own process), else cargo test. nextest does not run doctests, so
# cargo test runs them first (first, so nextest's summary closes the run).
step_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo test --locked --doc
    cargo nextest run --locked --no-fail-fast
  else
    cargo test --locked --no-fail-fast
  fi
}

# The README's first command, whole (CLI and webhook verdicts next to
# skopeo's), so it cannot rot.
step_demo() {
  scripts/demo.sh
}

# The Helm chart, Dockerfile and docs (pytest in a venv the script makes),
# with the built binary for the checks that need it (the chart's policies
# through `imagegate policy lint`, the chart's flags against `serve --help`).
step_chart() {
  cargo build --locked --quiet --bin imagegate
  IMAGEGATE_BIN="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/imagegate" \
    scripts/test-chart.sh -q
}

# Runs one step in a subshell with errexit in force and leaves its exit
# status in STEP_RC. Bash ignores errexit inside anything called from a
# condition (`if f`, `f || g`), so neither a step nor run_step is ever
# called from one.
STEP_RC=0
run_step() {
  local name=$1 start rc
  start=$(date +%s)
  log "step $name"
  set +e
  (set -e; "step_$name")
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    log "step $name ok ($(($(date +%s) - start)) s)"
  else
    log "step $name FAILED (exit $rc, $(($(date +%s) - start)) s)"
  fi
  STEP_RC=$rc
}

main() {
  local steps=("$@") failed=() name
  [ "${#steps[@]}" -gt 0 ] || steps=("${STEPS[@]}")
  for name in "${steps[@]}"; do
    declare -F "step_$name" >/dev/null || die "unknown step '$name' (steps: ${STEPS[*]})"
  done
  run_step deps
  [ "$STEP_RC" -eq 0 ] || die "could not install the test dependencies"
  for name in "${steps[@]}"; do
    run_step "$name"
    [ "$STEP_RC" -eq 0 ] || failed+=("$name")
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    log "scripts/test.sh: FAILED steps: ${failed[*]}"
    exit 1
  fi
  log "scripts/test.sh: every step succeeded (${steps[*]})"
}

main "$@"
