#!/usr/bin/env bash
# Installs kubelet-rs as the node's kubelet service: the binary as /usr/bin/kubelet, the
# unit (deploy/systemd/kubelet.service, Type=notify) and kubeadm's drop-in (10-kubeadm.conf),
# then enables the unit. It does not start it: kubeadm init/join (or the admin, after
# writing /etc/kubernetes/kubelet.conf and /var/lib/kubelet/config.yaml) does.
# Usage: install.sh [--binary PATH] [--root DIR]
#   --binary  the kubelet to install (default: target/release/kubelet, built if missing)
#   --root    install under DIR instead of / (no systemctl calls), e.g. to build a package
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin= root=/
while [ $# -gt 0 ]; do
  case $1 in
    --binary) bin=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    *) echo "install.sh: unknown argument $1 (usage: install.sh [--binary PATH] [--root DIR])" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  bin=$top/target/release/kubelet
  [ -x "$bin" ] || (cd "$top" && cargo build --release --locked -p kubelet)
fi
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable" >&2; exit 1; }
for f in kubelet.service 10-kubeadm.conf; do
  [ -f "$top/deploy/systemd/$f" ] || { echo "install.sh: deploy/systemd/$f missing" >&2; exit 1; }
done
install -D -m 0755 "$bin" "$root/usr/bin/kubelet"
install -D -m 0644 "$top/deploy/systemd/kubelet.service" "$root/etc/systemd/system/kubelet.service"
install -D -m 0644 "$top/deploy/systemd/10-kubeadm.conf" "$root/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
install -d -m 0750 "$root/var/lib/kubelet"
install -d -m 0755 "$root/etc/kubernetes/manifests"
if [ "$root" = / ]; then
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable kubelet.service
  else
    echo "install.sh: systemd is not running here; installed files only" >&2
  fi
fi
echo "installed kubelet-rs $("$root/usr/bin/kubelet" --version 2>/dev/null | head -1) under $root"
