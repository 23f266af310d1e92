#!/usr/bin/env bash
# The kubeadm yardstick in one go: with KUBELET_BIN as the node agent, init.sh, checks.sh init,
# join.sh, checks.sh join, then down.sh (unless KEEP=1). Writes OUT_DIR/results.txt (every
# "key value" line of the steps, with step timings) and exits 1 if any step or check failed.
# Adapted from reference/kubeadm/run.sh (its checks are now checks.sh; a failed init or join still
# tears down).
# Usage: run.sh [KUBELET_BIN [OUT_DIR]]   (defaults: target/release/kubelet, /var/log/kubelet-rs/kadm)
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
KUBELET_BIN=$(realpath "${1:-$(default_kubelet)}"); OUT=$(realpath -m "${2:-$KADM_OUT}")
RES=$OUT.results.tmp; : > "$RES"
fail=0
step() { # $1 name, rest: command; its output goes to OUT/$1.out and its result lines to results
  local name=$1 t0 rc=0; shift
  t0=$(now)
  log "step $name: $*"
  "$@" > "$RES.$name.out" 2>&1 || rc=$?
  mkdir -p "$OUT"; mv "$RES.$name.out" "$OUT/$name.out"
  echo "step_${name} rc=$rc $(secs "$t0" "$(now)") s" | tee -a "$RES" >&2
  if [ $rc != 0 ]; then fail=1; tail -5 "$OUT/$name.out" | sed "s/^/  $name: /" >&2; fi
  return $rc
}
# serverTLSBootstrap's CSRs need an approver (the controller-manager does not approve them).
mkdir -p "$OUT"; rm -f "$OUT/approver.stop"
"$KADM_TOOLS/approver.sh" "$OUT" & approver=$!
if step init "$KADM_TOOLS/init.sh" "$KUBELET_BIN" "$OUT"; then
  step checks-init "$KADM_TOOLS/checks.sh" init "$OUT" || true
  if step join "$KADM_TOOLS/join.sh" "$OUT"; then
    step checks-join "$KADM_TOOLS/checks.sh" join "$OUT" || true
    if [ -n "${KADM_SIGNING_DURATION-10m}" ]; then
      step rotation "$KADM_TOOLS/checks.sh" rotation "$OUT" || true
    fi
  fi
fi
touch "$OUT/approver.stop"; wait "$approver" 2>/dev/null || true
for f in init.result checks-init.result join.result checks-join.result checks-rotation.result; do
  if [ -f "$OUT/$f" ]; then sed "s/^/${f%.result}: /" "$OUT/$f" >> "$RES"; fi
done
if [ -z "${KEEP:-}" ]; then step down "$KADM_TOOLS/down.sh" "$OUT" || true; fi
echo "overall $([ $fail = 0 ] && echo PASS || echo FAIL)" >> "$RES"
mv "$RES" "$OUT/results.txt"
log "results: $OUT/results.txt ($([ $fail = 0 ] && echo PASS || echo FAIL))"
exit $fail
