#!/usr/bin/env bash
# Adapted from the team's reference VM scripts (shared/reference/vm); kept here so a fresh machine needs nothing else.
# Build (or refresh) the Debian bookworm test-VM image: systemd as PID 1,
# cgroup v2, containerd + runc + CNI plugins, SSH with a generated key.
#
# Idempotent: each stage leaves a stamp under $KRS_VM_DIR and is skipped
# when the stamp matches. FORCE=1 rebuilds everything (the downloaded .debs
# stay cached in $KRS_VM_DIR/debs, so a forced rebuild needs little network).
#
# Needs root and access to the Debian mirror used by the host's apt sources
# (override with KRS_VM_MIRROR). The guest itself never needs the network.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mkfs -d need it)"

# Bump when the configuration below changes in a way that needs a rebuild.
CONFIG_VERSION=3
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd udev kmod procps
  linux-image-amd64 initramfs-tools
  openssh-server
  containerd runc containernetworking-plugins
  iproute2 iptables netbase ca-certificates iputils-ping
  conntrack socat ethtool
  busybox-static
)
PKG_CSV=$(IFS=,; echo "${PACKAGES[*]}")
FINGERPRINT="v$CONFIG_VERSION $KRS_VM_SUITE $PKG_CSV"

TIMINGS=$KRS_VM_DIR/build-timings.log
mkdir -p "$KRS_VM_DIR" "$IMG_DIR" "$DEB_CACHE" "$(dirname "$SSH_KEY")"

