//! Watch correctness and delivery lag, checked against the revisions the writers were given.
//!
//! Model: every write a scenario makes is a single-key Txn, so it owns one revision and
//! produces exactly one event. Writers record each acknowledged revision, with the moment the
//! acknowledgement arrived, in the shared [`AckTable`]. Each watcher feeds every event it
//! receives to its own [`Continuity`], which enforces, per watcher:
//!
//! * revisions never go backwards (an older revision not seen before = **out of order**);
//! * no (revision, key) pair is delivered twice (= **duplicate**); several events may share
//!   a revision only when they are different keys (a lease expiry deletes all its keys in
//!   one revision);
//! * after the run, every acknowledged revision in `[start, end]` was seen (else **lost**),
//!   see [`Continuity::lost`].
//!
//! Delivery lag of an event = the moment the watcher got it minus the moment the writer got
//! the write's response, clamped at 0 (the event may overtake the response). Revisions the
//! writers did not make (lease-expiry deletes) have no lag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Ack times of the revisions `[base, base + capacity)`, written by writers, read by watchers.
#[derive(Debug)]
pub struct AckTable {
    base: i64,
    epoch: Instant,
    /// nanoseconds since `epoch` + 1; 0 = not acknowledged (yet)
    slots: Vec<AtomicU64>,
}

