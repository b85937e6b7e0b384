#!/usr/bin/env bash
# shellcheck disable=SC2119  # bench_start_imagegate's arguments are optional
# Webhook benchmarks: the figures of BENCHMARKS.md "## Webhook". Everything
# runs on this machine (127.0.0.1): docker-registry, a python lookaside, a
# GPG key, an image pushed and signed by skopeo, `imagegate serve
# --policies DIR` (release build), and next to it the floor server
# (benches/floor_server.rs: the same axum + axum-server/rustls(ring) stack,
# parsing the same AdmissionReview with kube's types and answering allowed).
# The setup lives in scripts/bench-lib.sh (reusable: see its header).
#
#   1. throughput  warm-cache reviews/s and p50/p99 latency over TLS with
#                  keep-alive, wrk -t1 -c1, -t2 -c16, -t2 -c64 with
#                  benches/wrk/review.lua (a Pod running the signed image;
#                  its verdict cached by a first review); imagegate and the
#                  floor back to back for each concurrency, ratios.
#   2. memory      VmRSS idle, then after 100,000 reviews of 100,000
#                  distinct tags (the many-tags registry: one manifest, one
#                  signature for the repository, matchRepository), so
#                  100,000 verdicts are cached; a second pass checks they
#                  all still are (verdict cache hits). The floor's RSS after
#                  the same 100,000 reviews is the reference.
#   3. cold        one review right after a restart (empty caches; the
#                  connection already open), several runs, median; warm
#                  imagegate and the floor on the same kind of connection
#                  as references.
#   4. coalescing  500 simultaneous reviews of the uncached image right
#                  after a restart; manifest requests counted in the
#                  registry's access log, signature reads in the
#                  lookaside's log, against one cold review's counts.
#
#   scripts/bench-webhook.sh [--duration 10s] [--rounds N] [--cold-runs N]
#                            [--only throughput,memory,cold,coalescing]
#
# Results: a Markdown summary on stdout (and target/bench-webhook/), the raw
# wrk and driver outputs in target/bench-webhook/raw/. Each figure comes
# with `uptime`'s load average at the time: other work on the machine skews
# both sides, so rerun when it is quiet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

duration=10s rounds=1 cold_runs=7 only=throughput,memory,cold,coalescing
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --cold-runs) cold_runs=$2; shift ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '3,37p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
  shift
done
wants() { [[ ",$only," == *",$1,"* ]]; }

ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}" wrk procps
bench_init
bench_build
bench_setup

OUT=target/bench-webhook
mkdir -p "$OUT/raw"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
load() { cut -d' ' -f1-3 /proc/loadavg; }
# record SECTION JSON: one result line, with the load average and the time.
record() {
  python3 -c '
import json, sys, time
r = json.loads(sys.argv[2]); r["section"] = sys.argv[1]; r["load"] = sys.argv[3]
r["utc"] = time.strftime("%H:%M:%S", time.gmtime())
print(json.dumps(r))' "$1" "$2" "$(load)" >> "$RESULTS"
}
# expect_allowed URL REVIEW: one review through curl; fails unless allowed.
expect_allowed() {
  curl -sf --cacert "$TLS_DIR/ca.crt" -H 'Content-Type: application/json' --data @"$2" "$1" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin)["response"]; sys.exit(0 if r["allowed"] else "not allowed: %s" % r)'
}
drive() { # drive URL IMAGE COUNT CONCURRENCY [extra…]: the driver's JSON line
  "$FLOOR_SERVER" drive --url "$1" --ca "$TLS_DIR/ca.crt" --review "$BENCH_DIR/review-template.json" \
    --image "$2" --count "$3" --concurrency "$4" "${@:5}"
}
bench_review @IMAGE@ "$BENCH_DIR/review-template.json"
bench_review "$SIGNED_IMAGE" "$BENCH_DIR/review.json"
log "load before measuring: $(load)"

# --- 1. throughput ------------------------------------------------------------------
run_wrk() { # run_wrk NAME THREADS CONNECTIONS URL DURATION
  local raw
  raw="$OUT/raw/wrk-$1-c$3-$(date +%H%M%S).txt"
  IMAGEGATE_BENCH_REVIEW="$BENCH_DIR/review.json" \
    wrk "-t$2" "-c$3" "-d$5" --latency -s benches/wrk/review.lua "$4" > "$raw"
  sed -n 's/^WRK_JSON //p' "$raw"
}
if wants throughput; then
  bench_start_imagegate
  bench_start_floor
  expect_allowed "$IG_URL/validate" "$BENCH_DIR/review.json"
  expect_allowed "$FLOOR_URL/validate" "$BENCH_DIR/review.json"
  misses_before=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}')
  log "warm-up (2 s each)"
  run_wrk warmup-imagegate 2 16 "$IG_URL/validate" 2s >/dev/null
  run_wrk warmup-floor 2 16 "$FLOOR_URL/validate" 2s >/dev/null
  for round in $(seq "$rounds"); do
    for c in 1 16 64; do
      t=$(( c < 2 ? 1 : 2 ))
      order=(imagegate floor)
      [ $((round % 2)) -eq 0 ] && order=(floor imagegate)
      for server in "${order[@]}"; do
        url=$IG_URL; [ "$server" = floor ] && url=$FLOOR_URL
        log "wrk -t$t -c$c -d$duration --latency -s benches/wrk/review.lua $server/validate (round $round)"
        r=$(run_wrk "$server" "$t" "$c" "$url/validate" "$duration")
        record throughput "$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(server=sys.argv[2], threads=int(sys.argv[3]), connections=int(sys.argv[4]), round=int(sys.argv[5])); print(json.dumps(r))' "$r" "$server" "$t" "$c" "$round")"
      done
    done
  done
  misses_after=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}')
  hits=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="hit"}')
  record throughput-cache "{\"verdict_misses_during_load\": $((misses_after - misses_before)), \"verdict_hits\": $hits}"
  bench_stop_imagegate
  bench_stop_floor
