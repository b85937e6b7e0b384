# shellcheck shell=bash
# Shared helpers for scripts/*.sh (sourced, not run).

# The Debian packages the tests and the demo need: the reference tools
# (registry, skopeo, gpg), the C build dependencies of sequoia-openpgp's
# nettle backend, openssl for the control plane's certificates, and the
# basics a minimal image may lack. Go (>= 1.26) comes with the machine.
# shellcheck disable=SC2034  # used by the scripts that source this file
IMAGEGATE_APT_PACKAGES=(
  docker-registry skopeo gnupg gpg-agent gpgconf
  libclang-dev nettle-dev pkg-config
  python3 python3-venv curl ca-certificates tar gzip
  openssl
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly if we are root, else through sudo
# (non-interactive, so CI without a terminal fails fast instead of hanging).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $* (not root, no sudo)"
  fi
}

# Installs the given Debian packages that are not installed yet. Runs
# `apt-get update` only if the install fails with the current lists.
ensure_apt_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 \
    || die "missing packages ${missing[*]} and no apt-get (this script expects Debian 12)"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    log "apt-get update, then retrying"
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# Makes sure cargo, rustfmt and clippy are available. The toolchain itself
# comes with the machine (rustup); it cannot be downloaded here.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup, Rust >= 1.89)"
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt / cargo clippy missing and no rustup to add them"
    log "adding rustfmt and clippy"
    rustup component add rustfmt clippy
  fi
}

# A free TCP port on 127.0.0.1 (bound and released; tiny race, fine locally).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until URL answers 2xx (up to ~15 s); fails otherwise.
wait_http() {
  local url=$1 _
  for _ in $(seq 150); do
    curl -sf -o /dev/null "$url" && return 0
    sleep 0.1
  done
  die "$url did not answer"
}

# make_oci_layout OUT TEXT NAME: a one-layer linux/amd64 OCI image layout in
# OUT whose file /hello.txt holds TEXT, tagged NAME in the layout (skopeo:
# `oci:OUT:NAME`); deterministic (same TEXT, same digest). The manifest's
# exact bytes are also left in OUT/manifest.json (for standalone-sign).
# Built by hand because no container engine runs here.
make_oci_layout() {
  local out=$1 text=$2 name=$3 work ld ls cd_ cs md ms diffid
  work=$(mktemp -d)
  mkdir -p "$out/blobs/sha256"
  printf '%s\n' "$text" > "$work/hello.txt"
  tar --format=ustar --sort=name --owner=0 --group=0 --numeric-owner --mode=0644 \
    --mtime='2024-01-01 00:00Z' -C "$work" -cf "$work/layer.tar" hello.txt
  diffid=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  gzip -n -9 -c "$work/layer.tar" > "$work/layer.tar.gz"
  ld=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1); ls=$(stat -c %s "$work/layer.tar.gz")
  cp "$work/layer.tar.gz" "$out/blobs/sha256/$ld"
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diffid" > "$work/config.json"
  cd_=$(sha256sum "$work/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$work/config.json")
  cp "$work/config.json" "$out/blobs/sha256/$cd_"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cd_" "$cs" "$ld" "$ls" > "$work/manifest.json"
  md=$(sha256sum "$work/manifest.json" | cut -d' ' -f1); ms=$(stat -c %s "$work/manifest.json")
  cp "$work/manifest.json" "$out/blobs/sha256/$md"
  cp "$work/manifest.json" "$out/manifest.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$md" "$ms" "$name" > "$out/index.json"
  rm -rf "$work"
}

# --- the Go-built test infrastructure (e2e/) --------------------------------

# The e2e Go module: the real control plane (kube-apiserver,
# kube-controller-manager, etcd, kubectl, helm) and the containers/image
# oracle, every version pinned by e2e/go.mod and e2e/go.sum.
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/e2e"
# The programs ensure_e2e_binaries builds: name, then Go package.
E2E_PROGRAMS=(
  kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
  kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  kubectl k8s.io/kubernetes/cmd/kubectl
  helm helm.sh/helm/v4/cmd/helm
  etcd ./cmd/etcd
  e2e-node ./cmd/e2e-node
)
# The Kubernetes release the binaries report (/version, kubectl version):
# the in-tree default is v0.0.0-master, which Helm's kubeVersion checks and
# kubectl's skew warnings would misread.
E2E_KUBE_VERSION=v1.37.2

