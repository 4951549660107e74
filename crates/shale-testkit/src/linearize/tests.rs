//! Hand-made and randomized histories for the KV checker.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn put(c: usize, call: u64, ret: u64, v: &str, rev: i64) -> Operation<KvInput, KvOutput> {
    Operation::ok(
        c,
        call,
        ret,
        KvInput::put("k", v),
        KvOutput::Put {
            revision: Some(rev),
        },
    )
}

fn put_maybe(c: usize, call: u64, v: &str) -> Operation<KvInput, KvOutput> {
    Operation::maybe(c, call, KvInput::put("k", v))
}

fn get(c: usize, call: u64, ret: u64, v: Option<&str>) -> Operation<KvInput, KvOutput> {
    Operation::ok(
        c,
        call,
        ret,
        KvInput::get("k"),
        KvOutput::Get {
            value: v.map(|v| v.as_bytes().to_vec()),
            mod_revision: None,
        },
    )
}

fn cas(
    c: usize,
    call: u64,
    ret: u64,
    expect: &str,
    v: &str,
    ok: bool,
) -> Operation<KvInput, KvOutput> {
    Operation::ok(
        c,
        call,
        ret,
        KvInput::cas("k", Expect::Value(Some(expect.into())), v),
        KvOutput::Cas {
            succeeded: ok,
            revision: None,
        },
    )
}

fn check(ops: Vec<Operation<KvInput, KvOutput>>) -> CheckResult {
    check_kv_default(&History::new(ops))
}

#[test]
fn sequential_history_is_ok() {
    let r = check(vec![
        get(0, 0, 1, None),
        put(0, 2, 3, "a", 2),
        get(1, 4, 5, Some("a")),
        put(1, 6, 7, "b", 3),
        get(0, 8, 9, Some("b")),
    ]);
    r.assert_ok();
}

#[test]
fn stale_read_after_acknowledged_write_is_illegal() {
    let r = check(vec![
        put(0, 0, 10, "a", 2),
        put(0, 20, 30, "b", 3),
        get(1, 40, 50, Some("a")),
    ]);
    let CheckResult::Illegal(rep) = &r else {
        panic!("expected illegal, got {r}");
    };
    assert_eq!(rep.key, b"k");
    assert_eq!(rep.culprit, 2);
    let text = r.to_string();
    assert!(text.contains(">> #2"), "{text}");
    assert!(text.contains("NOT linearizable"), "{text}");
}

#[test]
fn read_of_a_value_never_written_is_illegal() {
    let r = check(vec![put(0, 0, 10, "a", 2), get(1, 5, 15, Some("zzz"))]);
    assert!(r.is_illegal(), "{r}");
}

#[test]
fn concurrent_writes_seen_in_both_orders_is_illegal() {
    // a and b written concurrently; c2 sees a then b, c3 (later) sees b then a
    let r = check(vec![
        put(0, 0, 100, "a", 2),
        put(1, 0, 100, "b", 3),
        get(2, 10, 20, Some("a")),
        get(2, 50, 60, Some("b")),
        get(3, 25, 35, Some("b")),
        get(3, 70, 80, Some("a")),
    ]);
    assert!(r.is_illegal(), "{r}");
    // one order only is fine
    let r = check(vec![
        Operation::ok(
            0,
            0,
            100,
            KvInput::put("k", "a"),
            KvOutput::Put { revision: None },
        ),
        Operation::ok(
            1,
            0,
            100,
            KvInput::put("k", "b"),
            KvOutput::Put { revision: None },
        ),
        get(2, 10, 20, Some("b")),
        get(3, 25, 35, Some("b")),
        get(2, 50, 60, Some("a")),
        get(3, 70, 80, Some("a")),
    ]);
    r.assert_ok();
}

