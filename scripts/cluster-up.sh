#!/usr/bin/env bash
# A real Kubernetes 1.20.2 control plane on loopback: etcd (Debian's etcd-server) on 127.0.0.1:2379,
# kube-apiserver on 127.0.0.1:6443, kube-controller-manager and kube-scheduler, with a CA and
# certificates made by openssl. Also makes the credentials and KubeletConfiguration of node $NODE_NAME.
# Usage: cluster-up.sh [DIR]     (default $CLUSTER_DIR; idempotent; needs build-k8s.sh first)
#   DIR/admin.kubeconfig                  cluster admin (O=system:masters)
#   DIR/node-$NODE_NAME.kubeconfig        the node's client identity (system:node:$NODE_NAME)
#   DIR/kubelet-config.yaml               KubeletConfiguration for $NODE_NAME
#   DIR/pki/                              ca, apiserver, clients, node-$NODE_NAME{,-serving}, sa
#   DIR/*.pid, DIR/logs/*.log             processes (stop them with cluster-down.sh DIR)
# KRS_AUDIT=0 leaves out the audit log (DIR/logs/audit.log, level Metadata for every request).
set -euo pipefail
. "$(dirname "$0")/common.sh"
DIR=$(realpath -m "${1:-$CLUSTER_DIR}")
N=$NODE_NAME
KRS_AUDIT=${KRS_AUDIT:-1}
fail() { echo "cluster-up: $*" >&2; exit 1; }
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  [ -x "$K8S_BIN/$b" ] || fail "$K8S_BIN/$b missing; run scripts/build-k8s.sh"
done
for c in etcd etcdctl openssl kubectl; do command -v $c >/dev/null || fail "$c missing; run scripts/install-deps.sh"; done
mkdir -p "$DIR/pki" "$DIR/logs"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

# --- the node name resolves to 127.0.0.1 (apiserver -> kubelet uses the Hostname address) -----
if ! awk -v n="$N" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == n) f = 1 } END { exit !f }' /etc/hosts; then
  if getent hosts "$N" >/dev/null; then
    fail "$N resolves to $(getent hosts "$N" | awk '{print $1; exit}'), not 127.0.0.1; fix /etc/hosts"
  fi
  echo "127.0.0.1 $N" >> /etc/hosts
fi

