#!/usr/bin/env bash
# The images kubeadm 1.20.2 runs, built offline from local binaries (there is no registry here), as
# docker-archive tars under $KADM_CACHE/images, and optionally imported into a containerd's k8s.io
# namespace under the exact names kubeadm expects (`kubeadm config images list --kubernetes-version v1.20.2`):
#   k8s.gcr.io/kube-{apiserver,controller-manager,scheduler,proxy}:v1.20.2  the cached static binaries
#   k8s.gcr.io/etcd:3.4.13-0   Debian's etcd 3.4 (/usr/bin/etcd, dynamically linked: libc goes along)
#   k8s.gcr.io/pause:3.2       a static C pause
#   docker.io/library/busybox:latest   busybox-static, for test pods
# k8s.gcr.io/coredns:1.7.0 is not built: there is no CoreDNS here (init.sh skips the addon).
# kube-proxy holds only the binary (no iptables): init.sh skips that addon too.
# Adapted from reference/kubeadm/images.sh: binaries from $K8S_BIN, tars in $KADM_CACHE/images,
# `log` lines, set -e; no apt-get here (scripts/install-deps.sh).
# Usage: images.sh [CONTAINERD_SOCKET [NAME...]]   NAME: apiserver controller-manager scheduler
#        proxy etcd pause busybox (default: all). Without a socket it only builds the tars.
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
IMG_DIR=${IMG_DIR:-$KADM_CACHE/images}
SOCK=${1:-}; shift || true
NAMES=("$@"); [ ${#NAMES[@]} -gt 0 ] || NAMES=(apiserver controller-manager scheduler proxy etcd pause busybox)
mkdir -p "$IMG_DIR"
for t in umoci skopeo gcc /bin/busybox /usr/bin/etcd; do
  command -v "$t" >/dev/null || { log "$t missing: run scripts/install-deps.sh"; exit 1; }
done
PATHENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ref_of() {
  case $1 in
    apiserver|controller-manager|scheduler|proxy) echo "k8s.gcr.io/kube-$1:v$K8S_VERSION" ;;
    etcd) echo "k8s.gcr.io/etcd:3.4.13-0" ;;
    pause) echo "k8s.gcr.io/pause:3.2" ;;
    busybox) echo "docker.io/library/busybox:latest" ;;
    *) log "unknown image $1"; return 1 ;;
  esac
}
src_of() { # the file whose change means a rebuild
  case $1 in
    apiserver|controller-manager|scheduler|proxy) echo "$K8S_BIN/kube-$1" ;;
    etcd) echo /usr/bin/etcd ;;
    pause|busybox) echo /bin/busybox ;;
  esac
}

base_rootfs() { # $1 rootfs: the few files a Go server expects
  mkdir -p "$1"/{etc,tmp,var/run,usr/local/bin,root}; chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$1/etc/group"
  echo 'hosts: files dns' > "$1/etc/nsswitch.conf"
}
copy_with_libs() { # $1 rootfs, $2 binary, $3 dest: the binary plus what ldd says it loads
  install -D -m 755 "$2" "$1$3"
  local lib
  for lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' || true); do
    if [ -e "$lib" ]; then install -D -m 755 "$(realpath "$lib")" "$1$lib"; fi
  done
}

build() { # $1 name -> $IMG_DIR/$1.tar
  local n=$1 ref tar W
  ref=$(ref_of "$n"); tar="$IMG_DIR/$n.tar"
  [ -e "$(src_of "$n")" ] || { log "$(src_of "$n") missing (scripts/kadm/build.sh builds kube-proxy)"; return 1; }
  if [ -s "$tar" ] && [ "$tar" -nt "$(src_of "$n")" ]; then return 0; fi
  W=$(mktemp -d); (
  set -e; cd "$W"
  umoci init --layout L >/dev/null && umoci new --image L:x && umoci unpack --rootless --image L:x B >/dev/null
  R=B/rootfs; cfg=()
  case $n in
    apiserver|controller-manager|scheduler|proxy)
      base_rootfs $R; install -m 755 "$K8S_BIN/kube-$n" "$R/usr/local/bin/kube-$n"
      cfg=(--config.entrypoint "/usr/local/bin/kube-$n") ;;
    etcd)
      base_rootfs $R; mkdir -p $R/var/lib/etcd
      copy_with_libs $R /usr/bin/etcd /usr/local/bin/etcd
      if [ -x /usr/bin/etcdctl ]; then copy_with_libs $R /usr/bin/etcdctl /usr/local/bin/etcdctl; fi
      cfg=(--config.entrypoint /usr/local/bin/etcd) ;;
    pause)
      printf '#include <signal.h>\n#include <unistd.h>\nstatic void h(int s){_exit(0);}\nint main(){signal(SIGINT,h);signal(SIGTERM,h);for(;;)pause();}\n' > pause.c
      gcc -Os -static -o pause pause.c && install -m 755 pause $R/pause
      cfg=(--config.entrypoint /pause) ;;
    busybox)
      mkdir -p $R/{bin,etc,tmp,proc,sys,dev,root}; chmod 1777 $R/tmp; cp /bin/busybox $R/bin/busybox
      for c in $(/bin/busybox --list | grep -vx busybox); do ln -sf busybox "$R/bin/$c"; done
      printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > $R/etc/passwd
      printf 'root:x:0:\nnogroup:x:65534:\n' > $R/etc/group
      cfg=(--config.cmd /bin/sh) ;;
  esac
  umoci repack --image L:x B >/dev/null && umoci config --image L:x --config.env "$PATHENV" "${cfg[@]}" && umoci gc --layout L
  rm -f img.tar; skopeo copy -q oci:L:x "docker-archive:img.tar:$ref" && mv img.tar "$tar.new" && mv "$tar.new" "$tar"
  ); rm -rf "$W"; log "built $tar ($ref)"
}

renice -n 10 $$ >/dev/null 2>&1 || true
for n in "${NAMES[@]}"; do build "$n"; done
if [ -n "$SOCK" ]; then
  have=$(ctr --address "$SOCK" -n k8s.io images ls -q)
  for n in "${NAMES[@]}"; do
    ref=$(ref_of "$n")
    if ! grep -qxF "$ref" <<<"$have"; then
      ctr --address "$SOCK" -n k8s.io images import "$IMG_DIR/$n.tar" >/dev/null
      log "imported $ref into $SOCK"
    fi
  done
fi
