//! Explaining an illegal key history: [`IllegalReport`].
//!
//! A key's operations are numbered `#0..` in call order. The report gives the *shortest failing
//! prefix*: the history cut at time `T` (operations called by `T` kept; those not returned by
//! `T` turned into maybe-applied writes, or dropped if reads) is illegal for `T` = the return
//! time of the culprit `X`, and legal for the return time just before. Cutting can only remove
//! constraints, so legality is monotone in `T` and a binary search over return times finds the
//! cut (a search that runs out of budget counts as "not proven illegal", which errs towards a
//! longer prefix, never a wrong one). The dump lists the prefix's operations by call time with
//! `X` marked `>>`, plus the longest partial linearization of that prefix the search found.

use std::fmt::{self, Write as _};
use std::time::Instant;

use super::kv::{CIn, COut, Interner, KeyModel, KeyState, Owner, Rev};
use super::search::{search, Budget, Model, Outcome, SearchOp};
use super::{CheckOptions, KvInput, KvOutput, Operation};

/// Why a key's history is not linearizable.
#[derive(Debug, Clone)]
pub struct IllegalReport {
    pub key: Vec<u8>,
    /// The culprit: the operation (index in call order) whose return makes the prefix illegal.
    pub culprit: usize,
    /// A readable explanation (culprit, partial linearization, state reached).
    pub explanation: String,
    /// The shortest failing prefix, sorted by call time, culprit marked.
    pub prefix_dump: String,
    /// Every operation of the key, sorted by call time.
    pub ops_dump: String,
}

const SHOWN_LINES: usize = 80;

impl fmt::Display for IllegalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.explanation)?;
        let lines: Vec<&str> = self.prefix_dump.lines().collect();
        if lines.len() > SHOWN_LINES {
            writeln!(
                f,
                "  ... {} earlier operations omitted (IllegalReport::prefix_dump has all) ...",
                lines.len() - SHOWN_LINES
            )?;
        }
        for l in &lines[lines.len().saturating_sub(SHOWN_LINES)..] {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// One key's operations, in call order, in both the caller's and the search's form.
pub(crate) struct Partition<'a> {
    key: Vec<u8>,
    orig: Vec<&'a Operation<KvInput, KvOutput>>,
    pub(crate) ops: Vec<SearchOp<CIn, COut>>,
    pub(crate) model: KeyModel,
    values: Vec<Vec<u8>>,
}

/// Who wrote each revision, as far as the outputs of a whole history tell: (key, value), with
/// `None` for a delete.
pub(crate) type RevisionOwners = std::collections::HashMap<i64, (Vec<u8>, Option<Vec<u8>>)>;

/// [`RevisionOwners`] of a history (the first claim of a revision wins; a revision claimed
/// twice is caught by the model anyway).
pub(crate) fn revision_owners(ops: &[Operation<KvInput, KvOutput>]) -> RevisionOwners {
    let mut owners = RevisionOwners::new();
    for op in ops {
        let key = op.input.key().to_vec();
        let claim = match (&op.input, &op.output) {
            (
                _,
                Some(KvOutput::Get {
                    value: Some(v),
                    mod_revision: Some(r),
                }),
            ) => Some((*r, Some(v.clone()))),
            (KvInput::Put { value, .. }, Some(KvOutput::Put { revision: Some(r) })) => {
                Some((*r, Some(value.clone())))
            }
            (
                KvInput::Cas { value, .. },
                Some(KvOutput::Cas {
                    succeeded: true,
                    revision: Some(r),
                }),
            ) => Some((*r, Some(value.clone()))),
            (
                _,
                Some(KvOutput::Delete {
                    deleted: 1,
                    revision: Some(r),
                }),
            ) => Some((*r, None)),
            _ => None,
        };
        if let Some((r, v)) = claim {
            owners.entry(r).or_insert((key, v));
        }
    }
    owners
}