#[test]
fn maybe_applied_writes() {
    // seen later: ok
    check(vec![
        put(0, 0, 10, "a", 2),
        put_maybe(1, 20, "b"),
        get(2, 100, 110, Some("b")),
    ])
    .assert_ok();
    // never seen: ok
    check(vec![
        put(0, 0, 10, "a", 2),
        put_maybe(1, 20, "b"),
        get(2, 100, 110, Some("a")),
    ])
    .assert_ok();
    // seen, then the older value again: illegal
    let r = check(vec![
        put(0, 0, 10, "a", 2),
        put_maybe(1, 20, "b"),
        get(2, 100, 110, Some("b")),
        get(2, 120, 130, Some("a")),
    ]);
    assert!(r.is_illegal(), "{r}");
    // seen before it was called: illegal
    let r = check(vec![
        put(0, 0, 10, "a", 2),
        get(2, 12, 15, Some("b")),
        put_maybe(1, 20, "b"),
    ]);
    assert!(r.is_illegal(), "{r}");
}

#[test]
fn failed_reads_are_dropped() {
    let h = History::new(vec![
        put(0, 0, 10, "a", 2),
        Operation::maybe(1, 20, KvInput::get("k")),
    ]);
    assert_eq!(stats(&h).failed_reads, 1);
    check_kv_default(&h).assert_ok();
}

#[test]
fn cas_semantics() {
    check(vec![
        put(0, 0, 10, "a", 2),
        cas(1, 20, 30, "a", "b", true),
        cas(2, 40, 50, "a", "c", false),
        get(0, 60, 70, Some("b")),
    ])
    .assert_ok();
    // two successful CAS from the same expected value: illegal
    let r = check(vec![
        put(0, 0, 10, "a", 2),
        cas(1, 20, 30, "a", "b", true),
        cas(2, 20, 30, "a", "c", true),
    ]);
    assert!(r.is_illegal(), "{r}");
    // a CAS that failed although its compare held (nothing concurrent): illegal
    let r = check(vec![put(0, 0, 10, "a", 2), cas(1, 20, 30, "a", "b", false)]);
    assert!(r.is_illegal(), "{r}");
}

#[test]
fn revisions_are_checked() {
    let get_rev = |call, v: &str, rev| {
        Operation::ok(
            1,
            call,
            call + 5,
            KvInput::get("k"),
            KvOutput::Get {
                value: Some(v.into()),
                mod_revision: Some(rev),
            },
        )
    };
    check(vec![put(0, 0, 10, "a", 7), get_rev(20, "a", 7)]).assert_ok();
    assert!(check(vec![put(0, 0, 10, "a", 7), get_rev(20, "a", 8)]).is_illegal());
    // a maybe-applied write's revision is learned from the first read
    check(vec![
        put_maybe(0, 0, "a"),
        get_rev(20, "a", 9),
        get_rev(30, "a", 9),
    ])
    .assert_ok();
    assert!(check(vec![
        put_maybe(0, 0, "a"),
        get_rev(20, "a", 9),
        get_rev(30, "a", 10)
    ])
    .is_illegal());
    // CAS on mod_revision
    let cas_rev = |call, rev, v: &str, ok| {
        Operation::ok(
            2,
            call,
            call + 5,
            KvInput::cas("k", Expect::ModRevision(rev), v),
            KvOutput::Cas {
                succeeded: ok,
                revision: None,
            },
        )
    };
    check(vec![
        put(0, 0, 10, "a", 7),
        cas_rev(20, 7, "b", true),
        get(1, 30, 40, Some("b")),
    ])
    .assert_ok();
    assert!(check(vec![put(0, 0, 10, "a", 7), cas_rev(20, 6, "b", true)]).is_illegal());
    // delete counts
    let del = |call, n| {
        Operation::ok(
            3,
            call,
            call + 5,
            KvInput::delete("k"),
            KvOutput::Delete {
                deleted: n,
                revision: None,
            },
        )
    };
    check(vec![
        del(0, 0),
        put(0, 10, 20, "a", 3),
        del(30, 1),
        get(1, 40, 50, None),
    ])
    .assert_ok();
    assert!(check(vec![put(0, 10, 20, "a", 3), del(30, 0)]).is_illegal());
}

