# shellcheck shell=bash
# Shared helpers for scripts/*.sh (sourced, not run).

# The Debian packages the tests and the demo need: the reference tools
# (registry, skopeo, gpg), the C build dependencies of sequoia-openpgp's
# nettle backend, and the basics a minimal image may lack.
# shellcheck disable=SC2034  # used by the scripts that source this file
IMAGEGATE_APT_PACKAGES=(
  docker-registry skopeo gnupg gpg-agent gpgconf
  libclang-dev nettle-dev pkg-config
  python3 python3-venv curl ca-certificates tar gzip
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
