#!/usr/bin/env bash
# The yardstick's checks, after init.sh (`checks.sh init`) or after join.sh (`checks.sh join`).
# init: the four control-plane static pods run (CRI) with Ready mirror pods, node 1's client
#   certificate and its CSR, the apiserver's kubelet flags, a busybox pod on the control-plane node
#   (master taint removed) with `kubectl logs` and `kubectl exec`;
# join: node 2's TLS bootstrap (CSR by system:bootstrap:<token id>, kubelet-client-current.pem from
#   it, bootstrap-kubelet.conf removed), a busybox pod on node 2 with logs and exec, the nodes.
# Prints and writes OUT_DIR/checks-PHASE.result ("key value" lines; a failed check says FAIL);
# exits 1 if any check failed.
# Adapted from the checks in reference/kubeadm/run.sh (split out so that they can be run step by
# step; paths of node 1's private /etc/kubernetes and /var/lib/kubelet; set -e).
# Usage: checks.sh init|join [OUT_DIR]
set -euo pipefail
# shellcheck source=scripts/kadm/lib.sh
. "$(dirname "$(realpath "$0")")/lib.sh"
PHASE=${1:-}; OUT=$(realpath -m "${2:-$KADM_OUT}")
case $PHASE in init|join|rotation) ;; *) log "usage: checks.sh init|join|rotation [OUT_DIR]"; exit 2 ;; esac
[ -f "$OUT/env" ] || { log "no $OUT/env: run init.sh first"; exit 2; }
# shellcheck disable=SC1091
. "$OUT/env"
: "${NODE1:?no NODE1 in $OUT/env}" "${T_INIT0:?}"
RES=$OUT/checks-$PHASE.result; : > "$RES"
res() { echo "$1 ${*:2}" | tee -a "$RES"; }
fail=0
pyj() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
N1=$STATE_ROOT/n1 N2=$STATE_ROOT/n2