step_t0=0
step_begin() { step_t0=$(date +%s.%N); log "== $1"; }
step_end() {
  local dt; dt=$(awk -v a="$step_t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
  printf '%s %-14s %6.1fs\n' "$(date -u +%FT%TZ)" "$1" "$dt" | tee -a "$TIMINGS" >&2
}

# ---- mirror: same one the host's apt uses ----------------------------------
detect_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: first stanza with Types: deb and our suite in Suites:
    m=$(awk -v s="$KRS_VM_SUITE" 'BEGIN { RS = "" }
      { deb = 0; ok = 0; u = ""; n = split($0, L, "\n")
        for (i = 1; i <= n; i++) {
          if (L[i] ~ /^#/) continue
          k = split(L[i], F, /[ \t]+/)
          if (F[1] == "Types:")  for (j = 2; j <= k; j++) if (F[j] == "deb") deb = 1
          if (F[1] == "URIs:")   u = F[2]
          if (F[1] == "Suites:") for (j = 2; j <= k; j++) if (F[j] == s) ok = 1
        }
        if (deb && ok && u != "") { print u; exit } }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk -v s="$KRS_VM_SUITE" '$1=="deb" && $3==s {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${KRS_VM_MIRROR:-$(detect_mirror)}

# ---- safety helpers ----------------------------------------------------------
# Unmount anything left below the rootfs (e.g. /proc from an interrupted run).
umount_below_rootfs() {
  local mp
  # deepest first
  while read -r mp; do
    [ -n "$mp" ] || continue
    log "unmounting leftover $mp"
    umount -l "$mp" || true
  done < <(awk -v r="$ROOTFS" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r)
}
assert_clean_rootfs() {
  if awk -v r="$ROOTFS" 'index($2, r) == 1 {f=1} END {exit !f}' /proc/mounts; then
    die "something is still mounted below $ROOTFS"
  fi
  local p
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOTFS" ]; then
      die "process ${p#/proc/} still runs inside $ROOTFS"
    fi
  done
}
remove_rootfs() {
  umount_below_rootfs
  assert_clean_rootfs
  rm -rf --one-file-system "$ROOTFS"
}
stamp_ok() { [ "${FORCE:-0}" != 1 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$FINGERPRINT" ]; }

# ---- stage 0: host tools ----------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  log "installing host packages: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
# Installing bookworm's qemu-system-x86 removes a backported qemu-utils (qemu-block-extra
# pins the version): then take bookworm's qemu-utils too.
if ! command -v qemu-img >/dev/null; then
  log "installing host packages: qemu-utils (again: qemu-system-x86's version)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-utils
fi

T_ALL=$(date +%s.%N)
log "mirror: $MIRROR   cache: $KRS_VM_DIR"

# ---- stage 1: ssh key -------------------------------------------------------
if [ ! -f "$SSH_KEY" ]; then
  ssh-keygen -q -t ed25519 -N '' -C krs-vm -f "$SSH_KEY"
fi

# ---- stage 2: debootstrap ---------------------------------------------------
STAMP_DEBOOTSTRAP=$KRS_VM_DIR/.stamp-debootstrap
if stamp_ok "$STAMP_DEBOOTSTRAP"; then
  log "debootstrap: up to date"
else
  step_begin "debootstrap ($KRS_VM_SUITE, ${#PACKAGES[@]} extra packages)"
  rm -f "$STAMP_DEBOOTSTRAP" "$KRS_VM_DIR/.stamp-configure"
  [ -e "$ROOTFS" ] && remove_rootfs
  # debootstrap itself installs a policy-rc.d (exit 101) and a fake
  # start-stop-daemon while it configures packages, so no daemon (sshd,
  # containerd) is started on the host from inside the chroot.
  if ! debootstrap --variant=minbase --arch=amd64 --components=main \
        --cache-dir="$DEB_CACHE" --include="$PKG_CSV" \
        "$KRS_VM_SUITE" "$ROOTFS" "$MIRROR" > "$KRS_VM_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$KRS_VM_DIR/debootstrap.log" >&2
    [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    umount_below_rootfs
    die "debootstrap failed (full log: $KRS_VM_DIR/debootstrap.log)"
  fi
  umount_below_rootfs
  assert_clean_rootfs
  echo "$FINGERPRINT" > "$STAMP_DEBOOTSTRAP"
  step_end debootstrap
fi

# ---- stage 3: configure the rootfs -----------------------------------------
# Only file writes plus offline commands in a chroot (systemctl enable/mask,
# chpasswd); nothing is mounted and no daemon is started.
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

build_busybox_oci() {
  # A minimal OCI image-layout tarball made from busybox-static, so that
  # containerd/runc can be exercised offline: ctr images import <tar>.
  local out=$1 w; w=$(mktemp -d "$KRS_VM_DIR/oci.XXXXXX")
  mkdir -p "$w/layer/bin" "$w/layer/etc" "$w/layer/proc" "$w/layer/sys" "$w/layer/dev" "$w/layer/tmp" "$w/layer/root" "$w/oci/blobs/sha256"
  cp "$ROOTFS/bin/busybox" "$w/layer/bin/busybox"
  local a
  for a in sh ash ls cat echo sleep id ps mount df free head tail grep sed awk env hostname uname wc true false stat; do
    ln -s busybox "$w/layer/bin/$a"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$w/layer/etc/passwd"
  echo 'root:x:0:' > "$w/layer/etc/group"
  chmod 1777 "$w/layer/tmp"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w/layer" -cf "$w/layer.tar" .
  gzip -n -9 < "$w/layer.tar" > "$w/layer.tar.gz"
  local diff_id layer_d layer_s cfg_d cfg_s man_d man_s
  diff_id=$(sha256sum < "$w/layer.tar" | cut -d' ' -f1)
  layer_d=$(sha256sum < "$w/layer.tar.gz" | cut -d' ' -f1)
  layer_s=$(stat -c %s "$w/layer.tar.gz")
  mv "$w/layer.tar.gz" "$w/oci/blobs/sha256/$layer_d"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"krs build-image.sh (busybox-static)"}]}' \
    "$diff_id" > "$w/cfg.json"
  cfg_d=$(sha256sum < "$w/cfg.json" | cut -d' ' -f1); cfg_s=$(stat -c %s "$w/cfg.json")
  mv "$w/cfg.json" "$w/oci/blobs/sha256/$cfg_d"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg_d" "$cfg_s" "$layer_d" "$layer_s" > "$w/man.json"
  man_d=$(sha256sum < "$w/man.json" | cut -d' ' -f1); man_s=$(stat -c %s "$w/man.json")
  mv "$w/man.json" "$w/oci/blobs/sha256/$man_d"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"docker.io/library/krs-busybox:local","org.opencontainers.image.ref.name":"local"}}]}' \
    "$man_d" "$man_s" > "$w/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$w/oci/oci-layout"
  tar --owner=0 --group=0 --numeric-owner -C "$w/oci" -cf "$out" oci-layout index.json blobs
  rm -rf "$w"
}

STAMP_CONFIGURE=$KRS_VM_DIR/.stamp-configure
if stamp_ok "$STAMP_CONFIGURE"; then
  log "configure: up to date"
else
  step_begin "configure rootfs"
  assert_clean_rootfs
  echo krs-vm > "$ROOTFS/etc/hostname"
  cat > "$ROOTFS/etc/hosts" <<'H'
127.0.0.1 localhost
127.0.1.1 krs-vm
::1 localhost ip6-localhost ip6-loopback
H
  # The guest has no DNS and needs none.
  echo '# krs-vm: no DNS (user-mode net with restrict=on)' > "$ROOTFS/etc/resolv.conf"
  echo '/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1' > "$ROOTFS/etc/fstab"
  cat > "$ROOTFS/etc/apt/sources.list" <<S
