#!/usr/bin/env bash
# End-to-end test of an etcd v3 endpoint through etcdctl.
#
#   usage: tests/etcdctl/e2e.sh ENDPOINT ETCDCTL_BIN
#   e.g.   tests/etcdctl/e2e.sh http://127.0.0.1:2379 /usr/bin/etcdctl
#
# Works with etcdctl 3.4 and 3.5 (ETCDCTL_API=3 is forced) against real etcd 3.5 and
# against Shale. Every step compares etcdctl's exact stdout (or, for outputs with ids,
# sizes and timings, a normalised form / JSON keys) and the script exits non-zero with
# "E2E FAIL [step]" naming the failing step.
#
# The endpoint must be a dedicated, single-member test server: the script DELETES ALL KEYS,
# revokes all leases, compacts, defragments and enables/disables auth. It needs bash, jq,
# timeout (coreutils), sort, sed, grep, awk.
#
# Environment:
#   E2E_SKIP="auth elect"   skip named sections (loudly reported, never silent)
#   E2E_ONLY="kv txn"       run only these sections (preflight always runs)
#   E2E_VERBOSE=1           print every command
# Sections: kv del txn compact watch lease maint concurrency auth
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 ENDPOINT ETCDCTL_BIN" >&2
    exit 2
fi
EP=$1
CTL=$2
export ETCDCTL_API=3
for tool in jq timeout sort sed grep awk; do
    command -v "$tool" >/dev/null || { echo "E2E FAIL [setup]: '$tool' not found (bash scripts/install-test-deps.sh installs jq)" >&2; exit 2; }
done
[[ -x $CTL ]] || { echo "E2E FAIL [setup]: etcdctl '$CTL' is not executable (bash scripts/install-test-deps.sh)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shale-e2e.XXXXXX")
BG_PIDS=()
STEP=setup
AUTH_ON=0
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ $AUTH_ON == 1 ]]; then
        "$CTL" --endpoints="$EP" --user root:e2e-root-pw auth disable >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

OUT=$WORK/out
ERR=$WORK/err
NSTEPS=0

# ---------------------------------------------------------------- helpers
ctl() { timeout 30 "$CTL" --endpoints="$EP" --dial-timeout=5s --command-timeout=15s "$@"; }

fail() {
    echo "E2E FAIL [$STEP]: $*" >&2
    if [[ -f $OUT ]]; then echo "--- stdout:" >&2; cat "$OUT" >&2; fi
    if [[ -f $ERR ]]; then echo "--- stderr:" >&2; grep -v '"level":"warn"' "$ERR" >&2 || true; fi
    exit 1
}

# run_cmd STDIN args... : runs etcdctl args (STDIN fed if non-empty) -> $OUT/$ERR, sets RC
run_cmd() {
    local input=$1; shift
    NSTEPS=$((NSTEPS + 1))
    [[ ${E2E_VERBOSE:-0} == 1 ]] && echo "  [$STEP] etcdctl $*" >&2
    set +e
    if [[ -n $input ]]; then
        printf '%s' "$input" | ctl "$@" >"$OUT" 2>"$ERR"
    else
        ctl "$@" <"/dev/null" >"$OUT" 2>"$ERR"
    fi
    RC=$?
    set -e
}

# t STEP EXPECTED args... : etcdctl args must succeed and print exactly EXPECTED + "\n"
#                           (EXPECTED = "" means: prints nothing at all)
t() {
    STEP=$1; local want=$2; shift 2
    run_cmd "" "$@"
    [[ $RC == 0 ]] || fail "etcdctl $* exited $RC"
    compare_out "$want" "etcdctl $*"
}
# ti STEP STDIN EXPECTED args... : like t, with STDIN fed to etcdctl
ti() {
    STEP=$1; local input=$2 want=$3; shift 3
    run_cmd "$input" "$@"
    [[ $RC == 0 ]] || fail "etcdctl $* exited $RC"
    compare_out "$want" "etcdctl $*"
}
compare_out() {
    local want=$1 what=$2
    if [[ -z $want ]]; then printf '' >"$WORK/want"; else printf '%s\n' "$want" >"$WORK/want"; fi
    if ! cmp -s "$WORK/want" "$OUT"; then
        echo "E2E FAIL [$STEP]: unexpected output of: $what" >&2
        echo "--- diff (expected vs actual):" >&2
        diff -u "$WORK/want" "$OUT" >&2 || true
        echo "--- stderr:" >&2; grep -v '"level":"warn"' "$ERR" >&2 || true
        exit 1
    fi
}
# tfail STEP ERR_SUBSTRING args... : etcdctl must fail and stderr must contain ERR_SUBSTRING
tfail() {
    STEP=$1; local want=$2; shift 2
    run_cmd "" "$@"
    [[ $RC != 0 ]] || fail "etcdctl $* succeeded, expected failure containing '$want'"
    grep -qF -- "$want" "$ERR" || fail "etcdctl $* failed (rc $RC) but stderr lacks '$want'"
}
# tjq STEP JQ_FILTER args... : etcdctl (JSON output) must succeed and jq -e FILTER hold
tjq() {
    STEP=$1; local filter=$2; shift 2
    run_cmd "" "$@"
    [[ $RC == 0 ]] || fail "etcdctl $* exited $RC"
    jq -e "$filter" "$OUT" >/dev/null 2>&1 || fail "jq check '$filter' failed on: etcdctl $*"
}
# tre STEP EXTENDED_REGEX args... : stdout must be exactly one line matching ^REGEX$
tre() {
    STEP=$1; local re=$2; shift 2
    run_cmd "" "$@"
    [[ $RC == 0 ]] || fail "etcdctl $* exited $RC"
    [[ $(wc -l <"$OUT") == 1 ]] || fail "expected exactly one line from: etcdctl $*"
    grep -qE -- "^${re}\$" "$OUT" || fail "output of etcdctl $* does not match /^${re}\$/"
}
# current revision (header.revision of a read)
cur_rev() {
    ctl get /e2e-rev-probe -w json 2>/dev/null | jq -er '.header.revision' || fail "cannot read current revision"
}
put_rev() { # put KEY VALUE, echo the new revision (from -w json)
    ctl put "$1" "$2" -w json 2>"$ERR" | jq -er '.header.revision' || fail "put $1 failed"
}
# wait_lines FILE N : wait (max 15 s, polling) until FILE has >= N lines
wait_lines() {
    local f=$1 n=$2 i
    for ((i = 0; i < 150; i++)); do
        [[ -f $f && $(wc -l <"$f") -ge $n ]] && return 0
        sleep 0.1
    done
    return 1
}
# bg_watch OUTFILE args... : start `etcdctl watch args` in the background
bg_watch() {
    local f=$1; shift
    "$CTL" --endpoints="$EP" --dial-timeout=5s watch "$@" >"$f" 2>"$f.err" </dev/null &
    BG_PIDS+=("$!")
    BG_LAST=$!
}
stop_bg() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# expect_file STEP FILE EXPECTED : FILE content must be exactly EXPECTED + "\n"
expect_file() {
    STEP=$1; local f=$2 want=$3
    cp "$f" "$OUT"; cp "$f.err" "$ERR" 2>/dev/null || : >"$ERR"
    compare_out "$want" "watch output"
}

