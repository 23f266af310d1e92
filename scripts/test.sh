#!/usr/bin/env bash
# Every test, on a fresh machine: formatting, lints, unit tests, then the end-to-end tests
# with our kubelet against the real containerd and the real kube-apiserver.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/common.sh"
"$here/env-up.sh"
cd "$top"
export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "unit and integration tests"
cargo test --workspace --exclude kubelet-e2e --locked
log "static pod UIDs: the unit test's expectations and type shape against upstream's own code"
td=crates/kubelet-core/src/config/testdata
diff <(cd "$td" && "$here/static-uid-oracle.sh" uid *.yaml) "$td/uids.txt"
diff <("$here/static-uid-oracle.sh" schema) crates/kubelet-core/src/config/core_pod_types.json
if [ "${KRS_SKIP_VM:-0}" = 1 ]; then
  log "KRS_SKIP_VM=1: skipping the systemd and cgroup v2 tests in the VM"
else
  log "systemd and cgroup v2 tests in the VM"
  "$here/vm-test.sh"
fi
log "coverage-guided fuzzing of request and config parsing"
"$here/fuzz.sh" "${KRS_FUZZ_SECONDS:-60}"

log "end-to-end tests"
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
"$here/upstream-kubelet.sh" stop
"$here/kubelet.sh" stop
# Namespaces left by an interrupted earlier run.
kubectl delete namespace -l kubelet-rs-e2e=true --wait=false >/dev/null 2>&1 || true
cargo build --locked -p kubelet
E2E_LOG=/var/log/kubelet-rs/kubelet-rs-e2e.log
# The cluster's KubeletConfiguration, with small log limits so the rotation test is quick.
E2E_CONFIG=$CLUSTER_DIR/kubelet-config-e2e.yaml
{ cat "$CLUSTER_DIR/kubelet-config.yaml"; printf 'containerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n'; } > "$E2E_CONFIG"
export KRS_KUBELET_CONFIG=$E2E_CONFIG
: > "$E2E_LOG"
KRS_PROFILE=debug KRS_KUBELET_LOG=$E2E_LOG "$here/kubelet.sh" start
trap '"$here/kubelet.sh" stop' EXIT
export KRS_KUBECONFIG=$KUBECONFIG KRS_NODE=$NODE_NAME KRS_CONTAINERD_SOCK=$CONTAINERD_SOCK KRS_CLUSTER_DIR=$CLUSTER_DIR
export KRS_KUBELET_LOG_FILE=$E2E_LOG   # what the kubelet logs, for tests that look for a line
# For the disk-pressure test: an unused image (runtime-up.sh) for image GC to take.
export KRS_GC_VICTIM_TAR=$KRS_CACHE/images/gc-victim.tar KRS_GC_VICTIM=krs.local/e2e/gc-victim:1
# For the restart test: where the kubelet's pid is, and how to start it again.
export KRS_KUBELET_PIDFILE=$KRS_RUN/kubelet-rs.pid KRS_KUBELET_BIN=$top/target/debug/kubelet
export KRS_KUBELET_START="KRS_PROFILE=debug KRS_KUBELET_LOG=$E2E_LOG '$here/kubelet.sh' start"
# For the runtime outage test: stop our containerd (containers survive) and start it again.
export KRS_RUNTIME_DOWN="'$here/runtime-down.sh'" KRS_RUNTIME_UP="'$here/runtime-up.sh' >/dev/null"
cargo test --locked -p kubelet-e2e --no-run
# The token-renewal test waits 9 minutes for the API server's shortest token lifetime: it
# runs beside the others rather than after them.
RENEWAL_LOG=${TMPDIR:-/tmp}/kubelet-rs-e2e-token-renewal.log
cargo test --locked -p kubelet-e2e --test token_renewal -- --ignored >"$RENEWAL_LOG" 2>&1 &
renewal_pid=$!
if ! cargo test --locked -p kubelet-e2e; then
  echo "---- last kubelet log lines ($E2E_LOG) ----" >&2
  tail -40 "$E2E_LOG" >&2
  pkill -P "$renewal_pid" 2>/dev/null || true; kill "$renewal_pid" 2>/dev/null || true
  exit 1
fi
log "waiting for the token-renewal test"
if ! wait "$renewal_pid"; then
  cat "$RENEWAL_LOG" >&2
  echo "---- last kubelet log lines ($E2E_LOG) ----" >&2
  tail -40 "$E2E_LOG" >&2
  exit 1
fi
grep -E '^test |test result' "$RENEWAL_LOG" || true
# Nothing of the tests may be left in the runtime.
left=$(ctr_ containers ls -q | while read -r id; do
  ctr_ containers info "$id" 2>/dev/null | grep -o '"io.kubernetes.pod.namespace": "e2e-[^"]*"' || true
done | sort -u)
if [ -n "$left" ]; then echo "e2e pods left in the runtime: $left" >&2; exit 1; fi
"$here/kubelet.sh" stop
# The kubeadm yardstick: kubeadm init and join with our kubelet, in their own namespaces.
# KRS_KUBEADM=0 skips it (about 9 minutes with the certificate rotation step).
if [ "${KRS_KUBEADM:-1}" = 1 ]; then
  log "kubeadm yardstick (scripts/kadm-e2e.sh)"
  "$here/kadm-e2e.sh" "$top/target/debug/kubelet"
else
  log "KRS_KUBEADM=0: the kubeadm yardstick (scripts/kadm-e2e.sh) skipped"
fi
# The side-by-side benchmark must not rot: a 1-pod smoke run of each kubelet (not timed here).
log "benchmark smoke run"
KRS_BENCH_IN_TEST=1 "$here/bench.sh" --smoke --no-plot --out "${TMPDIR:-/tmp}/kubelet-bench-smoke.json"
# The Debian package builds and holds what it should (after the bench's release build).
if [ "${KRS_PACKAGE:-1}" = 1 ]; then
  log "Debian package (scripts/package.sh)"
  "$here/package.sh" >/dev/null
fi
log "all tests passed"
