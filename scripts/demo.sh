#!/usr/bin/env bash
# The main job: a local single-node cluster with kubelet-rs running a real pod.
# Sets up everything on a fresh machine (see env-up.sh), builds kubelet-rs in release mode,
# starts it, and creates an example pod you can get, logs and delete with kubectl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
"$here/env-up.sh"
log "building kubelet-rs (release)"
(cd "$here/.." && cargo build --release --locked -p kubelet)
"$here/upstream-kubelet.sh" stop
KRS_PROFILE=release "$here/kubelet.sh" start
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
kubectl apply -f "$here/../examples/hello-pod.yaml" >/dev/null
kubectl wait --for=condition=Ready pod/hello --timeout=60s >/dev/null
kubectl get node "$NODE_NAME" -o wide
kubectl get pod hello -o wide
cat <<MSG

kubelet-rs is running node $NODE_NAME (log: /var/log/kubelet-rs/kubelet-rs.log).
Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get node $NODE_NAME -o yaml
  kubectl get pod hello -o yaml
  kubectl delete pod hello --grace-period=1
Stop it all with: scripts/kubelet.sh stop; scripts/cluster-down.sh; scripts/runtime-down.sh --clean
MSG
