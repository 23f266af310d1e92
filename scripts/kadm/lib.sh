# shellcheck shell=bash
# Shared by the kadm scripts (sourced, not run).
# Adapted from the reference kubeadm yardstick (reference/kubeadm/lib.sh). Changes: settings and
# `log` come from scripts/common.sh, caches live under $KRS_CACHE/kadm, the node-1 containerd helper
# is renamed (common.sh has its own containerd_up), and BOTH nodes get private /etc/kubernetes,
# /var/lib/kubelet, /var/lib/etcd, /etc/cni/net.d and /run/kubernetes (the reference gave node 1
# the host's): `kubeadm reset` empties those directories, and the host's may belong to someone else
# (another kubelet, Debian's etcd). Helpers are `set -e` safe.
#
# The layout of the kubeadm cluster on this one machine:
# - Each node has its own network namespace (kadm1, kadm2) joined by a veth pair, both named eth0,
#   with NET.1 and NET.2 (NET defaults to 198.51.100, a documentation range) and a default route
#   via the other node. kubeadm needs a non-loopback advertise address and the kubelet a non-loopback node IP;
#   inside these namespaces they have one, and nothing reaches the host's own interfaces: the host
#   network is never touched. Node 2 also gets its own ports 10250/10248 this way, and node 1's
#   control plane (6443, 2379, 10257, 10259) never meets the project's own cluster on 127.0.0.1.
# - Each node has its own containerd (socket /run/kadm/nN/containerd.sock, root /var/lib/kadm/nN):
#   two kubelets on one runtime would kill each other's pods (a kubelet kills running pods it does
#   not know), so they cannot share one.
# - Each kubelet has its own cgroup root (--cgroup-root=/kadm-nN through KUBELET_EXTRA_ARGS): a
#   kubelet destroys pod cgroups under its kubepods that it does not know, including other nodes'.
# - Each node runs in its own mount namespace (kept alive by a "holder" process), with its own
#   /var/log/pods, /var/log/containers (a kubelet deletes log dirs of pods it does not know),
#   /var/lib/cni, /etc/cni/net.d, /run/kubernetes (kubeadm reset empties them), /etc/kubernetes,
#   /var/lib/kubelet, /var/lib/etcd and /etc/hosts (the node name resolves to the node IP): bind
#   mounts of /var/lib/kadm/nN/<name>. Its containerd and kubelet run there together, so the
#   runtime sees the kubelet's volume mounts, and every mount they make vanishes with the namespace.
# - There is no systemd: a systemctl stand-in (systemctl.sh) on kubeadm's PATH runs kubelet.service
#   as kubeadm's 10-kubeadm.conf drop-in defines it (kubelet-unit.sh), so kubeadm itself starts,
#   stops and restarts the kubelet when it would on a systemd host.
KADM_TOOLS=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
KRS_TOP=$(realpath "$KADM_TOOLS/../..")
# shellcheck source=scripts/common.sh
. "$KADM_TOOLS/../common.sh"
K8S_SRC=${K8S_SRC:-$KRS_CACHE/k8s-$K8S_VERSION/src/kubernetes-$K8S_VERSION}
KADM_CACHE=${KADM_CACHE:-$KRS_CACHE/kadm}        # bin/ (kubeadm, crictl), images/ (tars)
KUBEADM=${KUBEADM:-$KADM_CACHE/bin/kubeadm}
CRICTL=${CRICTL:-$KADM_CACHE/bin/crictl}
KADM_OUT=${KADM_OUT:-/var/log/kubelet-rs/kadm}   # default OUT_DIR: logs, results, pid files
NET=${NET:-198.51.100}
STATE_ROOT=${KADM_STATE:-/var/lib/kadm} RUN_ROOT=${KADM_RUN:-/run/kadm}
# the directories each node has for itself: NAME:MOUNTPOINT (NAME under /var/lib/kadm/nN)
NODE_MOUNTS=(var-log-pods:/var/log/pods var-log-containers:/var/log/containers
  var-lib-cni:/var/lib/cni etc-cni-net-d:/etc/cni/net.d run-kubernetes:/run/kubernetes
  etc-kubernetes:/etc/kubernetes var-lib-kubelet:/var/lib/kubelet var-lib-etcd:/var/lib/etcd)
