//! Key-index checkpoints: restart time independent of the size of the data.
//!
//! Without a checkpoint, opening a store rebuilds the [`TreeIndex`] from every stored change:
//! each value is read and decoded only to learn its key, create revision, version and lease
//! (5 s for 300k keys of 1 KiB). A checkpoint is the index itself, persisted as of a revision
//! `R`; opening loads it and replays only the changes above `R` — a range scan, since change
//! keys are ordered by revision.
//!
//! # Where it lives
//!
//! In the state store itself, through the [`Engine`] trait, under the prefix `c/ckpt/` that no
//! other table uses (see `codec.rs` for the bytes): a few hundred KiB-sized *chunks* keyed by
//! `R` and their number, and a *header* — format version, `R`, key count, length and CRC of
//! every chunk — written last. So it works on every engine, is as durable and crash-atomic as
//! the history it describes (an engine that loses a suffix of batches loses the header with
//! them), and needs no file of its own beside the engine. A new checkpoint writes its chunks
//! under its own `R`, then in one batch writes its header, deletes the previous header's
//! chunks and the *pending* marker: at every instant the header names complete chunks. The
//! pending marker (written with every chunk) names the chunks of a checkpoint still being
//! written, so those of an interrupted one are deleted by the next attempt.
//!
//! # Writing without stopping the world
//!
//! The writer runs on the compactor thread (or a caller's, in tests), holding the store's
//! maintenance lock, so no index compaction interleaves with it. It notes `R` = the published
//! revision, then copies the index 1024 keys at a time, each copy under one short read lock;
//! the applier goes on between copies. Each copy is *cut* at `R`: revisions above `R` — those
//! applied since, and those of a batch not yet committed — are dropped, so every chunk holds
//! exactly the index as of `R`, however late it was copied. The one thing a cut cannot redo is
//! a key's lease (the index keeps only the newest put's): for a cut key still live at `R` the
//! lease is read from its change at `R` or below, outside the lock. The test
//! `checkpoint_while_writing` records the longest read-lock hold (well under the 50 ms budget
//! of DESIGN.md).
//!
//! # Loading, and never trusting it blindly
//!
//! A checkpoint is used only if: the header decodes with its CRC and format; `R` is at or above
//! the scheduled compaction (`m/compact`); the first stored change of revision `R` exists and
//! matches the header's fingerprint (a CRC of its storage key and value) — unless the
//! compaction is at exactly `R` (it may have deleted that change); every chunk is there
//! with its length and CRC; every entry decodes and keys increase; the key count matches.
//! Anything else — missing, truncated, bit-flipped, stale, foreign, ahead of the stored history
//! — is logged with `tracing::warn` and the store falls back to the full scan. The index is
//! then the checkpoint plus every stored change above `R` (replayed exactly as the full scan
//! replays them), compacted at the last finished compaction; a pending one is redone by the
//! compactor as after a full scan. The `recovery` tests check the result equals the full
//! rebuild key by key, generation by generation, over random histories.
//!
//! Why these rules are enough. Raft makes committed history identical on every member, and an
//! index at `R` is a function of the history up to `R` and of the compactions, so a checkpoint
//! at `R` agrees with every later state of the same history — except that a compaction at
//! `c > R` may delete changes above `R` that the replay needs (a tombstone deleted with the
//! put it ended would leave the key live); hence `R >= m/compact`. The fingerprint catches a
//! checkpoint of another history (a copied engine, a replaced content), and a missing change
//! at `R` one that is ahead of the stored history (engine data lost, header not).
//!
//! # Snapshot install, and when to checkpoint
//!
//! [`MvccStore::reload`](crate::MvccStore::reload) replaces the content wholesale; the new
//! content may carry the sender's checkpoint (snapshots copy every key) or one our old index
//! raced into it before the reload. Rather than reason about either, reload deletes every
//! checkpoint record and rebuilds with the full scan; the next checkpoint follows as usual.
//!
//! The compactor thread takes one when [`CheckpointConfig`] says it is due: `every` revisions
//! after the last, or — when there is no usable one (none yet, or a compaction passed it) and
//! the index has at least `min_keys` keys — at once. Never on the apply path. A store that
//! never checkpointed (an old data directory) simply opens with the full scan.

pub(crate) mod codec;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shale_storage::{Engine, WriteBatch};

use crate::error::Error;
use crate::key_index::KeyIndex;
use crate::record::{self, kv_key, kv_key_bound};
use crate::revision::Revision;
use crate::store::Shared;
use crate::tree_index::TreeIndex;
use codec::{chunk_key, ChunkMeta, Cut, Header, Malformed, Pending, HEADER_KEY, PENDING_KEY};

/// Keys copied per read-lock hold.
const LOCK_KEYS: usize = 1024;
/// A chunk is closed once it holds this many bytes.
const CHUNK_BYTES: usize = 512 << 10;