fi

# --- 2. memory ----------------------------------------------------------------------
if wants memory; then
  entries=100000
  bench_start_imagegate
  bench_start_floor
  sleep 2
  ig_idle=$(bench_rss_kib "$IG_PID"); floor_idle=$(bench_rss_kib "$FLOOR_PID")
  log "RSS idle: imagegate $ig_idle KiB, floor $floor_idle KiB; $entries reviews of distinct tags"
  fill=$(drive "$IG_URL/validate" "$TAGS_IMAGE:t{}" "$entries" 16)
  ig_full=$(bench_rss_kib "$IG_PID")
  ig_hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$IG_PID/status")
  misses=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}')
  tags_stats=$(curl -sf "http://$TAGS_REG/_bench/stats")
  floor_fill=$(drive "$FLOOR_URL/validate" "$TAGS_IMAGE:t{}" "$entries" 16)
  floor_full=$(bench_rss_kib "$FLOOR_PID")
  # Second pass: every verdict must still be cached (hits, no new misses).
  hits_before=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="hit"}')
  again=$(drive "$IG_URL/validate" "$TAGS_IMAGE:t{}" "$entries" 16)
  hits_after=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="hit"}')
  misses_after=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}')
  ig_after=$(bench_rss_kib "$IG_PID")
  record memory "$(python3 -c '
import json, sys
a = sys.argv
print(json.dumps({"entries": int(a[1]), "imagegate_idle_kib": int(a[2]), "floor_idle_kib": int(a[3]),
  "fill": json.loads(a[4]), "imagegate_full_kib": int(a[5]), "imagegate_hwm_kib": int(a[6]),
  "verdict_misses_fill": int(float(a[7])), "tags_registry": json.loads(a[8]),
  "floor_fill": json.loads(a[9]), "floor_full_kib": int(a[10]),
  "second_pass": json.loads(a[11]), "second_pass_verdict_hits": int(float(a[13])) - int(float(a[12])),
  "second_pass_verdict_misses": int(float(a[14])) - int(float(a[7])), "imagegate_after_second_pass_kib": int(a[15])}))' \
    "$entries" "$ig_idle" "$floor_idle" "$fill" "$ig_full" "$ig_hwm" "$misses" "$tags_stats" \
    "$floor_fill" "$floor_full" "$again" "$hits_before" "$hits_after" "$misses_after" "$ig_after")"
  bench_stop_imagegate
  bench_stop_floor
fi

# --- 3. cold --------------------------------------------------------------------------
lines() { wc -l < "$1"; }
# Requests logged since line MARK: manifests of bench/signed (registry),
# signature reads (lookaside), /v2/ pings.
count_since() { # count_since FILE MARK PATTERN
  # docker-registry logs each request twice (app log, access log): the
  # patterns match the access log's `] "GET /path` only.
  tail -n "+$(($2 + 1))" "$1" | grep -c -- "$3" || true
}
if wants cold; then
  bench_start_floor
  for run in $(seq "$cold_runs"); do
    bench_start_imagegate
    reg_mark=$(lines "$BENCH_DIR/registry.log"); la_mark=$(lines "$BENCH_DIR/lookaside.log")
    cold=$(drive "$IG_URL/validate" "$SIGNED_IMAGE" 1 1)
    sleep 0.3
    manifests=$(count_since "$BENCH_DIR/registry.log" "$reg_mark" '] "[A-Z]* /v2/bench/signed/manifests/')
    sigs=$(count_since "$BENCH_DIR/lookaside.log" "$la_mark" 'signature-')
    warm=$(drive "$IG_URL/validate" "$SIGNED_IMAGE" 1 1)
    floor=$(drive "$FLOOR_URL/validate" "$SIGNED_IMAGE" 1 1)
    record cold "{\"run\": $run, \"cold\": $cold, \"warm\": $warm, \"floor\": $floor, \"manifest_requests\": $manifests, \"signature_requests\": $sigs}"
    bench_stop_imagegate
  done
  bench_stop_floor
fi

