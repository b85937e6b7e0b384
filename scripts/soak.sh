#!/usr/bin/env bash
# imagegate soak: `imagegate serve` (release build, --policies DIR, TLS from
# `imagegate cert`) under a sustained open-loop load of AdmissionReviews
# while the registry (docker-registry) and the lookaside web server
# (python3 http.server) are stopped and restarted over and over, all on
# 127.0.0.1. It shows:
#   - zero wrong admissions: the unsigned and wrongly signed images, and
#     Pods mixing a signed and an unsigned container, are always denied
#     (checked by the driver on every answer, and again on imagegate's own
#     decision log);
#   - every review answered (HTTP 200 AdmissionReview) within the deadline,
#     `--admission-timeout`;
#   - RSS flat: VmRSS of the serve process sampled every 10 s (start, end,
#     peak, and the kernel's VmHWM).
# Signed images are allowed while everything is up; denied while the
# registry or lookaside is down and the answer is not cached (failing
# closed; counted separately by the driver against the outage log).
#
# Steps: 1. build imagegate and the driver (benches/soak_driver.rs) in
# release; 2. registry + lookaside, keys, images pushed with `skopeo copy
# --sign-by` (signed, unsigned, wrongly signed, plus a pool of never-seen
# images of each kind for the uncached path); 3. policy (a
# ClusterImagePolicy), certificates, `imagegate serve`; 4. warm maximum: a
# closed-loop driver run with everything up; 5. the soak at half that rate
# with the flapping; 6. checks and a summary (also as Markdown).
#
#   scripts/soak.sh                       10-minute soak
#   scripts/soak.sh --quick               60-second soak, to try it out
#   scripts/soak.sh --duration 1800       another length (seconds)
#   scripts/soak.sh --rate 500            skip the measurement, use this rate
#   scripts/soak.sh --admission-timeout 3s  the deadline (default 2s)
#   scripts/soak.sh --flap-period 20      seconds between stops (default 20);
#                   --flap-down 10        seconds each stays down (default 10)
#   scripts/soak.sh --keep                keep the working directory
#   IMAGEGATE=bin SOAK_DRIVER=bin scripts/soak.sh   binaries built before
# Exit status 0 only if every check passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

duration=600 rate="" deadline=2s flap_period=20 flap_down=10 keep=false
warm_seconds=20 warm_concurrency=32
while [ $# -gt 0 ]; do
  case $1 in
    --quick) duration=60; warm_seconds=10 ;;
    --duration) duration=$2; shift ;;
    --rate) rate=$2; shift ;;
    --admission-timeout) deadline=$2; shift ;;
    --flap-period) flap_period=$2; shift ;;
    --flap-down) flap_down=$2; shift ;;
    --keep) keep=true ;;
    -h|--help) sed -n '2,36s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
  shift
done
[ "$flap_down" -lt "$flap_period" ] || die "--flap-down must be shorter than --flap-period"

ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}"
ensure_rust

# --- 1. build ----------------------------------------------------------------
# IMAGEGATE and SOAK_DRIVER (both set) name binaries built before, to soak
# one fixed build while the tree changes.
if [ -n "${IMAGEGATE:-}" ] && [ -n "${SOAK_DRIVER:-}" ]; then
  log "using IMAGEGATE=$IMAGEGATE and SOAK_DRIVER=$SOAK_DRIVER"
  DRIVER=$SOAK_DRIVER
