//! Resolving maybe-applied writes from a complete log of applied writes ([`patch_failed_writes`]).
//!
//! Failed writes are what makes the search expensive: each may be linearized anywhere after
//! its call, or never, so a few hundred of them per key (a client retrying through a cut link)
//! blow up the state space. When every write that the server applied to the key space is
//! known — from a watch started before the workload and read until a write issued after it —
//! each failed write can be resolved exactly, because written values are unique:
//!
//! * a failed Put or CAS whose value appears in the log **was applied**, at that revision: it
//!   keeps `ret = None` (it may be linearized anywhere after its call) but gets its output
//!   (Put: that revision; CAS: succeeded at that revision), which pins its place;
//! * a failed Put or CAS whose value does not appear **had no effect** (never executed, or a
//!   CAS whose compare was false): it is dropped — a no-op linearizes anywhere;
//! * a failed Delete (no unique value to look for) stays maybe-applied.
//!
//! Soundness needs the log to be complete and to come from the same server history; a server
//! whose watch misses or invents events can make the result illegal, which is a bug too, and
//! the report names the write concerned.

use std::collections::HashMap;

use super::{KvHistory, KvInput, KvOutput};

/// One applied write from a watch: `value == None` is a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub revision: i64,
}

/// How [`patch_failed_writes`] resolved the failed writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchStats {
    /// Failed writes found in the log (kept, with their revision).
    pub applied: usize,
    /// Failed writes not in the log (dropped).
    pub dropped: usize,
    /// Failed deletes (left maybe-applied).
    pub unresolved: usize,
}

/// Resolve failed Puts and CASes with `log` (see the module docs).
pub fn patch_failed_writes(history: &KvHistory, log: &[AppliedWrite]) -> (KvHistory, PatchStats) {
    let applied: HashMap<(&[u8], &[u8]), i64> = log
        .iter()
        .filter_map(|w| {
            w.value
                .as_deref()
                .map(|v| ((w.key.as_slice(), v), w.revision))
        })
        .collect();
    let mut stats = PatchStats::default();
    let mut out = KvHistory::default();
    for op in &history.ops {
        if op.output.is_some() || op.ret.is_some() {
            out.ops.push(op.clone());
            continue;
        }
        let found = |key: &[u8], value: &[u8]| applied.get(&(key, value)).copied();
        let output = match &op.input {
            KvInput::Get { .. } => None, // failed read: dropped
            KvInput::Delete { .. } => {
                stats.unresolved += 1;
                out.ops.push(op.clone());
                continue;
            }
            KvInput::Put { key, value } => {
                found(key, value).map(|r| KvOutput::Put { revision: Some(r) })
            }
            KvInput::Cas { key, value, .. } => found(key, value).map(|r| KvOutput::Cas {
                succeeded: true,
                revision: Some(r),
            }),
        };
        match output {
            Some(o) => {
                stats.applied += 1;
                let mut op = op.clone();
                op.output = Some(o);
                out.ops.push(op);
            }
            None if op.input.is_read() => {}
            None => stats.dropped += 1,
        }
    }
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::super::{check_kv_default, Operation};
    use super::*;

    #[test]
    fn resolves_failed_writes() {
        let h = KvHistory::new(vec![
            Operation::ok(
                0,
                0,
                10,
                KvInput::put("k", "a"),
                KvOutput::Put { revision: Some(2) },
            ),
            Operation::maybe(1, 20, KvInput::put("k", "b")),
            Operation::maybe(2, 20, KvInput::put("k", "c")),
            Operation::maybe(3, 20, KvInput::delete("k")),
            Operation::maybe(4, 20, KvInput::get("k")),
        ]);
        let log = [AppliedWrite {
            key: b"k".to_vec(),
            value: Some(b"b".to_vec()),
            revision: 3,
        }];
        let (p, stats) = patch_failed_writes(&h, &log);
        assert_eq!(
            stats,
            PatchStats {
                applied: 1,
                dropped: 1,
                unresolved: 1
            }
        );
        assert_eq!(p.ops.len(), 3);
        assert_eq!(p.ops[1].output, Some(KvOutput::Put { revision: Some(3) }));
        check_kv_default(&p).assert_ok();
    }
}
