# shellcheck shell=bash
# Setup shared by the webhook benchmarks (scripts/bench-webhook.sh) and any
# other script that needs a running `imagegate serve` with a real registry,
# lookaside, key and signed image on 127.0.0.1 (sourced, not run; source
# scripts/lib.sh first).
#
#   source scripts/lib.sh; source scripts/bench-lib.sh
#   bench_init                  # BENCH_DIR (temporary), cleanup on exit
#   bench_build                 # release builds: IMAGEGATE, FLOOR_SERVER
#                               # (skipped when both are set to binaries)
#   bench_setup                 # everything below, then:
#       REG            docker-registry, host:port (plain HTTP, access log
#                      in $BENCH_DIR/registry.log)
#       LOOKASIDE      http://… signature server (python http.server over
#                      $BENCH_DIR/sigstore, one log line per request in
#                      $BENCH_DIR/lookaside.log)
#       TAGS_REG       floor_server's many-tags registry, host:port: one
#                      signed manifest under every tag of bench/tags
#                      (GET http://$TAGS_REG/_bench/stats counts requests)
#       SIGNED_IMAGE   $REG/bench/signed:v1, signed by the bench key
#       TAGS_IMAGE     $TAGS_REG/bench/tags (append :any-tag)
#       BENCH_FPR, BENCH_KEY   the signing key's fingerprint, public key file
#       POLICIES       directory with one ClusterImagePolicy: $REG/bench
#                      signedBy the key; $TAGS_REG/bench/tags signedBy the
#                      key with matchRepository (one signature, every tag);
#                      everything else rejected
#       TLS_DIR        ca.crt, tls.crt, tls.key for 127.0.0.1 and localhost
#   bench_start_imagegate [serve args…]   starts `imagegate serve` on free
#                      ports with --policies $POLICIES and the certificates;
#                      sets IG_PID, IG_URL (https://127.0.0.1:PORT),
#                      IG_METRICS (http://…/metrics), IG_LOG
#   bench_stop_imagegate                  SIGTERM, wait
#   bench_start_floor / bench_stop_floor  the floor server: FLOOR_PID, FLOOR_URL
#   bench_review IMAGE FILE    an AdmissionReview v1 for a Pod running IMAGE
#                              (IMAGE may be @IMAGE@, floor_server drive's
#                              placeholder)
#   bench_rss_kib PID          VmRSS of PID in KiB
#   bench_metric NAME_AND_LABELS   a sample from IG_METRICS (0 if absent)
#
# Every process started here is stopped and BENCH_DIR removed on exit
# (BENCH_KEEP=1 keeps the directory).

BENCH_PIDS=()

bench_init() {
  BENCH_DIR=$(mktemp -d /tmp/imagegate-bench.XXXXXX)
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  gpgconf --homedir "$BENCH_DIR/gnupg" --kill all 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $BENCH_DIR"; else rm -rf "$BENCH_DIR"; fi
}

