#!/usr/bin/env bash
# The project's full test run (what CI runs, what the README quotes):
#   bash scripts/test.sh
# installs the real-etcd peers, builds the release binaries (tests start target/<triple>/release/shale)
# and runs the whole workspace's tests optimised (profile `test-opt`: release without LTO).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
eval "$(bash scripts/install-test-deps.sh)"
export SHALE_ETCD35_BIN SHALE_ETCDCTL35_BIN SHALE_ETCD34_BIN SHALE_ETCDCTL34_BIN
cargo build --release --workspace --bins
cargo test --workspace --profile test-opt
# Crash-sensitive steps of the Raft log, with fail points compiled in (their own test binary).
cargo test --profile test-opt -p shale-raft --features failpoints --test failpoints
# Crash-sensitive steps of the log engine (hint files, roll, GC), likewise.
cargo test --profile test-opt -p shale-storage --features failpoints --test failpoints
