#!/usr/bin/env bash
# Makes the running VM a node of the project's cluster, as an admin would a systemd host:
# containerd with SystemdCgroup = true, our images, kubelet-rs installed by scripts/install.sh
# as kubelet.service (Type=notify) with kubeadm's drop-in, the node's credentials and a
# KubeletConfiguration with cgroupDriver: systemd
# and reservations. The kubelet is installed, not started.
#
# The control plane stays on the host (it is already built and running there; under TCG it
# would cost minutes and most of the guest's 2 GiB). The guest's network is restricted to
# the SSH forward, so an SSH tunnel carries the API server to the guest's 127.0.0.1:6443 and
# the guest kubelet's port 11250 back to the host's 127.0.0.1:11250, where the API server
# finds node krs-vm (its Hostname address; /etc/hosts maps it to 127.0.0.1).
# Then the tunnel is opened and kubelet.service started (`systemctl start` returns once
# the kubelet has registered the node and said READY=1).
# Usage: node-up.sh KUBELET_BINARY      (prints the tunnel's ssh pid on stdout)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$top/scripts/common.sh"
BIN=${1:?usage: node-up.sh KUBELET_BINARY}
VM_NODE=${KRS_VM_NODE:-krs-vm} VM_PORT=${KRS_VM_KUBELET_PORT:-11250}
vm_pid >/dev/null || die "VM is not running (start it with $here/vm-up.sh)"
guest() { ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

# The API server reaches the node by its name.
if ! awk -v n="$VM_NODE" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == n) f = 1 } END { exit !f }' /etc/hosts; then
  echo "127.0.0.1 $VM_NODE" >> /etc/hosts
fi
"$top/scripts/node-creds.sh" "$VM_NODE" "$CLUSTER_DIR/nodes/$VM_NODE"
creds=$CLUSTER_DIR/nodes/$VM_NODE

# Files for the guest, staged here and sent as one tarball.
S=$W/stage
mkdir -p "$S/root/krs/scripts" "$S/root/krs/deploy/systemd" "$S/root/images" \
  "$S/etc/kubernetes/pki" "$S/var/lib/kubelet/pki" "$S/etc/default" "$S/etc/cni/net.d"
cp "$top/scripts/install.sh" "$S/root/krs/scripts/"
cp "$top/deploy/systemd/"* "$S/root/krs/deploy/systemd/"
cp "$BIN" "$S/root/krs/kubelet" && strip "$S/root/krs/kubelet" 2>/dev/null || true
cp "$KRS_CACHE/images/pause-3.6.tar" "$KRS_CACHE/images/busybox.tar" "$S/root/images/"
cp "$creds/kubelet.conf" "$S/etc/kubernetes/kubelet.conf"
cp "$creds/pki/ca.crt" "$S/etc/kubernetes/pki/ca.crt"
cp "$creds/pki/kubelet.crt" "$creds/pki/kubelet.key" "$S/var/lib/kubelet/pki/"
cat > "$S/var/lib/kubelet/config.yaml" <<C
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $VM_PORT
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
cgroupDriver: systemd
podPidsLimit: 64
kubeReserved: {cpu: 100m, memory: 100Mi}
systemReserved: {memory: 28Mi}
failSwapOn: false
clusterDNS: [10.0.0.10]
clusterDomain: cluster.local
makeIPTablesUtilChains: false
featureGates: {GracefulNodeShutdown: true}
shutdownGracePeriod: 20s
shutdownGracePeriodCriticalPods: 10s
# A small test disk: upstream's default disk thresholds would be close to it.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, nodefs.inodesFree: 2%, imagefs.available: 2%}
C
# What kubeadm would record, and the admin's own flag (the node's name).
printf 'KUBELET_KUBEADM_ARGS="--container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n' \
  > "$S/var/lib/kubelet/kubeadm-flags.env"
printf 'KUBELET_EXTRA_ARGS="--hostname-override=%s"\n' "$VM_NODE" > "$S/etc/default/kubelet"
cat > "$S/etc/cni/net.d/10-krs-bridge.conflist" <<'C'
{
  "cniVersion": "0.4.0",
  "name": "krs-podnet",
  "plugins": [
    {"type": "bridge", "bridge": "krs0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/16"}]]}},
    {"type": "loopback"}
  ]
}
C
tar -C "$S" -czf "$W/stage.tgz" .
guest 'tar -C / --no-overwrite-dir -xzf -' < "$W/stage.tgz"

guest bash -s >&2 <<'G'
set -euo pipefail
chmod 600 /etc/kubernetes/kubelet.conf /var/lib/kubelet/pki/kubelet.key
# containerd: the systemd cgroup driver, our pause image, Debian's CNI plugins; real root
# here, so no clamping of oom_score_adj.
cri='plugins."io.containerd.grpc.v1.cri"'
mkdir -p /etc/containerd
containerd config default | awk -v cri="$cri" '
  function q(s) { return "\"" s "\"" }
  /^[ \t]*\[/ { sec = $0; sub(/^[ \t]*\[+/, "", sec); sub(/\]+[ \t]*$/, "", sec) }
  { k = $1; v = "" }
  sec == cri && k == "restrict_oom_score_adj" { v = "false" }
  sec == cri && k == "sandbox_image"          { v = q("registry.k8s.io/pause:3.6") }
  sec == cri ".cni" && k == "bin_dir"         { v = q("/usr/lib/cni") }
  sec == cri ".containerd.runtimes.runc.options" && k == "SystemdCgroup" { v = "true" }
  v != "" { match($0, /^[ \t]*/); $0 = substr($0, 1, RLENGTH) k " = " v }
  { print }' > /etc/containerd/config.toml.new
grep -q 'SystemdCgroup = true' /etc/containerd/config.toml.new
mv /etc/containerd/config.toml.new /etc/containerd/config.toml
systemctl restart containerd
for i in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
for t in /root/images/pause-3.6.tar /root/images/busybox.tar; do
  ctr -n k8s.io images import "$t" >/dev/null
done
ctr -n k8s.io images tag --force docker.io/library/busybox:latest docker.io/library/busybox:1.36 >/dev/null
/root/krs/scripts/install.sh --binary /root/krs/kubelet
G

# The tunnel: the API server into the guest, the guest kubelet out to the host.
ssh "${SSH_OPTS[@]}" -N -o ExitOnForwardFailure=yes \
  -R "127.0.0.1:6443:127.0.0.1:6443" -L "127.0.0.1:$VM_PORT:127.0.0.1:$VM_PORT" root@127.0.0.1 &
tunnel=$!
for i in $(seq 50); do
  guest 'exec 3<>/dev/tcp/127.0.0.1/6443' 2>/dev/null && break
  kill -0 "$tunnel" 2>/dev/null || die "the SSH tunnel to the VM exited"
  sleep 0.2
done
guest 'exec 3<>/dev/tcp/127.0.0.1/6443' 2>/dev/null || die "the API server is not reachable from the VM"
guest 'systemctl start kubelet' >&2 || { guest 'journalctl -u kubelet --no-pager | tail -40' >&2; kill "$tunnel"; die "kubelet.service did not start"; }
log "VM node $VM_NODE up; tunnel pid $tunnel"
echo "$tunnel"
