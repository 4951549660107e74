//! Linearizability checking of etcd KV histories.
//!
//! Test clients record what they did with a [`Recorder`] (call time, return time, request,
//! response; a failed write is kept as "maybe applied", a failed read is dropped); the
//! resulting [`History`] is checked with [`check_kv`] against a sequential model of etcd's KV
//! store. The history is linearizable when there is one total order of the operations that
//! (1) respects real time — an operation that returned before another was called comes first —
//! and (2) is a legal sequential execution of the model.
//!
//! * **P-compositionality**: linearizability is local, so the history is split by key and each
//!   key's sub-history is checked on its own ([`kv::KeyModel`], a single etcd key with its
//!   value and mod_revision). Operations on several keys are out of scope.
//! * **Search**: [`search`] is Wing & Gong's backtracking search with Lowe's improvements
//!   (entry list, lifting, memoization of (linearized set, state)), as in porcupine. It is
//!   bounded by [`CheckOptions`] (time and steps per key); when the bound is hit the result is
//!   [`CheckResult::Unknown`] — never a false `Ok`.
//! * **Explanations**: for an illegal key, [`report`] finds the *shortest failing prefix* of
//!   that key's history (the prefix ending at the return of operation X is already illegal and
//!   the one before X's return is not; an operation in flight at the cut counts as maybe
//!   applied, which makes legality of prefixes monotone) and prints the operations sorted by
//!   call time with X marked, plus the longest partial linearization the search found.
//!
//! Soundness rests on the timestamps: the call time must be taken before the request is sent
//! and the return time after the response arrived, on one clock ([`Recorder`] does both).

pub mod history;
pub mod kv;
pub mod patch;
mod report;
pub mod search;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

pub use history::{History, Operation, Recorder, Ticket};
pub use kv::{Expect, KvInput, KvOutput};
pub use patch::{patch_failed_writes, AppliedWrite, PatchStats};
pub use report::IllegalReport;

/// A history of KV operations.
pub type KvHistory = History<KvInput, KvOutput>;

/// Limits of [`check_kv`].
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Wall-clock limit for the whole check (all keys, and the explanation of a failure).
    pub timeout: Duration,
    /// Search steps allowed per key.
    pub max_steps_per_key: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_steps_per_key: 20_000_000,
        }
    }
}

/// The verdict of [`check_kv`].
#[derive(Debug, Clone)]
pub enum CheckResult {
    /// Every key's history is linearizable.
    Ok,
    /// A key's history is not linearizable (the first such key found).
    Illegal(Box<IllegalReport>),
    /// The search budget ran out on `key` before a verdict (no illegal key found before).
    Unknown { key: Vec<u8>, reason: String },
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    pub fn is_illegal(&self) -> bool {
        matches!(self, Self::Illegal(_))
    }

    /// Panic with the full explanation unless `Ok`.
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            panic!("linearizability check failed:\n{self}");
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => write!(f, "linearizable"),
            Self::Illegal(r) => write!(f, "{r}"),
            Self::Unknown { key, reason } => write!(
                f,
                "unknown (key {}): {reason}",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

/// Per-key statistics of a history, for test logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub keys: usize,
    pub ops: usize,
    /// Writes that never returned (outcome unknown, or learned afterwards by patching).
    pub maybe: usize,
    /// Failed reads (dropped before checking).
    pub failed_reads: usize,
    pub largest_partition: usize,
}

/// Split by key: drop failed reads; ops of each key in call order.
fn partitions(h: &KvHistory) -> BTreeMap<Vec<u8>, Vec<&Operation<KvInput, KvOutput>>> {
    let mut parts: BTreeMap<Vec<u8>, Vec<&Operation<KvInput, KvOutput>>> = BTreeMap::new();
    for op in &h.ops {
        if op.output.is_none() && op.input.is_read() {
            continue;
        }
        parts.entry(op.input.key().to_vec()).or_default().push(op);
    }
    for ops in parts.values_mut() {
        ops.sort_by_key(|o| (o.call, o.ret.unwrap_or(u64::MAX)));
    }
    parts
}

/// Counts for a history (see [`HistoryStats`]).
pub fn stats(h: &KvHistory) -> HistoryStats {
    let parts = partitions(h);
    HistoryStats {
        keys: parts.len(),
        ops: h.ops.len(),
        maybe: h
            .ops
            .iter()
            .filter(|o| o.ret.is_none() && !o.input.is_read())
            .count(),
        failed_reads: h
            .ops
            .iter()
            .filter(|o| o.output.is_none() && o.input.is_read())
            .count(),
        largest_partition: parts.values().map(Vec::len).max().unwrap_or(0),
    }
}

/// Check a KV history for linearizability, key by key.
pub fn check_kv(history: &KvHistory, opts: &CheckOptions) -> CheckResult {
    let deadline = Instant::now() + opts.timeout;
    let mut unknown = None;
    let owners = report::revision_owners(&history.ops);
    for (key, ops) in partitions(history) {
        let part = report::Partition::new(&key, &ops, &owners);
        let budget = search::Budget {
            deadline,
            max_steps: opts.max_steps_per_key,
        };
        match search::search(&part.model, &part.ops, budget) {
            search::Outcome::Ok => {}
            search::Outcome::Illegal { deepest } => {
                return CheckResult::Illegal(Box::new(part.explain(&deepest, opts)));
            }
            search::Outcome::Unknown { steps } => {
                if unknown.is_none() {
                    unknown = Some(CheckResult::Unknown {
                        reason: format!(
                            "search budget exhausted after {steps} steps on {} operations \
                             (timeout {:?}, max {} steps per key)",
                            ops.len(),
                            opts.timeout,
                            opts.max_steps_per_key
                        ),
                        key: key.clone(),
                    });
                }
            }
        }
    }
    unknown.unwrap_or(CheckResult::Ok)
}

/// [`check_kv`] with default options.
pub fn check_kv_default(history: &KvHistory) -> CheckResult {
    check_kv(history, &CheckOptions::default())
}

#[cfg(test)]
mod tests;