impl<'a> Partition<'a> {
    /// `orig` must be sorted by call time.
    pub(crate) fn new(
        key: &[u8],
        orig: &[&'a Operation<KvInput, KvOutput>],
        owners: &RevisionOwners,
    ) -> Self {
        let mut interner = Interner::new(orig.iter().map(|o| (&o.input, o.output.as_ref())));
        let ops = orig
            .iter()
            .map(|o| SearchOp {
                call: o.call,
                ret: o.ret,
                input: interner.input(&o.input),
                output: o.output.as_ref().map(|out| interner.output(out)),
            })
            .collect();
        let model = KeyModel {
            owners: owners
                .iter()
                .map(|(r, (k, v))| {
                    let o = match v {
                        _ if k != key => Owner::OtherKey,
                        Some(v) => Owner::Value(interner.written(v)),
                        None => Owner::Delete,
                    };
                    (*r, o)
                })
                .collect(),
        };
        Self {
            key: key.to_vec(),
            orig: orig.to_vec(),
            ops,
            model,
            values: interner.values,
        }
    }

    /// The history cut at time `t`: op indices kept, and the ops.
    fn prefix(&self, t: u64) -> (Vec<usize>, Vec<SearchOp<CIn, COut>>) {
        let mut idx = Vec::new();
        let mut ops = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.call > t {
                continue;
            }
            match op.ret {
                Some(r) if r <= t => ops.push(op.clone()),
                _ if op.input == CIn::Get => continue,
                _ => ops.push(SearchOp {
                    call: op.call,
                    ret: None,
                    input: op.input.clone(),
                    output: None,
                }),
            }
            idx.push(i);
        }
        (idx, ops)
    }

    pub(crate) fn explain(&self, full_deepest: &[usize], opts: &CheckOptions) -> IllegalReport {
        let deadline = Instant::now() + opts.timeout;
        let budget = Budget {
            deadline,
            max_steps: opts.max_steps_per_key,
        };
        let mut returns: Vec<u64> = self.ops.iter().filter_map(|o| o.ret).collect();
        returns.sort_unstable();
        returns.dedup();
        // smallest i with prefix(returns[i]) illegal; the whole history is illegal
        let (mut lo, mut hi) = (0usize, returns.len().saturating_sub(1));
        // (prefix index, kept op indices, deepest partial linearization in op indices)
        let mut best: Option<(usize, Vec<usize>, Vec<usize>)> = None;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (idx, ops) = self.prefix(returns[mid]);
            match search(&self.model, &ops, budget) {
                Outcome::Illegal { deepest } => {
                    let d = deepest.iter().map(|d| idx[*d]).collect();
                    best = Some((mid, idx, d));
                    hi = mid;
                }
                _ => lo = mid + 1,
            }
        }
        let cut = returns.get(lo).copied().unwrap_or(u64::MAX);
        let (kept, deepest) = match best {
            Some((at, kept, deepest)) if at == lo => (kept, deepest),
            _ => {
                let (kept, ops) = self.prefix(cut);
                match search(&self.model, &ops, budget) {
                    Outcome::Illegal { deepest } => {
                        let d = deepest.iter().map(|d| kept[*d]).collect();
                        (kept, d)
                    }
                    _ => ((0..self.ops.len()).collect(), full_deepest.to_vec()),
                }
            }
        };
        let culprits: Vec<usize> = kept
            .iter()
            .copied()
            .filter(|i| self.ops[*i].ret == Some(cut))
            .collect();
        let culprit = culprits.first().copied().unwrap_or(0);

        let mut ex = String::new();
        let maybe = self.ops.iter().filter(|o| o.ret.is_none()).count();
        let _ = writeln!(
            ex,
            "key {:?}: NOT linearizable ({} operations, {maybe} maybe-applied).",
            String::from_utf8_lossy(&self.key),
            self.ops.len()
        );
        let _ = writeln!(
            ex,
            "The shortest failing prefix ends at the return of {} (at {}); the history up to \
             the previous return is linearizable.",
            culprits
                .iter()
                .map(|c| format!("#{c} {}", self.describe(*c)))
                .collect::<Vec<_>>()
                .join(" and "),
            secs(cut)
        );
        let state = self.replay(&deepest);
        let _ = writeln!(
            ex,
            "Longest partial linearization found ({} of {} ops in the prefix): {}",
            deepest.len(),
            kept.len(),
            deepest
                .iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(ex, "  reaching state: {}", self.state(state.as_ref()));
        let lin: std::collections::HashSet<usize> = deepest.iter().copied().collect();
        if let Some(next) = kept
            .iter()
            .copied()
            .filter(|i| !lin.contains(i) && self.ops[*i].ret.is_some_and(|r| r <= cut))
            .min_by_key(|i| self.ops[*i].ret)
        {
            let _ = writeln!(
                ex,
                "  from there, #{next} {} (the earliest return not yet linearized) cannot be \
                 explained",
                self.describe(next)
            );
        }
        let _ = write!(
            ex,
            "Operations of the prefix by call time (seconds since start; '>>' = culprit):"
        );
        let mark: std::collections::HashSet<usize> = culprits.iter().copied().collect();
        IllegalReport {
            key: self.key.clone(),
            culprit,
            explanation: ex,
            prefix_dump: self.dump(kept.iter().copied(), &mark, Some(cut)),
            ops_dump: self.dump(0..self.ops.len(), &mark, None),
        }
    }

