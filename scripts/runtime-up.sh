#!/usr/bin/env bash
# A private CRI runtime for the project: containerd + runc + a CNI bridge (Debian packages),
# with its own socket, root, state, runc root and CNI config, so it never touches a system-wide
# containerd (/run/containerd). Images are built locally (there is no registry): pause, busybox.
# (Only its shims' sockets go to /run/containerd/s/, a path containerd 1.6 hard-codes; they are
# named by a hash of our socket address, so they never clash with a system instance's.)
# Usage: runtime-up.sh        (idempotent; needs install-deps.sh first)
#   socket  $CONTAINERD_SOCK   config $KRS_STATE/containerd/config.toml
#   pid     $KRS_RUN/containerd.pid   log /var/log/kubelet-rs/containerd.log
set -euo pipefail
. "$(dirname "$0")/common.sh"
for c in containerd ctr runc umoci skopeo gcc; do
  command -v $c >/dev/null || { echo "runtime-up: $c missing; run scripts/install-deps.sh" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "runtime-up: /usr/lib/cni/bridge missing; run scripts/install-deps.sh" >&2; exit 1; }

CD_STATE=$KRS_STATE/containerd CD_RUN=$KRS_RUN/containerd
CNI_CONF=$KRS_STATE/cni/net.d LOGDIR=/var/log/kubelet-rs PIDFILE=$KRS_RUN/containerd.pid
mkdir -p "$CD_STATE" "$CD_RUN" "$CNI_CONF" "$KRS_STATE/cni/ipam" "$LOGDIR" "$KRS_CACHE/images" "$(dirname "$CONTAINERD_SOCK")"

