#!/usr/bin/env bash
# imagegate demo, all on this machine (127.0.0.1, no Docker, no network):
#   1. starts a container registry (docker-registry) and a lookaside web
#      server for signatures (python3 http.server),
#   2. makes a demo signing key and an unrelated "wrong" key (gpg),
#   3. builds three images by hand and pushes them with skopeo: one signed
#      by the demo key, one unsigned, one signed by the wrong key,
#   4. writes a policy.json that trusts only the demo key for that
#      registry, and a registries.d that points at the lookaside server,
#   5. runs `imagegate verify` on each image (expected: accept, reject "no
#      signature", reject "invalid signature"), next to skopeo's verdict
#      (containers/image, the reference imagegate reproduces),
#   6. runs the webhook without a cluster (`imagegate serve --policies DIR`,
#      the same policy as a ClusterImagePolicy) and sends it AdmissionReviews
#      with curl as kube-apiserver would: the Pod with the signed image is
#      allowed, the unsigned one denied, and /mutate pins the signed tag to
#      its verified digest,
#   7. brings up a real Kubernetes control plane on 127.0.0.1
#      (scripts/cluster.sh: kube-apiserver, etcd, kube-controller-manager,
#      kubectl and helm built from pinned Go modules), installs imagegate
#      with `helm install` and the same policy as chart values, and runs
#      `kubectl apply`: the signed Pod is admitted (and pinned to its
#      digest), a Pod in a Warn-mode scope is admitted with kubectl's
#      `Warning:` line, the unsigned Pod is denied with imagegate's reason.
# Everything is stopped and removed at the end.
#
#   scripts/demo.sh                 the demo
#   scripts/demo.sh --setup-only    steps 1-4 and skopeo's verdicts only
#                                   (no imagegate build), for CI
#   scripts/demo.sh --keep          leave everything running (the registry,
#                                   the lookaside, the control plane with
#                                   imagegate) and say how to use and stop it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

setup_only=false keep=false
for arg in "$@"; do
  case $arg in
    --setup-only) setup_only=true ;;
    --keep) keep=true ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

# One stream, so progress notes and verdicts read in order.
exec 2>&1
bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m' "$*"; else printf '%s' "$*"; fi; }

ensure_apt_packages "${IMAGEGATE_APT_PACKAGES[@]}"

