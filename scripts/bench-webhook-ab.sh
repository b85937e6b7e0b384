#!/usr/bin/env bash
# A/B of imagegate builds against the floor: for each LABEL=BINARY given,
# in ROUNDS interleaved rounds, start `imagegate serve` (the bench setup of
# scripts/bench-lib.sh), warm its caches, then run wrk -t2 at -c16 and -c64
# against it and, right after, against the floor server; print reviews/s,
# p50, p99 and the p50 ratio to the floor of that same moment. Used to
# decide whether a change to the warm path pays (BENCHMARKS.md, "Webhook");
# the machine's speed drifts, so compare ratios, not absolute figures.
#
#   IMAGEGATE=… FLOOR_SERVER=… scripts/bench-webhook-ab.sh [--rounds N] [--duration 4s] \
#       old=/tmp/imagegate-old new=target/release/imagegate[:ENV=VALUE]
#
# IMAGEGATE and FLOOR_SERVER as in scripts/bench-lib.sh (built when unset);
# a :ENV=VALUE suffix runs that build with one environment variable set
# (e.g. :IMAGEGATE_LOG=warn to measure without the decision log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

rounds=3 duration=4s builds=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *=*) builds+=("$1") ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
  shift
done
[ ${#builds[@]} -gt 0 ] || die "give at least one LABEL=BINARY"

ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}" wrk procps
bench_init
bench_build
bench_setup
bench_review "$SIGNED_IMAGE" "$BENCH_DIR/review.json"
bench_start_floor

# wrk_line URL CONNECTIONS: "reviews/s p50_us p99_us"
wrk_line() {
  IMAGEGATE_BENCH_REVIEW="$BENCH_DIR/review.json" \
    wrk -t2 "-c$2" "-d$duration" --latency -s benches/wrk/review.lua "$1/validate" \
    | sed -n 's/^WRK_JSON //p' \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); l = r["latency_us"]
print(round(r["requests"] / (r["duration_us"] / 1e6)), l["p50"], l["p99"])'
}

printf '| round | build | wrk | imagegate reviews/s | p50 / p99 µs | floor reviews/s | p50 / p99 µs | p50 ratio |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for round in $(seq "$rounds"); do
  for build in "${builds[@]}"; do
    label=${build%%=*} rest=${build#*=}
    binary=${rest%%:*} setting=""
    [[ $rest == *:* ]] && setting=${rest#*:}
    (
      [ -n "$setting" ] && export "${setting?}"
      IMAGEGATE=$binary
      bench_start_imagegate
      curl -sf --cacert "$TLS_DIR/ca.crt" -H 'Content-Type: application/json' \
        --data @"$BENCH_DIR/review.json" "$IG_URL/validate" >/dev/null
      wrk_line "$IG_URL" 16 >/dev/null # warm-up
      for c in 16 64; do
        read -r ig_rate ig_p50 ig_p99 < <(wrk_line "$IG_URL" "$c")
        read -r fl_rate fl_p50 fl_p99 < <(wrk_line "$FLOOR_URL" "$c")
        ratio=$(python3 -c "print(f'{$ig_p50 / $fl_p50:.2f}')")
        printf '| %s | %s | -c%s | %s | %s / %s | %s | %s / %s | %s |\n' \
          "$round" "$label" "$c" "$ig_rate" "$ig_p50" "$ig_p99" "$fl_rate" "$fl_p50" "$fl_p99" "$ratio"
      done
      bench_stop_imagegate
    )
  done
done
