//! [`Lessor`]: leases, their attached keys and their expiry clocks.
//!
//! Two kinds of state live here, kept strictly apart:
//! * *Replicated* state, changed only by applied commands: which leases exist, their granted
//!   TTL, and which keys are attached (derived from the keys' `lease` field, so it is rebuilt
//!   from the MVCC store on open and never stored twice). Lease records are persisted under
//!   `l/` + id (8 bytes big-endian) in the same batch as the command that made them.
//! * *Local* state: each lease's expiry instant. Only the leader acts on it (by proposing a
//!   revoke through consensus, which every member then applies identically). A member that
//!   becomes leader, or restarts, first extends every lease by its full TTL, as etcd does, so
//!   a leadership change never expires leases early.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The smallest TTL etcd grants with default timings (1.5 × election timeout, rounded up).
pub const DEFAULT_MIN_TTL: i64 = 2;

/// One lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    /// TTL in seconds, as granted (after the minimum was applied).
    pub ttl: i64,
    pub keys: BTreeSet<Bytes>,
    /// Local expiry clock (not replicated).
    pub expiry: Instant,
}

/// All leases of the state machine.
#[derive(Debug)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
    min_ttl: i64,
}

/// Storage key of a lease record.
pub fn lease_key(id: i64) -> Vec<u8> {
    let mut k = b"l/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub const LEASE_PREFIX: &[u8] = b"l/";

impl Lessor {
    pub fn new(min_ttl: i64) -> Self {
        Self {
            leases: BTreeMap::new(),
            min_ttl,
        }
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The TTL a grant of `ttl` really gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    /// Adds a lease (apply path; the caller checked it does not exist).
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> &Lease {
        let ttl = self.effective_ttl(ttl);
        self.leases.entry(id).or_insert(Lease {
            id,
            ttl,
            keys: BTreeSet::new(),
            expiry: now + secs(ttl),
        })
    }

    /// Restores a persisted lease on open (expiry restarts at a full TTL).
    pub fn restore(&mut self, id: i64, ttl: i64, now: Instant) {
        self.leases.insert(
            id,
            Lease {
                id,
                ttl,
                keys: BTreeSet::new(),
                expiry: now + secs(ttl),
            },
        );
    }

    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        self.leases.remove(&id)
    }

    pub fn attach(&mut self, id: i64, key: &Bytes) {
        if let Some(l) = self.leases.get_mut(&id) {
            if !l.keys.contains(key) {
                // Own copy: `key` may be a slice of a whole received batch.
                l.keys.insert(Bytes::copy_from_slice(key));
            }
        }
    }

    pub fn detach(&mut self, id: i64, key: &Bytes) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Extends a lease by its TTL (keep-alive); returns the TTL, or None if unknown.
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<i64> {
        let l = self.leases.get_mut(&id)?;
        l.expiry = now + secs(l.ttl);
        Some(l.ttl)
    }

    /// Restarts every lease's clock at a full TTL (on becoming leader).
    pub fn promote(&mut self, now: Instant) {
        for l in self.leases.values_mut() {
            l.expiry = now + secs(l.ttl);
        }
    }

    /// Remaining whole seconds of a lease (etcd truncates), or None if unknown.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<i64> {
        let l = self.leases.get(&id)?;
        Some(l.expiry.saturating_duration_since(now).as_secs() as i64)
    }

    /// Leases whose clock ran out, oldest expiry first, at most `max`.
    pub fn expired(&self, now: Instant, max: usize) -> Vec<i64> {
        let mut v: Vec<(Instant, i64)> = self
            .leases
            .values()
            .filter(|l| l.expiry <= now)
            .map(|l| (l.expiry, l.id))
            .collect();
        v.sort();
        v.into_iter().take(max).map(|(_, id)| id).collect()
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_applies_minimum_and_expiry_is_local() {
        let now = Instant::now();
        let mut l = Lessor::new(2);
        assert_eq!(l.grant(1, 1, now).ttl, 2);
        assert_eq!(l.grant(2, 10, now).ttl, 10);
        assert_eq!(l.expired(now + Duration::from_secs(3), 10), vec![1]);
        assert_eq!(l.renew(1, now + Duration::from_secs(3)), Some(2));
        assert!(l.expired(now + Duration::from_secs(4), 10).is_empty());
        assert_eq!(l.remaining(2, now + Duration::from_millis(2500)), Some(7));
        let k = Bytes::from_static(b"k");
        l.attach(2, &k);
        assert_eq!(l.get(2).map(|x| x.keys.len()), Some(1));
        l.detach(2, &k);
        assert_eq!(l.get(2).map(|x| x.keys.len()), Some(0));
        assert_eq!(l.renew(9, now), None);
    }
}
