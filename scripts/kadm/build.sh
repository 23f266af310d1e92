#!/usr/bin/env bash
# Build what kubeadm 1.20.2 needs here, once (cached under $KRS_CACHE/kadm/bin):
#  - kube-proxy (scripts/build-k8s.sh, into $K8S_BIN, for its image);
#  - kubeadm rebuilt with reflect2 v1.0.2 (Debian's golang-github-modern-go-reflect2-dev) put over
#    the vendored v1.0.1 with `go build -overlay`: the v1.0.1 that Kubernetes 1.20 vendors crashes
#    under Go >= 1.18 (nil pointer in reflect2.(*frozenConfig).Type2 as soon as kubeadm marshals its
#    config: `kubeadm config print init-defaults` and `kubeadm init` both panic). The source tree
#    itself is not changed;
#  - crictl: a minimal stand-in (crictl/main.go beside this script) for the subset kubeadm calls;
#    cri-tools is not packaged in Debian. Its `pull` never contacts a registry.
# Adapted from reference/kubeadm/build.sh: paths from common.sh ($KRS_CACHE), dependencies through
# scripts/install-deps.sh, the Kubernetes tree through scripts/build-k8s.sh, `log` lines.
# Usage: build.sh     (FORCE=1 rebuilds kubeadm and crictl)
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
"$KADM_TOOLS/../install-deps.sh"
WHAT="cmd/kube-proxy" "$KADM_TOOLS/../build-k8s.sh"   # also fetches and unpacks the source (cached)
K=$(realpath "$K8S_SRC")
mkdir -p "$KADM_CACHE/bin"
R2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$R2/go_above_118.go" ] || { log "no reflect2 >= 1.0.2 in $R2 (golang-github-modern-go-reflect2-dev)"; exit 1; }
if [ ! -x "$KUBEADM" ] || [ -n "${FORCE:-}" ]; then
  log "building kubeadm with reflect2 from $R2 (about 1 min)"
  W=$(mktemp -d)
  # the build sees the tree through three paths (the real one, the GOPATH symlink hack/lib makes
  # under _output, the one build-k8s.sh makes under .go)
  python3 - "$K" "$R2" "$W/overlay.json" <<'PY'
import json, os, sys
k, r2, out = sys.argv[1:]
rel = "vendor/github.com/modern-go/reflect2"
roots = [os.path.join(k, rel), os.path.join(k, "_output/local/go/src/k8s.io/kubernetes", rel),
         os.path.join(k, ".go/src/k8s.io/kubernetes", rel)]
repl = {}
new = {f for f in os.listdir(r2) if f.endswith((".go", ".s"))}
for root in roots:
    for f in os.listdir(os.path.join(k, rel)):
        if f.endswith((".go", ".s")) and f not in new:
            repl[os.path.join(root, f)] = ""          # file gone in v1.0.2
    for f in new:
        repl[os.path.join(root, f)] = os.path.join(r2, f)
json.dump({"Replace": repl}, open(out, "w"), indent=1)
PY
  (cd "$K" && nice -n 10 hack/make-rules/build.sh cmd/kubeadm "-overlay=$W/overlay.json") \
    > "$KADM_CACHE/kubeadm-build.log" 2>&1 || { tail -30 "$KADM_CACHE/kubeadm-build.log" >&2; exit 1; }
  cp "$K/_output/local/bin/linux/amd64/kubeadm" "$KUBEADM.new" && mv "$KUBEADM.new" "$KUBEADM"
  rm -rf "$W"
fi
"$KUBEADM" config print init-defaults --component-configs KubeletConfiguration >/dev/null 2>&1 \
  || { log "kubeadm still broken (reflect2 panic?)"; exit 1; }
if [ ! -x "$CRICTL" ] || [ "$KADM_TOOLS/crictl/main.go" -nt "$CRICTL" ] || [ -n "${FORCE:-}" ]; then
  log "building the crictl stand-in"
  D="$K/.go/src/k8s.io/kubernetes/cmd/kadm-crictl"; mkdir -p "$D"; cp "$KADM_TOOLS/crictl/main.go" "$D/main.go"
  (cd "$K/.go/src/k8s.io/kubernetes" && GOPATH=$K/.go GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' \
    nice -n 10 go build -o "$CRICTL" ./cmd/kadm-crictl)
fi
log "kubeadm $("$KUBEADM" version -o short), crictl stand-in, kube-proxy: ready in $KADM_CACHE/bin, $K8S_BIN"
