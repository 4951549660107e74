//! The linearizability search: Wing & Gong's algorithm with Lowe's improvements (the algorithm
//! of porcupine and Knossos' "wgl" checker), generic over a sequential [`Model`].
//!
//! The history becomes a doubly linked list of *call* and *return* entries sorted by time (a
//! call sorts before a return at the same instant, so touching operations count as concurrent,
//! which can only make the checker more permissive). The search walks the list from its head:
//!
//! * at a **call** entry, it tries to linearize that operation next: ask the model for the
//!   states after it; if one is legal and the pair *(set of linearized operations, state)* has
//!   not been seen before (the memoization cache), push a frame, remove ("lift") the call and
//!   its return from the list and restart at the head;
//! * at a **return** entry, the operation returning here should already have been linearized
//!   and was not: the current prefix is a dead end, so pop the last frame, put its entries back
//!   ("unlift"), restore its state and try its next alternative state, or the next entry after it.
//!
//! The history is linearizable when every operation that returned has been linearized:
//! operations that never returned (`ret = None`, sorted after everything) may always be placed
//! after all others, where nothing observes them, so the search stops as soon as only they are
//! left. It is not linearizable when a return entry is reached with an empty stack.
//!
//! Models may be nondeterministic (the KV model does not always know a write's revision):
//! `step` returns every possible next state, and each is a branch of the search.
//!
//! **Interchangeable pending operations.** Two operations that never returned and have equal
//! inputs and outputs have the same effect on every state and no real-time constraint at their
//! end, so the one called first dominates: whatever linearizing the later one now allows,
//! linearizing the earlier one allows too. The search therefore only tries a pending operation
//! once every earlier-called pending operation equal to it is linearized. This turns a burst
//! of `k` identical failed writes (a client retrying through a cut link; the KV model maps
//! every value nobody observed to one anonymous value to make them equal) from `2^k` subsets
//! into `k + 1` prefixes.
//!
//! A pending operation whose step leaves the state unchanged is not linearized there: leaving
//! it pending allows strictly more.
//!
//! **Dominance in the cache.** Pending operations never constrain the end of the search, so a
//! node (returned ops `R`, pending ops `P`, state `S`) can do everything a node `(R, P', S)`
//! with `P ⊆ P'` can: the next returns that must be met are the same, and it has every option
//! the other has. The cache keeps, per `(R, S)`, the minimal pending sets explored, and a node
//! dominated by an explored one (finished, or an ancestor on the current path) is skipped. It
//! stays complete: take a visited node with the shortest completion `σ`; its child along `σ`
//! was either visited (a shorter completion, contradiction) or dominated by a visited node,
//! which then has the same shorter completion. Consecutive pending writes that leave the same
//! state (e.g. two failed writes of unobserved values) thus collapse to one.
//!
//! Invariants: the list minus lifted entries holds exactly the unlinearized operations; a
//! frame's alternatives are only the states not yet tried for that operation at that point; a
//! node is explored only if no explored node with the same returned ops and state had a subset
//! of its pending ops. The search is bounded by a [`Budget`]
//! (wall-clock deadline and step count); running out yields [`Outcome::Unknown`], never `Ok`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + std::fmt::Debug;
    type Input: Eq + Hash;
    type Output: Eq + Hash;

    fn init(&self) -> Self::State;

    /// Every state the object may be in after `input` ran in `state` and answered `output`
    /// (`None` = the answer is unknown). Empty when that answer is impossible.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;
}

/// An operation as the search sees it.
#[derive(Debug, Clone)]
pub struct SearchOp<I, O> {
    pub call: u64,
    /// `None`: never returned, sorts after every time.
    pub ret: Option<u64>,
    pub input: I,
    pub output: Option<O>,
}

/// Limits of one search.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    pub max_steps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Not linearizable; `deepest` is the longest partial linearization found (op indices in
    /// linearization order).
    Illegal {
        deepest: Vec<usize>,
    },
    /// The budget ran out after `steps` steps.
    Unknown {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The entry list: index 0 is the head sentinel, entries 1..=2n are calls and returns.
struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call entry, its return entry.
    matching: Vec<usize>,
}

