#!/usr/bin/env bash
# The tests that need systemd and cgroup v2, run inside the project's qemu VM (scripts/vm/:
# Debian bookworm, systemd PID 1, unified cgroups; TCG where there is no hardware
# virtualisation, ~30 s to boot). The image is built once and cached under /var/cache/krs-vm.
#
# Test binaries are built here (the guest has the same Debian userland) and run in the guest
# with --ignored: each such test first asserts it is on cgroup v2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/vm/lib.sh"

# Integration test targets that run in the VM, as package:test.
TESTS=(kubelet-host:vm_cgroups)

"$here/vm/build-image.sh"
cd "$top"
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
started=0
stop_vm() { [ "$started" = 1 ] && "$here/vm/vm-down.sh" >/dev/null 2>&1 || true; }
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
log "VM tests passed"