W=$(mktemp -d /tmp/imagegate-demo.XXXXXX)
PIDS=()
CLUSTER_DIR="$W/cluster"
cleanup() {
  local pid
  if $keep; then
    log "kept $W, with everything running:"
    log "  source $CLUSTER_DIR/env; kubectl get pods -A"
    log "  stop it: kill ${PIDS[*]}; IMAGEGATE_CLUSTER_DIR=$CLUSTER_DIR scripts/cluster.sh down; rm -rf $W"
    return
  fi
  if [ -d "$CLUSTER_DIR" ]; then
    IMAGEGATE_CLUSTER_DIR="$CLUSTER_DIR" scripts/cluster.sh down >/dev/null 2>&1 || true
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  gpgconf --homedir "$W/gnupg" --kill all 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

if ! $setup_only; then
  ensure_rust
  log "building imagegate"
  cargo build --quiet --locked --bin imagegate
  target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  IMAGEGATE="$target_dir/debug/imagegate"
fi

# --- 1. registry and lookaside server --------------------------------------
mkdir -p "$W"/{registry-data,sigstore,registries.d}
REG_PORT=$(free_port)
REG="127.0.0.1:$REG_PORT"
cat > "$W/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: "$W/registry-data"}}
http: {addr: "$REG", secret: imagegate-demo}
EOF
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
PIDS+=($!)
wait_http "http://$REG/v2/"
log "registry on http://$REG"

LOOKASIDE_PORT=$(free_port)
LOOKASIDE="http://127.0.0.1:$LOOKASIDE_PORT"
python3 -m http.server "$LOOKASIDE_PORT" --bind 127.0.0.1 --directory "$W/sigstore" \
  > "$W/lookaside.log" 2>&1 &
PIDS+=($!)
wait_http "$LOOKASIDE/"
log "lookaside server on $LOOKASIDE"

# Where skopeo writes signatures (lookaside-staging, a directory) and where
# readers fetch them (lookaside, the web server over that directory).
cat > "$W/registries.d/demo.yaml" <<EOF
docker:
  $REG:
    lookaside: $LOOKASIDE
    lookaside-staging: file://$W/sigstore
EOF

# --- 2. keys ------------------------------------------------------------------
export GNUPGHOME="$W/gnupg"
mkdir -m 700 "$GNUPGHOME"
gen_key() { gpg --batch --quiet --passphrase '' --quick-gen-key "$1" ed25519 sign never; }
fingerprint() { gpg --with-colons --list-keys "$1" 2>/dev/null | awk -F: '/^fpr/ { print $10; exit }'; }
gen_key 'imagegate demo signer <demo@imagegate.test>'
gen_key 'someone else <wrong@imagegate.test>'
DEMO_FPR=$(fingerprint demo@imagegate.test)
WRONG_FPR=$(fingerprint wrong@imagegate.test)
gpg --armor --export "$DEMO_FPR" > "$W/demo.pub.asc"
log "demo key $DEMO_FPR, wrong key $WRONG_FPR"

# --- 3. images ----------------------------------------------------------------
# Built by hand as OCI layouts (make_oci_layout in lib.sh), pushed by skopeo.
push() { # push LAYOUT REPO:TAG [skopeo options...]
  local layout=$1 dest=$2; shift 2
  skopeo copy -q --dest-tls-verify=false --registries.d "$W/registries.d" \
    --policy "$W/accept-anything.json" "$@" "oci:$layout:demo" "docker://$REG/$dest"
}
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/accept-anything.json"
make_oci_layout "$W/oci-signed" "imagegate demo: signed" demo
make_oci_layout "$W/oci-unsigned" "imagegate demo: unsigned" demo
make_oci_layout "$W/oci-wrong" "imagegate demo: wrongly signed" demo
push "$W/oci-signed" demo/signed:v1 --sign-by "$DEMO_FPR"
push "$W/oci-unsigned" demo/unsigned:v1
push "$W/oci-wrong" demo/wrongly-signed:v1 --sign-by "$WRONG_FPR"
log "pushed demo/signed:v1, demo/unsigned:v1, demo/wrongly-signed:v1; signatures:"
(cd "$W/sigstore" && find . -type f | sort | sed 's/^/      /') >&2

# --- 4. policy ------------------------------------------------------------------
cat > "$W/policy.json" <<EOF
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "$REG/demo": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "$W/demo.pub.asc"}
      ]
    }
  }
}
EOF
log "policy.json:"; sed 's/^/      /' "$W/policy.json" >&2