impl List {
    fn new<I, O>(ops: &[SearchOp<I, O>]) -> Self {
        // (time, is_return, op): calls before returns at equal times
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i));
            events.push((op.ret.unwrap_or(u64::MAX), true, i));
        }
        events.sort_unstable();
        let len = events.len() + 1;
        let mut list = Self {
            next: vec![NIL; len],
            prev: vec![NIL; len],
            op: vec![NIL; len],
            is_call: vec![false; len],
            matching: vec![NIL; len],
        };
        let mut call_entry = vec![NIL; ops.len()];
        for (k, &(_, is_ret, op)) in events.iter().enumerate() {
            let e = k + 1;
            list.prev[e] = e - 1;
            list.next[e - 1] = e;
            list.op[e] = op;
            list.is_call[e] = !is_ret;
            if is_ret {
                list.matching[call_entry[op]] = e;
            } else {
                call_entry[op] = e;
            }
        }
        list
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Remove a call entry and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.matching[call]);
    }

    /// Undo `lift` (the exact reverse order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.matching[call]);
        self.relink(call);
    }
}

/// A set of operation indices; compacted for the cache (the set is mostly a dense prefix).
#[derive(Clone)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// (number of leading all-ones words, the rest without trailing zero words)
    fn key(&self) -> (u32, Box<[u64]>) {
        let full = self.0.iter().take_while(|w| **w == u64::MAX).count();
        let end = self.0.iter().rposition(|w| *w != 0).map_or(0, |p| p + 1);
        let rest = if end > full {
            self.0[full..end].into()
        } else {
            Box::default()
        };
        (u32::try_from(full).unwrap_or(u32::MAX), rest)
    }
}

/// The memoization cache: for each (compacted set of linearized *returned* ops, state), the
/// sets of linearized *pending* ops explored with it.
type Cache<S> = HashMap<((u32, Box<[u64]>), S), Vec<Box<[u64]>>>;

fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// The linearized operations: returned ones by op index, pending ones by pending index.
struct Linearized {
    finite: BitSet,
    pending: BitSet,
    /// op index -> pending index
    pidx: Vec<Option<usize>>,
}

impl Linearized {
    fn set(&mut self, op: usize) {
        match self.pidx[op] {
            Some(p) => self.pending.set(p),
            None => self.finite.set(op),
        }
    }
    fn clear(&mut self, op: usize) {
        match self.pidx[op] {
            Some(p) => self.pending.clear(p),
            None => self.finite.clear(op),
        }
    }
    fn get(&self, op: usize) -> bool {
        match self.pidx[op] {
            Some(p) => self.pending.get(p),
            None => self.finite.get(op),
        }
    }

    /// Record (self, state) in the cache unless an explored node dominates it: same returned
    /// ops and state, and a subset of its pending ops (see the module docs). True if new.
    fn visit<S: Clone + Eq + Hash>(&self, state: &S, cache: &mut Cache<S>) -> bool {
        let seen = cache.entry((self.finite.key(), state.clone())).or_default();
        let mine = &self.pending.0;
        if seen.iter().any(|e| subset(e, mine)) {
            return false;
        }
        seen.retain(|e| !subset(mine, e));
        seen.push(mine.clone().into_boxed_slice());
        true
    }
}

struct Frame<S> {
    entry: usize,
    prev_state: S,
    alternatives: Vec<S>,
}

/// For each pending op, the previous-called pending op equal to it (see the module docs).
fn interchangeable<I: Eq + Hash, O: Eq + Hash>(ops: &[SearchOp<I, O>]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..ops.len()).filter(|i| ops[*i].ret.is_none()).collect();
    order.sort_by_key(|i| (ops[*i].call, *i));
    let mut last: std::collections::HashMap<(&I, Option<&O>), usize> = Default::default();
    let mut after = vec![None; ops.len()];
    for i in order {
        let class = (&ops[i].input, ops[i].output.as_ref());
        after[i] = last.insert(class, i);
    }
    after
}

