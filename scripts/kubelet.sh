#!/usr/bin/env bash
# Start (or stop) OUR kubelet as node $NODE_NAME against the private containerd
# (runtime-up.sh) and the cluster in $CLUSTER_DIR (cluster-up.sh), in the background.
# Usage: kubelet.sh [start|stop]   (KRS_PROFILE=release|debug picks the build; default release)
#   pid $KRS_RUN/kubelet-rs.pid   log /var/log/kubelet-rs/kubelet-rs.log
# Extra flags may be passed in KUBELET_ARGS (e.g. "--v=4"); KRS_KUBELET_CONFIG names another
# KubeletConfiguration file (default $CLUSTER_DIR/kubelet-config.yaml).
set -euo pipefail
. "$(dirname "$0")/common.sh"
top=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-start}
PROFILE=${KRS_PROFILE:-release}
BIN=${KRS_KUBELET_BIN:-$top/target/$PROFILE/kubelet}
PIDFILE=$KRS_RUN/kubelet-rs.pid LOG=${KRS_KUBELET_LOG:-/var/log/kubelet-rs/kubelet-rs.log}
ROOT=$KRS_STATE/kubelet
DIR=$CLUSTER_DIR
CONFIG=${KRS_KUBELET_CONFIG:-$DIR/kubelet-config.yaml}
fail() { echo "kubelet.sh: $*" >&2; exit 1; }
running() {
  local p; p=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$p" ] && ! pid_gone "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = kubelet ] && echo "$p"
}
case $action in
  stop)
    if p=$(running); then
      kill "$p"
      for _ in $(seq 100); do pid_gone "$p" && break; sleep 0.1; done
      pid_gone "$p" || kill -KILL "$p" 2>/dev/null || true
      log "kubelet-rs stopped (pid $p)"
    fi
    rm -f "$PIDFILE"; exit 0 ;;
  start) ;;
  *) fail "usage: kubelet.sh [start|stop]" ;;
esac
if p=$(running); then log "kubelet-rs already running (pid $p)"; exit 0; fi
[ -x "$BIN" ] || fail "$BIN missing; build it with cargo build${PROFILE:+ --profile $PROFILE}"
containerd_up || fail "containerd does not answer on $CONTAINERD_SOCK; run scripts/runtime-up.sh"
for f in "$DIR/node-$NODE_NAME.kubeconfig" "$CONFIG"; do
  [ -s "$f" ] || fail "$f missing; run scripts/cluster-up.sh"
done
if p=$(cat "$KRS_RUN/upstream-kubelet.pid" 2>/dev/null) && [ -n "$p" ] && ! pid_gone "$p"; then
  fail "the upstream kubelet is running (pid $p); stop it first: scripts/upstream-kubelet.sh stop"
fi
mkdir -p "$ROOT" "$(dirname "$LOG")" "$KRS_RUN"
# shellcheck disable=SC2086 # KUBELET_ARGS is a list of flags
setsid "$BIN" \
  --kubeconfig="$DIR/node-$NODE_NAME.kubeconfig" --config="$CONFIG" \
  --hostname-override="$NODE_NAME" --root-dir="$ROOT" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
  ${KUBELET_ARGS:---v=2} >>"$LOG" 2>&1 </dev/null &
echo $! > "$PIDFILE"
ready() {
  [ "$(kubectl --kubeconfig "$DIR/admin.kubeconfig" --request-timeout=5s get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
if ! wait_for 30 ready; then
  tail -20 "$LOG" >&2
  running >/dev/null || fail "kubelet exited; log: $LOG"
  fail "node $NODE_NAME not Ready within 30 s; log: $LOG"
fi
log "kubelet-rs started (pid $(cat "$PIDFILE"), node $NODE_NAME Ready, log $LOG)"