    /// Replay a linearization (first legal alternative at each step).
    fn replay(&self, order: &[usize]) -> Option<KeyState> {
        let mut s = self.model.init();
        for i in order {
            let op = &self.ops[*i];
            s = self
                .model
                .step(&s, &op.input, op.output.as_ref())
                .into_iter()
                .next()?;
        }
        Some(s)
    }

    fn state(&self, s: Option<&KeyState>) -> String {
        let Some(s) = s else {
            return "(not replayable)".into();
        };
        let rev = match &s.rev {
            Rev::Known(r) => r.to_string(),
            Rev::Unknown(not) if not.is_empty() => "unknown".into(),
            Rev::Unknown(not) => format!("unknown, not {not:?}"),
        };
        match s.value {
            Some(v) => format!(
                "value {}, mod_revision {rev}, highest revision so far {}",
                self.val(v),
                s.floor
            ),
            None => format!("absent, highest revision so far {}", s.floor),
        }
    }

    fn val(&self, v: u32) -> String {
        let bytes = usize::try_from(v)
            .ok()
            .and_then(|v| self.values.get(v))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let short: String = bytes.chars().take(40).collect();
        format!("{short:?}")
    }

    fn describe(&self, i: usize) -> String {
        let o = self.orig[i];
        let input = match &o.input {
            KvInput::Get { .. } => "Get".to_string(),
            KvInput::Put { value, .. } => format!("Put({})", lossy(value)),
            KvInput::Delete { .. } => "Delete".to_string(),
            KvInput::Cas { expect, value, .. } => {
                let e = match expect {
                    super::Expect::Value(Some(v)) => format!("value=={}", lossy(v)),
                    super::Expect::Value(None) => "absent".to_string(),
                    super::Expect::ModRevision(r) => format!("mod_rev=={r}"),
                };
                format!("Cas(if {e} then Put({}))", lossy(value))
            }
        };
        let rev = |r: &Option<i64>| r.map(|r| format!(" @rev {r}")).unwrap_or_default();
        let output = match &o.output {
            None => "? (maybe applied)".to_string(),
            Some(KvOutput::Get {
                value,
                mod_revision,
            }) => format!(
                "{}{}",
                value.as_deref().map_or("absent".to_string(), lossy),
                rev(mod_revision)
            ),
            Some(KvOutput::Put { revision }) => format!("ok{}", rev(revision)),
            Some(KvOutput::Delete { deleted, revision }) => {
                format!("deleted {deleted}{}", rev(revision))
            }
            Some(KvOutput::Cas {
                succeeded,
                revision,
            }) => format!(
                "{}{}",
                if *succeeded { "succeeded" } else { "failed" },
                rev(revision)
            ),
        };
        format!("c{} {input} -> {output}", o.client)
    }

    fn dump(
        &self,
        idx: impl Iterator<Item = usize>,
        mark: &std::collections::HashSet<usize>,
        cut: Option<u64>,
    ) -> String {
        let mut s = String::new();
        for i in idx {
            let o = &self.ops[i];
            let ret = match (o.ret, cut) {
                (Some(r), Some(c)) if r > c => format!("{} (after cut)", secs(r)),
                (Some(r), _) => secs(r),
                (None, _) => "never".into(),
            };
            let _ = writeln!(
                s,
                "{} #{i:<5} [{:>14} .. {:>14}] {}",
                if mark.contains(&i) { ">>" } else { "  " },
                secs(o.call),
                ret,
                self.describe(i)
            );
        }
        s
    }
}

fn lossy(v: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(v).chars().take(40).collect();
    format!("{s:?}")
}

/// Seconds since the recorder started, to the nanosecond.
fn secs(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}