#[test]
fn recorder_history_checks() {
    let rec: Recorder = Recorder::new();
    let t = rec.call(0, KvInput::put("x", "1"));
    rec.ret(t, KvOutput::Put { revision: Some(2) });
    let t = rec.call(1, KvInput::put("x", "2"));
    rec.fail(t);
    let t = rec.call(0, KvInput::get("x"));
    rec.ret(
        t,
        KvOutput::Get {
            value: Some(b"2".to_vec()),
            mod_revision: None,
        },
    );
    let _in_flight = rec.call(2, KvInput::put("y", "3"));
    let h = rec.history();
    assert_eq!(h.len(), 4);
    assert_eq!(stats(&h).maybe, 2);
    check_kv_default(&h).assert_ok();
}

/// A sequential etcd KV over a few keys, with a global revision.
struct Seq {
    rev: i64,
    kv: std::collections::HashMap<String, (String, i64)>,
}

impl Seq {
    fn apply(&mut self, input: &KvInput) -> KvOutput {
        let key = String::from_utf8_lossy(input.key()).into_owned();
        match input {
            KvInput::Get { .. } => {
                let cur = self.kv.get(&key);
                KvOutput::Get {
                    value: cur.map(|(v, _)| v.clone().into_bytes()),
                    mod_revision: cur.map(|(_, r)| *r),
                }
            }
            KvInput::Put { value, .. } => {
                self.rev += 1;
                let v = String::from_utf8_lossy(value).into_owned();
                self.kv.insert(key, (v, self.rev));
                KvOutput::Put {
                    revision: Some(self.rev),
                }
            }
            KvInput::Delete { .. } => {
                let deleted = i64::from(self.kv.remove(&key).is_some());
                self.rev += deleted;
                KvOutput::Delete {
                    deleted,
                    revision: Some(self.rev),
                }
            }
            KvInput::Cas { expect, value, .. } => {
                let cur = self.kv.get(&key);
                let holds = match expect {
                    Expect::Value(e) => cur.map(|(v, _)| v.as_bytes()) == e.as_deref(),
                    Expect::ModRevision(r) => cur.map_or(0, |(_, m)| *m) == *r,
                };
                if holds {
                    self.rev += 1;
                    let v = String::from_utf8_lossy(value).into_owned();
                    self.kv.insert(key, (v, self.rev));
                }
                KvOutput::Cas {
                    succeeded: holds,
                    revision: Some(self.rev),
                }
            }
        }
    }
}

/// A linearizable history: a sequential run, each op's interval drawn around its point.
/// Some writes fail (applied or not); returns the history.
fn random_history(rng: &mut StdRng, n: usize, keys: usize, width: u64) -> KvHistory {
    random_history_failing(rng, n, keys, width, 0.05)
}

fn random_history_failing(
    rng: &mut StdRng,
    n: usize,
    keys: usize,
    width: u64,
    fail: f64,
) -> KvHistory {
    let mut seq = Seq {
        rev: 1,
        kv: Default::default(),
    };
    let mut ops = Vec::new();
    let mut last_value: Vec<Option<String>> = vec![None; keys];
    let mut last_rev = vec![0i64; keys];
    for i in 0..n {
        let k = rng.random_range(0..keys);
        let key = format!("k{k}");
        let value = format!("v{i}");
        let input = match rng.random_range(0..10) {
            0..=3 => KvInput::get(key),
            4..=5 => KvInput::put(key, value),
            6 => KvInput::delete(key),
            7 => KvInput::cas(key, Expect::ModRevision(last_rev[k]), value),
            _ => KvInput::cas(
                key,
                Expect::Value(last_value[k].clone().map(String::into_bytes)),
                value,
            ),
        };
        let point = 1000 * (i as u64 + 1);
        let call = point - rng.random_range(0..width.min(point));
        let ret = point + rng.random_range(0..width);
        let client = rng.random_range(0..8);
        if !input.is_read() && rng.random_bool(fail) {
            // failed write: applied or not
            if rng.random_bool(0.5) {
                seq.apply(&input);
            }
            ops.push(Operation::maybe(client, call, input));
        } else {
            let out = seq.apply(&input);
            if let KvOutput::Get {
                value,
                mod_revision,
            } = &out
            {
                last_value[k] = value
                    .clone()
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                last_rev[k] = mod_revision.unwrap_or(0);
            }
            ops.push(Operation::ok(client, call, ret, input, out));
        }
    }
    History::new(ops)
}

