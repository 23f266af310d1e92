#!/usr/bin/env bash
# The tests that need systemd and cgroup v2, run inside the project's qemu VM (scripts/vm/:
# Debian bookworm, systemd PID 1, unified cgroups; TCG where there is no hardware
# virtualisation, ~30 s to boot). The image is built once and cached under /var/cache/krs-vm.
#
# Two parts:
# - test binaries built here (the guest has the same Debian userland) and run in the guest
#   with --ignored: each such test first asserts it is on cgroup v2;
# - the node suite (tests/e2e/tests/vm_node.rs): the guest made a node of the host's cluster
#   by scripts/vm/node-up.sh (kubelet-rs as kubelet.service, the systemd cgroup driver),
#   driven from here through the API server and ssh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/common.sh"
. "$here/vm/lib.sh"

# Integration test targets that run in the VM, as package:test.
TESTS=(kubelet-host:vm_cgroups)

"$here/vm/build-image.sh"
"$here/env-up.sh"
cd "$top"
cargo build --locked -p kubelet
cargo test --locked -p kubelet-e2e --test vm_node --no-run
bins=()
for t in "${TESTS[@]}"; do
  pkg=${t%%:*} name=${t#*:}
  json=$(cargo test --locked -p "$pkg" --test "$name" --no-run --message-format=json) \
    || die "building the $t test failed"
  bin=$(jq -r --arg n "$name" \
    'select(.reason == "compiler-artifact" and .target.name == $n and .profile.test) | .executable' \
    <<<"$json")
  [ -x "$bin" ] || die "no test binary for $t"
  bins+=("$bin")
done

# Stop the VM we start, also on failure or interrupt (vm-up.sh leaves it running when SSH
# never answers); a VM someone else started is left alone.
started=0 tunnel=
stop_vm() {
  [ -n "$tunnel" ] && kill "$tunnel" 2>/dev/null
  [ "$started" = 1 ] && "$here/vm/vm-down.sh" >/dev/null 2>&1 || true
}
trap stop_vm EXIT
trap 'exit 130' INT TERM
if ! vm_pid >/dev/null; then
  started=1
  "$here/vm/vm-up.sh" >/dev/null
fi
guest() { ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"; }
log "guest: $(guest 'stat -fc %T /sys/fs/cgroup; ps -p 1 -o comm=' | tr '\n' ' ')"

failed=0
for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  guest "cat > /root/$name && chmod +x /root/$name" < "$bin"
  log "in the VM: $name --ignored"
  if ! guest "cd /root && ./$name --ignored --test-threads=1"; then
    failed=$((failed + 1))
  fi
done
[ "$failed" = 0 ] || die "$failed VM test binaries failed"

log "the VM as a node: kubelet.service with the systemd cgroup driver"
tunnel=$("$here/vm/node-up.sh" "$top/target/debug/kubelet")
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
export KRS_KUBECONFIG=$KUBECONFIG KRS_NODE=${KRS_VM_NODE:-krs-vm} KRS_CONTAINERD_SOCK=/nonexistent
export KRS_VM_SSH="ssh ${SSH_OPTS[*]} root@127.0.0.1"
vm_node() { cargo test --locked -p kubelet-e2e --test vm_node -- --ignored --test-threads=1 "$@"; }
# Graceful shutdown powers the VM off, so it goes last, on its own.
if ! vm_node --skip poweroff || ! vm_node --exact poweroff_ends_pods_critical_last; then
  echo "---- the VM kubelet's journal ----" >&2
  guest 'journalctl -u kubelet --no-pager | tail -60' >&2 || true
  die "the VM node suite failed"
fi
kubectl delete node "$KRS_NODE" --wait=false >/dev/null 2>&1 || true
log "VM tests passed"
