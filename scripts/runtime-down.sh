#!/usr/bin/env bash
# Stop the private containerd started by runtime-up.sh, by its recorded pid only.
# Usage: runtime-down.sh [--clean]
#   Without --clean, running containers survive under their shims and containerd picks them
#   up again on the next runtime-up.sh (as a real node would after a runtime restart).
#   --clean first tears down the pods' networks (CNI DEL), kills every task and deletes every
#   container in all of its namespaces, then removes the pods' network namespaces. Images stay.
#   (Removing pods through a kubelet is cleaner; this is for the leftovers of a crashed test.)
set -euo pipefail
. "$(dirname "$0")/common.sh"
clean=0
case "${1:-}" in --clean) clean=1 ;; "") ;; *) echo "usage: $0 [--clean]" >&2; exit 2 ;; esac
PIDFILE=$KRS_RUN/containerd.pid
pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ] || pid_gone "$pid" || [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != containerd ]; then
  rm -f "$PIDFILE"
  if containerd_up; then
    echo "runtime-down: something answers on $CONTAINERD_SOCK but $PIDFILE names no containerd; not stopping it" >&2
    exit 1
  fi
  exit 0 # not running
fi

cni_del() { # $1 sandbox id, $2 its netns: CNI DEL through each plugin of our conflist, last first,
  # as containerd would (releases the address, removes the veth and the ipMasq iptables rules)
  local conf n i
  conf=$(ls "$KRS_STATE"/cni/net.d/*.conflist 2>/dev/null | head -1); [ -n "$conf" ] || return 0
  n=$(jq '.plugins | length' "$conf")
  for ((i = n - 1; i >= 0; i--)); do
    jq -c --argjson i "$i" '.plugins[$i] + {name: .name, cniVersion: .cniVersion}' "$conf" |
      CNI_COMMAND=DEL CNI_CONTAINERID="$1" CNI_NETNS="$2" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
      "/usr/lib/cni/$(jq -r ".plugins[$i].type" "$conf")" >/dev/null 2>&1 || true
  done
}
if [ $clean = 1 ]; then
  for s in $(ctr_ containers ls -q 'labels."io.cri-containerd.kind"==sandbox'); do
    netns=$(ctr_ containers info "$s" | jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty')
    [ -z "$netns" ] || cni_del "$s" "$netns"
  done
  for ns in $(ctr --address "$CONTAINERD_SOCK" namespaces ls -q); do
    c() { ctr --address "$CONTAINERD_SOCK" -n "$ns" "$@"; }
    for t in $(c tasks ls -q); do c tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for t in $(c tasks ls -q); do
      for _ in $(seq 50); do c tasks delete "$t" >/dev/null 2>&1 && break; sleep 0.1; done
    done
    for k in $(c containers ls -q); do c containers delete "$k" >/dev/null 2>&1 || true; done
    left=$(c containers ls -q | wc -l)
    [ "$left" = 0 ] || log "runtime-down: $left containers left in namespace $ns"
  done
fi

kill "$pid"
for _ in $(seq 100); do pid_gone "$pid" && break; sleep 0.1; done
if ! pid_gone "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
rm -f "$PIDFILE"

if [ $clean = 1 ]; then
  # pod network namespaces (netns_mounts_under_state_dir = true); leases left by a failed CNI DEL
  for n in "$KRS_RUN"/containerd/state/io.containerd.grpc.v1.cri/netns/*; do
    [ -e "$n" ] || continue
    umount "$n" 2>/dev/null || true; rm -f "$n"
  done
  rm -rf "$KRS_STATE/cni/ipam/krs-podnet"
fi
