#!/usr/bin/env bash
# Start a fresh single-member server (real etcd or Shale; both take etcd's flags) on free
# loopback ports with a temp data dir, then run e2e.sh against it with each given etcdctl.
#
#   usage: tests/etcdctl/run-local.sh SERVER_BIN ETCDCTL_BIN [ETCDCTL_BIN...]
#   e.g.   tests/etcdctl/run-local.sh "$SHALE_ETCD35_BIN" "$SHALE_ETCDCTL35_BIN" "$SHALE_ETCDCTL34_BIN"
#          tests/etcdctl/run-local.sh target/x86_64-unknown-linux-gnu/release/shale "$SHALE_ETCDCTL35_BIN" "$SHALE_ETCDCTL34_BIN"
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 SERVER_BIN ETCDCTL_BIN [ETCDCTL_BIN...]" >&2
    exit 2
fi
SERVER=$1; shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -x $SERVER ]] || { echo "server binary '$SERVER' is not executable (bash scripts/install-test-deps.sh / cargo build --release)" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
CP=$(free_port); PP=$(free_port)
while [[ $PP == "$CP" ]]; do PP=$(free_port); done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/shale-e2e-server.XXXXXX")
EP=http://127.0.0.1:$CP
"$SERVER" --name n1 --data-dir "$DIR/data" \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "n1=http://127.0.0.1:$PP" >"$DIR/server.log" 2>&1 </dev/null &
SPID=$!
cleanup() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

ok=0
for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$SPID" 2>/dev/null; then
        echo "server exited during startup; log:" >&2; cat "$DIR/server.log" >&2; exit 1
    fi
    if [[ $(curl -fsS "$EP/health" 2>/dev/null) == *'"health":"true"'* ]]; then ok=1; break; fi
    sleep 0.1
done
[[ $ok == 1 ]] || { echo "server not healthy after 30 s; log:" >&2; cat "$DIR/server.log" >&2; exit 1; }
echo "server $SERVER healthy at $EP (pid $SPID)" >&2

for ctl in "$@"; do
    if ! bash "$HERE/e2e.sh" "$EP" "$ctl"; then
        echo "--- last 30 lines of the server log ($SERVER):" >&2
        tail -n 30 "$DIR/server.log" >&2
        exit 1
    fi
done