/// Is `ops` linearizable with respect to `model`?
pub fn search<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Input, M::Output>],
    budget: Budget,
) -> Outcome {
    let mut list = List::new(ops);
    let finite_total = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut finite_done = 0usize;
    let mut pidx = vec![None; ops.len()];
    let mut pending_count = 0;
    for (i, o) in ops.iter().enumerate() {
        if o.ret.is_none() {
            pidx[i] = Some(pending_count);
            pending_count += 1;
        }
    }
    let mut linearized = Linearized {
        finite: BitSet::new(ops.len()),
        pending: BitSet::new(pending_count),
        pidx,
    };
    let mut cache: Cache<M::State> = HashMap::new();
    let mut state = model.init();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut deepest: Vec<usize> = Vec::new();
    let mut steps: u64 = 0;
    let mut entry = list.next[HEAD];
    let after = interchangeable(ops);

    // Take the first alternative whose (set + op, state) is new; the op's bit is left set on
    // success and cleared on failure.
    let take = |alts: &mut Vec<M::State>,
                linearized: &mut Linearized,
                cache: &mut Cache<M::State>,
                op: usize|
     -> Option<M::State> {
        linearized.set(op);
        while let Some(s) = alts.pop() {
            if linearized.visit(&s, cache) {
                return Some(s);
            }
        }
        linearized.clear(op);
        None
    };

    loop {
        if finite_done == finite_total {
            return Outcome::Ok;
        }
        if entry == NIL {
            // unreachable while finite ops remain (their returns are in the list); be safe
            return Outcome::Unknown { steps };
        }
        if list.is_call[entry] && after[list.op[entry]].is_some_and(|a| !linearized.get(a)) {
            // an equal pending op called earlier is not linearized yet: not a step
            entry = list.next[entry];
            continue;
        }
        steps += 1;
        if steps > budget.max_steps
            || (steps.is_multiple_of(1024) && Instant::now() >= budget.deadline)
        {
            return Outcome::Unknown { steps };
        }
        if list.is_call[entry] {
            let op = list.op[entry];
            let mut alts = model.step(&state, &ops[op].input, ops[op].output.as_ref());
            if ops[op].ret.is_none() {
                // a pending op that changes nothing is better left pending
                alts.retain(|a| *a != state);
            }
            alts.reverse(); // `take` pops: try them in the model's order
            if let Some(next) = take(&mut alts, &mut linearized, &mut cache, op) {
                let prev_state = std::mem::replace(&mut state, next);
                stack.push(Frame {
                    entry,
                    prev_state,
                    alternatives: alts,
                });
                if ops[op].ret.is_some() {
                    finite_done += 1;
                }
                list.lift(entry);
                if stack.len() > deepest.len() {
                    deepest = stack.iter().map(|f| list.op[f.entry]).collect();
                }
                entry = list.next[HEAD];
            } else {
                entry = list.next[entry];
            }
            continue;
        }
        // a return entry of an unlinearized op: backtrack
        let Some(mut frame) = stack.pop() else {
            return Outcome::Illegal { deepest };
        };
        let op = list.op[frame.entry];
        linearized.clear(op);
        if ops[op].ret.is_some() {
            finite_done -= 1;
        }
        state = frame.prev_state.clone();
        list.unlift(frame.entry);
        if let Some(next) = take(&mut frame.alternatives, &mut linearized, &mut cache, op) {
            frame.prev_state = std::mem::replace(&mut state, next);
            if ops[op].ret.is_some() {
                finite_done += 1;
            }
            list.lift(frame.entry);
            stack.push(frame);
            entry = list.next[HEAD];
        } else {
            entry = list.next[frame.entry];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A register: Some(v) = write v, None = read; output = value read.
    struct Register;
    impl Model for Register {
        type State = u32;
        type Input = Option<u32>;
        type Output = u32;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, input: &Option<u32>, out: Option<&u32>) -> Vec<u32> {
            match (input, out) {
                (Some(v), _) => vec![*v],
                (None, Some(r)) if r == s => vec![*s],
                (None, None) => vec![*s],
                _ => vec![],
            }
        }
    }

    fn op(call: u64, ret: Option<u64>, input: Option<u32>, out: u32) -> SearchOp<Option<u32>, u32> {
        SearchOp {
            call,
            ret,
            input,
            output: ret.map(|_| out),
        }
    }

    fn budget() -> Budget {
        Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            max_steps: 1_000_000,
        }
    }

    #[test]
    fn register_basics() {
        // w1 [0,10] ; r->1 [20,30]
        let ok = [op(0, Some(10), Some(1), 0), op(20, Some(30), None, 1)];
        assert_eq!(search(&Register, &ok, budget()), Outcome::Ok);
        // stale: r->0 after w1 returned
        let bad = [op(0, Some(10), Some(1), 0), op(20, Some(30), None, 0)];
        assert!(matches!(
            search(&Register, &bad, budget()),
            Outcome::Illegal { .. }
        ));
        // concurrent: either value is fine
        let conc = [op(0, Some(30), Some(1), 0), op(10, Some(20), None, 0)];
        assert_eq!(search(&Register, &conc, budget()), Outcome::Ok);
        // maybe-applied write observed later
        let maybe = [op(0, None, Some(7), 0), op(20, Some(30), None, 7)];
        assert_eq!(search(&Register, &maybe, budget()), Outcome::Ok);
    }

    #[test]
    fn budget_exhaustion_is_unknown() {
        let ops: Vec<_> = (0..50)
            .map(|i| op(i, Some(1000 + i), Some(i as u32), 0))
            .chain([op(2000, Some(2001), None, 999)])
            .collect();
        let tiny = Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            max_steps: 10,
        };
        assert!(matches!(
            search(&Register, &ops, tiny),
            Outcome::Unknown { .. }
        ));
    }
}