# --- 5. verdicts ------------------------------------------------------------------
# skopeo's verdict: a pull through containers/image with this policy.
skopeo_verdict() {
  local out rc
  set +e
  out=$(skopeo copy -q --src-tls-verify=false --registries.d "$W/registries.d" \
    --policy "$W/policy.json" "docker://$1" "dir:$(mktemp -d "$W/pull.XXXXXX")" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then echo "accepted"; else echo "rejected: $(sed -n 's/.*msg="\(.*\)"$/\1/p' <<<"$out" | tail -1 | sed 's/\\"/"/g')"; fi
  return "$rc"
}

failures=0
show() { # show IMAGE EXPECTED_EXIT(0 accept / 1 reject)
  local image=$1 expected=$2 rc ref_rc ref
  printf '\n%s (expected: %s)\n' "$(bold "$image")" "$([ "$expected" -eq 0 ] && echo accept || echo reject)"
  set +e
  ref=$(skopeo_verdict "$image"); ref_rc=$?
  set -e
  printf '  skopeo (reference): %s\n' "$ref"
  [ "$ref_rc" -eq "$expected" ] || { echo "  !! skopeo's verdict is not the expected one"; failures=$((failures + 1)); }
  if ! $setup_only; then
    local cmd=("$IMAGEGATE" verify --policy "$W/policy.json" --registries-d "$W/registries.d"
      --tls-verify=false "docker://$image")
    printf '  $ imagegate verify --policy policy.json --registries-d registries.d --tls-verify=false docker://%s\n' "$image"
    set +e
    "${cmd[@]}" 2>&1 | sed 's/^/    /'
    rc=${PIPESTATUS[0]}
    set -e
    printf '  imagegate exit code: %s\n' "$rc"
    [ "$rc" -eq "$expected" ] || { echo "  !! imagegate's exit code is not the expected one"; failures=$((failures + 1)); }
  fi
}

show "$REG/demo/signed:v1" 0
show "$REG/demo/unsigned:v1" 1
show "$REG/demo/wrongly-signed:v1" 1

# --- 6. the webhook, without a cluster ----------------------------------------------
# A Pod running IMAGE, wrapped in an AdmissionReview v1 as the API server sends it.
review() {
  python3 - "$1" <<'PY'
import json, sys
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo", "namespace": "default"},
       "spec": {"containers": [{"name": "app", "image": sys.argv[1]}]}}
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "3f6c2b1e-0000-4000-8000-000000000001",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "name": "demo", "namespace": "default", "operation": "CREATE",
    "userInfo": {"username": "demo"}, "object": pod, "dryRun": False}}))
PY
}
# Prints the answer's allowed flag, message and patch; exits 0 if allowed.
summary() {
  python3 -c '
import base64, json, sys
r = json.load(sys.stdin)["response"]
print("    allowed:", r["allowed"])
if not r["allowed"]: print("    message:", r["status"]["message"])
if "patch" in r: print("    patch:  ", base64.b64decode(r["patch"]).decode())
sys.exit(0 if r["allowed"] else 1)'
}
if ! $setup_only; then
  mkdir -p "$W/policies"
  cat > "$W/policies/demo.yaml" <<EOF
apiVersion: imagegate.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: demo
spec:
  mode: Enforce
  policy:
    default: [{type: insecureAcceptAnything}]
    transports:
      docker:
        $REG/demo:
          - {type: signedBy, keyType: GPGKeys, keyPath: $W/demo.pub.asc}
  lookaside:
    docker:
      $REG:
        lookaside: $LOOKASIDE
EOF
  "$IMAGEGATE" cert --out-dir "$W/tls" --host localhost --host 127.0.0.1 >/dev/null
  HOOK_PORT=$(free_port)
  METRICS_PORT=$(free_port)
  "$IMAGEGATE" serve --listen "127.0.0.1:$HOOK_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --policies "$W/policies" --tls-cert "$W/tls/tls.crt" --tls-key "$W/tls/tls.key" --tls-verify=false \
    > "$W/webhook.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    curl -sf --cacert "$W/tls/ca.crt" "https://127.0.0.1:$HOOK_PORT/readyz" >/dev/null && break
    sleep 0.1
  done
  printf '\n%s (webhook on https://127.0.0.1:%s)\n' "$(bold "imagegate serve --policies policies/")" "$HOOK_PORT"
  hook() { # hook ENDPOINT IMAGE EXPECTED_EXIT(0 allowed / 1 denied)
    local rc
    review "$2" > "$W/review.json"
    printf '  $ curl --cacert ca.crt -H "Content-Type: application/json" --data @review.json https://127.0.0.1:%s/%s   # a Pod running %s\n' \
      "$HOOK_PORT" "$1" "$2"
    set +e
    curl -sS --cacert "$W/tls/ca.crt" -H 'Content-Type: application/json' --data @"$W/review.json" \
      "https://127.0.0.1:$HOOK_PORT/$1" | summary
    rc=${PIPESTATUS[1]}
    set -e
    [ "$rc" -eq "$3" ] || { echo "  !! the webhook's answer is not the expected one"; failures=$((failures + 1)); }
  }
  hook validate "$REG/demo/signed:v1" 0
  hook validate "$REG/demo/unsigned:v1" 1
  hook mutate "$REG/demo/signed:v1" 0
  printf '  decision log (one JSON line per review, %s):\n' "webhook.log"
  grep '"admission decision"' "$W/webhook.log" | cut -c1-200 | sed 's/^/    /'
