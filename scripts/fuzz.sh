#!/usr/bin/env bash
# Fuzzing imagegate with cargo-fuzz (libFuzzer). See FUZZING.md.
#
#   scripts/fuzz.sh seed            copy seed inputs into fuzz/corpus/<target>/
#   scripts/fuzz.sh build           build every target
#   scripts/fuzz.sh run [SECONDS]   run every target (default 600 s each, two at a time)
#   scripts/fuzz.sh smoke           run every target for ~15 s
#   scripts/fuzz.sh run SECONDS TARGET...   only these targets
#
# Only stable Rust is needed: cargo-fuzz's nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module, ...) are accepted by a stable rustc
# with RUSTC_BOOTSTRAP=1. SANITIZER=none builds without AddressSanitizer.
#
# Not part of scripts/test.sh: CI replays the recorded findings and seeds
# with tests/fuzz_regressions.rs instead.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
TARGETS=(reference policy registries_d signature manifest admission)
SANITIZER="${SANITIZER:-address}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1

# Seed sources per target, relative to the repository root. Directories
# are copied whole (recursively, regular files only).
seed_sources() {
    local f=tests/fixtures/cimage/upstream
    case "$1" in
    reference) echo fuzz/seeds/reference ;;
    policy) echo fuzz/seeds/policy "$f/default-policy.json" "$f/signature/fixtures/policy.json" ;;
    registries_d) echo fuzz/seeds/registries_d "$f/default.yaml" "$f/docker/fixtures/registries.d" ;;
    signature)
        echo fuzz/seeds/signature "$f/docs/atomic-signature-embedded-json.json" \
            tests/fixtures/cimage/generated
        find "$ROOT/$f/signature/fixtures" -maxdepth 1 -name '*signature*' -printf "%f\n" |
            sed "s|^|$f/signature/fixtures/|"
        find "$ROOT/$f/signature/fixtures" -name 'signature-*' -printf "%P\n" |
            sed "s|^|$f/signature/fixtures/|"
        ;;
    manifest)
        echo fuzz/seeds/manifest
        find "$ROOT/$f/signature/fixtures" -maxdepth 1 -name '*manifest.json' -printf "%f\n" |
            sed "s|^|$f/signature/fixtures/|"
        find "$ROOT/$f/signature/fixtures" -name manifest.json -printf "%P\n" |
            sed "s|^|$f/signature/fixtures/|"
        ;;
    admission) echo fuzz/seeds/admission ;;
    *) echo "unknown target $1" >&2; return 1 ;;
    esac
    # Every recorded finding is a seed too.
    echo "tests/fixtures/fuzz/$1"
}

seed() {
    for t in "${TARGETS[@]}"; do
        mkdir -p "$FUZZ/corpus/$t"
        for src in $(seed_sources "$t"); do
            [ -e "$ROOT/$src" ] || continue
            find "$ROOT/$src" -type f ! -name '*.gpg' ! -name 'LICENSE*' ! -name 'README*' -printf '%P\n' |
                while read -r rel; do
                    local from="$ROOT/$src${rel:+/$rel}"
                    [ -d "$ROOT/$src" ] || from="$ROOT/$src"
                    cp "$from" "$FUZZ/corpus/$t/seed-$(echo "$src/$rel" | tr '/' '_')"
                done
        done
        echo "$t: $(find "$FUZZ/corpus/$t" -type f | wc -l) corpus files"
    done
}

build() {
    (cd "$FUZZ" && cargo fuzz build --release --debug-assertions --sanitizer "$SANITIZER")
}

binary() {
    echo "$FUZZ/target/$TRIPLE/release/$1"
}

# run_one TARGET SECONDS: one bounded libFuzzer run, log in fuzz/logs/.
run_one() {
    local t="$1" secs="$2" log
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t" "$FUZZ/logs"
    log="$FUZZ/logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log"
    echo "$t: ${secs}s, log $log"
    # -rss_limit_mb / -malloc_limit_mb: unbounded allocations are findings;
    # -timeout: an input taking over 10 s is a hang.
    # The CPU time goes to the end of the log: on a shared machine exec/s
    # per wall second says little without it.
    local TIMEFORMAT="cpu: user %U s, sys %S s, wall %R s"
    {
        time nice -n 19 "$(binary "$t")" "$FUZZ/corpus/$t" \
            -artifact_prefix="$FUZZ/artifacts/$t/" \
            -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
            -print_final_stats=1 >"$log" 2>&1 || echo "$t: libFuzzer exited $? (see $log)"
    } 2>>"$log"
    grep -a -E '^#[0-9]+\s+DONE|^stat::number_of_executed_units|^stat::average_exec_per_sec|^cpu:' "$log" || true
}

# run SECONDS [TARGET...]: at most two targets at once (2 shared cores).
run() {
    local secs="${1:-600}"
    shift || true
    local list=("$@")
    [ ${#list[@]} -gt 0 ] || list=("${TARGETS[@]}")
    for t in "${list[@]}"; do
        [ -x "$(binary "$t")" ] || { echo "$t is not built: scripts/fuzz.sh build" >&2; exit 1; }
    done
    local i=0
    while [ $i -lt ${#list[@]} ]; do
        run_one "${list[$i]}" "$secs" &
        if [ $((i + 1)) -lt ${#list[@]} ]; then
            run_one "${list[$((i + 1))]}" "$secs" &
        fi
        wait
        i=$((i + 2))
    done
    if find "$FUZZ/artifacts" -type f | grep -q .; then
        echo "findings:"
        find "$FUZZ/artifacts" -type f
    fi
}

case "${1:-}" in
seed) seed ;;
build) build ;;
run) shift; run "$@" ;;
smoke) seed; run 15 ;;
*)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
