#!/usr/bin/env bash
# Join a second node to the cluster that init.sh made in OUT_DIR, with `kubeadm join` and a bootstrap
# token (TLS bootstrap through a CSR). The second node is on this same machine: its own network
# namespace (own IP, its kubelet on the usual ports 10250/10248), its own mount namespace (its own
# /etc/kubernetes, /var/lib/kubelet, /var/log/pods, /var/log/containers, /var/lib/cni, /etc/hosts),
# its own containerd and cgroup root, and its own node name (--node-name; kubeadm then writes
# --hostname-override into the kubelet's flags file). See lib.sh.
# Writes OUT_DIR/join.result (key value lines).
# Adapted from reference/kubeadm/join.sh: OUT_DIR defaults to /var/log/kubelet-rs/kadm, set -e,
# `log` lines; the mount namespace set-up is shared with node 1 (lib.sh).
# Usage: join.sh [OUT_DIR [KUBELET_BIN]]   (default: the kubelet init.sh used)
# Env: NODE2 (default kadm-worker), N2_CGROUP_ROOT (default /kadm-n2; empty: none),
#      KUBELET_EXTRA_ARGS, IGNORE_PREFLIGHT
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
OUT=$(realpath -m "${1:-$KADM_OUT}")
[ -f "$OUT/env" ] || { log "usage: join.sh [OUT_DIR [KUBELET_BIN]] (no $OUT/env: run init.sh first)"; exit 2; }
# shellcheck disable=SC1091
. "$OUT/env"
KUBELET2=$(realpath "${2:-$KUBELET_BIN}")
NODE2=${NODE2:-kadm-worker}
N2_CGROUP_ROOT=${N2_CGROUP_ROOT-/kadm-n2}
IGN="FileExisting-conntrack${IGNORE_PREFLIGHT:+,$IGNORE_PREFLIGHT}"
SD=$OUT/n2; mkdir -p "$SD"
R=$OUT/join.result; : > "$R"
res() { echo "$1 $2" | tee -a "$R"; }

log "node 2 ($NODE2, $NET.2): mount namespace, containerd, images"
cat >> "$OUT/env" <<EOF
NODE2=$NODE2
KUBELET2=$KUBELET2
N2_CGROUP_ROOT=$N2_CGROUP_ROOT
EOF
node_up 2 "$NODE2" "$SD"
# shellcheck disable=SC2153 # SOCK is set by node_dirs
node_dirs 2; SOCK2=$SOCK
if [ -n "$N2_CGROUP_ROOT" ]; then cgroup_root_up "$N2_CGROUP_ROOT"; fi
"$KADM_TOOLS/images.sh" "$SOCK2" pause busybox
log "node 2 up"
bin_dir "$SD/bin" "$KUBELET2"
cat > "$SD/unit.env" <<EOF
KADM_KUBELET=$KUBELET2
KADM_NSENTER="nsenter -t $(cat "$SD/holder.pid") -m -n"
KUBELET_EXTRA_ARGS="${N2_CGROUP_ROOT:+--cgroup-root=$N2_CGROUP_ROOT }${KUBELET_EXTRA_ARGS:-}"
EOF

# what an admin runs on the control plane to get the join command
# (retried: on a loaded machine the API server may not answer at once; stderr kept)
JOIN=
for i in 1 2 3 4 5; do
  JOIN=$(in_node "$OUT/n1" "$KUBEADM" token create --kubeconfig /etc/kubernetes/admin.conf --ttl 1h --print-join-command 2>>"$OUT/token-create.log" | tail -1) || true
  case $JOIN in "kubeadm join "*) break ;; esac
  log "kubeadm token create failed (try $i); see $OUT/token-create.log"; sleep 5
done
case $JOIN in "kubeadm join "*) ;; *)
  log "no join command from kubeadm token create: $JOIN"; tail -5 "$OUT/token-create.log" >&2 || true
  # what node 1 looked like then: is its API server up, and what did its kubelet last say
  in_node "$OUT/n1" curl -sk -m 5 "https://$NET.1:6443/healthz" >&2 || log "node 1's API server does not answer"
  ctr -a "$RUN_ROOT/n1/containerd.sock" -n k8s.io tasks ls >&2 || true
  tail -20 "$OUT/n1/kubelet.log" >&2 || true
  exit 1 ;;
esac
# shellcheck disable=SC2206
JOIN_CMD=($JOIN --node-name "$NODE2" --cri-socket "$SOCK2" --ignore-preflight-errors="$IGN")
echo "${JOIN_CMD[*]}" > "$OUT/kubeadm-join.cmd"
log "${JOIN_CMD[*]} (log: $OUT/kubeadm-join.log, kubelet log: $SD/kubelet.log)"
t0=$(now); echo "T_JOIN0=$t0" >> "$OUT/env"
in_node "$SD" env PATH="$SD/bin:$PATH" "${JOIN_CMD[@]}" > "$OUT/kubeadm-join.log" 2>&1 &
jpid=$!
tready=
while kill -0 $jpid 2>/dev/null; do
  if [ -z "$tready" ] && [ "$(node_ready "$NODE2")" = True ]; then tready=$(now); fi
  sleep 0.5
done
rc=0; wait $jpid || rc=$?; t1=$(now)
res kubeadm_join_rc "$rc"
res kubeadm_join_s "$(secs "$t0" "$t1")"
if [ "$rc" != 0 ]; then
  tail -30 "$OUT/kubeadm-join.log" >&2
  log "kubeadm join failed (rc $rc): see $OUT/kubeadm-join.log and $SD/kubelet.log"; exit 1
fi
for _ in $(seq 240); do
  [ -n "$tready" ] && break
  if [ "$(node_ready "$NODE2")" = True ]; then tready=$(now); break; fi
  sleep 0.5
done
if [ -n "$tready" ]; then
  res node2_ready_after_join_start_s "$(secs "$t0" "$tready")"
  ks=$(head -1 "$SD/kubelet-starts.log" 2>/dev/null | cut -d' ' -f1) || true
  if [ -n "$ks" ]; then res node2_ready_after_kubelet_start_s "$(secs "$ks" "$tready")"; fi
else
  res node2_ready_after_join_start_s none
fi
res node2_kubelet_starts "$(count ' start ' "$SD/kubelet-starts.log")"
res node2_kubelet_exits "$(count ' exit ' "$SD/kubelet-starts.log")"
echo "T_JOIN1=$t1" >> "$OUT/env"
log "kubeadm join done in $(secs "$t0" "$t1") s"
[ -n "$tready" ] || { log "node $NODE2 never became Ready"; exit 1; }
