//! [`History`] and its thread-safe [`Recorder`].
//!
//! A history is the list of operations that clients issued, each with its client id, the time
//! it was called (taken *before* the request left the client), the time it returned (taken
//! *after* the response arrived) and its input and output. Times are nanoseconds since the
//! recorder was created, read from one monotonic clock ([`Instant`]) shared by every client, so
//! the real-time order of two operations on different clients is meaningful: if `a.ret <
//! b.call`, then `a` happened before `b` and any linearization must order them so.
//!
//! An operation whose outcome is unknown (an error, a timeout, a dropped connection) may or may
//! not have taken effect: the recorder keeps it with `ret = None` ("returns at +infinity") and
//! `output = None`, so the checker may linearize it anywhere after its call, or not at all.
//! Failed *reads* carry no information and are dropped by the KV checker
//! ([`crate::linearize::check_kv`]). An operation still in flight when the history is taken is
//! treated like a failed one.
//!
//! Invariants: `call <= ret` for every returned operation; a returned operation has an output.
//! An operation that never returned normally has none, but may get one afterwards when its
//! effect is learned elsewhere ([`crate::linearize::patch_failed_writes`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client issued it (a client issues one operation at a time).
    pub client: usize,
    /// Call time, nanoseconds on the history's clock.
    pub call: u64,
    /// Return time; `None` = never returned (failed or timed out): may or may not have applied.
    pub ret: Option<u64>,
    pub input: I,
    /// `Some` when `ret` is; `None` = unknown (a never-returned op may have a learned output).
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// A completed operation.
    pub fn ok(client: usize, call: u64, ret: u64, input: I, output: O) -> Self {
        Self {
            client,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    /// An operation whose outcome is unknown (it may or may not have taken effect).
    pub fn maybe(client: usize, call: u64, input: I) -> Self {
        Self {
            client,
            call,
            ret: None,
            input,
            output: None,
        }
    }
}

/// A list of operations, in no particular order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<I, O> {
    pub ops: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    pub fn new(ops: Vec<Operation<I, O>>) -> Self {
        Self { ops }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A call in flight; give it back to [`Recorder::ret`] or [`Recorder::fail`].
#[derive(Debug)]
#[must_use = "finish the call with Recorder::ret or Recorder::fail"]
pub struct Ticket(usize);

#[derive(Debug)]
enum Slot<I, O> {
    Pending { client: usize, call: u64, input: I },
    Done(Operation<I, O>),
    Taken,
}

struct Inner<I, O> {
    start: Instant,
    slots: Mutex<Vec<Slot<I, O>>>,
}

/// Records a [`History`] from many client threads. Cheap to clone (shared).
///
/// ```
/// use shale_testkit::linearize::{KvInput, KvOutput, Recorder};
/// let rec: Recorder = Recorder::new();
/// let t = rec.call(0, KvInput::put("k", "v1"));
/// rec.ret(t, KvOutput::Put { revision: Some(2) });
/// let t = rec.call(1, KvInput::get("k"));
/// rec.fail(t);
/// assert_eq!(rec.history().len(), 2);
/// ```
pub struct Recorder<I = super::KvInput, O = super::KvOutput> {
    inner: Arc<Inner<I, O>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slots: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the recorder was created (the history's clock).
    pub fn now(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot<I, O>>> {
        // a panicking client thread must not hide the history from the checker
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Record that `client` is about to send `input`; call right before sending.
    pub fn call(&self, client: usize, input: I) -> Ticket {
        let call = self.now();
        let mut slots = self.slots();
        slots.push(Slot::Pending {
            client,
            call,
            input,
        });
        Ticket(slots.len() - 1)
    }

    /// Record the response of a call; call right after it arrived.
    pub fn ret(&self, ticket: Ticket, output: O) {
        let ret = self.now();
        self.finish(ticket, Some((ret, output)));
    }

    /// Record that a call failed or timed out: it may or may not have taken effect.
    pub fn fail(&self, ticket: Ticket) {
        self.finish(ticket, None);
    }

    fn finish(&self, ticket: Ticket, result: Option<(u64, O)>) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(ticket.0) else {
            return;
        };
        if let Slot::Pending {
            client,
            call,
            input,
        } = std::mem::replace(slot, Slot::Taken)
        {
            let (ret, output) = match result {
                Some((ret, out)) => (Some(ret.max(call)), Some(out)),
                None => (None, None),
            };
            *slot = Slot::Done(Operation {
                client,
                call,
                ret,
                input,
                output,
            });
        }
    }

    /// Number of calls that returned successfully so far.
    pub fn completed(&self) -> usize {
        self.slots()
            .iter()
            .filter(|s| matches!(s, Slot::Done(op) if op.ret.is_some()))
            .count()
    }

    /// Number of calls recorded so far (any state).
    pub fn calls(&self) -> usize {
        self.slots().len()
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// A snapshot of the history; calls still in flight appear as failed (maybe applied).
    pub fn history(&self) -> History<I, O> {
        let ops = self
            .slots()
            .iter()
            .filter_map(|s| match s {
                Slot::Pending {
                    client,
                    call,
                    input,
                } => Some(Operation::maybe(*client, *call, input.clone())),
                Slot::Done(op) => Some(op.clone()),
                Slot::Taken => None,
            })
            .collect();
        History { ops }
    }
}