# Release builds (the profile the image ships), located through cargo.
bench_build() {
  # Prebuilt binaries (IMAGEGATE and FLOOR_SERVER both set) skip the build.
  if [ -x "${IMAGEGATE:-}" ] && [ -x "${FLOOR_SERVER:-}" ]; then
    log "using $IMAGEGATE and $FLOOR_SERVER"
    return 0
  fi
  ensure_rust
  log "building imagegate and floor_server (release)"
  cargo build --release --locked --quiet --bin imagegate
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  IMAGEGATE="$target_dir/release/imagegate"
  FLOOR_SERVER=$(cargo bench --locked --no-run --bench floor_server --message-format json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "floor_server" and m.get("executable"):
        print(m["executable"])')
  if [ ! -x "$IMAGEGATE" ] || [ ! -x "$FLOOR_SERVER" ]; then die "release build failed"; fi
}

# Waits until the log file has a line matching PATTERN (up to ~15 s).
bench_wait_log() {
  local file=$1 pattern=$2 _
  for _ in $(seq 150); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$file: no line matching $pattern"
}

bench_setup() {
  mkdir -p "$BENCH_DIR"/{registry-data,sigstore,registries.d,policies}
  # --- registry (with its access log: the manifest requests are counted) ---
  REG="127.0.0.1:$(free_port)"
  cat > "$BENCH_DIR/registry.yml" <<EOF
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: "$BENCH_DIR/registry-data"}}
http: {addr: "$REG", secret: imagegate-bench}
EOF
  docker-registry serve "$BENCH_DIR/registry.yml" > "$BENCH_DIR/registry.log" 2>&1 &
  BENCH_PIDS+=($!)
  wait_http "http://$REG/v2/"
  # --- lookaside ---
  local port
  port=$(free_port)
  LOOKASIDE="http://127.0.0.1:$port"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$BENCH_DIR/sigstore" \
    > "$BENCH_DIR/lookaside.log" 2>&1 &
  BENCH_PIDS+=($!)
  wait_http "$LOOKASIDE/"
  cat > "$BENCH_DIR/registries.d/bench.yaml" <<EOF
docker:
  $REG:
    lookaside: $LOOKASIDE
    lookaside-staging: file://$BENCH_DIR/sigstore
EOF
  # --- key ---
  export GNUPGHOME="$BENCH_DIR/gnupg"
  mkdir -m 700 "$GNUPGHOME"
  gpg --batch --quiet --passphrase '' --quick-gen-key 'imagegate bench <bench@imagegate.test>' ed25519 sign never
  BENCH_FPR=$(gpg --with-colons --list-keys bench@imagegate.test | awk -F: '/^fpr/ { print $10; exit }')
  BENCH_KEY="$BENCH_DIR/bench.pub.asc"
  gpg --armor --export "$BENCH_FPR" > "$BENCH_KEY"
  # --- a signed image, pushed and signed by skopeo ---
  make_oci_layout "$BENCH_DIR/oci" "imagegate bench" bench
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$BENCH_DIR/accept-anything.json"
  SIGNED_IMAGE="$REG/bench/signed:v1"
  skopeo copy -q --dest-tls-verify=false --registries.d "$BENCH_DIR/registries.d" \
    --policy "$BENCH_DIR/accept-anything.json" --sign-by "$BENCH_FPR" \
    "oci:$BENCH_DIR/oci:bench" "docker://$SIGNED_IMAGE"
  # --- the many-tags registry: the same manifest, signed once for its repository ---
  port=$(free_port)
  TAGS_REG="127.0.0.1:$port"
  TAGS_IMAGE="$TAGS_REG/bench/tags"
  local manifest digest
  digest=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$BENCH_DIR/oci/index.json")
  manifest="$BENCH_DIR/oci/blobs/sha256/${digest#sha256:}"
  "$FLOOR_SERVER" registry --listen "$TAGS_REG" --manifest "$manifest" \
    > "$BENCH_DIR/tags-registry.log" 2>&1 &
  BENCH_PIDS+=($!)
  wait_http "http://$TAGS_REG/v2/"
  mkdir -p "$BENCH_DIR/sigstore/bench/tags@sha256=${digest#sha256:}"
  skopeo standalone-sign -o "$BENCH_DIR/sigstore/bench/tags@sha256=${digest#sha256:}/signature-1" \
    "$manifest" "$TAGS_IMAGE:v1" "$BENCH_FPR"
  # --- policies ---
  POLICIES="$BENCH_DIR/policies"
  cat > "$POLICIES/bench.yaml" <<EOF
apiVersion: imagegate.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: bench
spec:
  mode: Enforce
  policy:
    default: [{type: reject}]
    transports:
      docker:
        $REG/bench:
          - {type: signedBy, keyType: GPGKeys, keyPath: $BENCH_KEY}
        $TAGS_IMAGE:
          - {type: signedBy, keyType: GPGKeys, keyPath: $BENCH_KEY, signedIdentity: {type: matchRepository}}
  lookaside:
    docker:
      $REG: {lookaside: $LOOKASIDE}
      $TAGS_REG: {lookaside: $LOOKASIDE}
