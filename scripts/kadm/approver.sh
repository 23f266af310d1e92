#!/usr/bin/env bash
# Approves the kubelets' serving certificate requests as they come (signer
# kubernetes.io/kubelet-serving, requested by system:node:*), which the controller-manager never
# does: the stand-in for a cluster's own approver, so that serverTLSBootstrap's CSRs (and their
# rotations under a short --cluster-signing-duration) are issued within seconds.
# Runs until OUT_DIR/approver.stop exists (run.sh makes it) or for an hour at most.
# Usage: approver.sh [OUT_DIR]
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
OUT=$(realpath -m "${1:-$KADM_OUT}")
mkdir -p "$OUT"
end=$(( $(date +%s) + 3600 ))
while [ ! -e "$OUT/approver.stop" ] && [ "$(date +%s)" -lt "$end" ]; do
  if [ -s "$(admin_conf)" ]; then
    pending=$(kc get csr -o json 2>/dev/null | python3 -c '
import json, sys
for i in json.load(sys.stdin)["items"]:
    s = i["spec"]
    if s.get("signerName") == "kubernetes.io/kubelet-serving" \
            and s.get("username", "").startswith("system:node:") \
            and not i.get("status", {}).get("conditions"):
        print(i["metadata"]["name"])' 2>/dev/null) || true
    for c in $pending; do
      if kc certificate approve "$c" >/dev/null 2>&1; then echo "$(date -u +%FT%TZ) approved $c" >> "$OUT/approver.log"; fi
    done
  fi
  sleep 2
done
