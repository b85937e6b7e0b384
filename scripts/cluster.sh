#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the tests and the demo:
# etcd, kube-apiserver and kube-controller-manager built from the Go
# modules pinned in e2e/go.mod, kubectl and helm from the same pins, and
# e2e-node (e2e/cmd/e2e-node), which stands in for the kubelets and the pod
# network: it registers Node objects and runs the pods whose images are
# local programs (imagegate and kubectl) as processes. No scheduler, no
# kube-proxy, no container runtime: other Pods stay Pending; admission is
# what is under test. docs/e2e-control-plane.md explains the design.
#
#   scripts/cluster.sh up [--owner-pid PID]
#                          start it (again: harmless); with --owner-pid it
#                          is stopped when that process exits
#   scripts/cluster.sh down
#                          stop everything it started (by PID), remove the dir
#   scripts/cluster.sh status
#   scripts/cluster.sh env print the environment file (source it: KUBECONFIG, PATH)
#   scripts/cluster.sh install [HELM-ARGS...]
#                          helm upgrade --install charts/imagegate from this
#                          tree (release $IMAGEGATE_RELEASE, default
#                          imagegate, in $IMAGEGATE_RELEASE_NAMESPACE, default
#                          imagegate-system); returns when the webhook answers
#                          through the apiserver
#   scripts/cluster.sh restart etcd|kube-apiserver|kube-controller-manager|e2e-node
#   scripts/cluster.sh build
#                          only build (or find cached) the binaries
#
# The directory is $IMAGEGATE_CLUSTER_DIR (default .cluster/ in the
# repository). Root is needed (e2e-node gives each container a mount
# namespace). Everything listens on 127.0.0.1 only.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

DIR=${IMAGEGATE_CLUSTER_DIR:-$REPO/.cluster}
case $DIR in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PIDS=$DIR/pids
BIN=$DIR/bin
PKI=$DIR/pki
RELEASE=${IMAGEGATE_RELEASE:-imagegate}
RELEASE_NS=${IMAGEGATE_RELEASE_NAMESPACE:-imagegate-system}
# The image repository the chart is installed with; e2e-node runs it as the
# locally built imagegate binary.
E2E_IMAGE_REPOSITORY=imagegate.e2e.invalid/imagegate
# The chart's cleanup hook image; run as the built kubectl.
E2E_KUBECTL_IMAGE=registry.k8s.io/kubectl
# The nodes e2e-node registers (NAME=OS/ARCH[/VARIANT][,zone=ZONE]).
read -r -a NODES <<<"${IMAGEGATE_CLUSTER_NODES:-node-1=linux/amd64,zone=zone-a node-2=linux/amd64,zone=zone-b node-3=linux/arm64/v8,zone=zone-b}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager e2e-node)

# --- certificates -------------------------------------------------------------

# cert NAME SUBJECT [SAN]: a key and a certificate signed by the cluster CA
# (client certificates without SAN, the apiserver's serving one with).
cert() {
  local name=$1 subj=$2 san=${3:-} ext
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  ext="$PKI/$name.ext"
  if [ -n "$san" ]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$ext"
  fi
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig NAME CERT: a kubeconfig for a client certificate.
kubeconfig() {
  local name=$1 crt=$2
  cat >"$DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$crt.crt
    client-key: $PKI/$crt.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $name}
current-context: e2e
EOF
}

