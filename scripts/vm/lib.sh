# Shared settings for the krs test VM scripts. Sourced, not executed.
# Adapted from the team's reference VM scripts (shared/reference/vm); kept here so a fresh machine needs nothing else.
# Every value can be overridden from the environment.

KRS_VM_DIR=${KRS_VM_DIR:-/var/cache/krs-vm}          # cache: rootfs, images, run state
KRS_VM_SUITE=${KRS_VM_SUITE:-bookworm}
KRS_VM_SSH_PORT=${KRS_VM_SSH_PORT:-2222}              # host loopback port forwarded to guest :22
KRS_VM_CPUS=${KRS_VM_CPUS:-2}                         # capped at 2 below
KRS_VM_MEM=${KRS_VM_MEM:-2048}                        # MiB, capped at 4096 below
# Accelerator: auto | kvm | tcg.  auto picks kvm only when the CPU offers
# hardware virtualisation (vmx/svm).  On this build host /dev/kvm is served by
# kvm_pvm (PVM, "pagetable-based virtual machine", no vmx/svm): it can only run
# guest kernels built with CONFIG_PVM_GUEST, which Debian's kernel is not, so
# auto falls back to tcg there.  See README.md.
KRS_VM_ACCEL=${KRS_VM_ACCEL:-auto}
if [ "$KRS_VM_ACCEL" = auto ]; then
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
    KRS_VM_ACCEL=kvm
  else
    KRS_VM_ACCEL=tcg
  fi
fi
if [ "$KRS_VM_ACCEL" = kvm ]; then
  # Plain "-cpu host" aborts under kvm_pvm: KVM refuses MSR 0x10a
  # (IA32_ARCH_CAPABILITIES); masking that feature is harmless elsewhere.
  KRS_VM_CPU=${KRS_VM_CPU:-host,-arch-capabilities}
else
  KRS_VM_CPU=${KRS_VM_CPU:-max}
fi
KRS_VM_DISK_SIZE=${KRS_VM_DISK_SIZE:-8G}              # size of the ext4 root image (sparse)
KRS_VM_BOOT_TIMEOUT=${KRS_VM_BOOT_TIMEOUT:-240}       # seconds to wait for SSH

[ "$KRS_VM_CPUS" -gt 2 ] 2>/dev/null && KRS_VM_CPUS=2
[ "$KRS_VM_MEM" -gt 4096 ] 2>/dev/null && KRS_VM_MEM=4096

ROOTFS=$KRS_VM_DIR/rootfs
IMG_DIR=$KRS_VM_DIR/images
RUN_DIR=$KRS_VM_DIR/run
DEB_CACHE=$KRS_VM_DIR/debs
SSH_KEY=$KRS_VM_DIR/ssh/id_ed25519
BASE_IMG=$IMG_DIR/rootfs.ext4.raw
KERNEL=$IMG_DIR/vmlinuz
INITRD=$IMG_DIR/initrd.img
PIDFILE=$RUN_DIR/qemu.pid
OVERLAY=$RUN_DIR/overlay.qcow2
CONSOLE_LOG=$RUN_DIR/console.log
SERIAL_SOCK=$RUN_DIR/serial.sock
QMP_SOCK=$RUN_DIR/qmp.sock

SSH_OPTS=(-i "$SSH_KEY" -p "$KRS_VM_SSH_PORT"
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5
  -o ServerAliveInterval=10 -o ServerAliveCountMax=3)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Prints the pid of the qemu we started, if it is still alive and really is ours.
vm_pid() {
  [ -s "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "qemu-system-x86_64 .*-pidfile $PIDFILE" || return 1
  echo "$pid"
}