impl AckTable {
    pub fn new(base: i64, capacity: usize) -> Self {
        Self {
            base,
            epoch: Instant::now(),
            slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn base(&self) -> i64 {
        self.base
    }

    fn index(&self, rev: i64) -> Option<usize> {
        let i = usize::try_from(rev.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// A writer got revision `rev` acknowledged at `at`. Returns false if `rev` is outside
    /// the table (then it cannot be checked).
    pub fn ack(&self, rev: i64, at: Instant) -> bool {
        let Some(i) = self.index(rev) else {
            return false;
        };
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        self.slots[i].store(ns, Ordering::Release);
        true
    }

    pub fn is_acked(&self, rev: i64) -> bool {
        self.index(rev)
            .is_some_and(|i| self.slots[i].load(Ordering::Acquire) != 0)
    }

    /// Lag of an event of revision `rev` received at `now`.
    pub fn lag(&self, rev: i64, now: Instant) -> Lag {
        let Some(i) = self.index(rev) else {
            return Lag::Outside;
        };
        match self.slots[i].load(Ordering::Acquire) {
            0 => Lag::Pending,
            ns => Lag::Known(
                now.saturating_duration_since(self.epoch)
                    .saturating_sub(Duration::from_nanos(ns - 1)),
            ),
        }
    }

    /// Acknowledged revisions in `[from, to]`.
    pub fn acked_in(&self, from: i64, to: i64) -> u64 {
        (from..=to).filter(|r| self.is_acked(*r)).count() as u64
    }
}

/// Delivery lag of one event, see [`AckTable::lag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    Known(Duration),
    /// No ack (yet): either the event overtook its write's response (lag 0, once the ack
    /// arrives) or the revision is not a writer's (a lease-expiry delete; no lag).
    Pending,
    /// The revision is outside the table.
    Outside,
}

/// What [`Continuity::observe`] made of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Duplicate,
    OutOfOrder,
}

/// One watcher's event stream checker (see the module docs).
#[derive(Clone, Debug)]
pub struct Continuity {
    base: i64,
    seen: Vec<u64>,
    last_rev: i64,
    keys_at_last: Vec<Bytes>,
    delete_revs: Vec<i64>,
    pub events: u64,
    pub deletes: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl Continuity {
    /// A watcher that starts at revision `base` and can check `capacity` revisions.
    pub fn new(base: i64, capacity: usize) -> Self {
        Self {
            base,
            seen: vec![0; capacity.div_ceil(64)],
            last_rev: base - 1,
            keys_at_last: Vec::new(),
            delete_revs: Vec::new(),
            events: 0,
            deletes: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    pub fn last_rev(&self) -> i64 {
        self.last_rev
    }

    fn bit(&self, rev: i64) -> Option<(usize, u64)> {
        let i = usize::try_from(rev.checked_sub(self.base)?).ok()?;
        (i / 64 < self.seen.len()).then_some((i / 64, 1u64 << (i % 64)))
    }

    fn was_seen(&self, rev: i64) -> bool {
        self.bit(rev).is_some_and(|(w, m)| self.seen[w] & m != 0)
    }

    fn mark(&mut self, rev: i64) {
        if let Some((w, m)) = self.bit(rev) {
            self.seen[w] |= m;
        }
    }

    /// Check one event.
    pub fn observe(&mut self, rev: i64, key: &[u8], delete: bool) -> Verdict {
        self.events += 1;
        let v = self.classify(rev, key);
        if delete && v != Verdict::Duplicate {
            self.deletes += 1;
            self.delete_revs.push(rev);
        }
        v
    }

    fn classify(&mut self, rev: i64, key: &[u8]) -> Verdict {
        if rev > self.last_rev {
            self.last_rev = rev;
            self.keys_at_last.clear();
            self.keys_at_last.push(Bytes::copy_from_slice(key));
            self.mark(rev);
            return Verdict::Ok;
        }
        if rev == self.last_rev {
            if self.keys_at_last.iter().any(|k| k == key) {
                self.duplicates += 1;
                return Verdict::Duplicate;
            }
            self.keys_at_last.push(Bytes::copy_from_slice(key));
            return Verdict::Ok;
        }
        if self.was_seen(rev) {
            self.duplicates += 1;
            Verdict::Duplicate
        } else {
            self.mark(rev);
            self.out_of_order += 1;
            Verdict::OutOfOrder
        }
    }

    /// Delete events received with a revision `<= to`.
    pub fn deletes_upto(&self, to: i64) -> u64 {
        self.delete_revs.iter().filter(|r| **r <= to).count() as u64
    }

    /// Revisions in `[base, to]` that `expected` says were written but this watcher never saw.
    pub fn lost(&self, to: i64, expected: impl Fn(i64) -> bool) -> u64 {
        (self.base..=to)
            .filter(|r| expected(*r) && !self.was_seen(*r))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let acks = AckTable::new(10, 100);
        let now = Instant::now();
        for r in 10..20 {
            acks.ack(r, now);
        }
        let mut c = Continuity::new(10, 100);
        for r in 10..20 {
            assert_eq!(c.observe(r, b"k", false), Verdict::Ok);
        }
        assert_eq!(c.lost(19, |r| acks.is_acked(r)), 0);
        assert_eq!((c.duplicates, c.out_of_order, c.events), (0, 0, 10));
        assert_eq!(c.last_rev(), 19);
    }

    #[test]
    fn gaps_duplicates_and_reordering() {
        let acks = AckTable::new(1, 64);
        let t = Instant::now();
        for r in 1..=6 {
            acks.ack(r, t);
        }
        let mut c = Continuity::new(1, 64);
        assert_eq!(c.observe(1, b"a", false), Verdict::Ok);
        assert_eq!(c.observe(1, b"a", false), Verdict::Duplicate);
        assert_eq!(c.observe(3, b"a", false), Verdict::Ok);
        assert_eq!(c.observe(2, b"b", false), Verdict::OutOfOrder);
        assert_eq!(c.observe(2, b"b", false), Verdict::Duplicate);
        assert_eq!(c.observe(5, b"a", true), Verdict::Ok);
        // 4 and 6 never arrived
        assert_eq!(c.lost(6, |r| acks.is_acked(r)), 2);
        assert_eq!((c.duplicates, c.out_of_order, c.deletes), (2, 1, 1));
    }

    #[test]
    fn one_revision_many_keys() {
        // a lease expiry deletes several keys in one revision
        let mut c = Continuity::new(1, 8);
        assert_eq!(c.observe(4, b"a", true), Verdict::Ok);
        assert_eq!(c.observe(4, b"b", true), Verdict::Ok);
        assert_eq!(c.observe(4, b"a", true), Verdict::Duplicate);
        assert_eq!(c.lost(4, |r| r == 4), 0);
        assert_eq!(c.deletes_upto(4), 2);
        assert_eq!(c.deletes_upto(3), 0);
    }

    #[test]
    fn lag_from_ack() {
        let acks = AckTable::new(100, 10);
        let t0 = Instant::now();
        acks.ack(100, t0);
        let later = t0 + Duration::from_millis(5);
        let Lag::Known(lag) = acks.lag(100, later) else {
            panic!("ack recorded")
        };
        assert!(
            lag >= Duration::from_millis(4) && lag <= Duration::from_millis(6),
            "{lag:?}"
        );
        assert_eq!(acks.lag(101, later), Lag::Pending);
        assert_eq!(acks.lag(5000, later), Lag::Outside);
        assert!(!acks.ack(99, t0));
        assert_eq!(acks.acked_in(100, 109), 1);
    }
}