deb $MIRROR $KRS_VM_SUITE main
S
  # Networking: systemd-networkd, DHCP from qemu's user-mode stack.
  mkdir -p "$ROOTFS/etc/systemd/network"
  cat > "$ROOTFS/etc/systemd/network/10-wired.network" <<'N'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
N
  # Kubelet prerequisites.
  cat > "$ROOTFS/etc/modules-load.d/k8s.conf" <<'M'
overlay
br_netfilter
M
  cat > "$ROOTFS/etc/sysctl.d/90-k8s.conf" <<'C'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
C
  # SSH: key login for root.
  install -d -m 700 "$ROOTFS/root/.ssh"
  install -m 600 "$SSH_KEY.pub" "$ROOTFS/root/.ssh/authorized_keys"
  mkdir -p "$ROOTFS/etc/ssh/sshd_config.d"
  cat > "$ROOTFS/etc/ssh/sshd_config.d/krs.conf" <<'D'
PermitRootLogin prohibit-password
UseDNS no
D
  # Serial console fallback: root autologin on ttyS0.
  mkdir -p "$ROOTFS/etc/systemd/system/serial-getty@ttyS0.service.d"
  cat > "$ROOTFS/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'G'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
G
  # Keep the journal in memory; the disk is a throwaway overlay anyway.
  mkdir -p "$ROOTFS/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\n' > "$ROOTFS/etc/systemd/journald.conf.d/krs.conf"
  echo 'root:krs' | in_root chpasswd
  in_root systemctl enable systemd-networkd.service ssh.service containerd.service
  # No network in the guest: timers that would try to fetch things are noise.
  in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer || true
  # Fresh machine-id per boot of the image is not needed; keep one fixed id.
  [ -s "$ROOTFS/etc/machine-id" ] || in_root systemd-machine-id-setup >/dev/null 2>&1
  # Offline test image for containerd/runc.
  mkdir -p "$ROOTFS/root/images"
  build_busybox_oci "$ROOTFS/root/images/krs-busybox-oci.tar"
  # Slim down.
  rm -f "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*_Packages 2>/dev/null || true
  assert_clean_rootfs
  echo "$FINGERPRINT" > "$STAMP_CONFIGURE"
  rm -f "$KRS_VM_DIR/.stamp-image"
  step_end configure
fi

# ---- stage 4: kernel + initrd ----------------------------------------------
vmlinuz=$(ls -1 "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls -1 "$ROOTFS"/boot/initrd.img-* | sort -V | tail -n1)
[ -f "$vmlinuz" ] && [ -f "$initrd" ] || die "no kernel/initrd in $ROOTFS/boot"
cp -f "$vmlinuz" "$KERNEL"
cp -f "$initrd" "$INITRD"

# ---- stage 5: ext4 disk image ----------------------------------------------
STAMP_IMAGE=$KRS_VM_DIR/.stamp-image
if stamp_ok "$STAMP_IMAGE" && [ -f "$BASE_IMG" ]; then
  log "disk image: up to date"
else
  step_begin "mkfs.ext4 -d ($KRS_VM_DISK_SIZE sparse)"
  if vm_pid >/dev/null; then die "the VM is running; stop it (vm-down.sh) before rebuilding the image"; fi
  assert_clean_rootfs
  tmp=$BASE_IMG.tmp
  rm -f "$tmp"
  truncate -s "$KRS_VM_DISK_SIZE" "$tmp"
  # mkfs -d copies the tree into the new filesystem in user space:
  # no loop device, no nbd, no kernel module needed on the host.
  mkfs.ext4 -q -F -L krs-root -E root_owner=0:0 -d "$ROOTFS" "$tmp"
  mv -f "$tmp" "$BASE_IMG"
  echo "$FINGERPRINT" > "$STAMP_IMAGE"
  step_end mkfs
fi

dt=$(awk -v a="$T_ALL" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
printf '%s %-14s %6.1fs\n' "$(date -u +%FT%TZ)" "total" "$dt" | tee -a "$TIMINGS" >&2
log "kernel:  $KERNEL ($(basename "$vmlinuz"))"
log "initrd:  $INITRD"
log "image:   $BASE_IMG (apparent $(du -h --apparent-size "$BASE_IMG" | cut -f1), on disk $(du -h "$BASE_IMG" | cut -f1))"
log "rootfs:  $(du -sh --one-file-system "$ROOTFS" | cut -f1)"
log "next:    $HERE/vm-up.sh"
