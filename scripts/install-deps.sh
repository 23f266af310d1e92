#!/usr/bin/env bash
# Debian packages the node and the tests need. Idempotent.
set -euo pipefail
. "$(dirname "$0")/common.sh"
need=(containerd runc containernetworking-plugins busybox-static umoci skopeo gcc libc6-dev
      golang-go rsync jq etcd-server etcd-client openssl iproute2 iptables make curl
      python3 util-linux golang-github-modern-go-reflect2-dev)   # the last: kadm/build.sh (kubeadm)
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
