//! [`TreeIndex`]: an ordered map from key to [`KeyIndex`], the in-memory index of all history.
//!
//! Reads ask "which revision of each key in this range is visible at revision `r`?"; the
//! values themselves live in storage under those revisions. The index only grows at
//! revisions above the published revision, so readers at a published revision see a stable
//! answer while the applier is adding the next changes.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::key_index::{KeyAt, KeyIndex};
use crate::key_range::KeyRange;
use crate::revision::Revision;

/// The index of every key's history.
#[derive(Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Bytes, KeyIndex>,
}

impl TreeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// The change visible at `at` and the lease of the key's latest put (0 if none).
    pub fn get_with_lease(&self, key: &[u8], at: i64) -> Option<(KeyAt, i64)> {
        let ki = self.keys.get(key)?;
        Some((ki.get(at)?, ki.lease))
    }

    pub fn put(&mut self, key: &Bytes, rev: Revision) {
        self.put_leased(key, rev, 0, rev.main);
    }

    /// Records a put at `rev` that attaches the key to `lease` (0 = none), and returns what
    /// [`TreeIndex::get_with_lease`] at `at` returned just before: the applier's overwrite
    /// needs both, and one descent of the tree is half the cache misses of two (the tree's
    /// nodes are cold at 20,000 keys and more).
    pub fn put_leased(
        &mut self,
        key: &Bytes,
        rev: Revision,
        lease: i64,
        at: i64,
    ) -> Option<(KeyAt, i64)> {
        match self.keys.get_mut(key.as_ref()) {
            Some(ki) => {
                let before = ki.get(at).map(|a| (a, ki.lease));
                ki.put(rev);
                ki.lease = lease;
                before
            }
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev);
                ki.lease = lease;
                // Own copy: `key` may be a slice of a whole received request or batch,
                // which the index would otherwise keep alive.
                self.keys.insert(Bytes::copy_from_slice(key), ki);
                None
            }
        }
    }

    /// Records a delete; false when the key is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Loading path: see [`KeyIndex::restore`]; `lease` is the restored change's lease.
    pub fn restore(
        &mut self,
        key: &Bytes,
        created: Revision,
        modified: Revision,
        version: i64,
        lease: i64,
    ) {
        let ki = self.keys.entry(key.clone()).or_default();
        ki.restore(created, modified, version);
        ki.lease = lease;
    }

    /// Loading path for a change that continues the current generation.
    pub fn entry(&mut self, key: &Bytes) -> Option<&mut KeyIndex> {
        self.keys.get_mut(key.as_ref())
    }

    /// Visits every key of `range` visible at `at`, in key order, until `f` returns false.
    pub fn visit(&self, range: &KeyRange, at: i64, mut f: impl FnMut(&Bytes, KeyAt) -> bool) {
        self.visit_entries(range, at, |k, a, _| f(k, a));
    }

    /// [`TreeIndex::visit`] that also shows each key's whole [`KeyIndex`] (its newest change
    /// and lease, which may be above `at`).
    pub fn visit_entries(
        &self,
        range: &KeyRange,
        at: i64,
        mut f: impl FnMut(&Bytes, KeyAt, &KeyIndex) -> bool,
    ) {
        for (k, ki) in self.keys.range::<[u8], _>(range.bounds()) {
            if let Some(a) = ki.get(at) {
                if !f(k, a, ki) {
                    return;
                }
            }
        }
    }

    /// Up to `limit` (0 = all) visible keys of `range` at `at`, and the total visible count.
    pub fn revisions(
        &self,
        range: &KeyRange,
        at: i64,
        limit: usize,
    ) -> (Vec<(Bytes, KeyAt)>, usize) {
        let mut out = Vec::new();
        let mut total = 0;
        self.visit(range, at, |k, a| {
            if limit == 0 || out.len() < limit {
                out.push((k.clone(), a));
            }
            total += 1;
            true
        });
        (out, total)
    }

    /// Number of keys of `range` visible at `at`.
    pub fn count(&self, range: &KeyRange, at: i64) -> usize {
        let mut n = 0;
        self.visit(range, at, |_, _| {
            n += 1;
            true
        });
        n
    }

    /// Every live key attached to a lease, with its lease (the lessor's rebuild on open: from
    /// the index alone, no value is read).
    pub fn leased_keys(&self) -> Vec<(Bytes, i64)> {
        self.keys
            .iter()
            .filter(|(_, ki)| ki.lease != 0 && !ki.is_deleted())
            .map(|(k, ki)| (k.clone(), ki.lease))
            .collect()
    }

    /// Live keys of `range` at the newest revision (used by deletes).
    pub fn live_keys(&self, range: &KeyRange) -> Vec<Bytes> {
        self.keys
            .range::<[u8], _>(range.bounds())
            .filter(|(_, ki)| !ki.is_deleted())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Compacts up to `chunk` keys starting after `after` (exclusive); adds kept revisions to
    /// `keep`. Returns the last key visited, or `None` when the end was reached.
    pub fn compact_chunk(
        &mut self,
        at: i64,
        after: Option<&Bytes>,
        chunk: usize,
        keep: &mut std::collections::HashSet<Revision>,
    ) -> Option<Bytes> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.as_ref()),
            None => Bound::Unbounded,
        };
        let mut last = None;
        let mut empty = Vec::new();
        for (n, (k, ki)) in self
            .keys
            .range_mut::<[u8], _>((start, Bound::Unbounded))
            .enumerate()
        {
            if n == chunk {
                return {
                    for e in empty {
                        self.keys.remove::<Bytes>(&e);
                    }
                    last
                };
            }
            if let Some(r) = ki.compact(at) {
                keep.insert(r);
            }
            if ki.is_empty() {
                empty.push(k.clone());
            }
            last = Some(k.clone());
        }
        for e in empty {
            self.keys.remove::<Bytes>(&e);
        }
        None
    }

    /// Copies up to `n` entries after `after` (exclusive), in key order (checkpoint writer).
    pub(crate) fn entries_after(&self, after: Option<&Bytes>, n: usize) -> Vec<(Bytes, KeyIndex)> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.as_ref()),
            None => Bound::Unbounded,
        };
        self.keys
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(n)
            .map(|(k, ki)| (k.clone(), ki.clone()))
            .collect()
    }

    /// Builds an index from entries sorted by key (checkpoint loader).
    pub(crate) fn from_sorted(entries: Vec<(Bytes, KeyIndex)>) -> Self {
        Self {
            keys: entries.into_iter().collect(),
        }
    }

    /// Compacts every key at `at` in one go, dropping keys left without history (loading).
    pub(crate) fn compact_all(&mut self, at: i64) {
        self.compact_chunk(at, None, usize::MAX, &mut std::collections::HashSet::new());
    }

    /// Every key with its whole history, in key order (tests compare rebuilt indexes).
    pub fn dump(&self) -> Vec<(Bytes, KeyIndex)> {
        self.entries_after(None, usize::MAX)
    }

    /// Revisions that a compaction at `at` keeps (the visible, non-deleted change of each key).
    pub fn keep(&self, at: i64) -> std::collections::HashSet<Revision> {
        self.keys.values().filter_map(|ki| ki.keep(at)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn range_count_and_limit() {
        let mut t = TreeIndex::new();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            t.put(&b(k), Revision::new(i as i64 + 2, 0));
        }
        t.tombstone(b"b", Revision::new(6, 0));
        let all = KeyRange::From(b("a"));
        let (revs, total) = t.revisions(&all, 6, 2);
        assert_eq!(total, 3);
        assert_eq!(
            revs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![b("a"), b("c")]
        );
        assert_eq!(t.count(&all, 5), 4);
        assert_eq!(t.count(&all, 3), 2);
        assert_eq!(t.live_keys(&all).len(), 3);
    }

    #[test]
    fn put_leased_returns_the_state_it_replaces() {
        let mut t = TreeIndex::new();
        let k = b("k");
        let r = |m| Revision::new(m, 0);
        assert_eq!(
            t.put_leased(&k, r(2), 5, 1),
            None,
            "a new key replaces nothing"
        );
        let second = t.put_leased(&k, r(3), 0, 2);
        assert_eq!(second, Some((t.get(&k, 2).expect("visible at 2"), 5)));
        assert_eq!(
            second.map(|(a, _)| (a.modified, a.version)),
            Some((r(2), 1))
        );
        // The lease is the one of the latest put, and the version keeps counting.
        let third = t.put_leased(&k, r(4), 7, 3);
        assert_eq!(
            third.map(|(a, l)| (a.modified, a.version, l)),
            Some((r(3), 2, 0))
        );
        assert_eq!(
            t.get_with_lease(&k, 4).map(|(a, l)| (a.version, l)),
            Some((3, 7))
        );
        // A deleted key starts a new generation: nothing is replaced.
        assert!(t.tombstone(&k, r(5)));
        assert_eq!(t.put_leased(&k, r(6), 0, 5), None);
        assert_eq!(
            t.get(&k, 6).map(|a| (a.created, a.version)),
            Some((r(6), 1))
        );
        // Two puts of one key in one request: the second sees the first (sub revisions).
        assert!(t.put_leased(&k, Revision::new(7, 0), 0, 6).is_some());
        let sub = t.put_leased(&k, Revision::new(7, 1), 0, 7);
        assert_eq!(sub.map(|(a, _)| (a.modified, a.version)), Some((r(7), 2)));
    }

    #[test]
    fn chunked_compaction_visits_everything() {
        let mut t = TreeIndex::new();
        for i in 0..100i64 {
            let k = Bytes::from(format!("k{i:03}"));
            t.put(&k, Revision::new(i * 2 + 2, 0));
            if i % 2 == 0 {
                t.tombstone(&k, Revision::new(i * 2 + 3, 0));
            }
        }
        let mut keep = std::collections::HashSet::new();
        let mut after = None;
        loop {
            after = t.compact_chunk(1000, after.as_ref(), 7, &mut keep);
            if after.is_none() {
                break;
            }
        }
        assert_eq!(keep.len(), 50);
        assert_eq!(t.len(), 50);
    }
}
