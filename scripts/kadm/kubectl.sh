#!/usr/bin/env bash
# kubectl as cluster admin against the kadm cluster (its API server is only reachable from the
# nodes' network namespaces; admin.conf is node 1's private /etc/kubernetes/admin.conf).
# Adapted from reference/kubeadm/kubectl.sh: no OUT_DIR argument (admin.conf has a fixed place).
# Usage: kubectl.sh ARGS...      e.g. kubectl.sh get pods -A -o wide
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
[ -s "$(admin_conf)" ] || { log "no $(admin_conf): run init.sh first"; exit 2; }
exec nsenter --net=/run/netns/kadm1 kubectl --kubeconfig "$(admin_conf)" "$@"
