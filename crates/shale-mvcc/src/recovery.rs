//! Rebuilding the in-memory state of a store from its engine when it opens.
//!
//! The [`TreeIndex`] is a function of the stored changes: replaying them in revision order
//! with [`replay_change`] rebuilds it. A put that continues a live generation is appended to
//! it; a put on an absent or deleted key starts a generation from the change's own create
//! revision and version (so a history whose start was compacted away restores correctly); a
//! tombstone closes the live generation, or does nothing when the puts it ended were compacted
//! away. The current revision is the newest stored change (or the compaction revision, if that
//! is above it — etcd's empty store is at revision 1).
//!
//! Two ways to get there, chosen by [`recover`]: the full scan of every stored change, or a
//! key-index checkpoint at revision `R` (see [`crate::checkpoint`]) followed by the replay of
//! the changes above `R` only, compacted at the last finished compaction. Both give the same
//! index; a checkpoint that cannot be trusted is reported and the full scan used instead.

use std::ops::Bound;

use shale_storage::Engine;

use crate::checkpoint::{self, Recovery, Unusable};
use crate::error::Result;
use crate::record::{self, decode_i64, parse_kv_key};
use crate::revision::Revision;
use crate::tree_index::TreeIndex;

/// The state rebuilt from the engine.
pub(crate) struct Loaded {
    pub index: TreeIndex,
    pub rev: i64,
    pub compact: i64,
    pub done: i64,
    pub recovery: Recovery,
}

/// Rebuilds the state, from the checkpoint if `use_checkpoint` and it is usable.
pub(crate) fn recover(engine: &dyn Engine, use_checkpoint: bool) -> Result<Loaded> {
    // etcd starts with "never compacted" = -1 and an empty store at revision 1.
    let compact = read_meta(engine, record::META_COMPACT)?;
    let done = read_meta(engine, record::META_COMPACT_DONE)?;
    if use_checkpoint {
        match checkpoint::load(engine, compact) {
            Ok((mut index, at)) => {
                let (newest, tail) = replay(engine, &mut index, at + 1)?;
                index.compact_all(done);
                return Ok(Loaded {
                    index,
                    rev: at.max(newest).max(compact).max(1),
                    compact,
                    done,
                    recovery: Recovery::Checkpoint { rev: at, tail },
                });
            }
            Err(Unusable::Missing) => {}
            Err(e) => tracing::warn!(
                reason = %e,
                "key-index checkpoint not used; rebuilding the index from the whole history"
            ),
        }
    }
    let mut index = TreeIndex::new();
    let (newest, _) = replay(engine, &mut index, 0)?;
    Ok(Loaded {
        index,
        rev: newest.max(compact).max(1),
        compact,
        done,
        recovery: Recovery::FullScan,
    })
}

fn read_meta(engine: &dyn Engine, key: &[u8]) -> Result<i64> {
    match engine.get(key)? {
        Some(v) => decode_i64(&v),
        None => Ok(-1),
    }
}

/// Replays every stored change of main revision `from` or above into `index`; returns the
/// newest main revision seen (0 if none) and the number of changes.
fn replay(engine: &dyn Engine, index: &mut TreeIndex, from: i64) -> Result<(i64, usize)> {
    let start = record::kv_key_bound(from.max(0));
    let end = [record::KV_PREFIX + 1];
    let mut newest = 0i64;
    let mut n = 0;
    for item in engine.scan(Bound::Included(&start[..]), Bound::Excluded(&end[..])) {
        let (k, v) = item?;
        let (r, tombstone) = parse_kv_key(&k)?;
        replay_change(index, r, tombstone, &v)?;
        newest = newest.max(r.main);
        n += 1;
    }
    Ok((newest, n))
}

/// Applies one stored change (storage value `v` at revision `r`) to `index`.
pub(crate) fn replay_change(
    index: &mut TreeIndex,
    r: Revision,
    tombstone: bool,
    v: &[u8],
) -> Result<()> {
    let kv = record::decode_kv(v)?;
    if tombstone {
        // A tombstone whose puts were compacted away leaves nothing to restore.
        index.tombstone(&kv.key, r);
        return Ok(());
    }
    match index.entry(&kv.key) {
        Some(ki) if !ki.is_deleted() => {
            ki.put(r);
            ki.lease = kv.lease;
        }
        _ => index.restore(
            &kv.key,
            Revision::new(kv.create_revision, 0),
            r,
            kv.version,
            kv.lease,
        ),
    }
    Ok(())
}
