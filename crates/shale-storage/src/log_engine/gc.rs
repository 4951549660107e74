//! Garbage collection of the [`LogEngine`](super::LogEngine)'s data files: the oldest file's
//! live values are copied to the active file, then the old file is deleted (see the parent
//! module's invariants).

use std::fs::File;
use std::sync::atomic::Ordering;

use super::{file_name, io, Shared};
use crate::engine::{Error, Result, WriteOp};

impl Shared {
    /// Whether the garbage in the data files is past both thresholds of the config.
    pub(super) fn needs_gc(&self) -> bool {
        let index = self.index.read();
        if index.files.len() < 2 {
            return false;
        }
        let (size, live) = index.total();
        let garbage = size.saturating_sub(live);
        garbage >= self.cfg.gc_min_garbage_bytes
            && garbage as f64 > self.cfg.gc_garbage_ratio * size as f64
    }

    /// Rewrites the oldest data file's live values into the active file, then deletes it.
    pub(super) fn collect(&self) -> Result<bool> {
        let _one = self.gc_lock.lock();
        if !self.needs_gc() {
            return Ok(false);
        }
        let oldest = match self.index.read().files.keys().next() {
            Some(&s) => s,
            None => return Ok(false),
        };
        // Never collect the active file: roll first if it is the oldest.
        {
            let mut active = self.writer.lock();
            if active.seq == oldest {
                self.roll(&mut active)?;
            }
        }
        let keys: Vec<Vec<u8>> = self
            .index
            .read()
            .keys
            .iter()
            .filter(|(_, l)| l.file == oldest)
            .map(|(k, _)| k.clone())
            .collect();
        let mut i = 0;
        while i < keys.len() {
            if self.closing.load(Ordering::Acquire) {
                // The old file stays: every copy made so far is a redundant later version.
                return Ok(false);
            }
            let mut active = self.writer.lock();
            let mut batch = Vec::new();
            let mut bytes = 0;
            while i < keys.len() && bytes < self.cfg.gc_chunk_bytes {
                // Still the live value? (a newer write may have replaced or deleted it.)
                if let Some((loc, file)) = self.lookup(&keys[i]) {
                    if loc.file == oldest {
                        let v = self.read(loc, &file)?;
                        bytes += keys[i].len() + v.len();
                        batch.push(WriteOp::Put(keys[i].clone(), v));
                    }
                }
                i += 1;
            }
            self.append(&mut active, batch)?;
        }
        let active = self.writer.lock();
        let path = self.dir.join(file_name(active.seq));
        active.file.sync_data().map_err(|e| io(&path, e))?;
        // The writer lock keeps the index still, so readers need not wait for this check.
        if self.index.read().keys.values().any(|l| l.file == oldest) {
            // Cannot happen with the writer lock held; keep the file rather than lose data.
            return Err(Error::Engine(format!(
                "garbage collection left live values in {}",
                file_name(oldest)
            )));
        }
        self.index.write().files.remove(&oldest);
        // Nothing refers to the old file any more: writes need not wait for its removal.
        drop(active);
        self.remove_hint(oldest)?;
        fail::fail_point!("log-gc-after-hint-removed", |_| Err(Error::Injected(
            "log-gc-after-hint-removed"
        )));
        let old = self.dir.join(file_name(oldest));
        std::fs::remove_file(&old).map_err(|e| io(&old, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))?;
        Ok(true)
    }
}