#[test]
fn random_linearizable_histories_are_ok() {
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(seed);
        let width = [500, 3000, 10_000][seed as usize % 3];
        let h = random_history(&mut rng, 400, 3, width);
        let r = check_kv_default(&h);
        assert!(r.is_ok(), "seed {seed}: {r}");
    }
}

#[test]
fn mutated_histories_are_illegal() {
    let mut caught_any = 0;
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let mut h = random_history(&mut rng, 300, 2, 3000);
        // provably illegal: a completed read returns a value nobody wrote
        let reads: Vec<usize> = (0..h.ops.len())
            .filter(|i| h.ops[*i].input.is_read() && h.ops[*i].output.is_some())
            .collect();
        let mut bad = h.clone();
        let i = reads[rng.random_range(0..reads.len())];
        bad.ops[i].output = Some(KvOutput::Get {
            value: Some(b"never-written".to_vec()),
            mod_revision: None,
        });
        let r = check_kv_default(&bad);
        let CheckResult::Illegal(rep) = &r else {
            panic!("seed {seed}: expected illegal, got {r}");
        };
        assert_eq!(rep.key, bad.ops[i].input.key());
        // provably illegal: two completed puts of one key answering the same revision
        let puts: Vec<usize> = (0..h.ops.len())
            .filter(|i| {
                matches!(h.ops[*i].input, KvInput::Put { .. })
                    && h.ops[*i].output.is_some()
                    && h.ops[*i].input.key() == b"k0"
            })
            .collect();
        if puts.len() >= 2 {
            let rev = h.ops[puts[0]].output.clone();
            h.ops[puts[1]].output = rev;
            assert!(check_kv_default(&h).is_illegal(), "seed {seed}");
        }
        // likely but not provably illegal: a read returns another key-value seen elsewhere
        let mut other = random_history(&mut StdRng::seed_from_u64(seed), 300, 2, 3000);
        let reads: Vec<usize> = (0..other.ops.len())
            .filter(|i| other.ops[*i].input.is_read() && other.ops[*i].output.is_some())
            .collect();
        let (a, b) = (reads[0], reads[reads.len() - 1]);
        if other.ops[a].input.key() == other.ops[b].input.key()
            && other.ops[a].output != other.ops[b].output
        {
            other.ops[b].output = other.ops[a].output.clone();
            if check_kv_default(&other).is_illegal() {
                caught_any += 1;
            }
        }
    }
    eprintln!("stale-read mutations caught: {caught_any}");
}

#[test]
fn large_partition_is_checked_within_budget() {
    let mut rng = StdRng::seed_from_u64(7);
    let h = random_history(&mut rng, 5000, 1, 8000);
    let started = std::time::Instant::now();
    let r = check_kv_default(&h);
    eprintln!("5000 ops on one key: {r} in {:?}", started.elapsed());
    assert!(r.is_ok(), "{r}");
}

#[test]
fn print_example_report() {
    let r = check(vec![
        put(0, 0, 10, "a", 2),
        put(1, 5, 25, "b", 3),
        get(2, 12, 14, Some("a")),
        put_maybe(3, 30, "c"),
        get(2, 30, 40, Some("b")),
        get(1, 50, 60, Some("a")),
        get(0, 70, 80, Some("b")),
    ]);
    eprintln!("{r}");
    assert!(r.is_illegal());
}

#[test]
fn many_failed_writes_are_decided() {
    for seed in 0..5 {
        let mut rng = StdRng::seed_from_u64(500 + seed);
        let h = random_history_failing(&mut rng, 1500, 1, 5000, 0.3);
        let started = std::time::Instant::now();
        let r = check_kv(
            &h,
            &CheckOptions {
                timeout: std::time::Duration::from_secs(30),
                max_steps_per_key: 5_000_000,
            },
        );
        eprintln!(
            "seed {seed}: {:?}: {r} in {:?}",
            stats(&h),
            started.elapsed()
        );
        assert!(r.is_ok(), "seed {seed}: {r}");
    }
}