else
  log "building imagegate and the soak driver (release)"
  cargo build --quiet --locked --release --bin imagegate
  target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  IMAGEGATE="$target_dir/release/imagegate"
  DRIVER=$(cargo bench --quiet --locked --no-run --bench soak_driver --message-format json \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "soak_driver" and m.get("executable"):
        print(m["executable"])')
fi
[ -x "$IMAGEGATE" ] || die "no imagegate binary at $IMAGEGATE"
[ -x "$DRIVER" ] || die "soak driver not built"

W=$(mktemp -d /tmp/imagegate-soak.XXXXXX)
PIDS=()
REG_PID="" LA_PID="" HOOK_PID=""
cleanup() {
  local pid
  for pid in "${PIDS[@]}" $REG_PID $LA_PID $HOOK_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}" $REG_PID $LA_PID $HOOK_PID; do wait "$pid" 2>/dev/null || true; done
  gpgconf --homedir "$W/gnupg" --kill all 2>/dev/null || true
  if $keep; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
log "working directory $W"
uptime_start=$(uptime)

# --- 2. registry, lookaside, keys, images --------------------------------------
mkdir -p "$W"/{registry-data,sigstore,registries.d,policies}
REG="127.0.0.1:$(free_port)"
LA_PORT=$(free_port)
LOOKASIDE="http://127.0.0.1:$LA_PORT"
cat > "$W/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: "$W/registry-data"}}
http: {addr: "$REG", secret: imagegate-soak}
EOF
# The same ports and data every time, so a restart is the same server.
start_registry() {
  docker-registry serve "$W/registry.yml" >> "$W/registry.log" 2>&1 &
  REG_PID=$!
  wait_http "http://$REG/v2/"
}
start_lookaside() {
  python3 -m http.server "$LA_PORT" --bind 127.0.0.1 --directory "$W/sigstore" \
    >> "$W/lookaside.log" 2>&1 &
  LA_PID=$!
  wait_http "$LOOKASIDE/"
}
start_registry
start_lookaside
log "registry on http://$REG, lookaside on $LOOKASIDE"
cat > "$W/registries.d/soak.yaml" <<EOF
docker:
  $REG:
    lookaside: $LOOKASIDE
    lookaside-staging: file://$W/sigstore
EOF

export GNUPGHOME="$W/gnupg"
mkdir -m 700 "$GNUPGHOME"
gen_key() { gpg --batch --quiet --passphrase '' --quick-gen-key "$1" ed25519 sign never; }
fingerprint() { gpg --with-colons --list-keys "$1" 2>/dev/null | awk -F: '/^fpr/ { print $10; exit }'; }
gen_key 'imagegate soak signer <soak@imagegate.test>'
gen_key 'someone else <wrong@imagegate.test>'
SIGN_FPR=$(fingerprint soak@imagegate.test)
WRONG_FPR=$(fingerprint wrong@imagegate.test)
gpg --armor --export "$SIGN_FPR" > "$W/signer.pub.asc"

echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/accept-anything.json"
push() { # push LAYOUT REPO:TAG [skopeo options...]; prints the pushed digest
  local layout=$1 dest=$2; shift 2
  skopeo copy -q --dest-tls-verify=false --registries.d "$W/registries.d" \
    --policy "$W/accept-anything.json" --digestfile "$layout.digest" "$@" \
    "oci:$layout:soak" "docker://$REG/$dest" >&2
  cat "$layout.digest"
}
for kind in signed unsigned wrong; do make_oci_layout "$W/oci-$kind" "imagegate soak: $kind" soak; done
push "$W/oci-signed" soak/signed:v1 --sign-by "$SIGN_FPR" >/dev/null
push "$W/oci-unsigned" soak/unsigned:v1 >/dev/null
push "$W/oci-wrong" soak/wrongly-signed:v1 --sign-by "$WRONG_FPR" >/dev/null
SIGNED="$REG/soak/signed:v1" UNSIGNED="$REG/soak/unsigned:v1" WRONG="$REG/soak/wrongly-signed:v1"

# Never-seen images: one every 2 s of the soak, a third of each kind, each
# its own digest; asked for by tag or by digest in turn. Each is verified
# uncached once (a signed one's verdict is then cached, 10 min).
fresh_total=$((duration / 2))
per_kind=$(((fresh_total + 2) / 3))
log "pushing $per_kind never-seen images of each kind (signed, unsigned, wrongly signed)"
push_fresh() { # push_fresh signed|unsigned|wrong: one list of references
  local kind=$1 repo opts i digest
  case $kind in
    signed) repo=soak/signed; opts=(--sign-by "$SIGN_FPR") ;;
    unsigned) repo=soak/unsigned; opts=() ;;
    wrong) repo=soak/wrongly-signed; opts=(--sign-by "$WRONG_FPR") ;;
  esac
  for i in $(seq "$per_kind"); do
    make_oci_layout "$W/fresh-oci-$kind" "imagegate soak: fresh $kind $i" soak
    digest=$(push "$W/fresh-oci-$kind" "$repo:f$i" "${opts[@]}")
    rm -rf "$W/fresh-oci-$kind" "$W/fresh-oci-$kind.digest"
    if [ $((i % 2)) -eq 0 ]; then echo "$kind $REG/$repo:f$i"; else echo "$kind $REG/$repo@$digest"; fi
  done > "$W/fresh-$kind.txt"
}
# The three kinds in parallel (skopeo is mostly waiting).
push_fresh signed & p1=$!
push_fresh unsigned & p2=$!
push_fresh wrong & p3=$!
{ wait "$p1" && wait "$p2" && wait "$p3"; } || die "pushing the never-seen images failed"
# Interleaved over time: signed, unsigned, wrong, signed, ...
paste -d '\n' "$W/fresh-signed.txt" "$W/fresh-unsigned.txt" "$W/fresh-wrong.txt" > "$W/fresh.txt"
log "$(wc -l < "$W/fresh.txt") never-seen images; $(find "$W/sigstore" -type f | wc -l) signatures in the lookaside"

