#!/usr/bin/env bash
# A systemctl stand-in for kubeadm on a machine without systemd. kubeadm's init system code runs
# `systemctl daemon-reload|start|stop|restart|is-active|is-enabled|status kubelet.service`; this
# answers for kubelet.service only, which it runs as kubeadm's 10-kubeadm.conf drop-in would
# (kubelet-unit.sh: Restart=always, RestartSec=10). Every other unit is "not found".
# It is reached through a symlink NODE_STATE/bin/systemctl: NODE_STATE holds unit.env (KADM_KUBELET,
# KADM_NSENTER, KUBELET_EXTRA_ARGS), the pid files, systemctl.log and kubelet.log.
# Adapted from reference/kubeadm/systemctl.sh (set -e safe; otherwise unchanged).
set -euo pipefail
U=$(realpath -m "$(dirname "$0")/..")
HERE=$(dirname "$(realpath "$0")")
args=()
for a in "$@"; do case $a in -*) ;; *) args+=("$a") ;; esac; done
cmd=${args[0]:-}; svc=${args[1]:-}; svc=${svc%.service}
echo "$(date +%s.%N) systemctl $*" >> "$U/systemctl.log"
running() { [ -f "$U/unit.pid" ] && kill -0 "$(cat "$U/unit.pid")" 2>/dev/null; }
start() {
  if running; then return 0; fi
  rm -f "$U/unit.pid"
  # shellcheck disable=SC1091
  . "$U/unit.env"
  # shellcheck disable=SC2086 # KADM_NSENTER is a command prefix
  setsid $KADM_NSENTER bash "$HERE/kubelet-unit.sh" "$U" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 50); do [ -f "$U/unit.pid" ] && return 0; sleep 0.1; done
  echo "kubelet.service did not start" >&2; return 1
}
stop() {
  if ! running; then return 0; fi
  local p; p=$(cat "$U/unit.pid"); kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 450); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done   # TimeoutStopSec=90
  if [ -f "$U/kubelet.pid" ]; then kill -9 "$(cat "$U/kubelet.pid")" 2>/dev/null || true; fi
  kill -9 "$p" 2>/dev/null || true; rm -f "$U/unit.pid" "$U/kubelet.pid"
}
case $cmd in
  daemon-reload|reset-failed) exit 0 ;;
esac
if [ "$svc" != kubelet ]; then
  case $cmd in
    status) echo "Unit $svc.service could not be found."; echo "   Loaded: not-found"; exit 4 ;;
    is-active) echo inactive; exit 3 ;;
    is-enabled) echo "Failed to get unit file state for $svc.service: No such file or directory" >&2; exit 1 ;;
    *) echo "Failed to $cmd $svc.service: Unit $svc.service not found." >&2; exit 5 ;;
  esac
fi
case $cmd in
  enable|disable) exit 0 ;;
  is-enabled) echo enabled ;;
  is-active) if running; then echo active; else echo inactive; exit 3; fi ;;
  status)
    echo "* kubelet.service - kubelet: The Kubernetes Node Agent (kadm systemctl stand-in)"
    echo "   Loaded: loaded (10-kubeadm.conf emulated by kubelet-unit.sh; enabled)"
    if running; then echo "   Active: active (running) main pid $(cat "$U/kubelet.pid" 2>/dev/null || true)"
    else echo "   Active: inactive (dead)"; exit 3; fi ;;
  start) start ;;
  stop) stop ;;
  restart|try-restart|reload-or-restart) stop; start ;;
  *) echo "systemctl stand-in: unsupported command $cmd" >&2; exit 1 ;;
esac
