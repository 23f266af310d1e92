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
stop() { # $1 name: TERM the recorded pid if it still runs that program, wait, then KILL
  local f="$DIR/$1.pid" p; p=$(cat "$f" 2>/dev/null) || return 0
  if [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "$1"; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 100); do [ -e "/proc/$p" ] || break; sleep 0.1; done
    [ ! -e "/proc/$p" ] || { log "$1 (pid $p) ignored SIGTERM; killing"; kill -KILL "$p" 2>/dev/null || true; }
  fi
  rm -f "$f"
}
for n in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop $n; done
if [ $wipe = 1 ] && [ -d "$DIR" ]; then
  case "$DIR" in /|/var|/var/lib|/etc|/root|/home) echo "cluster-down: refusing to wipe $DIR" >&2; exit 1 ;; esac
  rm -rf "$DIR"
fi