# --- certificates ------------------------------------------------------------------------------
cd "$DIR/pki"
ssl() { openssl "$@" >>"$W/openssl.log" 2>&1 || { cat "$W/openssl.log" >&2; fail "openssl $1 failed"; }; }
cert() { # $1 name, $2 subject, $3 extra extensions (lines); kept if it exists
  [ -s "$1.crt" ] && [ -s "$1.key" ] && return 0
  (umask 077; ssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" -out "$W/$1.csr")
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "$3" > "$W/$1.ext"
  ssl x509 -req -in "$W/$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$W/$1.ext" -out "$1.crt"
}
if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
  rm -f ./*.crt ./*.key sa.pub  # a new CA invalidates everything signed by the old one
  (umask 077; ssl req -x509 -new -newkey rsa:2048 -nodes -keyout ca.key -subj "/CN=kubelet-rs-ca" \
    -days 3650 -out ca.crt)
fi
cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
# node identity: exactly CN=system:node:NAME, O=system:nodes for the Node authorizer and NodeRestriction
cert "node-$N" "/O=system:nodes/CN=system:node:$N" "extendedKeyUsage=clientAuth"
cert "node-$N-serving" "/O=system:nodes/CN=$N" "extendedKeyUsage=serverAuth
subjectAltName=DNS:$N,DNS:localhost,IP:127.0.0.1"
# front proxy (aggregation layer): its own CA; controller-manager and scheduler read it to
# authenticate requests, and log errors every 10s while the apiserver has none
if [ ! -s front-proxy-ca.crt ] || [ ! -s front-proxy-ca.key ]; then
  rm -f front-proxy-client.crt front-proxy-client.key
  (umask 077; ssl req -x509 -new -newkey rsa:2048 -nodes -keyout front-proxy-ca.key \
    -subj "/CN=kubelet-rs-front-proxy-ca" -days 3650 -out front-proxy-ca.crt)
fi
if [ ! -s front-proxy-client.crt ] || [ ! -s front-proxy-client.key ]; then
  (umask 077; ssl req -new -newkey rsa:2048 -nodes -keyout front-proxy-client.key -subj "/CN=front-proxy-client" \
    -out "$W/fp.csr")
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" > "$W/fp.ext"
  ssl x509 -req -in "$W/fp.csr" -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$W/fp.ext" -out front-proxy-client.crt
fi
if [ ! -s sa.key ] || [ ! -s sa.pub ]; then
  (umask 077; ssl genrsa -out sa.key 2048); ssl rsa -in sa.key -pubout -out sa.pub
fi
cd "$DIR"

# --- kubeconfigs, kubelet config, audit policy (rewritten only when their content changes) -----
put() { # $1 file; content on stdin
  cat > "$W/put"; cmp -s "$W/put" "$1" || { cp "$W/put" "$1.tmp" && mv "$1.tmp" "$1"; }
}
kubeconfig() { # $1 file, $2 cert base name in pki/
  put "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: krs
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$DIR/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$DIR/pki/$2.crt", client-key: "$DIR/pki/$2.key"}
contexts:
- name: $2@krs
  context: {cluster: krs, user: $2}
current-context: $2@krs
EOF
}
kubeconfig admin.kubeconfig admin
kubeconfig controller-manager.kubeconfig controller-manager
kubeconfig scheduler.kubeconfig scheduler
kubeconfig "node-$N.kubeconfig" "node-$N"
put kubelet-config.yaml <<EOF
# KubeletConfiguration for node $N (made by cluster-up.sh)
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$DIR/pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$DIR/pki/node-$N-serving.crt"
tlsPrivateKeyFile: "$DIR/pki/node-$N-serving.key"
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [10.0.0.10]
clusterDomain: cluster.local
# The test host's firewall is not ours to change (CI machines are shared); the e2e test
# makes the kubelet's iptables chains in a network namespace instead.
makeIPTablesUtilChains: false
# Disk thresholds for a shared build machine, which CI fills with caches: upstream's defaults
# (nodefs 10%, imagefs 15%) would put the node under DiskPressure and evict the tests' pods.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, nodefs.inodesFree: 2%, imagefs.available: 2%}
EOF
put audit-policy.yaml <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF

# --- processes ---------------------------------------------------------------------------------
KC="kubectl --kubeconfig $DIR/admin.kubeconfig --request-timeout=5s"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; } # fast; etcdctl waits 2s on a closed port
etcd_ok() { port_open 2379 && ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=2s endpoint health; }
api_ok() { port_open 6443 && $KC get --raw /readyz; }
cs_ok() { $KC get --raw "/api/v1/componentstatuses/$1" | grep '"type":"Healthy","status":"True"' >/dev/null; }
cm_ok() { cs_ok controller-manager; }
sched_ok() { cs_ok scheduler; }
alive() { # $1 name: the recorded pid runs the expected program ($2)
  local p; p=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -- "$2" >/dev/null
}
ensure() { # $1 name, $2 readiness check, $3 seconds, then the command line
  local name=$1 check=$2 secs=$3 prog; shift 3; prog=$(basename "$1")
  if ! alive "$name" "$prog"; then
    if $check >/dev/null 2>&1; then
      fail "$name: its port is already served by a process not started from $DIR (stop it first)"
    fi
    setsid "$@" >>"logs/$name.log" 2>&1 </dev/null &
    echo $! > "$name.pid"
    started+=("$name")
  fi
  local deadline=$((SECONDS + secs))
  until $check >/dev/null 2>&1; do
    # Only a pid that is gone means it exited: right after the fork, the child may not have
    # exec'd the program yet, and its command line still reads "bash".
    if pid_gone "$(cat "$name.pid" 2>/dev/null || echo 0)"; then
      tail -15 "logs/$name.log" >&2; fail "$name exited; log: $DIR/logs/$name.log"
    fi
    [ $SECONDS -lt $deadline ] || { tail -15 "logs/$name.log" >&2; fail "$name not ready after ${secs}s; log: $DIR/logs/$name.log"; }
    sleep 0.3
  done
}
if alive etcd etcd && alive kube-apiserver kube-apiserver && alive kube-controller-manager kube-controller-manager \
   && alive kube-scheduler kube-scheduler && api_ok >/dev/null 2>&1; then
  log "control plane already up in $DIR"; exit 0
fi
started=()
ensure etcd etcd_ok 30 etcd --name krs --data-dir "$DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster krs=http://127.0.0.1:2380 --logger zap --log-outputs stderr
audit=()
[ "$KRS_AUDIT" = 0 ] || audit=(--audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/logs/audit.log"
                              --audit-log-maxsize=200 --audit-log-maxbackup=2)
# --endpoint-reconciler-type=none: the advertised 127.0.0.1 may not be stored in an Endpoints object,
# so the default reconciler fails (and logs it) every 10s; the kubernetes Service is still made.
ensure kube-apiserver api_ok 120 "$K8S_BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$DIR/pki/ca.crt" \
  --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
  --kubelet-client-certificate="$DIR/pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$DIR/pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$DIR/pki/ca.crt" \
  --kubelet-preferred-address-types=Hostname,InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-signing-key-file="$DIR/pki/sa.key" --service-account-key-file="$DIR/pki/sa.pub" \
  --requestheader-client-ca-file="$DIR/pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$DIR/pki/front-proxy-client.crt" --proxy-client-key-file="$DIR/pki/front-proxy-client.key" \
  --endpoint-reconciler-type=none \
  --enable-bootstrap-token-auth=true --allow-privileged=true "${audit[@]}"
ensure kube-controller-manager cm_ok 60 "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
  --cluster-signing-cert-file="$DIR/pki/ca.crt" --cluster-signing-key-file="$DIR/pki/ca.key" \
  --use-service-account-credentials=true --controllers='*,bootstrapsigner,tokencleaner'
ensure kube-scheduler sched_ok 60 "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --address=127.0.0.1 --leader-elect=false
[ ${#started[@]} = 0 ] || log "control plane up in $DIR (started: ${started[*]}); kubectl --kubeconfig $DIR/admin.kubeconfig"