# --- config: `containerd config default`, changed key by key within its section --------------
# The CRI plugin's own root_dir/state_dir are not settable in containerd 1.6: they are always
# <root>/io.containerd.grpc.v1.cri and <state>/io.containerd.grpc.v1.cri, so they follow root/state.
# restrict_oom_score_adj: this sandbox lacks CAP_SYS_RESOURCE; the pause container asks for -998
# and runc fails with "can't get final child's PID from pipe: EOF" unless containerd clamps it.
cri='plugins."io.containerd.grpc.v1.cri"'
new=$(containerd config default | awk \
  -v root="$CD_STATE/root" -v state="$CD_RUN/state" -v sock="$CONTAINERD_SOCK" \
  -v runc_root="$CD_RUN/runc" -v opt="$CD_STATE/opt" -v cni_conf="$CNI_CONF" -v cri="$cri" '
  function q(s) { return "\"" s "\"" }
  /^[ \t]*\[/ { sec = $0; sub(/^[ \t]*\[+/, "", sec); sub(/\]+[ \t]*$/, "", sec) }
  { k = $1; v = "" }
  sec == ""          && k == "root"    { v = q(root) }
  sec == ""          && k == "state"   { v = q(state) }
  sec == "grpc"      && k == "address" { v = q(sock) }
  sec == "ttrpc"     && k == "address" { v = q(sock ".ttrpc") }
  sec == "metrics"   && k == "address" { v = q("") }
  sec == "debug"     && k == "address" { v = q("") }
  sec == cri && k == "restrict_oom_score_adj"       { v = "true" }
  sec == cri && k == "sandbox_image"                { v = q("registry.k8s.io/pause:3.6") }
  sec == cri && k == "netns_mounts_under_state_dir" { v = "true" }
  sec == cri ".cni" && k == "bin_dir"  { v = q("/usr/lib/cni") }
  sec == cri ".cni" && k == "conf_dir" { v = q(cni_conf) }
  sec == cri ".containerd.runtimes.runc.options" && k == "Root"          { v = q(runc_root) }
  sec == cri ".containerd.runtimes.runc.options" && k == "SystemdCgroup" { v = "false" }
  sec == "plugins.\"io.containerd.internal.v1.opt\"" && k == "path" { v = q(opt) }
  v != "" { match($0, /^[ \t]*/); $0 = substr($0, 1, RLENGTH) k " = " v }
  { print }')
for want in "root = \"$CD_STATE/root\"" "address = \"$CONTAINERD_SOCK\"" 'restrict_oom_score_adj = true' \
            "conf_dir = \"$CNI_CONF\"" "Root = \"$CD_RUN/runc\""; do
  grep -qF "$want" <<<"$new" || { echo "runtime-up: could not set '$want' in containerd's default config" >&2; exit 1; }
done
cfg_changed=0
if ! cmp -s <(printf '%s\n' "$new") "$CD_STATE/config.toml"; then
  printf '%s\n' "$new" > "$CD_STATE/config.toml.tmp" && mv "$CD_STATE/config.toml.tmp" "$CD_STATE/config.toml"
  cfg_changed=1
fi

# --- CNI: our own bridge, IPAM store and network name -----------------------------------------
cat > "$CNI_CONF/10-krs-bridge.conflist.tmp" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "krs-podnet",
  "plugins": [
    {"type": "bridge", "bridge": "krs0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "dataDir": "$KRS_STATE/cni/ipam",
              "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
if cmp -s "$CNI_CONF/10-krs-bridge.conflist.tmp" "$CNI_CONF/10-krs-bridge.conflist"; then
  rm "$CNI_CONF/10-krs-bridge.conflist.tmp"
else # containerd watches this directory and reloads on change
  mv "$CNI_CONF/10-krs-bridge.conflist.tmp" "$CNI_CONF/10-krs-bridge.conflist"
fi

# --- containerd -------------------------------------------------------------------------------
running_pid() { # the recorded pid, if it is still our containerd
  local p; p=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$p" ] && ! pid_gone "$p" && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = containerd ] && echo "$p"
}
if containerd_up; then
  [ $cfg_changed = 0 ] || log "containerd config changed; restart it to apply (runtime-down.sh && runtime-up.sh)"
else
  if ! pid=$(running_pid); then
    rm -f "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
    # setsid: own session, so it outlives the shell (and job) that started it
    setsid containerd --config "$CD_STATE/config.toml" >>"$LOGDIR/containerd.log" 2>&1 </dev/null &
    pid=$!; echo $pid > "$PIDFILE"
  fi
  if ! wait_for 30 containerd_up; then
    echo "runtime-up: containerd (pid $pid) did not answer on $CONTAINERD_SOCK within 30s; last log lines:" >&2
    tail -20 "$LOGDIR/containerd.log" >&2; exit 1
  fi
  log "containerd up (pid $pid, socket $CONTAINERD_SOCK)"
fi

# --- images: built once into $KRS_CACHE/images as docker-archive tarballs, then imported -------
# (An OCI-layout tarball import leaves stray import-DATE refs that confuse the CRI image store.)
have_image() { ctr_ images ls -q | grep -xF "$1" >/dev/null; }  # not -q: an early exit would SIGPIPE ctr, and pipefail would fail the check
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
build_image() { # $1 ref, $2 tarball, $3 rootfs dir, then umoci config flags
  local ref=$1 tar=$2 rootfs=$3; shift 3
  ( cd "$W"
    rm -rf L B
    umoci init --layout L && umoci new --image L:x
    umoci unpack --rootless --image L:x B >/dev/null
    cp -a "$rootfs"/. B/rootfs/
    umoci repack --image L:x B
    umoci config --image L:x "$@"
    umoci gc --layout L
    rm -f "$tar.tmp"
    skopeo copy -q "oci:L:x" "docker-archive:$tar.tmp:$ref" ) >"$W/umoci.log" 2>&1 \
    || { cat "$W/umoci.log" >&2; echo "runtime-up: building image $ref failed" >&2; exit 1; }
  mv "$tar.tmp" "$tar"
}
import_image() { # $1 ref, $2 tarball
  ctr_ images import "$2" >/dev/null || { echo "runtime-up: importing $2 failed" >&2; exit 1; }
  have_image "$1" || { echo "runtime-up: $1 not present after importing $2" >&2; exit 1; }
}

PAUSE=registry.k8s.io/pause:3.6 PAUSE_TAR=$KRS_CACHE/images/pause-3.6.tar
if ! have_image $PAUSE; then
  if [ ! -s "$PAUSE_TAR" ]; then
    mkdir -p "$W/pause-root"
    cat > "$W/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGINT, bye);
  signal(SIGTERM, bye);
  for (;;) pause();
}
EOF
    gcc -Os -static -s -o "$W/pause-root/pause" "$W/pause.c" \
      || { echo "runtime-up: gcc -static failed (libc6-dev installed?)" >&2; exit 1; }
    build_image $PAUSE "$PAUSE_TAR" "$W/pause-root" --config.entrypoint /pause
  fi
  import_image $PAUSE "$PAUSE_TAR"
fi

BB=docker.io/library/busybox BB_TAR=$KRS_CACHE/images/busybox.tar
if ! have_image $BB:latest; then
  if [ ! -s "$BB_TAR" ]; then
    bb=$(command -v busybox); r=$W/bb-root
    if ldd "$bb" >/dev/null 2>&1; then echo "runtime-up: $bb is not static; install busybox-static" >&2; exit 1; fi
    mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,var/tmp}
    chmod 1777 "$r/tmp" "$r/var/tmp"
    cp "$bb" "$r/bin/busybox"
    # every applet except `busybox` itself, which would overwrite the binary
    for a in $("$bb" --list | grep -vx busybox); do ln -sf busybox "$r/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
    build_image $BB:latest "$BB_TAR" "$r" --config.cmd /bin/sh \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  fi
  import_image $BB:latest "$BB_TAR"
fi
have_image $BB:1.36 || ctr_ images tag --force $BB:latest $BB:1.36 >/dev/null

# An image no pod uses, for the disk-pressure test to watch image GC take (it imports it again).
GCV=krs.local/e2e/gc-victim:1 GCV_TAR=$KRS_CACHE/images/gc-victim.tar
if [ ! -s "$GCV_TAR" ]; then
  mkdir -p "$W/gcv-root" && echo "garbage" > "$W/gcv-root/victim"
  build_image $GCV "$GCV_TAR" "$W/gcv-root" --config.label krs.e2e=gc-victim
fi
have_image $GCV || import_image $GCV "$GCV_TAR"

ctr_ images ls -q | grep -v '^sha256:'