make_pki() {
  mkdir -p "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -days 30 -subj "/CN=imagegate-e2e-ca" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # Who is who (RBAC): the admin (kubectl, helm, the tests' assertions)
  # is in system:masters; the controller manager has its bootstrap role;
  # e2e-node acts for several kubelets and the scheduler at once, which no
  # one node identity may, so it is a master too.
  cert admin "/O=system:masters/CN=imagegate-e2e-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert e2e-node "/O=system:masters/CN=e2e-node"
  cert apiserver-egress "/CN=kube-apiserver-egress"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# --- components ---------------------------------------------------------------

write_config() {
  cat >"$DIR/config.sh" <<EOF
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
EOF
  cat >"$DIR/audit-policy.yaml" <<'EOF'
# What the apiserver records: who changed what (Metadata, which carries the
# admission webhooks' audit annotations), not reads and not the chatter of
# lease renewals and events.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [get, update, patch]
    resources:
      - {group: coordination.k8s.io, resources: [leases]}
  - level: None
    resources:
      - {group: "", resources: [events]}
      - {group: events.k8s.io, resources: [events]}
  - level: None
    verbs: [get, list, watch]
  - level: Metadata
EOF
  # The apiserver's connections to the cluster network (webhook calls to
  # Services) go through e2e-node's CONNECT proxy on a Unix socket.
  cat >"$DIR/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: $DIR/egress.sock
EOF
}

start_etcd() {
  start_daemon "$PIDS" etcd "$DIR/logs/etcd.log" "$BIN/etcd" \
    --name e2e --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_until 60 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

# Flags after controller-runtime's envtest control plane, plus what a
# webhook needs of a real cluster: Node,RBAC authorization, the admission
# plugins, an audit log, ServiceAccount tokens, and webhook calls routed
# to EndpointSlice addresses (--enable-aggregator-routing) through the
# egress selector.
start_apiserver() {
  start_daemon "$PIDS" kube-apiserver "$DIR/logs/kube-apiserver.log" "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$PKI" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --allow-privileged=true \
    --enable-aggregator-routing=true \
    --egress-selector-config-file "$DIR/egress.yaml" \
    --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$DIR/audit.log" \
    --audit-log-format json --audit-log-maxsize 200 \
    --profiling=false \
    --v=1
  wait_until 120 kube-apiserver curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz"
}

# Only the controllers whose work a user of imagegate sees: workloads
# creating Pods (and their FailedCreate Events), garbage collection,
# namespaces, ServiceAccounts and kube-root-ca.crt, EndpointSlices of
# Services, Job TTLs and PodDisruptionBudgets. Not the node lifecycle
# controller: no kubelet heartbeats here.
start_controller_manager() {
  start_daemon "$PIDS" kube-controller-manager "$DIR/logs/kube-controller-manager.log" "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --leader-elect=false --secure-port 0 \
    --use-service-account-credentials=true \
    --root-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --controllers deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,replicationcontroller-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,endpointslice-controller,endpoints-controller,ttl-after-finished-controller,disruption-controller,pod-garbage-collector-controller,clusterrole-aggregation-controller \
    --v=1
  wait_until 60 "kube-root-ca.crt" "$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" -n default get configmap kube-root-ca.crt
}

start_e2e_node() {
  local node_flags=() n
  for n in "${NODES[@]}"; do node_flags+=(--node "$n"); done
  start_daemon "$PIDS" e2e-node "$DIR/logs/e2e-node.log" "$BIN/e2e-node" \
    --kubeconfig "$DIR/e2e-node.kubeconfig" --dir "$DIR/node" --images "$DIR/images.json" \
    --egress-socket "$DIR/egress.sock" --apiserver-port "$API_PORT" "${node_flags[@]}"
  wait_until 60 "nodes" "$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" get node "${NODES[0]%%=*}"
}

# images.json: what e2e-node runs for an image (re-read when it changes).
write_images() {
  local imagegate=${1:-}
  python3 - "$DIR/images.json" "$BIN/kubectl" "$imagegate" "$E2E_KUBECTL_IMAGE" "$E2E_IMAGE_REPOSITORY" <<'EOF'
import json, sys
out, kubectl, imagegate, kubectl_image, imagegate_image = sys.argv[1:]
images = {kubectl_image: {"entrypoint": [kubectl]}}
if imagegate:
    images[imagegate_image] = {"entrypoint": [imagegate]}
json.dump(images, open(out + ".tmp", "w"), indent=2)
EOF
  mv "$DIR/images.json.tmp" "$DIR/images.json"
}

load_config() {
  [ -f "$DIR/config.sh" ] || die "no control plane in $DIR (scripts/cluster.sh up)"
  # shellcheck source=/dev/null
  source "$DIR/config.sh"
}

is_up() {
  [ -f "$DIR/config.sh" ] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do daemon_alive "$PIDS" "$c" || return 1; done
  load_config
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null
}

cmd_build() {
  ensure_e2e_binaries
}

cmd_up() {
  local owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --owner-pid) owner=$2; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  if is_up; then
    log "control plane already up in $DIR"
    return 0
  fi
  [ -d "$DIR" ] && cmd_down
  [ "$(id -u)" -eq 0 ] || die "the control plane's node stand-in needs root (mount namespaces)"
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  local start
  start=$(date +%s)
  mkdir -p "$DIR/logs" "$PIDS" "$DIR/node"
  ensure_e2e_binaries "$BIN"
  if [ -n "$owner" ]; then
    # Stops the control plane when its owner (a test process) is gone.
    start_daemon "$PIDS" watchdog "$DIR/logs/watchdog.log" bash -c \
      "while kill -0 $owner 2>/dev/null; do sleep 1; done; IMAGEGATE_CLUSTER_DIR='$DIR' exec '$REPO/scripts/cluster.sh' down"
  fi
  write_config
  load_config
  make_pki
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig e2e-node e2e-node
  write_images
  start_etcd
  start_apiserver
  start_controller_manager
  start_e2e_node
  cat >"$DIR/env" <<EOF
export IMAGEGATE_CLUSTER_DIR='$DIR'
export KUBECONFIG='$DIR/admin.kubeconfig'
export PATH='$BIN':"\$PATH"
EOF
  log "control plane up in $(($(date +%s) - start)) s: https://127.0.0.1:$API_PORT (source $DIR/env)"
}

cmd_down() {
  [ -d "$DIR" ] || return 0
  local c me=$$
  # The pods' processes first (e2e-node stops them), then the control plane.
  for c in e2e-node kube-controller-manager kube-apiserver etcd; do
    stop_daemon "$PIDS" "$c" 15
  done
  if [ -f "$PIDS/watchdog.pid" ] && [ "$(cat "$PIDS/watchdog.pid")" != "$me" ] \
    && [ "$(cat "$PIDS/watchdog.pid")" != "$PPID" ]; then
    stop_daemon "$PIDS" watchdog 1
  fi
  rm -rf "$DIR"
  log "control plane in $DIR stopped"
}

cmd_status() {
  local c rc=0
  for c in "${COMPONENTS[@]}"; do
    if daemon_alive "$PIDS" "$c"; then echo "$c: running (pid $(cat "$PIDS/$c.pid"))"; else echo "$c: stopped"; rc=1; fi
  done
  if is_up; then echo "kube-apiserver: ready at https://127.0.0.1:$API_PORT"; else echo "kube-apiserver: not ready"; rc=1; fi
  return $rc
}

cmd_env() {
  [ -f "$DIR/env" ] || die "no control plane in $DIR (scripts/cluster.sh up)"
  cat "$DIR/env"
}

cmd_restart() {
  load_config
  ensure_e2e_binaries "$BIN"
  case ${1:-} in
    etcd) stop_daemon "$PIDS" etcd; start_etcd ;;
    kube-apiserver) stop_daemon "$PIDS" kube-apiserver; start_apiserver ;;
    kube-controller-manager) stop_daemon "$PIDS" kube-controller-manager; start_controller_manager ;;
    e2e-node) stop_daemon "$PIDS" e2e-node; start_e2e_node ;;
    *) die "restart what? (${COMPONENTS[*]})" ;;
  esac
}

