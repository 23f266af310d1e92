#!/usr/bin/env bash
# Bring up a Kubernetes 1.20.2 control plane with `kubeadm init` on this machine, with KUBELET_BIN as
# the node agent (the project's kubelet by default; the upstream one works too). See lib.sh for the
# layout (own network and mount namespaces and own containerd per node, no systemd: a systemctl
# stand-in runs the kubelet exactly as kubeadm's 10-kubeadm.conf drop-in does, and kubeadm
# starts/restarts it itself).
# Writes OUT_DIR/env (sourced by join.sh, checks.sh, down.sh) and OUT_DIR/init.result (key value lines).
# Adapted from reference/kubeadm/init.sh: defaults for both arguments, node 1's /etc/kubernetes and
# /var/lib/kubelet are private (under /var/lib/kadm/n1, see lib.sh), `rotateCertificates: true`
# spelled out in the KubeletConfiguration (kubeadm's default), set -e, `log` lines.
# Usage: init.sh [KUBELET_BIN [OUT_DIR]]   (defaults: target/release/kubelet, /var/log/kubelet-rs/kadm)
# Env: NODE1 (node name, default: kadm-cp), N1_CGROUP_ROOT (default /kadm-n1; empty: none),
#      KUBELET_EXTRA_ARGS, IGNORE_PREFLIGHT (extra kubeadm preflight checks to ignore),
#      SKIP_PHASES (default addon/coredns,addon/kube-proxy), NET (default 198.51.100).
# Afterwards: checks.sh init ; kubectl.sh get nodes ; join.sh ; checks.sh join ; down.sh
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
KUBELET_BIN=$(realpath "${1:-$(default_kubelet)}"); OUT=$(realpath -m "${2:-$KADM_OUT}")
[ -x "$KUBELET_BIN" ] || { log "no kubelet at $KUBELET_BIN"; exit 2; }
NODE1=${NODE1:-kadm-cp}
N1_CGROUP_ROOT=${N1_CGROUP_ROOT-/kadm-n1}
SKIP_PHASES=${SKIP_PHASES-addon/coredns,addon/kube-proxy}
# ImagePull: k8s.gcr.io/coredns:1.7.0 does not exist here (its addon is skipped; the other images
# are checked below). FileExisting-conntrack: only kube-proxy needs conntrack (its addon is skipped).
IGN="ImagePull,FileExisting-conntrack${IGNORE_PREFLIGHT:+,$IGNORE_PREFLIGHT}"
if [ -e /run/netns/kadm1 ] || [ -e "$STATE_ROOT/n1/etc-kubernetes/admin.conf" ]; then
  log "a kadm cluster seems to be here already (/run/netns/kadm1 or $STATE_ROOT/n1); run down.sh first"; exit 1
fi
if [ ! -x "$KUBEADM" ] || [ ! -x "$CRICTL" ]; then "$KADM_TOOLS/build.sh"; fi
rm -rf "$OUT"; mkdir -p "$OUT/n1"
SD=$OUT/n1
R=$OUT/init.result; : > "$R"
res() { echo "$1 $2" | tee -a "$R"; }

log "node 1 ($NODE1, $NET.1): network namespaces, mount namespace, containerd"
cat > "$OUT/env" <<EOF
OUT=$OUT
KUBELET_BIN=$KUBELET_BIN
NODE1=$NODE1
N1_CGROUP_ROOT=$N1_CGROUP_ROOT
NET=$NET
EOF
nets_up
node_up 1 "$NODE1" "$SD"
# shellcheck disable=SC2153 # SOCK is set by node_dirs
node_dirs 1; SOCK1=$SOCK
if [ -n "$N1_CGROUP_ROOT" ]; then cgroup_root_up "$N1_CGROUP_ROOT"; fi
log "node 1: images"
"$KADM_TOOLS/images.sh" "$SOCK1" apiserver controller-manager scheduler proxy etcd pause busybox
missing=$(for i in $("$KUBEADM" config images list --kubernetes-version "v$K8S_VERSION" 2>/dev/null | grep -v coredns); do
  "$CRICTL" -r "$SOCK1" inspecti "$i" >/dev/null 2>&1 || echo "$i"; done)
[ -z "$missing" ] || { log "images missing in node 1's containerd: $missing"; exit 1; }

