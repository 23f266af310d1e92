#!/usr/bin/env bash
# Everything the node needs, on a fresh machine, idempotently: Debian packages, the
# Kubernetes 1.20.2 control plane (built once, cached under /var/cache/kubelet-rs), the private
# containerd with local images, and the control plane started on loopback.
set -euo pipefail
here=$(dirname "$0")
"$here/install-deps.sh"
"$here/build-k8s.sh"
"$here/runtime-up.sh" >/dev/null
"$here/cluster-up.sh"