/// When the store checkpoints its key index.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointConfig {
    /// Checkpoint once the newest revision is this far above the last checkpoint.
    pub every: i64,
    /// With no usable checkpoint, take one at once if the index has this many keys.
    pub min_keys: usize,
    /// Use a stored checkpoint when opening (false: always the full scan).
    pub load: bool,
    /// Let the compactor thread take checkpoints by itself.
    pub background: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every: 100_000,
            min_keys: 10_000,
            load: true,
            background: true,
        }
    }
}

/// What a written checkpoint holds and what writing it cost.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    pub rev: i64,
    pub keys: u64,
    pub chunks: usize,
    pub bytes: u64,
    /// The longest single read-lock hold on the index while copying it.
    pub longest_lock_hold: Duration,
    pub took: Duration,
}

/// How the store rebuilt its index when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every stored change was read.
    FullScan,
    /// From the checkpoint at `rev`, then `tail` stored changes above it.
    Checkpoint { rev: i64, tail: usize },
}

/// Why a checkpoint is not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("no checkpoint")]
    Missing,
    #[error("checkpoint is damaged: {0}")]
    Damaged(#[from] Malformed),
    #[error("checkpoint does not fit the stored history: {0}")]
    Mismatch(String),
    #[error("checkpoint could not be read: {0}")]
    Read(#[from] Error),
}

impl From<shale_storage::Error> for Unusable {
    fn from(e: shale_storage::Error) -> Self {
        Unusable::Read(e.into())
    }
}

/// CRC of the first stored change of revision `rev` (storage key and value), if any.
fn fingerprint(engine: &dyn Engine, rev: i64) -> crate::Result<Option<u32>> {
    let (from, to) = (kv_key_bound(rev), kv_key_bound(rev.saturating_add(1)));
    let first = engine
        .scan(
            std::ops::Bound::Included(&from[..]),
            std::ops::Bound::Excluded(&to[..]),
        )
        .next();
    Ok(match first {
        Some(item) => {
            let (k, v) = item?;
            let mut h = crc32fast::Hasher::new();
            h.update(&k);
            h.update(&v);
            Some(h.finalize())
        }
        None => None,
    })
}

fn read_header(engine: &dyn Engine) -> Result<Header, Unusable> {
    let raw = engine.get(HEADER_KEY)?.ok_or(Unusable::Missing)?;
    Ok(Header::decode(&raw)?)
}

/// Loads the checkpoint (index as of its revision, and that revision), checking it against
/// the stored history; `compact` is the scheduled compaction revision.
pub(crate) fn load(engine: &dyn Engine, compact: i64) -> Result<(TreeIndex, i64), Unusable> {
    let h = read_header(engine)?;
    if h.rev < compact {
        return Err(Unusable::Mismatch(format!(
            "taken at revision {}, below the compaction at {compact}",
            h.rev
        )));
    }
    match fingerprint(engine, h.rev)? {
        // A compaction at exactly `R` deletes the changes of `R` that it does not keep
        // (tombstones): its record vouches that the history reached `R`.
        _ if compact == h.rev => {}
        None => {
            return Err(Unusable::Mismatch(format!(
                "no stored change at its revision {}: the history is behind it",
                h.rev
            )))
        }
        Some(f) if f != h.fingerprint => {
            return Err(Unusable::Mismatch(format!(
                "the change at its revision {} differs: it belongs to another history",
                h.rev
            )))
        }
        Some(_) => {}
    }
    let mut entries: Vec<(Bytes, KeyIndex)> = Vec::with_capacity(h.keys.min(1 << 24) as usize);
    for (n, meta) in h.chunks.iter().enumerate() {
        let chunk = engine
            .get(&chunk_key(h.rev, n as u32))?
            .ok_or_else(|| Malformed(format!("chunk {n} is missing")))?;
        if ChunkMeta::of(&chunk) != *meta {
            return Err(
                Malformed(format!("chunk {n} is truncated or corrupt (length or CRC)")).into(),
            );
        }
        codec::decode_chunk(&chunk, &mut entries)
            .map_err(|e| Malformed(format!("chunk {n}: {e}")))?;
    }
    if entries.len() as u64 != h.keys {
        return Err(Malformed(format!(
            "holds {} keys, header says {}",
            entries.len(),
            h.keys
        ))
        .into());
    }
    Ok((TreeIndex::from_sorted(entries), h.rev))
}

/// Deletes every checkpoint record (header, its chunks, an interrupted one's chunks).
pub(crate) fn discard(engine: &dyn Engine) -> crate::Result<()> {
    let mut batch = WriteBatch::new();
    if let Ok(h) = read_header(engine) {
        for n in 0..h.chunks.len() {
            batch.delete(chunk_key(h.rev, n as u32));
        }
    }
    batch.delete(HEADER_KEY.to_vec());
    drop_pending(engine, &mut batch)?;
    engine.write(batch)?;
    Ok(())
}

/// Adds the deletion of an interrupted checkpoint's chunks and marker to `batch`.
fn drop_pending(engine: &dyn Engine, batch: &mut WriteBatch) -> crate::Result<()> {
    if let Some(raw) = engine.get(PENDING_KEY)? {
        if let Ok(p) = Pending::decode(&raw) {
            for n in 0..p.written {
                batch.delete(chunk_key(p.rev, n));
            }
        }
        batch.delete(PENDING_KEY.to_vec());
    }
    Ok(())
}

/// Whether the background thread should take a checkpoint now.
pub(crate) fn due(shared: &Shared) -> bool {
    let cfg = &shared.checkpoint;
    let cur = shared.rev.load(Ordering::Acquire);
    let last = shared.checkpoint_rev.load(Ordering::Acquire);
    if !cfg.background || cur <= last {
        return false;
    }
    let usable = last > 0 && last >= shared.compact_rev.load(Ordering::Acquire);
    cur - last.max(0) >= cfg.every || (!usable && shared.index.read().len() >= cfg.min_keys)
}

/// Writes a checkpoint of the index as of the published revision. The caller holds the
/// maintenance lock. Returns `None` when there was nothing to do or `stop` (checked between
/// chunks) or a reload interrupted it.
pub(crate) fn write(
    shared: &Shared,
    stop: &dyn Fn() -> bool,
) -> crate::Result<Option<CheckpointStats>> {
    let started = Instant::now();
    let epoch = shared.epoch.load(Ordering::Acquire);
    let interrupted = || stop() || shared.epoch.load(Ordering::Acquire) != epoch;
    let engine = &*shared.engine;
    let mut cleanup = WriteBatch::new();
    drop_pending(engine, &mut cleanup)?;
    if !cleanup.is_empty() {
        engine.write(cleanup)?;
    }
    let old = read_header(engine).ok();
    let rev = shared.rev.load(Ordering::Acquire);
    if old.as_ref().is_some_and(|h| h.rev == rev) {
        return Ok(None);
    }
    // A published revision always has a stored change, unless compacted away (a tombstone
    // at the compaction revision): then wait for the next write.
    let Some(fingerprint) = fingerprint(engine, rev)? else {
        return Ok(None);
    };
    let mut stats = CheckpointStats {
        rev,
        ..Default::default()
    };
    let mut chunks = Vec::new();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + (64 << 10));
    let mut after: Option<Bytes> = None;
    loop {
        if interrupted() {
            return Ok(None);
        }
        let copy = {
            let index = shared.index.read();
            let held = Instant::now();
            let copy = index.entries_after(after.as_ref(), LOCK_KEYS);
            stats.longest_lock_hold = stats.longest_lock_hold.max(held.elapsed());
            copy
        };
        let end = copy.len() < LOCK_KEYS;
        after = copy.last().map(|(k, _)| k.clone());
        for (key, ki) in &copy {
            let Some(cut) = Cut::of(ki, rev) else {
                continue;
            };
            let lease = if cut.trimmed && !cut.deleted {
                lease_at(engine, &cut)?
            } else {
                ki.lease
            };
            codec::encode_entry(&mut buf, key, lease, &cut);
            stats.keys += 1;
        }
        if buf.len() >= CHUNK_BYTES || (end && !buf.is_empty()) {
            let n = chunks.len() as u32;
            chunks.push(ChunkMeta::of(&buf));
            stats.bytes += buf.len() as u64;
            let mut batch = WriteBatch::new();
            batch.put(chunk_key(rev, n), std::mem::take(&mut buf));
            let pending = Pending {
                rev,
                written: n + 1,
            };
            batch.put(PENDING_KEY.to_vec(), pending.encode());
            engine.write(batch)?;
        }
        if end {
            break;
        }
    }
    if interrupted() {
        return Ok(None);
    }
    let header = Header {
        rev,
        fingerprint,
        keys: stats.keys,
        chunks,
    };
    let mut batch = WriteBatch::new();
    if let Some(old) = old {
        for n in 0..old.chunks.len() {
            batch.delete(chunk_key(old.rev, n as u32));
        }
    }
    stats.chunks = header.chunks.len();
    batch.put(HEADER_KEY.to_vec(), header.encode());
    batch.delete(PENDING_KEY.to_vec());
    engine.write(batch)?;
    shared.checkpoint_rev.store(rev, Ordering::Release);
    stats.took = started.elapsed();
    Ok(Some(stats))
}

/// The lease of a cut key's newest change at or below the cut (a put: the key is live).
fn lease_at(engine: &dyn Engine, cut: &Cut) -> crate::Result<i64> {
    let rev: Revision = cut
        .gens
        .last()
        .and_then(|g| g.revs.last().copied())
        .unwrap_or_default();
    match engine.get(&kv_key(rev, false))? {
        Some(v) => Ok(record::decode_kv(&v)?.lease),
        None => Err(Error::Corrupt(format!(
            "revision {rev} is indexed but not stored"
        ))),
    }
}