fi

# --- 7. a real control plane: helm install, kubectl apply ---------------------------
if ! $setup_only; then
  printf '\n%s\n' "$(bold "A Kubernetes control plane on 127.0.0.1 (scripts/cluster.sh up), imagegate installed with helm")"
  export IMAGEGATE_CLUSTER_DIR="$CLUSTER_DIR" IMAGEGATE_BIN="$IMAGEGATE"
  scripts/cluster.sh up
  # shellcheck source=/dev/null
  source "$CLUSTER_DIR/env"
  # A Warn-mode scope for a team trying signatures out, with an unsigned
  # image copied there.
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --policy "$W/accept-anything.json" \
    "docker://$REG/demo/unsigned:v1" "docker://$REG/trial/unsigned:v1"
  python3 - "$W/values.yaml" "$W/demo.pub.asc" "$REG" "$LOOKASIDE" <<'PY'
import json, sys
out, key, reg, lookaside = sys.argv[1:]
signed_by = [{"type": "signedBy", "keyType": "GPGKeys",
              "keyRef": {"configMap": "imagegate-trusted-keys", "key": "demo.asc"}}]
values = {
    "replicaCount": 1,
    "extraArgs": ["--tls-verify=false"],
    "trustedKeys": {"armored": {"demo.asc": open(key).read()}},
    "clusterImagePolicies": {
        "demo": {"mode": "Enforce", "policy": {"transports": {"docker": {reg + "/demo": signed_by}}},
                 "lookaside": {"docker": {reg: {"lookaside": lookaside}}}},
        "trial": {"mode": "Warn", "policy": {"transports": {"docker": {reg + "/trial": signed_by}}}},
    },
}
json.dump(values, open(out, "w"), indent=2)
PY
  printf '  $ helm install imagegate ./charts/imagegate -n imagegate-system --create-namespace -f values.yaml --wait\n'
  scripts/cluster.sh install -f "$W/values.yaml" 2>&1 | sed 's/^/    /'
  kubectl -n imagegate-system get pods 2>&1 | sed 's/^/    /'
  # The policies are served before the Pods come.
  for p in demo trial; do
    wait_until 60 "ClusterImagePolicy $p Ready" sh -c \
      "kubectl get clusterimagepolicy $p -o jsonpath='{.status.conditions[0].status}' | grep -qx True"
  done
  kapply() { # kapply NAME IMAGE EXPECTED_EXIT(0 admitted / 1 denied)
    local rc out
    printf '\n  $ kubectl apply -f pod.yaml   # a Pod running %s\n' "$2"
    set +e
    out=$(printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default}\nspec:\n  containers: [{name: app, image: "%s"}]\n' "$1" "$2" \
      | kubectl apply -f - 2>&1)
    rc=$?
    set -e
    sed 's/^/    /' <<<"$out"
    printf '  skopeo (reference): %s\n' "$(skopeo_verdict "$2" || true)"
    [ "$rc" -eq "$3" ] || { echo "  !! kubectl's result is not the expected one"; failures=$((failures + 1)); }
  }
  kapply signed "$REG/demo/signed:v1" 0
  printf '  $ kubectl get pod signed -o jsonpath={.spec.containers[0].image}\n    %s\n' \
    "$(kubectl get pod signed -o jsonpath='{.spec.containers[0].image}')"
  kapply trial "$REG/trial/unsigned:v1" 0
  kapply unsigned "$REG/demo/unsigned:v1" 1
fi

echo
if [ "$failures" -ne 0 ]; then
  log "demo: $failures verdict(s) differ from the expected ones"
  exit 1
fi
if $setup_only; then
  log "demo setup ok: skopeo's verdicts are as expected (imagegate not run: --setup-only)"
else
  log "demo ok: imagegate accepted the signed image and rejected the other two, as a CLI, as a webhook, and in a cluster through kube-apiserver"
fi