# --- 3. policy, certificates, serve -----------------------------------------------
cat > "$W/policies/soak.yaml" <<EOF
apiVersion: imagegate.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: soak
spec:
  mode: Enforce
  policy:
    default: [{type: reject}]
    transports:
      docker:
        $REG/soak:
          - {type: signedBy, keyType: GPGKeys, keyPath: $W/signer.pub.asc}
  lookaside:
    docker:
      $REG:
        lookaside: $LOOKASIDE
EOF
"$IMAGEGATE" cert --out-dir "$W/tls" --host localhost --host 127.0.0.1 >/dev/null
HOOK="127.0.0.1:$(free_port)"
serve_cmd=("$IMAGEGATE" serve --listen "$HOOK" --metrics-listen "127.0.0.1:$(free_port)"
  --policies "$W/policies" --tls-cert "$W/tls/tls.crt" --tls-key "$W/tls/tls.key"
  --tls-verify=false --admission-timeout "$deadline")
"${serve_cmd[@]}" > "$W/webhook.log" 2>&1 &
HOOK_PID=$!
for _ in $(seq 100); do
  curl -sf --cacert "$W/tls/ca.crt" "https://$HOOK/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf --cacert "$W/tls/ca.crt" "https://$HOOK/readyz" >/dev/null || die "imagegate serve is not ready (see $W/webhook.log)"
log "imagegate serve (pid $HOOK_PID) on https://$HOOK, --admission-timeout $deadline"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$HOOK_PID/status"; }
driver_common=(--url "https://$HOOK/validate" --ca "$W/tls/ca.crt" --deadline "$deadline"
  --signed "$SIGNED" --unsigned "$UNSIGNED" --wrong "$WRONG")

# --- 4. warm maximum ---------------------------------------------------------------
rss_before_warm=$(rss_kib)
if [ -z "$rate" ]; then
  log "warm maximum: closed loop, $warm_concurrency workers, ${warm_seconds}s, everything up"
  "$DRIVER" --mode closed --concurrency "$warm_concurrency" --duration "${warm_seconds}s" \
    "${driver_common[@]}" --json "$W/warm.json" | tee "$W/warm.txt"
  warm_max=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["answered_per_s"]))' "$W/warm.json")
  rate=$((warm_max / 2))
  log "warm maximum $warm_max reviews/s; soak rate $rate/s"
