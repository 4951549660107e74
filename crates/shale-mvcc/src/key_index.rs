//! [`KeyIndex`]: the revision history of one key, as a list of generations.
//!
//! A *generation* is the life of a key from its creation to its deletion: the revisions of
//! every put, ended by a tombstone revision when the key is deleted. A key deleted and put
//! again starts a new generation. The last generation is the live one (possibly empty: a key
//! whose last generation is empty is currently deleted).
//!
//! ```text
//! put a@2, put a@3, delete a@4, put a@6       generations: [{2,3,4(t)}, {6}]
//! ```
//!
//! Invariants:
//! * revisions across all generations strictly increase;
//! * every generation but the last is non-empty and ends with its tombstone;
//! * `version` of a generation = number of puts in it (what the client sees as `version`).
//!
//! Compaction at revision `c` removes every revision `< c'` where `c'` is the latest revision
//! `<= c` of the key, and removes whole generations whose tombstone is `<= c`. A read at any
//! revision `>= c` sees the same answer before and after compaction.

use crate::revision::Revision;

/// One generation of a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// Number of puts in this generation (the `version` of its latest put).
    pub ver: i64,
    /// The revision that created the key in this generation.
    pub created: Revision,
    /// Revisions of the changes in this generation; the last is a tombstone for closed ones.
    pub revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Number of revisions with `main <= at` (they come first: revisions increase).
    pub(crate) fn count_le(&self, at: i64) -> usize {
        self.revs.partition_point(|r| r.main <= at)
    }

    /// Index of the latest revision with `main <= at`, if any.
    fn walk_le(&self, at: i64) -> Option<usize> {
        self.count_le(at).checked_sub(1)
    }
}

/// What a key looked like at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    /// Revision of the change that is visible (the key's mod revision).
    pub modified: Revision,
    /// Revision that created the key's current generation.
    pub created: Revision,
    /// Version of the key at that revision.
    pub version: i64,
}

/// Revision history of one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyIndex {
    pub modified: Revision,
    pub generations: Vec<Generation>,
    /// Lease of the key's latest put (0 when none, or when the key is deleted); lets a put
    /// find the lease it replaces without reading the previous value from storage.
    pub lease: i64,
}

impl KeyIndex {
    pub fn new() -> Self {
        Self {
            modified: Revision::default(),
            generations: vec![Generation::default()],
            lease: 0,
        }
    }

    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self
            .generations
            .last_mut()
            .expect("at least one generation");
        if g.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuilds a generation found while loading a compacted history: its first surviving
    /// change is `modified`, created at `created` with `version`.
    pub fn restore(&mut self, created: Revision, modified: Revision, version: i64) {
        if self.generations.last().is_some_and(|g| !g.is_empty()) || self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().expect("generation");
        *g = Generation {
            ver: version,
            created,
            revs: vec![modified],
        };
        self.modified = modified;
    }