section() {
    local s=$1 x
    for x in ${E2E_SKIP:-}; do
        if [[ $x == "$s" ]]; then echo "=== SKIPPED section '$s' (E2E_SKIP)" >&2; return 1; fi
    done
    if [[ -n ${E2E_ONLY:-} ]]; then
        for x in $E2E_ONLY; do [[ $x == "$s" ]] && { echo "=== section $s" >&2; return 0; }; done
        echo "=== SKIPPED section '$s' (E2E_ONLY)" >&2
        return 1
    fi
    echo "=== section $s" >&2
    return 0
}

# ---------------------------------------------------------------- preflight
STEP=preflight/version
CTLV=$("$CTL" version 2>/dev/null | sed -n 's/^etcdctl version: \([0-9]*\.[0-9]*\).*/\1/p')
[[ -n $CTLV ]] || fail "cannot determine etcdctl version of $CTL"
echo "=== etcdctl $CTLV against $EP" >&2
HAS_35=0
case $CTLV in 3.[0-4]) ;; *) HAS_35=1 ;; esac

STEP=preflight/health
for ((i = 0; i < 100; i++)); do
    ctl endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
ctl endpoint health >/dev/null 2>"$ERR" || fail "endpoint $EP is not healthy"

STEP=preflight/wipe
ctl del "" --prefix >/dev/null 2>"$ERR" || fail "cannot delete all keys (is auth enabled?)"
for id in $(ctl lease list 2>/dev/null | tail -n +2); do ctl lease revoke "$id" >/dev/null 2>&1 || true; done
t preflight/empty "" get "" --prefix
t preflight/no-leases "found 0 leases" lease list