bin_dir "$SD/bin" "$KUBELET_BIN"
cat > "$SD/unit.env" <<EOF
KADM_KUBELET=$KUBELET_BIN
KADM_NSENTER="nsenter -t $(cat "$SD/holder.pid") -m -n"
KUBELET_EXTRA_ARGS="${N1_CGROUP_ROOT:+--cgroup-root=$N1_CGROUP_ROOT }${KUBELET_EXTRA_ARGS:-}"
EOF
# Certificates the CSR signer issues live this long (kubeadm's own are not affected): short, so
# that the kubelets' client and serving certificates rotate during the run. Empty: the default.
SIGNING=${KADM_SIGNING_DURATION-10m}
SERVER_TLS_BOOTSTRAP=$([ -n "$SIGNING" ] && echo true || echo false)
TOKEN=$("$KUBEADM" token generate)
cat > "$OUT/kubeadm-init.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
bootstrapTokens:
- token: "$TOKEN"
  ttl: 2h0m0s
  groups: [system:bootstrappers:kubeadm:default-node-token]
  usages: [signing, authentication]
localAPIEndpoint:
  advertiseAddress: $NET.1
  bindPort: 6443
nodeRegistration:
  name: $NODE1
  criSocket: $SOCK1
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v$K8S_VERSION
clusterName: kadm
networking:
  serviceSubnet: 10.96.0.0/12
  dnsDomain: cluster.local
${SIGNING:+controllerManager:
  extraArgs:
    cluster-signing-duration: $SIGNING}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
rotateCertificates: true
serverTLSBootstrap: ${SERVER_TLS_BOOTSTRAP}
# Disk thresholds for a shared build machine, which CI fills with caches: upstream's defaults
# (nodefs 10%, imagefs 15%) would put the node under DiskPressure and evict the tests' pods.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, nodefs.inodesFree: 2%, imagefs.available: 2%}
EOF
FLEX=/usr/libexec/kubernetes/kubelet-plugins/volume/exec   # kube-controller-manager's hostPath (DirectoryOrCreate)
cat >> "$OUT/env" <<EOF
FLEX_EXISTED=$([ -d $FLEX ] && echo 1)
TOKEN=$TOKEN
EOF

INIT_CMD=(kubeadm init --config "$OUT/kubeadm-init.yaml" --ignore-preflight-errors="$IGN" ${SKIP_PHASES:+--skip-phases=$SKIP_PHASES})
echo "${INIT_CMD[*]}" > "$OUT/kubeadm-init.cmd"
log "${INIT_CMD[*]} (log: $OUT/kubeadm-init.log, kubelet log: $SD/kubelet.log)"
t0=$(now); echo "T_INIT0=$t0" >> "$OUT/env"
in_node "$SD" env PATH="$SD/bin:$PATH" "${INIT_CMD[@]}" > "$OUT/kubeadm-init.log" 2>&1 &
kpid=$!
# node Ready, watched while kubeadm runs (as soon as admin.conf exists)
tready=
while kill -0 $kpid 2>/dev/null; do
  if [ -z "$tready" ] && [ -s "$(admin_conf)" ] && [ "$(node_ready "$NODE1")" = True ]; then tready=$(now); fi
  sleep 0.5
done
rc=0; wait $kpid || rc=$?; t1=$(now)
res kubeadm_init_rc "$rc"
res kubeadm_init_s "$(secs "$t0" "$t1")"
if [ "$rc" != 0 ]; then
  tail -30 "$OUT/kubeadm-init.log" >&2
  log "the kubelet's last lines but connection errors:"
  grep -v 'client error (Connect)' "$SD/kubelet.log" | tail -8 >&2 || true
  log "kubeadm init failed (rc $rc): see $OUT/kubeadm-init.log and $SD/kubelet.log"; exit 1
fi
for _ in $(seq 240); do
  [ -n "$tready" ] && break
  if [ "$(node_ready "$NODE1")" = True ]; then tready=$(now); break; fi
  sleep 0.5
done
if [ -n "$tready" ]; then
  res node1_ready_after_init_start_s "$(secs "$t0" "$tready")"
  ks=$(head -1 "$SD/kubelet-starts.log" 2>/dev/null | cut -d' ' -f1) || true
  if [ -n "$ks" ]; then res node1_ready_after_kubelet_start_s "$(secs "$ks" "$tready")"; fi
else
  res node1_ready_after_init_start_s none
fi
res kubelet_starts "$(count ' start ' "$SD/kubelet-starts.log")"
res kubelet_exits "$(count ' exit ' "$SD/kubelet-starts.log")"
echo "T_INIT1=$t1" >> "$OUT/env"
log "kubeadm init done in $(secs "$t0" "$t1") s; kubectl: $KADM_TOOLS/kubectl.sh ..."
[ -n "$tready" ] || { log "node $NODE1 never became Ready"; exit 1; }