else
  warm_max="(not measured: --rate given)"
fi

# --- 5. the soak ---------------------------------------------------------------------
# Each component: stopped every $flap_period s and restarted $flap_down s
# later; the lookaside a quarter period after the registry, so the run sees
# each one down, both down and both up. `down` is logged before the stop,
# `up` once it answers again. Each flapper owns the server it restarts and
# stops it when told to stop.
now_ms() { date +%s%3N; }
: > "$W/flaps.log"
flap() { # flap registry|lookaside FIRST_STOP_EPOCH_SECONDS
  local name=$1 first=$2 cycle=0 pid=""
  trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; exit 0' TERM
  start_server() {
    if [ "$name" = registry ]; then start_registry; pid=$REG_PID; else start_lookaside; pid=$LA_PID; fi
  }
  start_server
  touch "$W/$name.ready"
  while :; do
    # Sleep in the background so that TERM is handled at once.
    sleep "$(python3 -c 'import sys, time; print(max(0.0, float(sys.argv[1]) - time.time()))' \
      "$((first + cycle * flap_period))")" & wait $!
    echo "$(now_ms) $name down" >> "$W/flaps.log"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    sleep "$flap_down" & wait $!
    start_server
    echo "$(now_ms) $name up" >> "$W/flaps.log"
    cycle=$((cycle + 1))
  done
}
# Hand the servers over from this shell to the flappers.
kill "$REG_PID" "$LA_PID"; wait "$REG_PID" "$LA_PID" 2>/dev/null || true
REG_PID="" LA_PID=""
soak_start=$(($(date +%s) + 2))
flap registry "$((soak_start + flap_period))" & FLAP_REG=$!
flap lookaside "$((soak_start + flap_period + flap_period / 4))" & FLAP_LA=$!
PIDS+=("$FLAP_REG" "$FLAP_LA")
for _ in $(seq 200); do
  [ -e "$W/registry.ready" ] && [ -e "$W/lookaside.ready" ] && break
  sleep 0.1
done
{ [ -e "$W/registry.ready" ] && [ -e "$W/lookaside.ready" ]; } || die "registry or lookaside did not come back"
sleep "$(python3 -c 'import sys, time; print(max(0.0, float(sys.argv[1]) - time.time()))' "$soak_start")"

# RSS every 10 s: seconds since the soak started, VmRSS in KiB.
: > "$W/rss.tsv"
soak_t0=$(date +%s)
(
  while kill -0 "$HOOK_PID" 2>/dev/null; do
    printf '%s\t%s\n' "$(($(date +%s) - soak_t0))" "$(rss_kib)" >> "$W/rss.tsv"
    sleep 10
  done
) &
PIDS+=($!)

log "soak: ${rate}/s open loop for ${duration}s; registry and lookaside stopped every ${flap_period}s for ${flap_down}s"
set +e
"$DRIVER" --mode open --rate "$rate" --duration "${duration}s" "${driver_common[@]}" \
  --fresh "$W/fresh.txt" --fresh-per-second 0.5 --flap-log "$W/flaps.log" \
  --json "$W/soak.json" | tee "$W/soak.txt"
driver_rc=${PIPESTATUS[0]}
set -e
uptime_end=$(uptime)

# Stop flapping (each flapper stops its server).
kill "$FLAP_REG" "$FLAP_LA" 2>/dev/null || true
wait "$FLAP_REG" "$FLAP_LA" 2>/dev/null || true
printf '%s\t%s\n' "$(($(date +%s) - soak_t0))" "$(rss_kib)" >> "$W/rss.tsv"
hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$HOOK_PID/status")