# ---------------------------------------------------------------- kv: put / get
if section kv; then
    R=$(cur_rev)
    t kv/put-1 OK put /e2e/b alpha   # R+1
    t kv/put-2 OK put /e2e/d beta    # R+2
    t kv/put-3 OK put /e2e/a zeta    # R+3
    t kv/put-4 OK put /e2e/c mid     # R+4
    t kv/put-5 OK put /e2e/d beta    # R+5
    t kv/put-6 OK put /e2e/c mid     # R+6
    t kv/put-7 OK put /e2e/d beta    # R+7
    t kv/put-8 OK put /e2e/a zeta    # R+8
    t kv/put-9 OK put /e2e/c mid     # R+9
    t kv/put-10 OK put /e2e/d beta   # R+10
    t kv/put-11 OK put /e2f outside  # R+11
    # final: a zeta c=R+3 m=R+8 v2 | b alpha c=R+1 m=R+1 v1 | c mid c=R+4 m=R+9 v3 | d beta c=R+2 m=R+10 v4
    [[ $(cur_rev) == $((R + 11)) ]] || { STEP=kv/revision; fail "expected revision $((R + 11)) after 11 puts, got $(cur_rev)"; }

    t kv/get-one $'/e2e/a\nzeta' get /e2e/a
    t kv/get-missing "" get /e2e/nope
    t kv/get-prefix $'/e2e/a\nzeta\n/e2e/b\nalpha\n/e2e/c\nmid\n/e2e/d\nbeta' get /e2e/ --prefix
    t kv/get-all $'/e2e/a\nzeta\n/e2e/b\nalpha\n/e2e/c\nmid\n/e2e/d\nbeta\n/e2f\noutside' get "" --prefix
    t kv/get-range $'/e2e/b\nalpha\n/e2e/c\nmid' get /e2e/b /e2e/d
    t kv/get-from-key $'/e2e/c\nmid\n/e2e/d\nbeta\n/e2f\noutside' get /e2e/c --from-key
    t kv/get-limit $'/e2e/a\nzeta\n/e2e/b\nalpha' get /e2e/ --prefix --limit 2
    t kv/get-from-key-limit $'/e2e/b\nalpha' get /e2e/b --from-key --limit 1
    t kv/sort-key-desc $'/e2e/d\nbeta\n/e2e/c\nmid\n/e2e/b\nalpha\n/e2e/a\nzeta' get /e2e/ --prefix --sort-by=KEY --order=DESCEND
    t kv/sort-key-asc $'/e2e/a\nzeta\n/e2e/b\nalpha\n/e2e/c\nmid\n/e2e/d\nbeta' get /e2e/ --prefix --sort-by=KEY --order=ASCEND
    t kv/sort-value-default-order $'/e2e/b\nalpha\n/e2e/d\nbeta\n/e2e/c\nmid\n/e2e/a\nzeta' get /e2e/ --prefix --sort-by=VALUE
    t kv/sort-value-desc-limit $'/e2e/a\nzeta\n/e2e/c\nmid' get /e2e/ --prefix --sort-by=VALUE --order=DESCEND --limit 2
    t kv/sort-create $'/e2e/b\nalpha\n/e2e/d\nbeta\n/e2e/a\nzeta\n/e2e/c\nmid' get /e2e/ --prefix --sort-by=CREATE --order=ASCEND
    t kv/sort-create-desc $'/e2e/c\nmid\n/e2e/a\nzeta\n/e2e/d\nbeta\n/e2e/b\nalpha' get /e2e/ --prefix --sort-by=CREATE --order=DESCEND
    t kv/sort-modify $'/e2e/b\nalpha\n/e2e/a\nzeta\n/e2e/c\nmid\n/e2e/d\nbeta' get /e2e/ --prefix --sort-by=MODIFY
    t kv/sort-version-desc $'/e2e/d\nbeta\n/e2e/c\nmid\n/e2e/a\nzeta\n/e2e/b\nalpha' get /e2e/ --prefix --sort-by=VERSION --order=DESCEND
    t kv/order-desc-no-target $'/e2e/d\nbeta\n/e2e/c\nmid\n/e2e/b\nalpha\n/e2e/a\nzeta' get /e2e/ --prefix --order=DESCEND
    t kv/keys-only $'/e2e/a\n\n/e2e/b\n\n/e2e/c\n\n/e2e/d\n' get /e2e/ --prefix --keys-only
    t kv/print-value-only $'zeta' get /e2e/a --print-value-only
    t kv/print-value-only-prefix $'alpha\nmid' get /e2e/b /e2e/d --print-value-only
    t kv/serializable $'/e2e/a\nzeta' get /e2e/a --consistency=s
    t kv/rev-old $'/e2e/d\nbeta' get /e2e/d --rev=$((R + 2))
    t kv/rev-prefix-keys $'/e2e/a\n\n/e2e/b\n\n/e2e/d\n' get /e2e/ --prefix --keys-only --rev=$((R + 3))
    t kv/rev-before-create "" get /e2e/c --rev=$((R + 3))
    tjq kv/rev-json ".kvs[0].version == 2 and .kvs[0].mod_revision == $((R + 5)) and .header.revision == $((R + 11))" get /e2e/d --rev=$((R + 5)) -w json
    tjq kv/json-one "
        .header.revision == $((R + 11)) and .count == 1 and (.more | not) and (.kvs | length) == 1 and
        (.kvs[0].key | @base64d) == \"/e2e/a\" and (.kvs[0].value | @base64d) == \"zeta\" and
        .kvs[0].create_revision == $((R + 3)) and .kvs[0].mod_revision == $((R + 8)) and
        .kvs[0].version == 2 and (.kvs[0] | has(\"lease\") | not)" get /e2e/a -w json
    tjq kv/json-missing ".header.revision == $((R + 11)) and (has(\"kvs\") | not) and (has(\"count\") | not)" get /e2e/nope -w json
    tjq kv/json-limit-count ".count == 4 and .more == true and (.kvs | length) == 1" get /e2e/ --prefix --limit 1 -w json
    tjq kv/json-keys-only "(.kvs | length) == 4 and ([.kvs[] | has(\"value\")] | any | not) and .count == 4" get /e2e/ --prefix --keys-only -w json
    if [[ $HAS_35 == 1 ]]; then
        STEP=kv/count-only
        run_cmd "" get /e2e/ --prefix --count-only -w fields
        [[ $RC == 0 ]] || fail "get --count-only exited $RC"
        grep -qx '"Count" : 4' "$OUT" || fail 'expected line "Count" : 4'
        grep -qx '"More" : false' "$OUT" || fail 'expected line "More" : false'
        grep -q '"Key"' "$OUT" && fail "count-only returned keys"
        grep -qx "\"Revision\" : $((R + 11))" "$OUT" || fail "expected \"Revision\" : $((R + 11))"
    fi
    t kv/put-ignore-value OK put /e2e/c --ignore-value
    t kv/after-ignore-value $'/e2e/c\nmid' get /e2e/c
    tfail kv/ignore-value-missing "etcdserver: key not found" put /e2e/nokey --ignore-value
    tfail kv/future-rev "etcdserver: mvcc: required revision is a future revision" get /e2e/a --rev=$((R + 1000))
    tjq kv/put-json ".header.revision == $((R + 13)) and (has(\"prev_kv\") | not)" put /e2e/b alpha -w json
    t kv/put-prev-kv $'OK\n/e2e/b\nalpha' put /e2e/b alpha2 --prev-kv
    tjq kv/put-prev-kv-json ".header.revision == $((R + 15)) and (.prev_kv.value | @base64d) == \"alpha2\" and .prev_kv.version == 3" put /e2e/b alpha3 --prev-kv -w json
    t kv/put-empty-value OK put /e2e/empty ""
    t kv/get-empty-value $'/e2e/empty\n' get /e2e/empty
fi

# ---------------------------------------------------------------- del
if section del; then
    ctl del "" --prefix >/dev/null
    t del/setup-1 OK put /e2e/del/x1 v1
    t del/setup-2 OK put /e2e/del/x2 v2
    t del/setup-3 OK put /e2e/del/x3 v3
    t del/setup-4 OK put /e2e/del/y v9
    t del/setup-5 OK put /e2f outside
    t del/setup-6 OK put /e2a before
    t del/one-prev-kv $'1\n/e2e/del/x1\nv1' del /e2e/del/x1 --prev-kv
    t del/missing "0" del /e2e/del/x1
    t del/prefix "2" del /e2e/del/x --prefix
    t del/from-key-prev-kv $'2\n/e2e/del/y\nv9\n/e2f\noutside' del /e2e/del/ --from-key --prev-kv
    t del/left $'/e2a\nbefore' get "" --prefix
    t del/setup-7 OK put /e2e/r/a 1
    t del/setup-8 OK put /e2e/r/b 2
    t del/setup-9 OK put /e2e/r/c 3
    t del/range "2" del /e2e/r/a /e2e/r/c
    R=$(cur_rev)
    tjq del/json ".deleted == 1 and .header.revision == $((R + 1)) and (has(\"prev_kvs\") | not)" del /e2e/r/c -w json
    tjq del/json-missing ".header.revision == $((R + 1)) and (has(\"deleted\") | not)" del /e2e/r/c -w json
    t del/all "1" del "" --prefix
fi

# ---------------------------------------------------------------- txn
if section txn; then
    t txn/setup OK put /e2e/t/k one
    ti txn/interactive-success $'value("/e2e/t/k") = "one"\n\nput /e2e/t/s two\nget /e2e/t/k\n\nput /e2e/t/f three\n\n' \
        $'compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nOK\n\n/e2e/t/k\none' txn -i
    ti txn/failure $'value("/e2e/t/k") = "nope"\n\nput /e2e/t/s2 x\n\nput /e2e/t/f ok\nget /e2e/t/s\ndel /e2e/t/s\n\n' \
        $'FAILURE\n\nOK\n\n/e2e/t/s\ntwo\n\n1' txn
    t txn/after-failure $'/e2e/t/f\nok\n/e2e/t/k\none' get /e2e/t/ --prefix
    ti txn/compares $'version("/e2e/t/k") = "1"\ncreate("/e2e/t/k") > "0"\nmod("/e2e/t/k") < "99999999"\nvalue("/e2e/t/k") != "two"\ncreate("/e2e/t/absent") = "0"\n\nput /e2e/t/all yes\n\n\n' \
        $'SUCCESS\n\nOK' txn
    ti txn/compare-false $'version("/e2e/t/k") > "1"\n\n\n\n' $'FAILURE' txn
    ti txn/reads-own-write $'\nput /e2e/t/rw 1\nget /e2e/t/rw\n\n\n' $'SUCCESS\n\nOK\n\n/e2e/t/rw\n1' txn
    R=$(cur_rev)
    STEP=txn/json
    run_cmd $'mod("/e2e/t/k") > "0"\n\nput /e2e/t/j v\nget /e2e/t/j\n\n\n' txn -w json
    [[ $RC == 0 ]] || fail "txn -w json exited $RC"
    jq -e ".succeeded == true and .header.revision == $((R + 1)) and (.responses | length) == 2 and
           (.responses[0].Response | .response_put // .ResponsePut).header == {\"revision\": $((R + 1))} and
           (.responses[1].Response | .response_range // .ResponseRange).header == {\"revision\": $((R + 1))} and
           (.responses[1].Response | .response_range // .ResponseRange).count == 1 and
           ((.responses[1].Response | .response_range // .ResponseRange).kvs[0].value | @base64d) == \"v\" and
           (.responses[1].Response | .response_range // .ResponseRange).kvs[0].mod_revision == $((R + 1))" "$OUT" >/dev/null ||
        fail "txn -w json: unexpected JSON"
    STEP=txn/json-failure
    run_cmd $'value("/e2e/t/k") = "x"\n\n\n\n' txn -w json
    [[ $RC == 0 ]] || fail "txn -w json exited $RC"
    jq -e "(has(\"succeeded\") | not) and .header.revision == $((R + 1)) and (has(\"responses\") | not)" "$OUT" >/dev/null ||
        fail "read-only failed txn: expected no succeeded/responses and unchanged revision"
    STEP=txn/duplicate-key
    run_cmd $'\nput /e2e/t/d 1\nput /e2e/t/d 2\n\n\n' txn
    [[ $RC != 0 ]] || fail "txn writing a key twice succeeded"
    grep -qF "etcdserver: duplicate key given in txn request" "$ERR" || fail "expected 'duplicate key given in txn request'"
    [[ $(cur_rev) == $((R + 1)) ]] || fail "rejected txn changed the revision"
    t txn/cleanup "5" del /e2e/t/ --prefix
fi

# ---------------------------------------------------------------- compaction
if section compact; then
    R1=$(put_rev /e2e/c/k v1)
    R2=$(put_rev /e2e/c/k v2)
    R3=$(put_rev /e2e/c/k v3)
    t compact/compact "compacted revision $R2" compaction "$R2"
    t compact/read-at-compact-rev $'/e2e/c/k\nv2' get /e2e/c/k --rev="$R2"
    tfail compact/read-below "etcdserver: mvcc: required revision has been compacted" get /e2e/c/k --rev="$R1"
    tfail compact/again "etcdserver: mvcc: required revision has been compacted" compaction "$R2"
    tfail compact/older "etcdserver: mvcc: required revision has been compacted" compaction "$R1"
    tfail compact/future "etcdserver: mvcc: required revision is a future revision" compaction $((R3 + 100))
    t compact/physical "compacted revision $R3" compaction --physical "$R3"
    t compact/read-latest $'/e2e/c/k\nv3' get /e2e/c/k
    t compact/read-at-physical $'/e2e/c/k\nv3' get /e2e/c/k --rev="$R3"
    tjq compact/hashkv-compact-rev ".[0].HashKV.compact_revision == $R3" endpoint hashkv -w json
    tfail compact/hashkv-compacted "etcdserver: mvcc: required revision has been compacted" endpoint hashkv --rev="$R2"
    t compact/cleanup "1" del /e2e/c/k
fi

# ---------------------------------------------------------------- watch
if section watch; then
    R=$(cur_rev)
    t watch/put-1 OK put /e2e/w/a 1          # R+1
    t watch/put-2 OK put /e2e/w/a 2          # R+2
    t watch/put-3 OK put /e2e/w/b 3          # R+3
    t watch/del-1 "1" del /e2e/w/a           # R+4
    t watch/put-4 OK put /e2e/x 9            # R+5 (outside the prefix)

    bg_watch "$WORK/w1" /e2e/w/ --prefix --rev=$((R + 1)) --prev-kv
    W1=$BG_LAST
    bg_watch "$WORK/w2" /e2e/w/a --rev=$((R + 1))
    W2=$BG_LAST
    bg_watch "$WORK/w3" /e2e/w/a /e2e/w/c --rev=$((R + 2))
    W3=$BG_LAST
    STEP=watch/history; wait_lines "$WORK/w1" 16 || { cp "$WORK/w1" "$OUT"; fail "history watch did not deliver 4 events within 15 s"; }
    STEP=watch/history-key; wait_lines "$WORK/w2" 9 || { cp "$WORK/w2" "$OUT"; fail "key watch did not deliver 3 events"; }
    STEP=watch/history-range; wait_lines "$WORK/w3" 9 || { cp "$WORK/w3" "$OUT"; fail "range watch did not deliver 3 events"; }

    # live events on the same watchers (start revision already passed: synced path)
    t watch/put-5 OK put /e2e/w/c 5           # R+6 (outside w3's range)
    t watch/put-6 OK put /e2e/w/b 6           # R+7
    STEP=watch/live; wait_lines "$WORK/w1" 24 || { cp "$WORK/w1" "$OUT"; fail "prefix watch did not deliver live events"; }
    STEP=watch/live-range; wait_lines "$WORK/w3" 12 || { cp "$WORK/w3" "$OUT"; fail "range watch did not deliver live event"; }
    sleep 0.3 # let any spurious extra event arrive before comparing
    stop_bg "$W1"; stop_bg "$W2"; stop_bg "$W3"
    expect_file watch/prefix-prev-kv "$WORK/w1" $'PUT\n/e2e/w/a\n1\nPUT\n/e2e/w/a\n1\n/e2e/w/a\n2\nPUT\n/e2e/w/b\n3\nDELETE\n/e2e/w/a\n2\n/e2e/w/a\n\nPUT\n/e2e/w/c\n5\nPUT\n/e2e/w/b\n3\n/e2e/w/b\n6'
    expect_file watch/key "$WORK/w2" $'PUT\n/e2e/w/a\n1\nPUT\n/e2e/w/a\n2\nDELETE\n/e2e/w/a\n'
    expect_file watch/range "$WORK/w3" $'PUT\n/e2e/w/a\n2\nPUT\n/e2e/w/b\n3\nDELETE\n/e2e/w/a\n\nPUT\n/e2e/w/b\n6'

    # JSON: events concatenated over all responses (batching is not asserted)
    bg_watch "$WORK/w4" /e2e/w/ --prefix --rev=$((R + 1)) -w json
    W4=$BG_LAST
    STEP=watch/json
    for ((i = 0; i < 150; i++)); do
        [[ $(jq -s '[.[].Events[]] | length' "$WORK/w4" 2>/dev/null || echo 0) -ge 6 ]] && break
        sleep 0.1
    done
    stop_bg "$W4"
    cp "$WORK/w4" "$OUT"
    jq -s -e "[.[].Events[]] as \$e | (\$e | length) == 6 and
        ([\$e[] | .kv.mod_revision] == [$((R + 1)), $((R + 2)), $((R + 3)), $((R + 4)), $((R + 6)), $((R + 7))]) and
        ([\$e[] | (.type // 0)] == [0, 0, 0, 1, 0, 0]) and
        (\$e[1].kv.version == 2) and (\$e[3].kv | has(\"value\") | not) and (\$e[3].kv.create_revision // 0) == 0 and
        ([.[] | .Canceled] | all | not)" "$OUT" >/dev/null || fail "unexpected watch JSON"

    # watch without --rev: from now. Ping until the watcher sees it (avoids a creation race).
    bg_watch "$WORK/w5" /e2e/w/now
    W5=$BG_LAST
    STEP=watch/from-now
    ok=0
    for ((i = 0; i < 50; i++)); do
        ctl put /e2e/w/now ping >/dev/null 2>"$ERR" || fail "put failed"
        if grep -q '^ping$' "$WORK/w5"; then ok=1; break; fi
        sleep 0.2
    done
    [[ $ok == 1 ]] || { cp "$WORK/w5" "$OUT"; fail "watch from now saw no event within 10 s"; }
    t watch/now-del "1" del /e2e/w/now
    STEP=watch/from-now-delete
    for ((i = 0; i < 150; i++)); do
        [[ $(tail -n 3 "$WORK/w5") == $'DELETE\n/e2e/w/now' ]] && break
        sleep 0.1
    done
    stop_bg "$W5"
    tail -n 3 "$WORK/w5" >"$WORK/w5.tail"; : >"$WORK/w5.tail.err"
    expect_file watch/from-now-delete "$WORK/w5.tail" $'DELETE\n/e2e/w/now\n'

    # watch from a compacted revision: canceled by the server
    t watch/compact "compacted revision $((R + 3))" compaction $((R + 3))
    STEP=watch/compacted
    set +e
    timeout 15 "$CTL" --endpoints="$EP" watch /e2e/w/ --prefix --rev=$((R + 1)) >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    set -e
    [[ $RC != 0 && $RC != 124 ]] || fail "watch on a compacted revision was not canceled (rc $RC)"
    grep -qF "watch was canceled (etcdserver: mvcc: required revision has been compacted)" "$ERR" ||
        fail "expected 'watch was canceled (etcdserver: mvcc: required revision has been compacted)'"
    t watch/cleanup "3" del "" --prefix
fi

# ---------------------------------------------------------------- lease
if section lease; then
    STEP=lease/grant
    run_cmd "" lease grant 600
    [[ $RC == 0 ]] || fail "lease grant exited $RC"
    ID=$(sed -n 's/^lease \([0-9a-f]\{1,16\}\) granted with TTL(600s)$/\1/p' "$OUT")
    [[ -n $ID && $(wc -l <"$OUT") == 1 ]] || fail "expected 'lease <hex id> granted with TTL(600s)'"
    t lease/put-1 OK put /e2e/l/a 1 --lease="$ID"
    t lease/put-2 OK put /e2e/l/b 2 --lease="$ID"
    t lease/put-3 OK put /e2e/l/c 3
    tjq lease/key-has-lease ".kvs[0].lease != null and .kvs[0].lease > 0" get /e2e/l/a -w json
    tjq lease/key-no-lease ".kvs[0] | has(\"lease\") | not" get /e2e/l/c -w json
    STEP=lease/timetolive
    run_cmd "" lease timetolive "$ID"
    [[ $RC == 0 ]] || fail "timetolive exited $RC"
    REM=$(sed -n "s/^lease $ID granted with TTL(600s), remaining(\([0-9]*\)s)\$/\1/p" "$OUT")
    [[ -n $REM && $REM -ge 590 && $REM -le 600 ]] || fail "expected 'lease $ID granted with TTL(600s), remaining(590..600s)'"
    STEP=lease/timetolive-keys
    run_cmd "" lease timetolive "$ID" --keys
    [[ $RC == 0 ]] || fail "timetolive --keys exited $RC"
    KEYS=$(sed -n "s/^lease $ID granted with TTL(600s), remaining([0-9]*s), attached keys(\[\(.*\)\])\$/\1/p" "$OUT" | tr ' ' '\n' | sort | tr '\n' ' ')
    [[ $KEYS == "/e2e/l/a /e2e/l/b " ]] || fail "expected attached keys([/e2e/l/a /e2e/l/b]) in any order, got '$KEYS'"
    tjq lease/timetolive-json '."granted-ttl" == 600 and .ttl >= 590 and .ttl <= 600 and ([.keys[] | @base64d] | sort) == ["/e2e/l/a", "/e2e/l/b"]' lease timetolive "$ID" --keys -w json
    t lease/list "found 1 leases"$'\n'"$ID" lease list
    tjq lease/list-json '(.leases | length) == 1' lease list -w json
    t lease/keep-alive-once "lease $ID keepalived with TTL(600)" lease keep-alive --once "$ID"
    tjq lease/keep-alive-json '.TTL == 600' lease keep-alive --once "$ID" -w json
    t lease/put-reattach OK put /e2e/l/c 33 --lease="$ID"
    bg_watch "$WORK/lw" /e2e/l/ --prefix --rev="$(($(cur_rev) + 1))" --prev-kv
    LW=$BG_LAST
    t lease/revoke "lease $ID revoked" lease revoke "$ID"
    t lease/keys-gone "" get /e2e/l/ --prefix
    STEP=lease/revoke-events
    wait_lines "$WORK/lw" 15 || { cp "$WORK/lw" "$OUT"; fail "revoke did not produce 3 DELETE events"; }
    stop_bg "$LW"
    cp "$WORK/lw" "$OUT"
    [[ $(grep -c '^DELETE$' "$OUT") == 3 ]] || fail "expected 3 DELETE events"
    t lease/expired "lease $ID already expired" lease timetolive "$ID"
    tfail lease/revoke-again "etcdserver: requested lease not found" lease revoke "$ID"
    tfail lease/keep-alive-gone "requested lease not found" lease keep-alive --once "$ID"
    tfail lease/put-unknown "etcdserver: requested lease not found" put /e2e/l/x 1 --lease=1234abcd
    tfail lease/ttl-too-large "etcdserver: too large lease TTL" lease grant 9000000001
    t lease/list-empty "found 0 leases" lease list

    # expiry: TTL 3 s, keys are deleted by the server, with DELETE events
    STEP=lease/grant-short
    run_cmd "" lease grant 3
    [[ $RC == 0 ]] || fail "lease grant 3 exited $RC"
    SID=$(sed -n 's/^lease \([0-9a-f]\{1,16\}\) granted with TTL(3s)$/\1/p' "$OUT")
    [[ -n $SID ]] || fail "expected 'lease <hex id> granted with TTL(3s)'"
    bg_watch "$WORK/ew" /e2e/exp/ --prefix --rev="$(($(cur_rev) + 1))" --prev-kv
    EW=$BG_LAST
    t lease/put-expiring OK put /e2e/exp/k v --lease="$SID"
    STEP=lease/expiry
    for ((i = 0; i < 200; i++)); do
        [[ -z $(ctl get /e2e/exp/k 2>/dev/null) ]] && break
        sleep 0.1
    done
    [[ -z $(ctl get /e2e/exp/k 2>/dev/null) ]] || fail "key attached to a 3 s lease still exists after 20 s"
    wait_lines "$WORK/ew" 8 || { cp "$WORK/ew" "$OUT"; fail "lease expiry produced no DELETE event"; }
    stop_bg "$EW"
    expect_file lease/expiry-events "$WORK/ew" $'PUT\n/e2e/exp/k\nv\nDELETE\n/e2e/exp/k\nv\n/e2e/exp/k\n'
    t lease/expired-short "lease $SID already expired" lease timetolive "$SID"
fi

# ---------------------------------------------------------------- cluster / maintenance
if section maint; then
    STEP=maint/member-list
    run_cmd "" member list
    [[ $RC == 0 ]] || fail "member list exited $RC"
    grep -qE "^[0-9a-f]{1,16}, started, [^,]+, [^,]+, ${EP}(,[^,]*)*, false\$" "$OUT" ||
        fail "no line '<id>, started, <name>, <peer urls>, $EP, false'"
    MID=$(grep -E ", ${EP}(,|\$)" "$OUT" | head -n1 | cut -d, -f1)
    tjq maint/member-list-json "(.members | length) >= 1 and ([.members[] | .clientURLs[]] | index(\"$EP\")) != null and (.members[0].name | length) > 0 and (.members[0].peerURLs | length) >= 1" member list -w json
    STEP=maint/member-list-table
    run_cmd "" member list -w table
    [[ $RC == 0 ]] || fail "member list -w table exited $RC"
    grep -qE '^\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|\s+PEER ADDRS\s+\|\s+CLIENT ADDRS\s+\|\s+IS LEARNER\s+\|$' "$OUT" || fail "table header"

    tre maint/endpoint-status "${EP}, ${MID}, 3\.[5-9]\.[0-9]+, [0-9.]+ [kMG]?B, true, false, [0-9]+, [0-9]+, [0-9]+, " endpoint status
    R=$(cur_rev)
    tjq maint/endpoint-status-json "
        (. | length) == 1 and .[0].Endpoint == \"$EP\" and
        (.[0].Status.version | test(\"^3\\\\.([5-9]|[1-9][0-9])\\\\.[0-9]+\$\")) and
        .[0].Status.header.revision == $R and .[0].Status.dbSize > 0 and
        .[0].Status.leader == .[0].Status.header.member_id and .[0].Status.raftIndex > 0 and
        .[0].Status.raftTerm > 0 and (.[0].Status | has(\"dbSizeInUse\")) and (.[0].Status | has(\"raftAppliedIndex\"))" endpoint status -w json
    # etcdctl 3.4 prints the health line on stderr, 3.5 on stdout
    STEP=maint/endpoint-health
    run_cmd "" endpoint health
    [[ $RC == 0 ]] || fail "endpoint health exited $RC"
    grep -qhE "^${EP} is healthy: successfully committed proposal: took = [0-9.]+(µs|ms|s|ns)\$" "$OUT" "$ERR" ||
        fail "expected '$EP is healthy: successfully committed proposal: took = <duration>'"
    tjq maint/endpoint-health-json "(. | length) == 1 and .[0].endpoint == \"$EP\" and .[0].health == true" endpoint health -w json
    t maint/alarm-list "" alarm list
    tjq maint/alarm-list-json "(has(\"alarms\") | not) and .header.revision == $R" alarm list -w json
    t maint/alarm-disarm "" alarm disarm
    t maint/move-leader-self "Leadership transferred from ${MID} to ${MID}" move-leader "$MID"

    t maint/hash-setup-1 OK put /e2e/h/a 1
    t maint/hash-setup-2 OK put /e2e/h/b 2
    tre maint/hashkv "${EP}, [0-9]+" endpoint hashkv
    H1=$(cut -d' ' -f2 "$OUT")
    HR=$(cur_rev)
    tjq maint/hashkv-json ".[0].Endpoint == \"$EP\" and .[0].HashKV.hash == $H1 and .[0].HashKV.header.revision == $HR and (.[0].HashKV | has(\"compact_revision\") or true)" endpoint hashkv -w json
    t maint/defrag "Finished defragmenting etcd member[${EP}]" defrag
    t maint/hashkv-after-defrag "${EP}, ${H1}" endpoint hashkv
    t maint/hash-setup-3 OK put /e2e/h/c 3
    t maint/hashkv-at-rev "${EP}, ${H1}" endpoint hashkv --rev="$HR"
    STEP=maint/hashkv-changes
    run_cmd "" endpoint hashkv
    [[ $(cut -d' ' -f2 "$OUT") != "$H1" ]] || fail "hash did not change after a write"
    SNAP=$WORK/snap.db
    t maint/snapshot-save "Snapshot saved at $SNAP" snapshot save "$SNAP"
    STEP=maint/snapshot-file
    [[ -s $SNAP && ! -e $SNAP.part ]] || fail "snapshot file $SNAP missing or empty"
    t maint/cleanup "3" del /e2e/h/ --prefix
fi

# ---------------------------------------------------------------- concurrency (lock / elect)
if section concurrency; then
    t concurrency/lock-exec "held" lock /e2e/lock -- echo held
    t concurrency/lock-released "" get /e2e/lock --prefix
    "$CTL" --endpoints="$EP" elect /e2e/elect p1 >"$WORK/el" 2>"$WORK/el.err" </dev/null &
    EL=$!
    BG_PIDS+=("$EL")
    STEP=concurrency/elect
    wait_lines "$WORK/el" 2 || { cp "$WORK/el" "$OUT"; fail "elect did not become leader"; }
    grep -qE '^/e2e/elect/[0-9a-f]+$' "$WORK/el" || { cp "$WORK/el" "$OUT"; fail "elect output lacks '/e2e/elect/<lease hex>'"; }
    "$CTL" --endpoints="$EP" elect -l /e2e/elect >"$WORK/ol" 2>"$WORK/ol.err" </dev/null &
    OL=$!
    BG_PIDS+=("$OL")
    STEP=concurrency/elect-listen
    wait_lines "$WORK/ol" 2 || { cp "$WORK/ol" "$OUT"; fail "elect -l did not report the leader"; }
    stop_bg "$OL"
    cmp -s <(head -n 2 "$WORK/el") <(head -n 2 "$WORK/ol") || { cp "$WORK/ol" "$OUT"; fail "elect -l reported a different leader than elect"; }
    [[ $(sed -n 2p "$WORK/ol") == p1 ]] || { cp "$WORK/ol" "$OUT"; fail "elect -l: expected proposal p1"; }
    kill -INT "$EL" 2>/dev/null || true # etcdctl resigns on SIGINT
    wait "$EL" 2>/dev/null || true
    STEP=concurrency/resigned
    for ((i = 0; i < 100; i++)); do [[ -z $(ctl get /e2e/elect --prefix 2>/dev/null) ]] && break; sleep 0.1; done
    t concurrency/resigned "" get /e2e/elect --prefix
fi

# ---------------------------------------------------------------- auth (last: it changes global state)
if section auth; then
    t auth/user-add-root "User root created" user add root:e2e-root-pw
    t auth/user-add "User e2e-alice created" user add e2e-alice:apw
    t auth/role-add "Role e2e-r created" role add e2e-r
    t auth/grant-rw "Role e2e-r updated" role grant-permission e2e-r readwrite /e2e/a/ --prefix
    t auth/grant-r "Role e2e-r updated" role grant-permission e2e-r read /e2e/b
    t auth/grant-role "Role e2e-r is granted to user e2e-alice" user grant-role e2e-alice e2e-r
    t auth/role-get $'Role e2e-r\nKV Read:\n\t[/e2e/a/, /e2e/a0) (prefix /e2e/a/)\n\t/e2e/b\nKV Write:\n\t[/e2e/a/, /e2e/a0) (prefix /e2e/a/)' role get e2e-r
    t auth/user-get $'User: e2e-alice\nRoles: e2e-r' user get e2e-alice
    t auth/user-list $'e2e-alice\nroot' user list
    t auth/role-list "e2e-r" role list
    AUTH_ON=1
    t auth/enable "Authentication Enabled" auth enable
    tfail auth/no-user "etcdserver: user name is empty" put /e2e/a/x 1
    tfail auth/bad-password "etcdserver: authentication failed, invalid user ID or password" --user e2e-alice:wrong get /e2e/a/x
    t auth/allowed-put OK --user e2e-alice:apw put /e2e/a/x 1
    t auth/allowed-get $'/e2e/a/x\n1' --user e2e-alice:apw get /e2e/a/x
    tfail auth/denied-put "etcdserver: permission denied" --user e2e-alice:apw put /e2e/b v
    tfail auth/denied-get "etcdserver: permission denied" --user e2e-alice:apw get /e2e/c
    if [[ $HAS_35 == 1 ]]; then
        STEP=auth/status
        run_cmd "" --user root:e2e-root-pw auth status
        [[ $RC == 0 ]] || fail "auth status exited $RC"
        grep -qx 'Authentication Status: true' "$OUT" || fail "expected 'Authentication Status: true'"
        grep -qE '^AuthRevision: [0-9]+$' "$OUT" || fail "expected 'AuthRevision: N'"
    fi
    t auth/disable "Authentication Disabled" --user root:e2e-root-pw auth disable
    AUTH_ON=0
    t auth/open-again $'/e2e/a/x\n1' get /e2e/a/x
    t auth/user-del "User e2e-alice deleted" user delete e2e-alice
    t auth/root-del "User root deleted" user delete root
    t auth/role-del "Role e2e-r deleted" role delete e2e-r
    # `auth enable` creates the root role; remove it so the next run starts clean
    ctl role delete root >/dev/null 2>&1 || true
    t auth/role-list-empty "" role list
    t auth/cleanup "1" del "" --prefix
fi

echo "E2E PASS: $NSTEPS etcdctl invocations ($CTL, etcdctl $CTLV) against $EP" >&2