export PATH="$PATH:/usr/sbin:/sbin"
# kubeadm and kubectl prefer $KUBECONFIG to /etc/kubernetes/admin.conf: the project's own
# cluster's (scripts/test.sh exports it) would send kubeadm's calls there, refused.
unset KUBECONFIG

default_kubelet() { # the project's kubelet (KRS_KUBELET_BIN, else target/$KRS_PROFILE, release by default)
  echo "${KRS_KUBELET_BIN:-$KRS_TOP/target/${KRS_PROFILE:-release}/kubelet}"
}

# shellcheck disable=SC2034 # the variables are for the callers
node_dirs() { # $1 node number -> ND (persistent), RD (runtime), SOCK, NSNAME, NODE_IP
  ND=$STATE_ROOT/n$1; RD=$RUN_ROOT/n$1; SOCK=$RD/containerd.sock; NSNAME=kadm$1; NODE_IP=$NET.$1
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }
count() { local c; c=$(grep -c -- "$1" "$2" 2>/dev/null) || true; echo "${c:-0}"; }

nets_up() { # both node network namespaces and the wire between them
  local n
  for n in 1 2; do
    [ -e "/run/netns/kadm$n" ] || ip netns add "kadm$n"
    ip -n "kadm$n" link set lo up
  done
  if ! ip -n kadm1 link show eth0 >/dev/null 2>&1; then
    ip -n kadm1 link add eth0 type veth peer name eth0 netns kadm2
  fi
  for n in 1 2; do
    ip -n "kadm$n" addr replace "$NET.$n/24" dev eth0
    ip -n "kadm$n" link set eth0 up
    # a gateway (the other node), not just `default dev eth0`: kubelet-rs finds its node IP from
    # the default route's gateway only (upstream first resolves the node name, see /etc/hosts below)
    ip -n "kadm$n" route replace default via "$NET.$((3 - n))" dev eth0
    nsenter --net="/run/netns/kadm$n" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
  done
}

