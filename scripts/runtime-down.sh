#!/usr/bin/env bash
# Stop the private containerd started by runtime-up.sh, by its recorded pid only.
# Usage: runtime-down.sh [--clean]
#   Without --clean, running containers survive under their shims and containerd picks them
#   up again on the next runtime-up.sh (as a real node would after a runtime restart).
#   --clean first kills every task and deletes every container in all of its namespaces, then
#   releases the pods' network namespaces and CNI address leases. Images stay.
set -euo pipefail
. "$(dirname "$0")/common.sh"
clean=0
case "${1:-}" in --clean) clean=1 ;; "") ;; *) echo "usage: $0 [--clean]" >&2; exit 2 ;; esac
PIDFILE=$KRS_RUN/containerd.pid
pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ] || [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != containerd ]; then
  rm -f "$PIDFILE"
  if containerd_up; then
    echo "runtime-down: something answers on $CONTAINERD_SOCK but $PIDFILE names no containerd; not stopping it" >&2
    exit 1
  fi
  exit 0 # not running
fi

if [ $clean = 1 ]; then
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
for _ in $(seq 100); do [ -e /proc/"$pid" ] || break; sleep 0.1; done
if [ -e /proc/"$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
rm -f "$PIDFILE"

if [ $clean = 1 ]; then
  # pod network namespaces (netns_mounts_under_state_dir = true) and host-local leases
  for n in "$KRS_RUN"/containerd/state/io.containerd.grpc.v1.cri/netns/*; do
    [ -e "$n" ] || continue
    umount "$n" 2>/dev/null || true; rm -f "$n"
  done
  rm -rf "$KRS_STATE/cni/ipam/krs-podnet"
fi
