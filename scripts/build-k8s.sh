#!/usr/bin/env bash
# Build the Kubernetes 1.20.2 control plane (and the upstream kubelet, our yardstick)
# from Debian's kubernetes source package. Cached: a second run is a no-op.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=$KRS_CACHE/k8s-$K8S_VERSION
WHAT=${WHAT:-"cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet"}
ok=1; for b in $WHAT; do [ -x "$OUT/bin/$(basename "$b")" ] || ok=0; done
if [ $ok = 1 ]; then log "kubernetes $K8S_VERSION binaries cached in $OUT/bin"; exit 0; fi
mkdir -p "$OUT/bin" "$OUT/src"
# `apt-get source` needs an active deb-src entry, in either of apt's formats.
has_src() {
  grep -hqsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list ||
    grep -hqsE '^[[:space:]]*Types:.*[[:space:]]deb-src([[:space:]]|$)' /etc/apt/sources.list.d/*.sources
}
if ! has_src; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then   # deb822 (bookworm's default)
    sed -E 's/^([[:space:]]*Types:).*/\1 deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/kubelet-rs-src.sources
  fi
  if grep -qsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then   # one-line format
    sed -nE 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list \
      > /etc/apt/sources.list.d/kubelet-rs-src.list
  fi
  has_src || { log "no Debian source entries to copy: add a deb-src line for your mirror"; exit 1; }
  apt-get update -qq
fi
cd "$OUT/src"
if [ ! -d kubernetes-$K8S_VERSION ]; then
  ls kubernetes_*.orig.tar.gz >/dev/null 2>&1 || apt-get source --download-only kubernetes >/dev/null
  tar xzf kubernetes_*.orig.tar.gz
fi
cd kubernetes-$K8S_VERSION
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
export GOPATH="$PWD/.go" HOME="${HOME:-/root}" GO111MODULE=off GOFLAGS=
cd .go/src/k8s.io/kubernetes
log "building $WHAT (about 8 min on 2 cores; log: $OUT/build.log)"
with_progress "$OUT/build.log" "building Kubernetes" make WHAT="$WHAT" || { tail -30 "$OUT/build.log"; exit 1; }
for b in $WHAT; do cp "_output/bin/$(basename "$b")" "$OUT/bin/"; done
log "built into $OUT/bin"
