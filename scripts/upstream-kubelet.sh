#!/usr/bin/env bash
# Start the UPSTREAM kubelet 1.20.2 (our yardstick) as node $NODE_NAME against the private
# containerd (runtime-up.sh) and the cluster in DIR (cluster-up.sh), in the background.
# Usage: upstream-kubelet.sh [DIR]       start (idempotent)
#        upstream-kubelet.sh [DIR] stop  stop it by its recorded pid
#   pid $KRS_RUN/upstream-kubelet.pid   log /var/log/kubelet-rs/upstream-kubelet.log
#   root dir $KRS_STATE/upstream-kubelet
# Extra kubelet flags may be passed in KUBELET_ARGS (e.g. "--kube-api-qps=50 --v=2");
# KRS_KUBELET_CONFIG names another KubeletConfiguration file (default DIR/kubelet-config.yaml).
# No --node-ip: the kubelet refuses a loopback one. It reports eth0's address as InternalIP and
# $NODE_NAME (127.0.0.1 in /etc/hosts) as Hostname, which the apiserver prefers for logs/exec.
# --containerd points cadvisor (built into the kubelet) at our socket instead of /run/containerd.
set -euo pipefail
. "$(dirname "$0")/common.sh"
DIR=$CLUSTER_DIR action=start
for a in "$@"; do case "$a" in start|stop) action=$a ;; *) DIR=$a ;; esac; done
DIR=$(realpath -m "$DIR")
CONFIG=${KRS_KUBELET_CONFIG:-$DIR/kubelet-config.yaml}
PIDFILE=$KRS_RUN/upstream-kubelet.pid LOG=/var/log/kubelet-rs/upstream-kubelet.log
ROOT=$KRS_STATE/upstream-kubelet
fail() { echo "upstream-kubelet: $*" >&2; exit 1; }
running() { # prints the pid if the recorded one is still a kubelet
  local p; p=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$p" ] && ! pid_gone "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = kubelet ] && echo "$p"
}

if [ $action = stop ]; then
  if p=$(running); then
    kill "$p"
    for _ in $(seq 100); do pid_gone "$p" && break; sleep 0.1; done
    pid_gone "$p" || kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"; exit 0
fi

if p=$(running); then log "upstream kubelet already running (pid $p)"; exit 0; fi
[ -x "$K8S_BIN/kubelet" ] || fail "$K8S_BIN/kubelet missing; run scripts/build-k8s.sh"
containerd_up || fail "containerd does not answer on $CONTAINERD_SOCK; run scripts/runtime-up.sh"
for f in "$DIR/node-$NODE_NAME.kubeconfig" "$CONFIG"; do
  [ -s "$f" ] || fail "$f missing; run scripts/cluster-up.sh $DIR"
done
grep -qF "node-$NODE_NAME-serving.crt" "$CONFIG" \
  || fail "$CONFIG is not for node $NODE_NAME; run NODE_NAME=$NODE_NAME scripts/cluster-up.sh $DIR"
kubectl --kubeconfig "$DIR/admin.kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1 \
  || fail "the apiserver of $DIR does not answer; run scripts/cluster-up.sh $DIR"
if p=$(cat "$KRS_RUN/kubelet-rs.pid" 2>/dev/null) && [ -n "$p" ] && ! pid_gone "$p"; then
  fail "kubelet-rs is running (pid $p); stop it first: scripts/kubelet.sh stop"
fi
if (exec 3<>/dev/tcp/127.0.0.1/10250) 2>/dev/null; then
  fail "port 10250 is in use (another kubelet running?)"
fi
mkdir -p "$ROOT" "$(dirname "$LOG")" "$KRS_RUN"
# shellcheck disable=SC2086 # KUBELET_ARGS is a list of flags
setsid "$K8S_BIN/kubelet" \
  --kubeconfig="$DIR/node-$NODE_NAME.kubeconfig" --config="$CONFIG" \
  --hostname-override="$NODE_NAME" --root-dir="$ROOT" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
  --containerd="$CONTAINERD_SOCK" \
  ${KUBELET_ARGS:-} >>"$LOG" 2>&1 </dev/null &
echo $! > "$PIDFILE"
sleep 1
running >/dev/null || { tail -20 "$LOG" >&2; fail "kubelet exited at once; log: $LOG"; }
log "upstream kubelet started (pid $(cat "$PIDFILE"), node $NODE_NAME, log $LOG)"
