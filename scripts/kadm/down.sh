#!/usr/bin/env bash
# Tear down what init.sh/join.sh made for OUT_DIR: `kubeadm reset -f` on each node (in the node's
# namespaces, so it stops that node's kubelet through the systemctl stand-in, removes its pods
# through crictl and cleans its /etc/kubernetes, /var/lib/kubelet and etcd data), then any pod left,
# the containerds and their shims, the namespace holders (their mounts go with them), the cgroup
# roots, the network namespaces and the mount points made on the host. Only processes recorded in
# OUT_DIR or started with this cluster's own sockets are stopped. Idempotent.
# Adapted from reference/kubeadm/down.sh: OUT_DIR defaults to /var/log/kubelet-rs/kadm, node 1 is
# private too (nothing of the host's /etc/kubernetes to clean), set -e, `log` lines; exits 1 if
# anything is left.
# Usage: down.sh [OUT_DIR]   (PURGE=1 also deletes the containerd roots with their imported images)
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
OUT=$(realpath -m "${1:-$KADM_OUT}")
# shellcheck disable=SC2034 # read through ${!cg}
N1_CGROUP_ROOT=/kadm-n1 N2_CGROUP_ROOT=/kadm-n2
# shellcheck disable=SC1091
if [ -f "$OUT/env" ]; then . "$OUT/env"; fi
mkdir -p "$OUT"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
for n in 2 1; do
  SD=$OUT/n$n; node_dirs "$n"
  [ -d "$SD" ] || continue
  if alive "$SD/holder.pid" && [ -x "$SD/bin/kubeadm" ] && [ -f "$SD/unit.env" ]; then
    log "node $n: kubeadm reset -f"
    rc=0
    in_node "$SD" env PATH="$SD/bin:$PATH" timeout 180 kubeadm reset -f --cri-socket "$SOCK" \
      > "$OUT/kubeadm-reset-n$n.log" 2>&1 || rc=$?
    echo "kubeadm reset -f on node $n: rc=$rc" >> "$OUT/down.log"
  fi
  # the kubelet, in case reset did not stop it
  if [ -x "$SD/bin/systemctl" ] && [ -f "$SD/unit.env" ]; then "$SD/bin/systemctl" stop kubelet.service || true; fi
  kill_pidfile "$SD/kubelet.pid"; kill_pidfile "$SD/unit.pid"
  # pods left in the runtime
  if [ -S "$SOCK" ] && alive "$SD/containerd.pid"; then
    for p in $("$CRICTL" -r "$SOCK" pods -q 2>/dev/null || true); do
      "$CRICTL" -r "$SOCK" stopp "$p" >/dev/null 2>&1 || true; "$CRICTL" -r "$SOCK" rmp "$p" >/dev/null 2>&1 || true
    done
    left=$("$CRICTL" -r "$SOCK" pods -q 2>/dev/null | wc -l) || true
    echo "node $n: pods left in containerd after cleanup: $left" >> "$OUT/down.log"
  fi
  log "node $n: containerd, shims, namespace holder"
  kill_pidfile "$SD/containerd.pid"
  for p in $(pids_with_arg "$SOCK"); do kill "$p" 2>/dev/null || true; done   # shims of this containerd
  sleep 0.5
  for p in $(pids_with_arg "$SOCK"); do kill -9 "$p" 2>/dev/null || true; done
  kill_pidfile "$SD/holder.pid"
  cg=N${n}_CGROUP_ROOT; if [ -n "${!cg}" ]; then cgroup_root_down "${!cg}"; fi
  rm -rf "$RD"
  for m in "${NODE_MOUNTS[@]}" hosts:; do rm -rf "${ND:?}/${m%%:*}"; done
  rm -rf "$ND/ipam"
  if [ -n "${PURGE:-}" ]; then rm -rf "$ND"; fi
done
for n in 1 2; do if [ -e "/run/netns/kadm$n" ]; then ip netns del "kadm$n"; fi; done
# mount points the holders made on the host (only if still empty: nothing else uses them then)
if [ -f "$STATE_ROOT/mountpoints.created" ]; then
  sort -ru "$STATE_ROOT/mountpoints.created" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  rm -f "$STATE_ROOT/mountpoints.created"
fi
if [ -z "${FLEX_EXISTED-1}" ]; then rmdir -p /usr/libexec/kubernetes/kubelet-plugins/volume/exec 2>/dev/null || true; fi
if [ -n "${PURGE:-}" ]; then rmdir "$STATE_ROOT" 2>/dev/null || true; fi
rmdir "$RUN_ROOT" 2>/dev/null || true
# report what is still there
procs=$(for n in 1 2; do node_dirs $n; pids_with_arg "$SOCK"; done | wc -l)
nets=$(find /run/netns -maxdepth 1 -name 'kadm*' 2>/dev/null | wc -l)
cgs=$(find /sys/fs/cgroup/ -mindepth 2 -maxdepth 2 -name 'kadm-n*' 2>/dev/null | wc -l)
mnts=$(grep -c " $STATE_ROOT/" /proc/self/mountinfo || true)
{
  echo "processes with this cluster's sockets: $procs"
  echo "netns: $nets"
  echo "cgroups: $cgs"
  echo "mounts of $STATE_ROOT in the host namespace: $mnts"
} | tee -a "$OUT/down.log"
if [ "$procs$nets$cgs$mnts" != 0000 ]; then log "down: something is left (see above)"; exit 1; fi
log "down: nothing left"
