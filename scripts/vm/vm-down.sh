#!/usr/bin/env bash
# Adapted from the team's reference VM scripts (shared/reference/vm); kept here so a fresh machine needs nothing else.
# Shut the test VM down cleanly: `systemctl poweroff` over SSH, then ACPI
# power-button via QMP, and only as a last resort SIGTERM/SIGKILL - always to
# the single qemu pid that vm-up.sh recorded (checked against its command line).
# The throwaway disk overlay is removed unless KRS_VM_KEEP_DISK=1.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

wait_gone() {  # pid seconds
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    [ -d "/proc/$1" ] || return 0
    sleep 0.5
  done
  return 1
}
cleanup() {
  rm -f "$PIDFILE" "$SERIAL_SOCK" "$QMP_SOCK"
  [ "${KRS_VM_KEEP_DISK:-0}" = 1 ] || rm -f "$OVERLAY"
}

if ! pid=$(vm_pid); then
  log "VM is not running"
  cleanup
  exit 0
fi

t0=$(date +%s)
log "powering off the guest (qemu pid $pid)"
# systemctl poweroff returns at once after queueing the job; if ssh itself
# failed (guest not up), give it only a short grace period before ACPI.
grace=60
timeout 15 ssh "${SSH_OPTS[@]}" root@127.0.0.1 'systemctl poweroff' >/dev/null 2>&1 || grace=10
if wait_gone "$pid" "$grace"; then
  log "guest powered off in $(( $(date +%s) - t0 ))s"
  cleanup; exit 0
fi

log "no clean exit after SSH poweroff; sending ACPI powerdown via QMP"
python3 - "$QMP_SOCK" <<'PY' || true
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, {"execute": "system_powerdown"}):
    f.write(json.dumps(cmd) + "\n"); f.flush(); f.readline()
PY
if wait_gone "$pid" 30; then
  log "guest powered off (ACPI) in $(( $(date +%s) - t0 ))s"
  cleanup; exit 0
fi

# Re-check that the pid is still our qemu before signalling it.
if pid2=$(vm_pid) && [ "$pid2" = "$pid" ]; then
  log "forcing qemu pid $pid to stop (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null
  wait_gone "$pid" 10 || { log "SIGKILL qemu pid $pid"; kill -KILL "$pid" 2>/dev/null; wait_gone "$pid" 5; }
fi
cleanup
