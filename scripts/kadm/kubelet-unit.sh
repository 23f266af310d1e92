#!/usr/bin/env bash
# kubelet.service as kubeadm's systemd drop-in 10-kubeadm.conf defines it, for a machine without
# systemd (started by systemctl.sh, in the node's namespaces):
#   EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env     (KUBELET_KUBEADM_ARGS, written by kubeadm)
#   EnvironmentFile=-/etc/default/kubelet                   (KUBELET_EXTRA_ARGS; here from unit.env)
#   ExecStart=kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf
#     --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml
#     $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
#   Restart=always RestartSec=10
# The kubelet's output goes to NODE_STATE_DIR/kubelet.log (one "=== kadm kubelet.service start #N"
# line before each start, its argv included), starts and exits to NODE_STATE_DIR/kubelet-starts.log.
# Adapted from reference/kubeadm/kubelet-unit.sh (set -e safe; otherwise unchanged).
# Usage: kubelet-unit.sh NODE_STATE_DIR   (NODE_STATE_DIR/unit.env: KADM_KUBELET, KUBELET_EXTRA_ARGS)
set -euo pipefail
U=$1
echo $$ > "$U/unit.pid.new" && mv "$U/unit.pid.new" "$U/unit.pid"
# shellcheck disable=SC1091
. "$U/unit.env"
stopping='' child=''
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
while [ -z "$stopping" ]; do
  n=$(($(grep -c ' start ' "$U/kubelet-starts.log" 2>/dev/null || true) + 1))   # counts over restarts of the unit
  KUBELET_KUBEADM_ARGS=
  # shellcheck disable=SC1091
  if [ -f /var/lib/kubelet/kubeadm-flags.env ]; then . /var/lib/kubelet/kubeadm-flags.env; fi
  # shellcheck disable=SC2206
  argv=("$KADM_KUBELET" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf
        --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml
        $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS)
  echo "=== kadm kubelet.service start #$n at $(date +%s.%N): ${argv[*]}" >> "$U/kubelet.log"
  "${argv[@]}" >> "$U/kubelet.log" 2>&1 &
  child=$!; echo "$child" > "$U/kubelet.pid"
  echo "$(date +%s.%N) start $child" >> "$U/kubelet-starts.log"
  rc=0; wait "$child" || rc=$?
  # a trapped signal interrupts wait: wait again until the kubelet has really exited
  while kill -0 "$child" 2>/dev/null; do rc=0; wait "$child" || rc=$?; done
  echo "=== kadm kubelet.service: kubelet exited rc=$rc at $(date +%s.%N)" >> "$U/kubelet.log"
  echo "$(date +%s.%N) exit $rc" >> "$U/kubelet-starts.log"
  child=; rm -f "$U/kubelet.pid"
  [ -n "$stopping" ] && break
  sleep 10 & wait $! || true
done
rm -f "$U/unit.pid"
