//! Golden scripts (toydb style): every `tests/golden/*.txt` is a script of commands; the
//! runner applies each to an `MvccStore` (and to the reference model, which must agree) and
//! prints the response in a compact text form below the command, as lines starting with
//! `> `. The test fails when the output differs from the file; `UPDATE_GOLDEN=1` rewrites the
//! files instead.
//!
//! Syntax (one command per line; `#` comments and blank lines are kept):
//!
//! ```text
//! put KEY [VALUE] [lease=N] [prev_kv] [ignore_value] [ignore_lease]
//! del KEY [END] [prev_kv]
//! get KEY [END] [rev=N] [limit=N] [sort=TARGET[,ORDER]] [keys_only] [count_only]
//!     [min_mod=N] [max_mod=N] [min_create=N] [max_create=N]        (also: range)
//! compact REV
//! grant ID | revoke ID        (revoke deletes the keys attached to the lease, in one revision)
//! reopen                      (drop the store and open it again on the same engine)
//! hashkv [REV]
//! batch ... end               (the enclosed writes in one apply batch)
//! txn
//!   if TARGET KEY [END] OP VALUE      (TARGET: version|create|mod|value|lease; OP: = != > <)
//!   then|else COMMAND                 (put, del, get, or a nested `txn` ... `end`)
//! end
//! ```
//!
//! Tokens: `\0` is a NUL byte, `""` the empty string, `\xNN` any byte.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use shale_api::mvccpb::KeyValue;
use shale_mvcc::hash::hash_kv;
use shale_mvcc::{kv, ApplyBatch, Error, KeyRange, MvccStore};
use shale_storage::{Engine, MemoryEngine};
use shale_testkit::model::Model;

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
enum Cmd {
    Put(PutRequest),
    Del(DeleteRangeRequest),
    Get(RangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    Grant(i64),
    Revoke(i64),
    Reopen,
    HashKv(i64),
    Batch(Vec<Cmd>),
}

fn token(s: &str) -> Bytes {
    if s == "\"\"" {
        return Bytes::new();
    }
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'0' {
            out.push(0);
            i += 2;
        } else if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Bytes::from(out)
}

fn num(s: &str) -> i64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

/// Splits `args` into positional tokens and `flag` / `name=value` options.
fn split(args: &[&str]) -> (Vec<Bytes>, Vec<(String, String)>) {
    let mut pos = Vec::new();
    let mut opts = Vec::new();
    for a in args {
        const FLAGS: &[&str] = &[
            "prev_kv",
            "ignore_value",
            "ignore_lease",
            "keys_only",
            "count_only",
        ];
        if FLAGS.contains(a) {
            opts.push((a.to_string(), String::new()));
        } else if let Some((k, v)) = a
            .split_once('=')
            .filter(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        {
            opts.push((k.to_string(), v.to_string()));
        } else {
            pos.push(token(a));
        }
    }
    (pos, opts)
}

fn parse_simple(words: &[&str]) -> Cmd {
    let (pos, opts) = split(&words[1..]);
    let has = |f: &str| opts.iter().any(|(k, _)| k == f);
    let opt = |f: &str| opts.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
    match words[0] {
        "put" => Cmd::Put(PutRequest {
            key: pos[0].clone(),
            value: pos.get(1).cloned().unwrap_or_default(),
            lease: opt("lease").map_or(0, num),
            prev_kv: has("prev_kv"),
            ignore_value: has("ignore_value"),
            ignore_lease: has("ignore_lease"),
        }),
        "del" => Cmd::Del(DeleteRangeRequest {
            key: pos[0].clone(),
            range_end: pos.get(1).cloned().unwrap_or_default(),
            prev_kv: has("prev_kv"),
        }),
        "get" | "range" => {
            use range_request::{SortOrder, SortTarget};
            let mut r = RangeRequest {
                key: pos[0].clone(),
                range_end: pos.get(1).cloned().unwrap_or_default(),
                revision: opt("rev").map_or(0, num),
                limit: opt("limit").map_or(0, num),
                keys_only: has("keys_only"),
                count_only: has("count_only"),
                min_mod_revision: opt("min_mod").map_or(0, num),
                max_mod_revision: opt("max_mod").map_or(0, num),
                min_create_revision: opt("min_create").map_or(0, num),
                max_create_revision: opt("max_create").map_or(0, num),
                ..Default::default()
            };
            if let Some(s) = opt("sort") {
                let (target, order) = s.split_once(',').unwrap_or((s, "ascend"));
                r.sort_target = match target {
                    "key" => SortTarget::Key,
                    "version" => SortTarget::Version,
                    "create" => SortTarget::Create,
                    "mod" => SortTarget::Mod,
                    "value" => SortTarget::Value,
                    t => panic!("sort target {t}"),
                } as i32;
                r.sort_order = match order {
                    "none" => SortOrder::None,
                    "ascend" => SortOrder::Ascend,
                    "descend" => SortOrder::Descend,
                    o => panic!("sort order {o}"),
                } as i32;
            }
            Cmd::Get(r)
        }
        "compact" => Cmd::Compact(num(words[1])),
        "grant" => Cmd::Grant(num(words[1])),
        "revoke" => Cmd::Revoke(num(words[1])),
        "reopen" => Cmd::Reopen,
        "hashkv" => Cmd::HashKv(words.get(1).map_or(0, |w| num(w))),
        other => panic!("unknown command {other}"),
    }
}

fn parse_compare(words: &[&str]) -> Compare {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    // if TARGET KEY [END] OP VALUE
    let n = words.len();
    let (target, keys, op, value) = (words[1], &words[2..n - 2], words[n - 2], words[n - 1]);
    let result = match op {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        o => panic!("compare op {o}"),
    } as i32;
    let (target, union) = match target {
        "version" => (CompareTarget::Version, TargetUnion::Version(num(value))),
        "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(num(value)),
        ),
        "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(num(value))),
        "value" => (CompareTarget::Value, TargetUnion::Value(token(value))),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(num(value))),
        t => panic!("compare target {t}"),
    };
    Compare {
        result,
        target: target as i32,
        key: token(keys[0]),
        range_end: keys.get(1).map(|k| token(k)).unwrap_or_default(),
        target_union: Some(union),
    }
}