pod_yaml() { # $1 name, $2 node
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: $2}
  terminationGracePeriodSeconds: 1
  containers:
  - name: bb
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'echo hello from $1; exec sleep 3600']
EOF
}
busybox_on() { # $1 pod name, $2 node: create, time to Running, logs, exec
  local t0 t1='' ph='' out
  t0=$(now)
  for _ in $(seq 60); do   # the default service account appears a few seconds after the control plane
    if pod_yaml "$1" "$2" | kc apply -f - > "$OUT/$1.apply" 2>&1; then break; fi; sleep 0.5
  done
  if ! kc get pod "$1" >/dev/null 2>&1; then res "${1}_running" "FAIL create: $(tail -1 "$OUT/$1.apply")"; fail=1; return; fi
  for _ in $(seq 240); do
    ph=$(kc get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null) || true
    if [ "$ph" = Running ]; then t1=$(now); break; fi
    sleep 0.5
  done
  if [ -z "$t1" ]; then
    res "${1}_running" "FAIL phase=$ph"; fail=1; kc describe pod "$1" > "$OUT/$1.describe" 2>&1 || true; return
  fi
  res "${1}_running_s" "$(secs "$t0" "$t1") (node $(kc get pod "$1" -o jsonpath='{.spec.nodeName}'))"
  res "${1}_container" "$(kc get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')"
  sleep 1
  out=$(kc logs "$1" 2>&1 | head -1) || true
  res "${1}_logs" "$out"
  [ "$out" = "hello from $1" ] || { res "${1}_logs_check" FAIL; fail=1; }
  # shellcheck disable=SC2016 # $(hostname) runs in the container
  out=$(kc exec "$1" -- sh -c 'echo exec-ok $(hostname)' 2>&1 | head -1) || true
  res "${1}_exec" "$out"
  [ "$out" = "exec-ok $1" ] || { res "${1}_exec_check" FAIL; fail=1; }
}
csr_for() { # $1 requestor prefix: name signer requestor approved issued
  kc get csr -o json 2>/dev/null | pyj "
for i in d['items']:
    u=i['spec'].get('username','')
    if u.startswith('$1'):
        c=[x['type'] for x in i['status'].get('conditions',[])]
        print(i['metadata']['name'], i['spec'].get('signerName'), u, '+'.join(c) or 'Pending', 'issued' if i['status'].get('certificate') else 'not-issued')"
}
cert_check() { # $1 pem path (on the host), $2 requestor prefix: does the current cert come from that CSR?
  local link serial csrs s pem name pemtext
  link=$(readlink "$1" 2>/dev/null) || { echo "no symlink at $1"; return; }
  # the link is absolute inside the node's own mount namespace: resolve it beside the link
  pem=$(dirname "$1")/$(basename "$link")
  serial=$(openssl x509 -noout -serial -in "$pem" 2>/dev/null | cut -d= -f2) || true
  csrs=$(kc get csr -o json | pyj "
import base64
for i in d['items']:
    if i['spec'].get('username','').startswith('$2') and i['status'].get('certificate'):
        print(i['metadata']['name'], base64.b64decode(i['status']['certificate']).decode().replace('\n','|'))") || true
  s=none
  while read -r name pemtext; do
    [ -n "$name" ] || continue
    if [ "$(echo "$pemtext" | tr '|' '\n' | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2)" = "$serial" ]; then s=$name; fi
  done <<< "$csrs"
  echo "symlink->$(basename "$link") subject=$(openssl x509 -noout -subject -in "$pem" | sed 's/^subject=//;s/ //g') issued_by_csr=$s"
}
rss_kb() { # $1 node number
  local p; p=$(cat "$OUT/n$1/kubelet.pid" 2>/dev/null) || { echo none; return; }
  awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo none
}

if [ "$PHASE" = init ]; then
  res kubelet "$KUBELET_BIN ($("$KUBELET_BIN" --version 2>&1 | head -1))"
  res init_cmd "$(cat "$OUT/kubeadm-init.cmd")"
  res init_kubeadm_flags_env "$(cat "$N1/var-lib-kubelet/kubeadm-flags.env")"
  res init_kubelet_argv "$(grep '^=== kadm kubelet.service start' "$OUT/n1/kubelet.log" | tail -1 | sed 's/.*: //')"
  res apiserver_kubelet_flags "$(grep -oE -- '--kubelet-[a-z-]+=[^ ]*' "$N1/etc-kubernetes/manifests/kube-apiserver.yaml" | tr '\n' ' ')"
  # ---- static pods and mirror pods
  node_dirs 1
  static_state() { # $1 component: CRI state of its container and its mirror pod
    local st mp
    st=$("$CRICTL" -r "$SOCK" ps 2>/dev/null | awk -v c="$1" '$3==c{print $2}' | head -1) || true
    mp=$(kc -n kube-system get pod "$1-$NODE1" -o json 2>/dev/null | pyj "
a=d['metadata'].get('annotations',{}); s=d['status']
r=[x['status'] for x in s.get('conditions',[]) if x['type']=='Ready']
print('mirror=%s phase=%s ready=%s source=%s' % ('kubernetes.io/config.mirror' in a, s.get('phase'), r[0] if r else '-', a.get('kubernetes.io/config.source')))" 2>/dev/null) || true
    echo "cri=${st:-absent} ${mp:-mirror=absent}"
  }
  static_ok() { case "$1" in *CONTAINER_RUNNING*mirror=True*phase=Running*ready=True*) return 0 ;; esac; return 1; }
  ok=0
  for _ in $(seq 150); do   # kube-controller-manager and kube-scheduler may still be getting Ready
    ok=1; for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do static_ok "$(static_state $c)" || ok=0; done
    [ $ok = 1 ] && break; sleep 1
  done
  if [ $ok = 1 ]; then res static_pods_all_ready_by_s_after_init_start "$(secs "$T_INIT0" "$(now)")"
  else res static_pods_all_ready_by_s_after_init_start FAIL; fi
  for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do
    st=$(static_state $c); res "static_$c" "$st"; static_ok "$st" || fail=1
  done
  # Upstream's own code (static-uid-oracle.sh) gives kubeadm's manifests the UIDs ours did.
  oracle=$(dirname "$(realpath "$0")")/../static-uid-oracle.sh
  for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do
    want=$("$oracle" uid "$N1/etc-kubernetes/manifests/$c.yaml" 2>/dev/null | awk '{print $1}') || true
    got=$(kc -n kube-system get pod "$c-$NODE1" -o jsonpath='{.metadata.annotations.kubernetes\.io/config\.hash}' 2>/dev/null) || true
    res "static_uid_$c" "ours=${got:-none} upstream=${want:-none}"
    { [ -n "$want" ] && [ "$got" = "$want" ]; } || fail=1
  done
  res kube_system_pods "$(kc -n kube-system get pods --no-headers 2>&1 | awk '{printf "%s:%s:%s ", $1, $2, $3}')"
  # ---- node 1 client certificate: kubeadm init gives the kubelet a client certificate in kubelet.conf,
  # which the kubelet may rotate at once through a CSR (then kubelet-finalize points kubelet.conf at
  # kubelet-client-current.pem). Wait a while for that CSR to be issued.
  for _ in $(seq 60); do if csr_for "system:node:$NODE1" | grep -q ' issued$'; then break; fi; sleep 1; done
  res node1_csrs "$(csr_for "system:node:$NODE1" | tr '\n' ';')"
  res node1_client_cert "$(cert_check "$N1/var-lib-kubelet/pki/kubelet-client-current.pem" "system:node:$NODE1")"
  restart2=$(awk '/ start /{n++} n==2{print $1; exit}' "$OUT/n1/kubelet-starts.log" | xargs -r -I{} date -u -d @{} +%Y-%m-%dT%H:%M:%SZ) || true
  res node1_csr_times "$(kc get csr -o json | pyj "
for i in d['items']:
    if i['spec'].get('username')=='system:node:$NODE1':
        a=[c.get('lastTransitionTime') for c in i['status'].get('conditions',[]) if c['type']=='Approved']
        print(i['metadata']['name'], 'created', i['metadata']['creationTimestamp'], 'approved', a[0] if a else '-')") kubelet_restarted_by_kubeadm ${restart2:-never}"
  res node1_kubelet_conf_user "$(grep -E 'client-(certificate|key)' "$N1/etc-kubernetes/kubelet.conf" | tr -s ' ' | tr '\n' ' ')"
  # ---- busybox on the control-plane node
  kc taint nodes "$NODE1" node-role.kubernetes.io/master- >/dev/null 2>&1 || true
  res node1_taints "$(kc get node "$NODE1" -o jsonpath='{.spec.taints}')"
  busybox_on bb-cp "$NODE1"
  res node1_kubelet_starts_exits "$(count ' start ' "$OUT/n1/kubelet-starts.log")/$(count ' exit ' "$OUT/n1/kubelet-starts.log")"
  res node1_kubelet_rss_kb "$(rss_kb 1)"
elif [ "$PHASE" = rotation ]; then
  # Under the short signing duration (init.sh), node 2's client certificate (from its bootstrap
  # CSR) and both nodes' serving certificates must each be renewed at least twice, through CSRs,
  # while the pods keep running untouched. Node 1 keeps the client certificate kubeadm signed
  # (a year), as upstream's does.
  [ -n "${NODE2:-}" ] || { log "no NODE2 in $OUT/env: run join.sh first"; exit 2; }
  issued() { # $1 requestor, $2 signer: how many of its CSRs were issued
    csr_for "$1" | awk -v s="$2" '$2 == s && $5 == "issued"' | wc -l
  }
  t0=$(now); ok=0
  for _ in $(seq "${KADM_ROTATION_WAIT:-720}"); do
    c2=$(issued "system:node:$NODE2" kubernetes.io/kube-apiserver-client-kubelet)
    s1=$(issued "system:node:$NODE1" kubernetes.io/kubelet-serving)
    s2=$(issued "system:node:$NODE2" kubernetes.io/kubelet-serving)
    if [ "$c2" -ge 2 ] && [ "$s1" -ge 3 ] && [ "$s2" -ge 3 ]; then ok=1; break; fi
    sleep 1
  done
  res rotation_wait_s "$(secs "$t0" "$(now)")"
  res node2_client_rotations "$c2"
  res node1_serving_certs "$s1"
  res node2_serving_certs "$s2"
  [ $ok = 1 ] || { res rotation_check FAIL; fail=1; }
  res node2_client_cert "$(cert_check "$N2/var-lib-kubelet/pki/kubelet-client-current.pem" "system:node:$NODE2")"
  for p in bb-cp bb-worker; do
    was=$(grep -h "^${p}_container " "$OUT"/checks-*.result | head -1 | cut -d' ' -f2)
    now_id=$(kc get pod "$p" -o jsonpath='{.status.containerStatuses[0].containerID}')
    restarts=$(kc get pod "$p" -o jsonpath='{.status.containerStatuses[0].restartCount}')
    res "${p}_after_rotation" "container $now_id restarts $restarts"
    if [ "$now_id" != "$was" ] || [ "$restarts" != 0 ]; then res "${p}_untouched_check" FAIL; fail=1; fi
    out=$(kc logs "$p" 2>&1 | head -1) || true
    [ "$out" = "hello from $p" ] || { res "${p}_logs_after_rotation" "FAIL $out"; fail=1; }
    # shellcheck disable=SC2016 # $(hostname) runs in the container
    out=$(kc exec "$p" -- sh -c 'echo exec-ok $(hostname)' 2>&1 | head -1) || true
    [ "$out" = "exec-ok $p" ] || { res "${p}_exec_after_rotation" "FAIL $out"; fail=1; }
  done
else
  [ -n "${NODE2:-}" ] || { log "no NODE2 in $OUT/env: run join.sh first"; exit 2; }
  res join_cmd "$(cat "$OUT/kubeadm-join.cmd")"
  res join_kubeadm_flags_env "$(cat "$N2/var-lib-kubelet/kubeadm-flags.env")"
  res node2_csrs "$(csr_for "system:bootstrap:" | tr '\n' ';') $(csr_for "system:node:$NODE2" | tr '\n' ';')"
  cc=$(cert_check "$N2/var-lib-kubelet/pki/kubelet-client-current.pem" "system:bootstrap:")
  res node2_client_cert "$cc"
  case $cc in *"subject=O=system:nodes,CN=system:node:$NODE2 issued_by_csr=csr-"*) ;; *) res node2_client_cert_check FAIL; fail=1 ;; esac
  res node2_kubelet_conf_user "$(grep -E 'client-(certificate|key)' "$N2/etc-kubernetes/kubelet.conf" | tr -s ' ' | tr '\n' ' ')"
  res node2_bootstrap_conf_removed "$([ -e "$N2/etc-kubernetes/bootstrap-kubelet.conf" ] && echo no || echo yes)"
  busybox_on bb-worker "$NODE2"
  res nodes "$(kc get nodes -o wide --no-headers 2>&1 | awk '{printf "%s:%s:%s:%s ", $1, $2, $5, $6}')"
  for n in 1 2; do
    res "node${n}_kubelet_starts_exits" "$(count ' start ' "$OUT/n$n/kubelet-starts.log")/$(count ' exit ' "$OUT/n$n/kubelet-starts.log")"
    res "node${n}_kubelet_rss_kb" "$(rss_kb $n)"
  done
fi
res "checks_$PHASE" "$([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
