#!/usr/bin/env bash
# Adapted from the team's reference VM scripts (shared/reference/vm); kept here so a fresh machine needs nothing else.
# Run a command in the test VM as root (no arguments: interactive shell).
#   vm-ssh.sh 'systemctl status containerd'
#   vm-ssh.sh -s < script.sh        (runs a local script with the guest's bash)
# Exit status is the remote command's.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

vm_pid >/dev/null || die "VM is not running (start it with $HERE/vm-up.sh)"
if [ "${1:-}" = -s ]; then
  shift
  exec ssh "${SSH_OPTS[@]}" root@127.0.0.1 bash -s -- "$@"
fi
if [ $# -eq 0 ]; then
  exec ssh "${SSH_OPTS[@]}" -t root@127.0.0.1
fi
exec ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"
