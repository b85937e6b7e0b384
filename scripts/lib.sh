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