# The webhook answers through the apiserver when a server-side dry run of
# a Pod is decided by it: with failurePolicy Fail, an unreachable webhook
# fails the request with "failed calling webhook".
webhook_answers() {
  local out
  out=$("$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" -n default run imagegate-install-probe \
    --image=imagegate-install-probe.invalid/probe:v1 --restart=Never --dry-run=server -o name 2>&1) && return 0
  case $out in *"failed calling webhook"* | *"no endpoints"* | *"connection refused"*) return 1 ;; esac
  case $out in *"denied the request"*) return 0 ;; esac
  return 1
}

cmd_install() {
  load_config
  local imagegate=${IMAGEGATE_BIN:-}
  if [ -z "$imagegate" ]; then
    ensure_rust
    (cd "$REPO" && cargo build --quiet --locked --bin imagegate)
    imagegate="$(cargo_target_dir)/debug/imagegate"
  fi
  [ -x "$imagegate" ] || die "imagegate binary $imagegate not found"
  write_images "$imagegate"
  "$BIN/helm" --kubeconfig "$DIR/admin.kubeconfig" upgrade --install "$RELEASE" "$REPO/charts/imagegate" \
    --namespace "$RELEASE_NS" --create-namespace \
    --set image.repository="$E2E_IMAGE_REPOSITORY" --set image.tag=dev \
    --wait --timeout 5m "$@"
  wait_until 120 "the webhook through the apiserver" webhook_answers
  log "imagegate installed (release $RELEASE in $RELEASE_NS) and answering through the apiserver"
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    install) cmd_install "$@" ;;
    restart) cmd_restart "$@" ;;
    build) cmd_build ;;
    -h | --help | "") sed -n '2,32p' "$0" ;;
    *) die "unknown command $cmd (try --help)" ;;
  esac
}

main "$@"