# --- 4. coalescing ----------------------------------------------------------------------
if wants coalescing; then
  bench_start_imagegate
  reg_mark=$(lines "$BENCH_DIR/registry.log"); la_mark=$(lines "$BENCH_DIR/lookaside.log")
  burst=$(drive "$IG_URL/validate" "$SIGNED_IMAGE" 500 500)
  sleep 0.5
  manifests=$(count_since "$BENCH_DIR/registry.log" "$reg_mark" '] "[A-Z]* /v2/bench/signed/manifests/')
  pings=$(count_since "$BENCH_DIR/registry.log" "$reg_mark" '] "GET /v2/ ')
  sigs=$(count_since "$BENCH_DIR/lookaside.log" "$la_mark" 'signature-')
  misses=$(bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}')
  record coalescing "{\"burst\": $burst, \"manifest_requests\": $manifests, \"pings\": $pings, \"signature_requests\": $sigs, \"verdict_misses\": ${misses%.*}}"
  bench_stop_imagegate
fi

# --- summary ----------------------------------------------------------------------------
python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def sec(name): return [r for r in rows if r["section"] == name]
ms = lambda us: us / 1000.0
if sec("throughput"):
    print("| wrk | imagegate req/s | floor req/s | ratio | imagegate p50 / p99 | floor p50 / p99 | p50 ratio | p99 ratio | errors (ig/floor) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = {}
    for r in sec("throughput"):
        runs.setdefault((r["round"], r["connections"]), {})[r["server"]] = r
    for (rnd, c), pair in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ig, fl = pair["imagegate"], pair["floor"]
        rate = lambda r: r["requests"] / (r["duration_us"] / 1e6)
        errs = lambda r: sum(r["errors"].values())
        print(f"| -t{ig['threads']} -c{c} (round {rnd}) | {rate(ig):,.0f} | {rate(fl):,.0f} | {rate(ig) / rate(fl):.2f} "
              f"| {ms(ig['latency_us']['p50']):.2f} / {ms(ig['latency_us']['p99']):.2f} ms "
              f"| {ms(fl['latency_us']['p50']):.2f} / {ms(fl['latency_us']['p99']):.2f} ms "
              f"| {ig['latency_us']['p50'] / fl['latency_us']['p50']:.2f} | {ig['latency_us']['p99'] / fl['latency_us']['p99']:.2f} "
              f"| {errs(ig)}/{errs(fl)} | {ig['load']} |")
    for r in sec("throughput-cache"):
        print(f"\nverdict cache misses during the wrk runs: {r['verdict_misses_during_load']} (hits: {r['verdict_hits']:.0f})")
for r in sec("memory"):
    mib = lambda k: k / 1024.0
    print(f"\n| RSS | imagegate | floor (same reviews) |\n|---|---|---|")
    print(f"| idle | {mib(r['imagegate_idle_kib']):.1f} MiB | {mib(r['floor_idle_kib']):.1f} MiB |")
    print(f"| after {r['entries']:,} reviews of distinct tags | {mib(r['imagegate_full_kib']):.1f} MiB (peak {mib(r['imagegate_hwm_kib']):.1f}) | {mib(r['floor_full_kib']):.1f} MiB |")
    print(f"\nverdict misses while filling: {r['verdict_misses_fill']:,}; second pass: {r['second_pass_verdict_hits']:,} hits, "
          f"{r['second_pass_verdict_misses']:,} new misses; RSS after it {mib(r['imagegate_after_second_pass_kib']):.1f} MiB; "
          f"many-tags registry: {r['tags_registry']['manifest_requests']:,} manifest requests; "
          f"fill rate {r['fill']['per_second']:,.0f} reviews/s (floor {r['floor_fill']['per_second']:,.0f}); "
          f"per cached verdict {(r['imagegate_full_kib'] - r['imagegate_idle_kib']) * 1024 / r['entries']:.0f} bytes; load {r['load']}")
if sec("cold"):
    c = sec("cold")
    cold = [r["cold"]["latency_ms"]["p50"] for r in c]
    warm = [r["warm"]["latency_ms"]["p50"] for r in c]
    floor = [r["floor"]["latency_ms"]["p50"] for r in c]
    print(f"\ncold review after a restart, {len(c)} runs: median {statistics.median(cold):.2f} ms "
          f"(runs: {', '.join(f'{x:.2f}' for x in cold)}); warm imagegate median {statistics.median(warm):.2f} ms; "
          f"floor median {statistics.median(floor):.2f} ms; per cold review: manifest requests "
          f"{sorted(set(r['manifest_requests'] for r in c))}, signature requests {sorted(set(r['signature_requests'] for r in c))}; "
          f"load {c[0]['load']} .. {c[-1]['load']}")
for r in sec("coalescing"):
    b = r["burst"]
    print(f"\n500 simultaneous reviews of the uncached image: {r['manifest_requests']} manifest request(s), "
          f"{r['signature_requests']} signature request(s), {r['pings']} /v2/ ping(s); {b['allowed']} allowed; "
          f"all sent within {b['last_sent_ms']:.1f} ms; latency p50 {b['latency_ms']['p50']:.1f} ms, max {b['latency_ms']['max']:.1f} ms; "
          f"verdicts computed: {r['verdict_misses']}; load {r['load']}")
PY
