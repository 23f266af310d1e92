#!/usr/bin/env bash
# Stop the control plane started by cluster-up.sh in DIR, by recorded pids only.
# Usage: cluster-down.sh [DIR] [--wipe]   (default $CLUSTER_DIR; --wipe also deletes DIR:
#        etcd data, certificates, kubeconfigs, logs)
set -euo pipefail
. "$(dirname "$0")/common.sh"
wipe=0 DIR=
for a in "$@"; do
  case "$a" in
    --wipe) wipe=1 ;;
    -*) echo "usage: $0 [DIR] [--wipe]" >&2; exit 2 ;;
    *) DIR=$a ;;
  esac
done
DIR=$(realpath -m "${DIR:-$CLUSTER_DIR}")
stop() { # names: TERM each recorded pid that still runs that program, wait for all, then KILL
  local n p pids=()
  for n in "$@"; do
    p=$(cat "$DIR/$n.pid" 2>/dev/null) || continue
    if [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -- "$n" >/dev/null; then
      kill "$p" 2>/dev/null && pids+=("$p")
    fi
  done
  for p in ${pids[@]+"${pids[@]}"}; do
    for _ in $(seq 150); do pid_gone "$p" && break; sleep 0.1; done
    pid_gone "$p" || { log "pid $p ignored SIGTERM for 15s; killing"; kill -KILL "$p" 2>/dev/null || true; }
  done
  for n in "$@"; do rm -f "$DIR/$n.pid"; done
}
stop kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd
if [ $wipe = 1 ] && [ -d "$DIR" ]; then
  case "$DIR" in /|/var|/var/lib|/etc|/root|/home) echo "cluster-down: refusing to wipe $DIR" >&2; exit 1 ;; esac
  rm -rf "$DIR"
fi
