#!/usr/bin/env bash
# Credentials for one more node of the project's cluster, signed by its CA: a client
# certificate (CN=system:node:NAME, O=system:nodes), a serving certificate (DNS:NAME,
# IP:127.0.0.1) and a kubeconfig with everything embedded, for a kubelet on another machine
# (the VM) that reaches the API server at SERVER.
# Usage: node-creds.sh NAME OUTDIR [SERVER]      (default SERVER https://127.0.0.1:6443)
#   OUTDIR/kubelet.conf  OUTDIR/pki/{ca.crt,kubelet.crt,kubelet.key}
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || { echo "usage: node-creds.sh NAME OUTDIR [SERVER]" >&2; exit 2; }
N=$1 OUT=$2 SERVER=${3:-https://127.0.0.1:6443}
CA=$CLUSTER_DIR/pki
[ -s "$CA/ca.crt" ] && [ -s "$CA/ca.key" ] || { echo "node-creds: no CA in $CA; run scripts/cluster-up.sh" >&2; exit 1; }
mkdir -p "$OUT/pki"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
sign() { # $1 file base, $2 subject, $3 extensions
  [ -s "$1.crt" ] && [ -s "$1.key" ] && return 0
  (umask 077; openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" -out "$W/csr" 2>"$W/log") \
    || { cat "$W/log" >&2; exit 1; }
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$W/ext"
  openssl x509 -req -in "$W/csr" -CA "$CA/ca.crt" -CAkey "$CA/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$W/ext" -out "$1.crt" 2>"$W/log" || { cat "$W/log" >&2; exit 1; }
}
sign "$OUT/pki/client" "/O=system:nodes/CN=system:node:$N" "extendedKeyUsage=clientAuth"
sign "$OUT/pki/kubelet" "/O=system:nodes/CN=$N" "extendedKeyUsage=serverAuth
subjectAltName=DNS:$N,DNS:localhost,IP:127.0.0.1"
cp "$CA/ca.crt" "$OUT/pki/ca.crt"
b64() { base64 -w0 < "$1"; }
cat > "$OUT/kubelet.conf" <<K
apiVersion: v1
kind: Config
clusters:
- name: krs
  cluster: {server: "$SERVER", certificate-authority-data: "$(b64 "$CA/ca.crt")"}
users:
- name: system:node:$N
  user: {client-certificate-data: "$(b64 "$OUT/pki/client.crt")", client-key-data: "$(b64 "$OUT/pki/client.key")"}
contexts:
- name: node@krs
  context: {cluster: krs, user: "system:node:$N"}
current-context: node@krs
K
chmod 600 "$OUT/kubelet.conf"
