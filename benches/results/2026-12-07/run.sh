#!/usr/bin/env bash
# Session 6 (docs/benchmarks.md, "Session 6: cost of TLS"): S6 on 3 members, etcd 3.5.1 vs
# Shale, plaintext and --tls runs alternating; each run waits (up to 20 min) for the 1-minute
# load average to fall below 1.5 first. Usage: run.sh plain1 tls1 plain2 tls2 ...
# (a run whose name starts with "tls" adds --tls). The session's binaries were built from a
# clean `git archive` of commit 7cbe30d: BENCH=.../shale-bench SHALE=.../shale ETCD=.../etcd.
set -u
BENCH=${BENCH:-target/x86_64-unknown-linux-gnu/release/shale-bench}
SHALE=${SHALE:-target/x86_64-unknown-linux-gnu/release/shale}
ETCD=${ETCD:-$SHALE_ETCD35_BIN}
OUT=${OUT:-benches/results/2026-12-07}
wait_quiet() {
  for _ in $(seq 1 40); do
    l=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($l < 1.5)}"; then echo "load $l ok"; return; fi
    echo "$(date +%T) load $l, waiting"; sleep 30
  done
  echo "$(date +%T) load still $(cut -d' ' -f1 /proc/loadavg); running anyway"
}
for run in "$@"; do
  wait_quiet
  extra=()
  case $run in tls*) extra=(--tls);; esac
  echo "$(date -u +%T) start $run ${extra[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BENCH" compare --scenario s6 --members 3 --value-size 1024 --clients 500 \
    --conns 50 --total 100000 --etcd-bin "$ETCD" --shale-bin "$SHALE" "${extra[@]}" \
    --out "$OUT/$run" > "/tmp/sb-$run.out" 2> "/tmp/sb-$run.err"
  echo "$(date -u +%T) end $run rc=$? (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