/// A client spinning on a cut link: a burst of failed, never-applied writes overlapping
/// everything after them. Interchangeable pending writes must not multiply the search.
#[test]
fn burst_of_failed_writes_is_decided() {
    let mut ops = vec![put(0, 0, 10, "a", 2)];
    for i in 0..200u64 {
        ops.push(Operation::maybe(
            1 + (i as usize % 3),
            20 + i,
            KvInput::put("k", format!("lost{i}")),
        ));
        ops.push(Operation::maybe(4, 20 + i, KvInput::delete("k")));
    }
    let mut t = 1000;
    for i in 0..50 {
        ops.push(get(0, t, t + 5, Some(if i == 0 { "a" } else { "x" })));
        ops.push(put(0, t + 10, t + 15, "x", 10 + i));
        t += 20;
    }
    ops.push(get(0, t, t + 5, Some("a")));
    let r = check_kv(
        &History::new(ops.clone()),
        &CheckOptions {
            timeout: std::time::Duration::from_secs(30),
            max_steps_per_key: 2_000_000,
        },
    );
    assert!(r.is_illegal(), "{r}");
    ops.pop();
    let r = check_kv(
        &History::new(ops),
        &CheckOptions {
            timeout: std::time::Duration::from_secs(30),
            max_steps_per_key: 2_000_000,
        },
    );
    assert!(r.is_ok(), "{r}");
}

/// Never-applied failed writes sprinkled over a history (it stays linearizable).
fn add_noise(rng: &mut StdRng, h: &mut KvHistory, n: usize, keys: usize) {
    let end = h.ops.iter().map(|o| o.call).max().unwrap_or(0);
    for i in 0..n {
        let key = format!("k{}", rng.random_range(0..keys));
        let kinds: u32 = std::env::var("NOISE_KIND")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(9);
        let kind = if kinds < 4 {
            kinds
        } else {
            rng.random_range(0..4)
        };
        let input = match kind {
            0 => KvInput::delete(key),
            1 => KvInput::cas(
                key,
                Expect::ModRevision(rng.random_range(0..50)),
                format!("n{i}"),
            ),
            2 => KvInput::cas(key, Expect::Value(None), format!("n{i}")),
            _ => KvInput::put(key, format!("n{i}")),
        };
        // bursts: most noise in a few narrow windows
        let call = if rng.random_bool(0.8) {
            (end / 5) * rng.random_range(1..4u64) + rng.random_range(0..2000)
        } else {
            rng.random_range(0..end.max(1))
        };
        h.ops.push(Operation::maybe(9, call, input));
    }
}

/// Noise makes proving illegality expensive (the whole space must be exhausted), so a mutated
/// history may come out `Unknown`; it must never come out `Ok`.
#[test]
fn noisy_histories_are_ok_and_mutations_caught() {
    let mut proven = 0;
    for seed in 0..30 {
        let mut rng = StdRng::seed_from_u64(7000 + seed);
        let mut h = random_history_failing(&mut rng, 600, 2, 4000, 0.1);
        add_noise(&mut rng, &mut h, 150, 2);
        let opts = CheckOptions {
            timeout: std::time::Duration::from_secs(60),
            max_steps_per_key: 1_000_000,
        };
        let r = check_kv(&h, &opts);
        assert!(r.is_ok(), "seed {seed}: {r}");
        let reads: Vec<usize> = (0..h.ops.len())
            .filter(|i| h.ops[*i].input.is_read() && h.ops[*i].output.is_some())
            .collect();
        let i = reads[rng.random_range(0..reads.len())];
        h.ops[i].output = Some(KvOutput::Get {
            value: Some(b"never-written".to_vec()),
            mod_revision: None,
        });
        let r = check_kv(&h, &opts);
        assert!(
            !r.is_ok(),
            "seed {seed}: a read of a value never written passed"
        );
        proven += usize::from(r.is_illegal());
    }
    eprintln!("mutations proven illegal: {proven} of 30");
    assert!(proven >= 10, "only {proven} of 30 mutations proven illegal");
}
