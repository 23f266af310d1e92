#!/usr/bin/env bash
# The Debian package: kubelet-rs_<version>_<arch>.deb in target/debian, built with cargo-deb
# (installed once), then checked: its files, its metadata, and the packaged binary, completions
# and man page working from an unpacked copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); top=$(cd "$here/.." && pwd)
. "$here/common.sh"
cd "$top"
export CARGO_TARGET_DIR=$top/target   # cargo-deb takes target/release/kubelet from here
if ! cargo deb --version >/dev/null 2>&1; then
  log "installing cargo-deb (once, a few minutes)"
  cargo install --locked cargo-deb
fi
log "building kubelet (release) and the completions and man page"
cargo build --release --locked -p kubelet
rm -rf target/dist
cargo run --locked -q -p kubelet-config --example dist_assets -- target/dist
gzip -9n target/dist/kubelet.1
deb=$(cargo deb -p kubelet --no-build | tail -1)
[ -f "$deb" ] || { log "cargo deb made no package"; exit 1; }
log "built $deb"

# --- checks ---------------------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/kubelet ./lib/systemd/system/kubelet.service \
  ./etc/systemd/system/kubelet.service.d/10-kubeadm.conf \
  ./usr/share/bash-completion/completions/kubelet ./usr/share/zsh/vendor-completions/_kubelet \
  ./usr/share/fish/vendor_completions.d/kubelet.fish ./usr/share/man/man1/kubelet.1.gz \
  ./usr/share/doc/kubelet-rs/copyright; do
  grep -q " $f\$" <<<"$contents" || { log "package lacks $f"; exit 1; }
done
info=$(dpkg-deb -f "$deb" Package Provides Conflicts Depends)
grep -q '^Provides: kubelet' <<<"$info" && grep -q '^Conflicts: kubelet' <<<"$info" \
  || { log "package metadata: $info"; exit 1; }
x=$(mktemp -d); trap 'rm -rf "$x"' EXIT
dpkg-deb -x "$deb" "$x"
"$x/usr/bin/kubelet" --version | grep -q '^Kubernetes v1\.20\.2' || { log "packaged binary: bad --version"; exit 1; }
# shellcheck disable=SC1091
bash -c ". '$x/usr/share/bash-completion/completions/kubelet' && complete -p kubelet" >/dev/null \
  || { log "bash completion does not load"; exit 1; }
# (Whole, then grep: with pipefail, an early grep -q exit would fail zcat with SIGPIPE.)
zcat "$x/usr/share/man/man1/kubelet.1.gz" > "$x/kubelet.1"
grep -q -- 'bootstrap\\-kubeconfig' "$x/kubelet.1" \
  || { log "man page lacks --bootstrap-kubeconfig"; exit 1; }
cmp -s "$x/lib/systemd/system/kubelet.service" deploy/systemd/kubelet.service \
  || { log "unit differs from deploy/systemd/kubelet.service"; exit 1; }
log "package checked: $(dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ')"
echo "$deb"
