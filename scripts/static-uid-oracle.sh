#!/usr/bin/env bash
# Upstream's static pod UIDs, from upstream's own code: builds tools/static-uid-oracle inside
# the Kubernetes 1.20.2 source tree that build-k8s.sh unpacked, then runs it.
#   scripts/static-uid-oracle.sh uid [-dump] FILE...   the UID upstream gives each manifest
#   scripts/static-uid-oracle.sh schema                the internal core.Pod type, for the Rust port
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$KRS_CACHE/k8s-$K8S_VERSION/src/kubernetes-$K8S_VERSION
BIN=$KRS_CACHE/k8s-$K8S_VERSION/bin/static-uid-oracle
[ -d "$SRC/vendor" ] || bash "$ROOT/scripts/build-k8s.sh" >&2
if [ ! -x "$BIN" ] || [ "$ROOT/tools/static-uid-oracle/main.go" -nt "$BIN" ]; then
  mkdir -p "$SRC/cmd/krs-static-uid-oracle"
  cp "$ROOT/tools/static-uid-oracle/main.go" "$SRC/cmd/krs-static-uid-oracle/"
  log "building the static pod UID oracle (a minute or two)"
  (cd "$SRC/.go/src/k8s.io/kubernetes" &&
    GOPATH="$SRC/.go" GO111MODULE=off GOFLAGS= HOME="${HOME:-/root}" \
      go build -o "$BIN" ./cmd/krs-static-uid-oracle)
fi
exec "$BIN" "$@"
