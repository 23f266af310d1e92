# Shared settings for the project's scripts. Sourced, not run.
# Everything heavy is cached under /var/cache/kubelet-rs so repeat runs are fast.
KRS_CACHE=${KRS_CACHE:-/var/cache/kubelet-rs}
K8S_VERSION=1.20.2
K8S_BIN=${K8S_BIN:-$KRS_CACHE/k8s-$K8S_VERSION/bin}
# A private containerd, so the project never fights a system-wide one.
KRS_RUN=${KRS_RUN:-/run/kubelet-rs}
KRS_STATE=${KRS_STATE:-/var/lib/kubelet-rs}
CONTAINERD_SOCK=${CONTAINERD_SOCK:-$KRS_RUN/containerd/containerd.sock}
CLUSTER_DIR=${CLUSTER_DIR:-$KRS_STATE/cluster}
NODE_NAME=${NODE_NAME:-krs-node}
export DEBIAN_FRONTEND=noninteractive
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wait_for() { # $1 seconds, then a command; polls with a deadline
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}
with_progress() { # $1 log file, $2 what; then a command: its output to the log, a line every 30 s
  local logf=$1 what=$2 t0=$SECONDS rc=0; shift 2
  "$@" >"$logf" 2>&1 & local pid=$!
  while ! wait_for 30 pid_gone "$pid"; do
    log "still $what ($(( (SECONDS - t0) / 60 ))m$(( (SECONDS - t0) % 60 ))s): $(tail -c 300 "$logf" | tail -1 | cut -c1-100)"
  done
  wait "$pid" || rc=$?
  return $rc
}
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
containerd_up() { # does our containerd answer? (ctr retries a missing socket for 10s, so look first)
  [ -S "$CONTAINERD_SOCK" ] && ctr --connect-timeout 2s --address "$CONTAINERD_SOCK" version >/dev/null 2>&1
}
pid_gone() { # the process has exited (a zombie counts as exited)
  [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}