# --- 6. checks and summary -------------------------------------------------------------
# imagegate's own decision log, independent of the driver: no allowed
# decision may name an unsigned or wrongly signed image.
python3 - "$W/webhook.log" "$REG" > "$W/log-check.txt" <<'PY'
import json, sys
allowed = denied = wrong = 0
bad = []
for line in open(sys.argv[1], errors="replace"):
    if '"admission decision"' not in line:
        continue
    try:
        d = json.loads(line)
    except ValueError:
        continue
    images = str(d.get("images", ""))
    if d.get("decision") == "allowed":
        allowed += 1
        if "/soak/unsigned" in images or "/soak/wrongly-signed" in images:
            wrong += 1
            bad.append(line.strip()[:300])
    else:
        denied += 1
print(f"decision log: {allowed} allowed, {denied} not allowed, {wrong} allowed naming an unsigned or wrongly signed image")
for b in bad[:10]:
    print("  WRONG ADMISSION in the log:", b)
sys.exit(1 if wrong else 0)
PY
log_rc=$?
cat "$W/log-check.txt"

python3 - "$W" "$duration" "$rate" "$warm_max" "$deadline" "$rss_before_warm" "$hwm_kib" \
  "$uptime_start" "$uptime_end" "$driver_rc" "$log_rc" "${serve_cmd[*]}" <<'PY' | tee "$W/summary.md"
import json, sys
w, duration, rate, warm_max, deadline, rss0, hwm, up0, up1, driver_rc, log_rc, serve = sys.argv[1:]
s = json.load(open(f"{w}/soak.json"))
rss = [(int(t), int(k)) for t, k in (l.split("\t") for l in open(f"{w}/rss.tsv") if l.strip() and l.split("\t")[1].strip())]
mib = lambda k: f"{int(k) / 1024:.1f} MiB"
start, end = rss[0][1], rss[-1][1]
peak = max(k for _, k in rss)
mid = min(rss, key=lambda r: abs(r[0] - rss[-1][0] / 2))[1]
# Flat: the second half grows by less than 10 % (and 8 MiB): caches are
# filled by then, so growth there would be a leak.
flat = end <= max(mid * 1.10, mid + 8 * 1024)
c = s["classes"]
def row(name):
    x = c.get(name, {})
    return f"| {name} | {x.get('allowed', 0)} | {x.get('denied', 0)} | {x.get('denied_during_outage', 0)} | {x.get('allowed_during_outage', 0)} | {x.get('fresh', 0)} | {x.get('errors', 0)} |"
l = s["latency_ms"]
print(f"- warm maximum (closed loop): {warm_max} reviews/s; soak rate {rate}/s (open loop) for {s['duration_s']:.0f} s")
print(f"- reviews: {s['sent']} sent, {s['answered']} answered, {s['errors']} errors/unanswered; {s['outages']} outages (registry and lookaside)")
print(f"- wrong admissions: {s['wrong_admissions']} (driver); decision log check exit {log_rc}")
print(f"- deadline {deadline}: {s['over_deadline']} answers over it; latency p50 {l['p50']} ms, p99 {l['p99']} ms, p99.9 {l['p999']} ms, max {l['max']} ms; never-seen images p50 {l['fresh_p50']} ms, p99 {l['fresh_p99']} ms, max {l['fresh_max']} ms")
print(f"- driver: {s['connections']} connections; max start lag {s['driver_max_start_lag_ms']} ms; max answer time from the scheduled start {s['max_from_schedule_ms']} ms; reviews sent more than the deadline late: {s['late_starts']}; signed denied with everything up: {s['signed_denied_all_up']}")
print(f"- RSS: {mib(rss0)} before the warm run; soak start {mib(start)}, middle {mib(mid)}, end {mib(end)}, peak sampled {mib(peak)}, VmHWM {mib(hwm)} -> {'flat' if flat else 'GROWING'}")
print(f"- load: before `{up0.strip()}`; after `{up1.strip()}`")
print()
print("| class | allowed | denied | of which denied during an outage | allowed during an outage (cached) | never-seen | errors |")
print("|---|---|---|---|---|---|---|")
for n in ("signed", "unsigned", "wrong", "mixed"):
    print(row(n))
ok = driver_rc == "0" and log_rc == "0" and flat
print()
print("result:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