    /// Records a delete at `rev`: closes the live generation and opens an empty one.
    /// Returns false (and changes nothing) if the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.generations.last().is_none_or(|g| g.is_empty()) {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        self.lease = 0;
        true
    }

    /// True when the key is currently deleted (or never existed).
    pub fn is_deleted(&self) -> bool {
        self.generations.last().is_none_or(|g| g.is_empty())
    }

    /// The change visible at revision `at`, or `None` if the key did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let i = g.walk_le(at)?;
        let version = g.ver - (g.revs.len() - 1 - i) as i64;
        Some(KeyAt {
            modified: g.revs[i],
            created: g.created,
            version,
        })
    }

    /// Revisions of changes with `main >= since`, in order (used for history replay).
    pub fn since(&self, since: i64) -> impl Iterator<Item = Revision> + '_ {
        self.generations
            .iter()
            .flat_map(|g| g.revs.iter().copied())
            .filter(move |r| r.main >= since)
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            if g.is_empty() {
                continue;
            }
            // A closed generation whose tombstone is at or before `at` means the key was
            // deleted at `at`.
            if i != last && g.revs[g.revs.len() - 1].main <= at {
                return None;
            }
            if g.revs[0].main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The revision that survives a compaction at `at`, if any: the latest change `<= at`,
    /// unless it is a tombstone.
    pub fn keep(&self, at: i64) -> Option<Revision> {
        if self.is_deleted_at_or_before(at) {
            return None;
        }
        let g = self
            .generations
            .iter()
            .rev()
            .find(|g| !g.is_empty() && g.revs[0].main <= at)?;
        g.walk_le(at).map(|i| g.revs[i])
    }

    fn is_deleted_at_or_before(&self, at: i64) -> bool {
        // The key is deleted at `at` if the generation covering `at` is closed by then.
        let last = self.generations.len().saturating_sub(1);
        for (i, g) in self.generations.iter().enumerate().rev() {
            if g.is_empty() || g.revs[0].main > at {
                continue;
            }
            return i != last && g.revs[g.revs.len() - 1].main <= at;
        }
        true
    }

    /// Compacts the history at revision `at`. Returns the kept revision (if any). After this
    /// the index is empty (`is_empty`) when nothing of the key remains.
    pub fn compact(&mut self, at: i64) -> Option<Revision> {
        let kept = self.keep(at);
        let last = self.generations.len().saturating_sub(1);
        let mut out: Vec<Generation> = Vec::with_capacity(self.generations.len());
        for (i, mut g) in std::mem::take(&mut self.generations)
            .into_iter()
            .enumerate()
        {
            if g.is_empty() {
                if i == last {
                    out.push(g);
                }
                continue;
            }
            let closed = i != last;
            if closed && g.revs[g.revs.len() - 1].main <= at {
                continue; // whole generation compacted away, tombstone included
            }
            if let Some(n) = g.walk_le(at) {
                g.revs.drain(..n);
            }
            out.push(g);
        }
        self.generations = out;
        kept
    }

    /// True when no history is left (the key can be dropped from the index).
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.is_empty())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The revision `m` (sub revision 0).
    pub(crate) fn r(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    fn sample() -> KeyIndex {
        // put@2 put@4 del@6 | put@8 put@10 del@12 | put@14 put@16
        let mut k = KeyIndex::new();
        k.put(r(2));
        k.put(r(4));
        assert!(k.tombstone(r(6)));
        k.put(r(8));
        k.put(r(10));
        assert!(k.tombstone(r(12)));
        k.put(r(14));
        k.put(r(16));
        k
    }

    #[test]
    fn get_walks_generations() {
        let k = sample();
        assert_eq!(k.get(1), None);
        assert_eq!(
            k.get(2),
            Some(KeyAt {
                modified: r(2),
                created: r(2),
                version: 1
            })
        );
        assert_eq!(
            k.get(5),
            Some(KeyAt {
                modified: r(4),
                created: r(2),
                version: 2
            })
        );
        assert_eq!(k.get(6), None);
        assert_eq!(k.get(7), None);
        assert_eq!(
            k.get(9),
            Some(KeyAt {
                modified: r(8),
                created: r(8),
                version: 1
            })
        );
        assert_eq!(k.get(12), None);
        assert_eq!(k.get(13), None);
        assert_eq!(
            k.get(100),
            Some(KeyAt {
                modified: r(16),
                created: r(14),
                version: 2
            })
        );
    }

    #[test]
    fn tombstone_of_deleted_key_is_refused() {
        let mut k = KeyIndex::new();
        assert!(!k.tombstone(r(1)));
        k.put(r(2));
        assert!(k.tombstone(r(3)));
        assert!(!k.tombstone(r(4)));
        assert!(k.is_deleted());
    }

    #[test]
    fn compaction_keeps_reads_at_or_after_the_compact_revision() {
        for at in 1..=18 {
            let full = sample();
            let mut c = sample();
            let kept = c.compact(at);
            assert_eq!(kept, full.keep(at), "keep at {at}");
            for read in at..=18 {
                assert_eq!(c.get(read), full.get(read), "compact {at} read {read}");
            }
        }
    }

    #[test]
    fn compaction_drops_dead_generations() {
        let mut k = sample();
        assert_eq!(k.compact(6), None);
        assert_eq!(k.generations.len(), 2);
        assert_eq!(k.compact(13), None);
        assert_eq!(k.generations.len(), 1);
        assert_eq!(k.compact(15), Some(r(14)));
        assert_eq!(k.generations[0].revs, vec![r(14), r(16)]);
        assert_eq!(k.get(16).map(|a| a.version), Some(2));
        let mut d = KeyIndex::new();
        d.put(r(1));
        d.tombstone(r(2));
        d.compact(2);
        assert!(d.is_empty());
    }

    #[test]
    fn restore_rebuilds_a_compacted_generation() {
        let mut k = KeyIndex::new();
        k.restore(r(3), r(7), 4);
        k.put(r(9));
        assert_eq!(
            k.get(8),
            Some(KeyAt {
                modified: r(7),
                created: r(3),
                version: 4
            })
        );
        assert_eq!(
            k.get(9),
            Some(KeyAt {
                modified: r(9),
                created: r(3),
                version: 5
            })
        );
        assert_eq!(k.get(5), None);
    }
}
