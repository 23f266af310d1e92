#!/usr/bin/env bash
# Adapted from the team's reference VM scripts (shared/reference/vm); kept here so a fresh machine needs nothing else.
# Boot the test VM in the background (qemu; KVM where the CPU has vmx/svm,
# TCG otherwise - see lib.sh), wait until SSH answers, print how to reach it.
#
# The root disk is a fresh qcow2 overlay on top of the built image each time,
# so every boot starts clean. KRS_VM_KEEP_DISK=1 reuses the previous overlay.
# Networking is qemu user-mode with restrict=on: the guest can reach nothing
# outside; only host 127.0.0.1:$KRS_VM_SSH_PORT -> guest :22 is forwarded.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

if pid=$(vm_pid); then
  log "already running (qemu pid $pid); ssh: $HERE/vm-ssh.sh"
  exit 0
fi
# KRS_VM_KERNEL / KRS_VM_INITRD boot another kernel on the same root image
# (e.g. a PVM-enabled one, see README.md); KRS_VM_INITRD=none boots without.
BOOT_KERNEL=${KRS_VM_KERNEL:-$KERNEL}
BOOT_INITRD=${KRS_VM_INITRD:-$INITRD}
INITRD_ARGS=()
[ "$BOOT_INITRD" = none ] || INITRD_ARGS=(-initrd "$BOOT_INITRD")
for f in "$BOOT_KERNEL" "$BASE_IMG" "$SSH_KEY" ${INITRD_ARGS[1]:+"${INITRD_ARGS[1]}"}; do
  [ -f "$f" ] || die "missing $f - run $HERE/build-image.sh first"
done
if [ "$KRS_VM_ACCEL" = kvm ]; then
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"
  if [ -d /sys/module/kvm_pvm ] && ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    log "WARNING: /dev/kvm here is kvm_pvm; a stock Debian kernel runs fully emulated under it"
    log "         and dies early (KVM internal error on cmpxchg16b). Expect no SSH. Use KRS_VM_ACCEL=tcg."
  fi
fi
if ss -ltnH "sport = :$KRS_VM_SSH_PORT" 2>/dev/null | grep -q .; then
  die "port 127.0.0.1:$KRS_VM_SSH_PORT is taken; set KRS_VM_SSH_PORT"
fi

for t in qemu-img qemu-system-x86_64; do
  command -v "$t" >/dev/null || die "$t missing: run scripts/vm/build-image.sh (it installs qemu)"
done
mkdir -p "$RUN_DIR"
rm -f "$PIDFILE" "$SERIAL_SOCK" "$QMP_SOCK"
if [ "${KRS_VM_KEEP_DISK:-0}" != 1 ] || [ ! -f "$OVERLAY" ]; then
  rm -f "$OVERLAY"
  qemu-img create -q -f qcow2 -F raw -b "$BASE_IMG" "$OVERLAY"
fi
: > "$CONSOLE_LOG"

APPEND="root=/dev/vda rw console=ttyS0,115200 systemd.unified_cgroup_hierarchy=1 systemd.firstboot=off net.ifnames=1 ${KRS_VM_APPEND:-}"

case "$KRS_VM_ACCEL" in
  kvm) ACCEL_OPT=kvm ;;
  tcg) ACCEL_OPT=tcg,thread=multi,tb-size=256 ;;
  *) die "KRS_VM_ACCEL must be kvm or tcg" ;;
esac

t0=$(date +%s.%N)
qemu-system-x86_64 \
  -name krs-vm \
  -machine q35 -accel "$ACCEL_OPT" -cpu "$KRS_VM_CPU" \
  -smp "$KRS_VM_CPUS" -m "$KRS_VM_MEM" \
  -kernel "$BOOT_KERNEL" "${INITRD_ARGS[@]}" -append "$APPEND" \
  -drive "file=$OVERLAY,if=virtio,format=qcow2,discard=unmap" \
  -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$KRS_VM_SSH_PORT-:22" \
  -device virtio-net-pci,netdev=n0 \
  -device virtio-rng-pci \
  -chardev "socket,id=ser0,path=$SERIAL_SOCK,server=on,wait=off,logfile=$CONSOLE_LOG" \
  -serial chardev:ser0 \
  -qmp "unix:$QMP_SOCK,server=on,wait=off" \
  -display none -vga none \
  -daemonize -pidfile "$PIDFILE"

pid=$(vm_pid) || die "qemu did not start; see $CONSOLE_LOG"
log "qemu pid $pid (accel $KRS_VM_ACCEL, ${KRS_VM_CPUS} vCPU, ${KRS_VM_MEM} MiB); waiting for SSH on 127.0.0.1:$KRS_VM_SSH_PORT"

deadline=$(( $(date +%s) + KRS_VM_BOOT_TIMEOUT ))
until ssh "${SSH_OPTS[@]}" -o ConnectTimeout=2 root@127.0.0.1 true 2>/dev/null; do
  vm_pid >/dev/null || { tail -n 40 "$CONSOLE_LOG" >&2; die "qemu exited during boot"; }
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 40 "$CONSOLE_LOG" >&2
    die "no SSH after ${KRS_VM_BOOT_TIMEOUT}s (VM left running: $HERE/vm-down.sh; accel $KRS_VM_ACCEL)"
  fi
  sleep 1
done
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "$dt" > "$RUN_DIR/boot-seconds"
state=$(ssh "${SSH_OPTS[@]}" root@127.0.0.1 'timeout 120 systemctl is-system-running --wait' 2>/dev/null || true)
dt2=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

cat <<MSG
krs-vm is up: SSH ready ${dt}s after qemu start; systemd "${state:-unknown}" at ${dt2}s.
  qemu pid $pid, accel $KRS_VM_ACCEL, ${KRS_VM_CPUS} vCPU, ${KRS_VM_MEM} MiB.
  run a command:  $HERE/vm-ssh.sh 'systemctl is-system-running'
  shell:          $HERE/vm-ssh.sh
  raw ssh:        ssh ${SSH_OPTS[*]} root@127.0.0.1
  serial console: $SERIAL_SOCK (log: $CONSOLE_LOG; root autologin)
  stop:           $HERE/vm-down.sh
MSG
