#!/usr/bin/env bash
# The kubeadm yardstick (issue #17) with a given kubelet: builds what it needs (cached: kubeadm
# with the reflect2 fix, the crictl stand-in, kube-proxy, the control-plane images), then
# `kubeadm init` of a control-plane node, its checks, `kubeadm join` of a worker, its checks,
# and the teardown, printing each step's time. Everything runs in the nodes' own network and
# mount namespaces with their own containerd (see scripts/kadm/README.md); the project's own
# cluster and containerd are not touched.
# Usage: kadm-e2e.sh [KUBELET_BIN]   (default: target/$KRS_PROFILE/kubelet, release by default)
# Env: KADM_OUT (logs and results, default /var/log/kubelet-rs/kadm), KEEP=1 (leave it up),
#      and the knobs of scripts/kadm/*.sh (NODE1, NODE2, KUBELET_EXTRA_ARGS, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/kadm/lib.sh
. "$here/kadm/lib.sh"
KUBELET_BIN=$(realpath "${1:-$(default_kubelet)}")
[ -x "$KUBELET_BIN" ] || { log "no kubelet at $KUBELET_BIN"; exit 2; }
t0=$(now)
log "kadm: build (cached)"
"$here/kadm/build.sh"
"$here/kadm/images.sh"
t1=$(now)
log "kadm: build and images took $(secs "$t0" "$t1") s"
rc=0
"$here/kadm/run.sh" "$KUBELET_BIN" "$KADM_OUT" || rc=$?
log "kadm: timings"
grep -E '^(step_|init: kubeadm_init_s|init: node1_ready|checks-init: static_pods_all|checks-init: bb-cp_running_s|join: kubeadm_join_s|join: node2_ready|checks-join: bb-worker_running_s|checks-join: node._kubelet_rss|checks-rotation: )' \
  "$KADM_OUT/results.txt" >&2 || true
if [ $rc != 0 ]; then
  log "kadm: FAILED; the failed checks:"
  grep -E 'FAIL|rc=[1-9]' "$KADM_OUT/results.txt" >&2 || true
  log "kadm: logs in $KADM_OUT (n1/kubelet.log, n2/kubelet.log, kubeadm-*.log)"
  exit 1
fi
log "kadm: PASS in $(secs "$t0" "$(now)") s (results: $KADM_OUT/results.txt)"