holder_main() { # runs in a fresh private mount namespace: the node's own view, then sleeps forever
  local n=$1 name=$2 m d
  node_dirs "$n"
  for m in "${NODE_MOUNTS[@]}"; do
    mkdir -p "$ND/${m%%:*}"
    d=${m#*:}   # a mount point made on the host, with every level made for it: down.sh removes them if empty
    while [ ! -d "$d" ]; do echo "$d" >> "$STATE_ROOT/mountpoints.created"; d=$(dirname "$d"); done
    mkdir -p "${m#*:}"
    mount --bind "$ND/${m%%:*}" "${m#*:}"
  done
  { grep -vw -- "$name" /etc/hosts || true; echo "$NET.$n $name"; } > "$ND/hosts"
  mount --bind "$ND/hosts" /etc/hosts
  touch "$RD/holder.ready"
  exec sleep infinity
}

node_up() { # $1 node number, $2 node name, $3 node state dir (OUT/nN): namespaces and containerd
  local n=$1 name=$2 sd=$3
  node_dirs "$n"; mkdir -p "$sd" "$ND" "$RD"
  if ! { [ -f "$sd/holder.pid" ] && kill -0 "$(cat "$sd/holder.pid")" 2>/dev/null; }; then
    rm -f "$RD/holder.ready"
    nsenter --net="/run/netns/$NSNAME" unshare --mount --propagation private \
      bash -c ". '$KADM_TOOLS/lib.sh'; NET=$NET holder_main $n '$name'" > "$sd/holder.log" 2>&1 &
    echo $! > "$sd/holder.pid"
    for _ in $(seq 50); do [ -f "$RD/holder.ready" ] && break; sleep 0.1; done
    [ -f "$RD/holder.ready" ] || { log "node $n namespace holder failed"; cat "$sd/holder.log" >&2; return 1; }
  fi
  node_containerd_up "$n" "$sd" nsenter -t "$(cat "$sd/holder.pid")" -m -n
}

in_node() { # $1 node state dir, rest: command run in that node's mount and network namespaces
  local sd=$1; shift
  nsenter -t "$(cat "$sd/holder.pid")" -m -n "$@"
}

cgroup_root_up() { # $1 cgroup path (like /kadm-n1) in every v1 hierarchy
  local d c
  for d in /sys/fs/cgroup/*/; do
    case $d in */unified/) continue ;; esac
    c=$d${1#/}
    mkdir -p "$c"
    if [ -f "$d/cpuset.cpus" ]; then
      [ -n "$(cat "$c/cpuset.cpus")" ] || cat "$d/cpuset.cpus" > "$c/cpuset.cpus"
      [ -n "$(cat "$c/cpuset.mems")" ] || cat "$d/cpuset.mems" > "$c/cpuset.mems"
    fi
  done
}

cgroup_root_down() { # $1 cgroup path: remove what is left (empty cgroups only)
  local d
  for d in /sys/fs/cgroup/*/; do
    if [ -d "$d${1#/}" ]; then find "$d${1#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
}

containerd_config() { # $1 node number: containerd.toml and the CNI conflist of that node
  node_dirs "$1"
  mkdir -p "$ND/cni" "$ND/ipam" "$RD"
  cat > "$ND/containerd.toml" <<EOF
version = 2
root = "$ND/containerd"
state = "$RD/containerd"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "$RD/runc"
      SystemdCgroup = false
EOF
  cat > "$ND/cni/10-kadm.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "kadm-n$1", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$ND/ipam", "ranges": [[{"subnet": "10.244.$1.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}, {"type": "loopback"}]}
EOF
}

node_containerd_up() { # $1 node number, $2 state dir for pid/log, rest: nsenter prefix
  local n=$1 sd=$2; shift 2
  node_dirs "$n"; containerd_config "$n"
  if [ -f "$sd/containerd.pid" ] && kill -0 "$(cat "$sd/containerd.pid")" 2>/dev/null; then return 0; fi
  "$@" containerd --config "$ND/containerd.toml" > "$sd/containerd.log" 2>&1 &
  echo $! > "$sd/containerd.pid"
  for _ in $(seq 100); do
    if [ -S "$SOCK" ] && ctr --connect-timeout 2s --address "$SOCK" version >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "containerd of node $n did not come up"; tail -5 "$sd/containerd.log" >&2; return 1
}

bin_dir() { # $1 dir, $2 kubelet binary: what kubeadm finds on its PATH
  mkdir -p "$1"
  ln -sfn "$(realpath "$2")" "$1/kubelet"
  ln -sfn "$KADM_TOOLS/systemctl.sh" "$1/systemctl"
  ln -sfn "$CRICTL" "$1/crictl"
  ln -sfn "$KUBEADM" "$1/kubeadm"
}

admin_conf() { echo "$STATE_ROOT/n1/etc-kubernetes/admin.conf"; }
kc() { # kubectl as cluster admin, from node 1's network namespace
  nsenter --net=/run/netns/kadm1 kubectl --kubeconfig "$(admin_conf)" "$@"
}
node_ready() { # $1 node name: prints True when Ready
  kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true
}

kill_pidfile() { # $1 pid file: TERM, wait up to 15 s, then KILL
  [ -f "$1" ] || return 0
  local p; p=$(cat "$1")
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$1"
}

pids_with_arg() { # pids whose command line contains $1 as one argument word (our own sockets/dirs)
  local d
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' < "$d/cmdline" 2>/dev/null | grep -qxF -- "$1"; then echo "${d#/proc/}"; fi
  done
}