# The version e2e/go.mod pins for a module.
e2e_module_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$E2E_DIR/go.mod"
}

# Where a built program lives: one directory per hash of what decides its
# bytes (go.mod, go.sum and, for the e2e module's own commands, their
# sources), so a second run with the same pins reuses it in a moment and a
# pin change builds anew.
e2e_program_path() {
  local name=$1 pkg=$2 hash
  hash=$(cd "$E2E_DIR" && {
    cat go.mod go.sum
    case $pkg in ./*) find "$pkg" -name '*.go' | LC_ALL=C sort | xargs cat ;; esac
  } | sha256sum | cut -c1-16)
  printf '%s/e2e-bin/%s-%s/%s\n' "${IMAGEGATE_CACHE_DIR:-$HOME/.cache/imagegate}" "$name" "$hash" "$name"
}

# Builds the e2e programs that are not cached yet and links them all into
# DIR (made if needed; no links without DIR). The Go module proxy is the only network the build
# uses; nothing is fetched at run time.
ensure_e2e_binaries() {
  local dir=${1:-} name pkg i path start ver minor ldflags
  [ -z "$dir" ] || mkdir -p "$dir"
  for ((i = 0; i < ${#E2E_PROGRAMS[@]}; i += 2)); do
    name=${E2E_PROGRAMS[i]} pkg=${E2E_PROGRAMS[i + 1]}
    path=$(e2e_program_path "$name" "$pkg")
    if [ ! -x "$path" ]; then
      command -v go >/dev/null 2>&1 || die "go not found: the control plane is built from Go modules (Go >= 1.26)"
      start=$(date +%s)
      log "building $name ($pkg; the first build of the control plane takes minutes)"
      ver=$E2E_KUBE_VERSION minor=${E2E_KUBE_VERSION#v1.}
      minor=${minor%%.*}
      ldflags="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      [ "$name" = helm ] && ldflags+=" -X helm.sh/helm/v4/internal/version.version=$(e2e_module_version helm.sh/helm/v4)"
      mkdir -p "$(dirname "$path")"
      (cd "$E2E_DIR" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
        -ldflags "$ldflags" -o "$path.tmp" "$pkg") || die "go build $pkg failed"
      mv "$path.tmp" "$path"
      log "built $name in $(($(date +%s) - start)) s"
    fi
    [ -z "$dir" ] || ln -sfn "$path" "$dir/$name"
  done
}

# --- background processes, stopped by PID -----------------------------------

# start_daemon PIDDIR NAME LOG CMD...: starts CMD in the background with its
# output in LOG and its PID in PIDDIR/NAME.pid.
start_daemon() {
  local piddir=$1 name=$2 logfile=$3
  shift 3
  mkdir -p "$piddir"
  "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$piddir/$name.pid"
}

# stop_daemon PIDDIR NAME [GRACE]: SIGTERM, then SIGKILL after GRACE
# seconds (default 10) if it is still there; removes the PID file.
stop_daemon() {
  local piddir=$1 name=$2 grace=${3:-10} pid i
  [ -f "$piddir/$name.pid" ] || return 0
  pid=$(cat "$piddir/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$piddir/$name.pid"
}

# daemon_alive PIDDIR NAME: is it running?
daemon_alive() {
  [ -f "$1/$2.pid" ] && kill -0 "$(cat "$1/$2.pid")" 2>/dev/null
}

# wait_until SECONDS WHAT CMD...: runs CMD every 0.2 s until it succeeds;
# dies naming WHAT after SECONDS.
wait_until() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what: not ready after ${secs} s"
}

# Cargo's target directory (CARGO_TARGET_DIR or the workspace's target/).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