/// Parses the body of a `txn` block (after the `txn` line) up to its `end`.
fn parse_txn(lines: &mut std::slice::Iter<'_, &str>) -> TxnRequest {
    let mut t = TxnRequest::default();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("end") => return t,
            Some("if") => t.compare.push(parse_compare(&words)),
            Some(branch @ ("then" | "else")) => {
                let request = match words[1] {
                    "txn" => request_op::Request::RequestTxn(parse_txn(lines)),
                    _ => match parse_simple(&words[1..]) {
                        Cmd::Put(p) => request_op::Request::RequestPut(p),
                        Cmd::Del(d) => request_op::Request::RequestDeleteRange(d),
                        Cmd::Get(r) => request_op::Request::RequestRange(r),
                        other => panic!("not a txn op: {other:?}"),
                    },
                };
                let op = RequestOp {
                    request: Some(request),
                };
                if branch == "then" {
                    t.success.push(op);
                } else {
                    t.failure.push(op);
                }
            }
            None => {}
            Some(w) => panic!("unexpected {w:?} in txn"),
        }
    }
    panic!("txn without end")
}

/// Parses one command starting at `first`, consuming block lines from `rest`.
fn parse_cmd(first: &str, rest: &mut std::slice::Iter<'_, &str>) -> Cmd {
    let words: Vec<&str> = first.split_whitespace().collect();
    match words[0] {
        "txn" => Cmd::Txn(parse_txn(rest)),
        "batch" => {
            let mut cmds = Vec::new();
            while let Some(line) = rest.next() {
                let line = line.trim();
                if line == "end" {
                    return Cmd::Batch(cmds);
                }
                if !line.is_empty() && !line.starts_with('#') {
                    cmds.push(parse_cmd(line, rest));
                }
            }
            panic!("batch without end")
        }
        _ => parse_simple(&words),
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn show(b: &[u8]) -> String {
    if b.is_empty() {
        return "\"\"".into();
    }
    if b.len() > 40 {
        return format!("<{} bytes>", b.len());
    }
    let mut s = String::new();
    for &c in b {
        match c {
            0 => s.push_str("\\0"),
            0x21..=0x7e if c != b'\\' => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s
}

fn show_kv(kv: &KeyValue) -> String {
    let mut s = format!(
        "{}={} c{} m{} v{}",
        show(&kv.key),
        show(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version
    );
    if kv.lease != 0 {
        let _ = write!(s, " lease={}", kv.lease);
    }
    s
}

fn hdr(h: &Option<shale_api::etcdserverpb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(-1, |h| h.revision)
}

fn fmt_range(r: &RangeResponse, ind: &str, out: &mut Vec<String>) {
    out.push(format!(
        "{ind}rev={} count={}{}",
        hdr(&r.header),
        r.count,
        if r.more { " more" } else { "" }
    ));
    for kv in &r.kvs {
        out.push(format!("{ind}  {}", show_kv(kv)));
    }
}

fn fmt_put(r: &PutResponse, ind: &str, out: &mut Vec<String>) {
    out.push(format!("{ind}rev={}", hdr(&r.header)));
    if let Some(p) = &r.prev_kv {
        out.push(format!("{ind}  prev {}", show_kv(p)));
    }
}

fn fmt_del(r: &DeleteRangeResponse, ind: &str, out: &mut Vec<String>) {
    out.push(format!("{ind}rev={} deleted={}", hdr(&r.header), r.deleted));
    for p in &r.prev_kvs {
        out.push(format!("{ind}  prev {}", show_kv(p)));
    }
}

fn fmt_txn(r: &TxnResponse, ind: &str, out: &mut Vec<String>) {
    let rev = match &r.header {
        Some(h) if h.revision == 0 => String::new(),
        h => format!("rev={} ", hdr(h)),
    };
    out.push(format!(
        "{ind}{rev}{}",
        if r.succeeded { "then" } else { "else" }
    ));
    let inner = format!("{ind}  ");
    for op in &r.responses {
        match &op.response {
            Some(response_op::Response::ResponseRange(x)) => {
                out.push(format!("{inner}get:"));
                fmt_range(x, &format!("{inner}  "), out);
            }
            Some(response_op::Response::ResponsePut(x)) => {
                out.push(format!("{inner}put:"));
                fmt_put(x, &format!("{inner}  "), out);
            }
            Some(response_op::Response::ResponseDeleteRange(x)) => {
                out.push(format!("{inner}del:"));
                fmt_del(x, &format!("{inner}  "), out);
            }
            Some(response_op::Response::ResponseTxn(x)) => {
                out.push(format!("{inner}txn:"));
                fmt_txn(x, &format!("{inner}  "), out);
            }
            None => out.push(format!("{inner}(empty)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Range(RangeResponse),
    Put(PutResponse),
    Del(DeleteRangeResponse),
    Txn(TxnResponse),
    Ok(i64),
    Revoked(Vec<KeyValue>),
    Err(EtcdError),
}

fn fmt_resp(r: &Resp, out: &mut Vec<String>) {
    match r {
        Resp::Range(x) => fmt_range(x, "", out),
        Resp::Put(x) => fmt_put(x, "", out),
        Resp::Del(x) => fmt_del(x, "", out),
        Resp::Txn(x) => fmt_txn(x, "", out),
        Resp::Ok(rev) => out.push(format!("ok rev={rev}")),
        Resp::Revoked(kvs) => {
            out.push(format!("revoked deleted={}", kvs.len()));
            for kv in kvs {
                out.push(format!("  prev {}", show_kv(kv)));
            }
        }
        Resp::Err(e) => out.push(format!("error: {}", e.message())),
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

struct Runner {
    engine: Arc<dyn Engine>,
    store: Option<MvccStore>,
    model: Model,
    leases: BTreeSet<i64>,
}

fn to_resp<T>(r: shale_mvcc::Result<T>, f: impl FnOnce(T) -> Resp) -> Resp {
    match r {
        Ok(v) => f(v),
        Err(Error::Etcd(e)) => Resp::Err(e),
        Err(e) => panic!("store error: {e}"),
    }
}

fn model_resp<T>(r: Result<T, EtcdError>, f: impl FnOnce(T) -> Resp) -> Resp {
    match r {
        Ok(v) => f(v),
        Err(e) => Resp::Err(e),
    }
}

impl Runner {
    fn new() -> Self {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = MvccStore::open(engine.clone()).expect("open");
        Self {
            engine,
            store: Some(store),
            model: Model::new(),
            leases: BTreeSet::new(),
        }
    }

    fn store(&self) -> &MvccStore {
        self.store.as_ref().expect("open")
    }

    fn model(&mut self, cmd: &Cmd) -> Resp {
        let m = &mut self.model;
        match cmd {
            Cmd::Put(p) => model_resp(m.put(p), Resp::Put),
            Cmd::Del(d) => model_resp(m.delete_range(d), Resp::Del),
            Cmd::Get(r) => model_resp(m.range(r), Resp::Range),
            Cmd::Txn(t) => model_resp(m.txn(t), Resp::Txn),
            Cmd::Compact(rev) => model_resp(m.compact(*rev), |r| Resp::Ok(hdr(&r.header))),
            Cmd::Grant(id) => {
                m.grant(*id);
                Resp::Ok(m.revision())
            }
            Cmd::Revoke(id) => Resp::Revoked(m.revoke(*id)),
            Cmd::Reopen | Cmd::HashKv(_) | Cmd::Batch(_) => unreachable!("not a request"),
        }
    }

    /// Runs one request in an open batch.
    fn in_batch(batch: &mut ApplyBatch<'_>, leases: &BTreeSet<i64>, cmd: &Cmd) -> Resp {
        let exists = |id: i64| leases.contains(&id);
        match cmd {
            Cmd::Put(p) => {
                let mut w = batch.write();
                to_resp(kv::put(&mut w, p, &exists, false), Resp::Put)
            }
            Cmd::Del(d) => {
                let mut w = batch.write();
                to_resp(kv::delete_range(&mut w, d), Resp::Del)
            }
            Cmd::Get(r) => {
                let w = batch.write();
                to_resp(kv::range(&w, r), Resp::Range)
            }
            Cmd::Txn(t) => {
                let first = batch.compact_revision();
                let mut w = batch.write();
                to_resp(kv::txn(&mut w, t, &exists, first), Resp::Txn)
            }
            Cmd::Compact(rev) => {
                let r = batch.compact(*rev);
                let cur = batch.rev();
                to_resp(r, |()| Resp::Ok(cur))
            }
            Cmd::Grant(_) => Resp::Ok(batch.rev()),
            Cmd::Revoke(id) => {
                let mut w = batch.write();
                let all = RangeRequest {
                    key: Bytes::from_static(b"\0"),
                    range_end: Bytes::from_static(b"\0"),
                    ..Default::default()
                };
                let kvs = kv::range(&w, &all).expect("range").kvs;
                let mut deleted = Vec::new();
                for kv in kvs.into_iter().filter(|kv| kv.lease == *id) {
                    deleted.extend(
                        w.delete_range(&KeyRange::Single(kv.key.clone()))
                            .expect("delete"),
                    );
                }
                Resp::Revoked(deleted)
            }
            Cmd::Reopen | Cmd::HashKv(_) | Cmd::Batch(_) => panic!("{cmd:?} cannot be in a batch"),
        }
    }

    fn run(&mut self, cmd: &Cmd, out: &mut Vec<String>) {
        match cmd {
            Cmd::Reopen => {
                drop(self.store.take());
                self.store = Some(MvccStore::open(self.engine.clone()).expect("reopen"));
                out.push(format!(
                    "ok rev={} compacted={}",
                    self.store().current_revision(),
                    self.store().compact_revision()
                ));
                return;
            }
            Cmd::HashKv(rev) => {
                let r = hash_kv(self.store(), *rev);
                let r = to_resp(
                    r.map(|h| (h.hash, h.hash_rev, h.compact_rev)),
                    |(h, hr, cr)| {
                        out.push(format!("hash={h:08x} hash_rev={hr} compact_rev={cr}"));
                        Resp::Ok(0)
                    },
                );
                if let Resp::Err(e) = r {
                    out.push(format!("error: {}", e.message()));
                }
                return;
            }
            _ => {}
        }
        // Reads outside the applier go straight to the store; everything else through a batch.
        let cmds: Vec<Cmd> = match cmd {
            Cmd::Batch(cmds) => cmds.clone(),
            other => vec![other.clone()],
        };
        let want: Vec<Resp> = cmds.iter().map(|c| self.model(c)).collect();
        let got: Vec<Resp> = if let [Cmd::Get(r)] = cmds.as_slice() {
            vec![to_resp(kv::range(self.store(), r), Resp::Range)]
        } else {
            let store = self.store.as_ref().expect("open");
            let mut batch = store.begin();
            let mut got = Vec::new();
            for c in &cmds {
                got.push(Self::in_batch(&mut batch, &self.leases, c));
                match c {
                    Cmd::Grant(id) => {
                        self.leases.insert(*id);
                    }
                    Cmd::Revoke(id) => {
                        self.leases.remove(id);
                    }
                    _ => {}
                }
            }
            batch.commit().expect("commit");
            got
        };
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w, g, "store and model disagree on {:?}", cmds[i]);
            fmt_resp(g, out);
        }
    }
}

/// Runs a script; returns the file content it should have.
fn run_script(text: &str) -> String {
    let script: Vec<&str> = text.lines().filter(|l| !l.starts_with("> ")).collect();
    let mut runner = Runner::new();
    let mut out = String::new();
    let mut lines = script.iter();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // Block commands: echo their lines as they are consumed.
        let mut block = Vec::new();
        let cmd = {
            let rest: Vec<&str> = lines.as_slice().to_vec();
            let mut it = rest.iter();
            let cmd = parse_cmd(t, &mut it);
            let used = rest.len() - it.as_slice().len();
            for _ in 0..used {
                block.push(*lines.next().expect("line"));
            }
            cmd
        };
        for l in block {
            out.push_str(l);
            out.push('\n');
        }
        let mut resp = Vec::new();
        runner.run(&cmd, &mut resp);
        for r in resp {
            out.push_str("> ");
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn golden_scripts() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected golden scripts in {:?}",
        golden_dir()
    );
    let mut failed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        let got = run_script(&text);
        if got != text {
            if update {
                std::fs::write(f, &got).expect("write");
                eprintln!("updated {}", f.display());
            } else {
                let diff: Vec<String> = text
                    .lines()
                    .zip(got.lines())
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .take(5)
                    .map(|(i, (a, b))| format!("  line {}:\n    file: {a}\n    got:  {b}", i + 1))
                    .collect();
                let (n, m) = (text.lines().count(), got.lines().count());
                let len = if n != m {
                    format!("\n  file has {n} lines, output has {m}")
                } else {
                    String::new()
                };
                failed.push(format!("{}:\n{}{len}", f.display(), diff.join("\n")));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "golden output differs (rerun with UPDATE_GOLDEN=1 to accept):\n{}",
        failed.join("\n")
    );
}