EOF
  # --- serving certificates ---
  TLS_DIR="$BENCH_DIR/tls"
  "$IMAGEGATE" cert --out-dir "$TLS_DIR" --host localhost --host 127.0.0.1 >/dev/null
  log "bench setup in $BENCH_DIR: registry $REG, lookaside $LOOKASIDE, many-tags registry $TAGS_REG, key $BENCH_FPR"
}


BENCH_IG_RUNS=0
bench_start_imagegate() {
  local port mport
  port=$(free_port); mport=$(free_port)
  BENCH_IG_RUNS=$((BENCH_IG_RUNS + 1))
  IG_LOG="$BENCH_DIR/imagegate.$BENCH_IG_RUNS.log"
  "$IMAGEGATE" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    --policies "$POLICIES" --tls-cert "$TLS_DIR/tls.crt" --tls-key "$TLS_DIR/tls.key" \
    --tls-verify=false "$@" > "$IG_LOG" 2>&1 &
  IG_PID=$!
  BENCH_PIDS+=("$IG_PID")
  IG_URL="https://127.0.0.1:$port"
  IG_METRICS="http://127.0.0.1:$mport/metrics"
  local _
  for _ in $(seq 150); do
    curl -sf --cacert "$TLS_DIR/ca.crt" "$IG_URL/readyz" >/dev/null && return 0
    kill -0 "$IG_PID" 2>/dev/null || { cat "$IG_LOG" >&2; die "imagegate serve exited"; }
    sleep 0.1
  done
  die "imagegate serve not ready (see $IG_LOG)"
}

bench_stop_imagegate() {
  kill -TERM "$IG_PID" 2>/dev/null || true
  wait "$IG_PID" 2>/dev/null || true
}

bench_start_floor() {
  local port
  port=$(free_port)
  "$FLOOR_SERVER" floor --listen "127.0.0.1:$port" --tls-cert "$TLS_DIR/tls.crt" \
    --tls-key "$TLS_DIR/tls.key" > "$BENCH_DIR/floor.log" 2>&1 &
  FLOOR_PID=$!
  BENCH_PIDS+=("$FLOOR_PID")
  FLOOR_URL="https://127.0.0.1:$port"
  local _
  for _ in $(seq 150); do
    curl -sf --cacert "$TLS_DIR/ca.crt" "$FLOOR_URL/healthz" >/dev/null && return 0
    sleep 0.1
  done
  die "floor server not ready (see $BENCH_DIR/floor.log)"
}

bench_stop_floor() {
  kill -TERM "$FLOOR_PID" 2>/dev/null || true
  wait "$FLOOR_PID" 2>/dev/null || true
}

# The kubectl-generated Pod fixture, running IMAGE, in the AdmissionReview
# envelope the API server sends (as tests/webhook_e2e.rs builds it).
bench_review() {
  python3 - "$1" tests/fixtures/admission/pod.json > "$2" <<'PY'
import json, sys
pod = json.load(open(sys.argv[2]))
pod["metadata"]["namespace"] = "default"
pod["spec"]["containers"][0]["image"] = sys.argv[1]
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "5b1c8e0e-5a2b-4c6e-9f33-0d5e6a7b8c9d",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
    "name": pod["metadata"]["name"], "namespace": "default", "operation": "CREATE",
    "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
    "object": pod, "oldObject": None, "dryRun": False,
    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}))
PY
}

bench_rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# One sample of imagegate's metrics, e.g.
# bench_metric 'imagegate_cache_requests_total{cache="verdict",result="miss"}'
bench_metric() {
  curl -sf "$IG_METRICS" | awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }'
}
