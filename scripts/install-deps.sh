#!/usr/bin/env bash
# Debian packages the node and the tests need. Idempotent.
set -euo pipefail
. "$(dirname "$0")/common.sh"
# Rust is not taken from Debian (bookworm's rustc is too old): rustup's stable, at least the
# workspace's rust-version.
min_rust=$(sed -nE 's/^rust-version = "([0-9.]+)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if ! command -v cargo >/dev/null; then
  log "cargo not found: install Rust >= $min_rust with rustup (https://rustup.rs), then rerun"; exit 1
fi
have_rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n' "$min_rust" "$have_rust" | sort -V | head -1)" != "$min_rust" ]; then
  log "rustc $have_rust is older than $min_rust: rustup update stable"; exit 1
fi
need=(containerd runc containernetworking-plugins busybox-static umoci skopeo gcc g++ libc6-dev
      golang-go rsync jq etcd-server etcd-client openssl iproute2 iptables make curl
      python3 util-linux golang-github-modern-go-reflect2-dev)   # g++: cargo fuzz; the last: kubeadm
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  apt-get install -y -qq kubernetes-client >/dev/null
fi
# Debian's etcd-server package starts a system etcd on 2379: stop only that unit, if it runs.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true; systemctl disable etcd >/dev/null 2>&1 || true
fi
log "dependencies present"
