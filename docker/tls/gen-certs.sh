#!/usr/bin/env bash
# Makes the etcd certificates kubeadm makes under /etc/kubernetes/pki, with openssl alone,
# for a Shale (or etcd) cluster with client and peer mutual TLS.
#
#   docker/tls/gen-certs.sh OUTDIR [MEMBER[=IP,IP...] ...]      (default members: shale-1 shale-2 shale-3)
#
# Layout (what kubeadm names, per member as each member gets its own server/peer pair):
#   OUTDIR/etcd/ca.crt, ca.key                          the etcd CA (CN etcd-ca, 10 years)
#   OUTDIR/etcd/healthcheck-client.crt, .key            CN kube-etcd-healthcheck-client, O system:masters, clientAuth
#   OUTDIR/apiserver-etcd-client.crt, .key              CN kube-apiserver-etcd-client, O system:masters, clientAuth
#   OUTDIR/MEMBER/etcd/server.crt, .key                 CN MEMBER, serverAuth+clientAuth
#   OUTDIR/MEMBER/etcd/peer.crt, .key                   CN MEMBER, serverAuth+clientAuth
# Server and peer certificates name, as kubeadm's: DNS MEMBER and localhost, IP 127.0.0.1,
# ::1 and the member's IPs (MEMBER=IP,IP...). OUTDIR/MEMBER is a complete kubeadm-style pki
# directory for that member: it also holds copies of etcd/ca.crt (not the CA key), the
# health-check client pair and the apiserver client pair, so a member mounts only its own.
#
# Keys are RSA 2048 like kubeadm's; certificates last SHALE_CERT_DAYS days (default 365).
# Idempotent: a pair that exists, matches its key, chains to the CA, names what it should
# and does not expire within a day is kept; anything else is (re)made. No prompts.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
out=$1
shift
members=("$@")
[[ ${#members[@]} -gt 0 ]] || members=(shale-1 shale-2 shale-3)
days=${SHALE_CERT_DAYS:-365}
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is required" >&2; exit 1; }

umask 077
mkdir -p "$out/etcd"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { echo "gen-certs.sh: $*" >&2; }

# key FILE: an RSA 2048 key, kept when it is already a readable private key.
key() {
    if ! openssl pkey -in "$1" -noout 2>/dev/null; then
        openssl genrsa -out "$1" 2048 2>/dev/null
        chmod 600 "$1"
        return 1
    fi
}

# same_key CRT KEY: the certificate carries KEY's public key.
same_key() {
    [[ "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" == "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ]]
}

ca_crt=$out/etcd/ca.crt
ca_key=$out/etcd/ca.key
new_ca=0
key "$ca_key" || new_ca=1
if [[ $new_ca == 1 ]] || ! same_key "$ca_crt" "$ca_key" || ! openssl x509 -in "$ca_crt" -noout -checkend 86400 >/dev/null 2>&1; then
    openssl req -x509 -new -sha256 -key "$ca_key" -days 3650 -subj "/CN=etcd-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$ca_crt"
    chmod 644 "$ca_crt"
    say "made $ca_crt"
fi

# cert BASE SUBJECT EKU SANS: BASE.crt/BASE.key signed by the CA; SANS is "" or a
# subjectAltName value (DNS:a,IP:1.2.3.4).
cert() {
    local base=$1 subj=$2 eku=$3 sans=$4 fresh=0
    key "$base.key" || fresh=1
    if [[ $fresh == 0 ]] && same_key "$base.crt" "$base.key" \
        && openssl verify -CAfile "$ca_crt" "$base.crt" >/dev/null 2>&1 \
        && openssl x509 -in "$base.crt" -noout -checkend 86400 >/dev/null 2>&1 \
        && names_ok "$base.crt" "$sans"; then
        return 0
    fi
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        echo "authorityKeyIdentifier=keyid"
        [[ -z $sans ]] || echo "subjectAltName=$sans"
    } >"$tmp/ext"
    openssl req -new -sha256 -key "$base.key" -subj "$subj" -out "$tmp/csr"
    openssl x509 -req -sha256 -in "$tmp/csr" -CA "$ca_crt" -CAkey "$ca_key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$tmp/ext" \
        -out "$base.crt" 2>/dev/null
    chmod 644 "$base.crt"
    say "made $base.crt"
}

# names_ok CRT SANS: every DNS name and IPv4 address of SANS is in the certificate.
names_ok() {
    local text n
    text=$(openssl x509 -in "$1" -noout -text)
    IFS=, read -ra wanted <<<"$2"
    for n in "${wanted[@]}"; do
        case $n in
        DNS:*) grep -qF "DNS:${n#DNS:}" <<<"$text" || return 1 ;;
        IP:*:*) ;; # IPv6: printed in several spellings; kept as made
        IP:*) grep -qF "IP Address:${n#IP:}" <<<"$text" || return 1 ;;
        esac
    done
}

# copy SRC DST MODE: DST becomes a copy of SRC (kept when equal) with MODE.
copy() {
    cmp -s "$1" "$2" 2>/dev/null || cp "$1" "$2"
    chmod "$3" "$2"
}

cert "$out/etcd/healthcheck-client" "/O=system:masters/CN=kube-etcd-healthcheck-client" clientAuth ""
cert "$out/apiserver-etcd-client" "/O=system:masters/CN=kube-apiserver-etcd-client" clientAuth ""

for m in "${members[@]}"; do
    name=${m%%=*}
    ips=""
    [[ $m == *=* ]] && ips=${m#*=}
    if [[ ! $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        say "bad member name ${name@Q}: a DNS name is expected"
        exit 1
    fi
    sans="DNS:$name,DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
    IFS=, read -ra extra <<<"$ips"
    for ip in "${extra[@]}"; do
        [[ -n $ip ]] && sans="$sans,IP:$ip"
    done
    dir=$out/$name
    mkdir -p "$dir/etcd"
    cert "$dir/etcd/server" "/CN=$name" serverAuth,clientAuth "$sans"
    cert "$dir/etcd/peer" "/CN=$name" serverAuth,clientAuth "$sans"
    copy "$ca_crt" "$dir/etcd/ca.crt" 644
    for f in etcd/healthcheck-client apiserver-etcd-client; do
        copy "$out/$f.crt" "$dir/$f.crt" 644
        copy "$out/$f.key" "$dir/$f.key" 600
    done
    chmod 755 "$dir" "$dir/etcd"
done
chmod 755 "$out" "$out/etcd"
say "certificates in $out (members: ${members[*]%%=*})"
