//! [`SledEngine`]: the state store on one sled tree (`--experimental-state-engine=sled`).
//!
//! sled 0.34's `apply_batch` is atomic, which is all the state machine needs. sled's `flush`
//! uses `sync_file_range` on Linux and is not a power-loss-safe fsync; Shale does not rely on
//! it: the fsynced Raft log is the source of truth and the applied index stored in the same
//! batch tells the state machine where to resume.

use std::ops::Bound;
use std::path::Path;

use crate::engine::{Engine, Error, Result, ScanIter, WriteBatch, WriteOp};

/// A [`Engine`] on a sled database.
pub struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
}

fn err(e: sled::Error) -> Error {
    Error::Engine(e.to_string())
}

impl SledEngine {
    /// Opens (or creates) the database in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(err)?;
        let tree = db.open_tree("state").map_err(err)?;
        Ok(Self { db, tree })
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        fail::fail_point!("storage-get", |_| Err(Error::Injected("storage-get")));
        Ok(self.tree.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> ScanIter<'_> {
        let start = start.map(|s| s.to_vec());
        let end = end.map(|e| e.to_vec());
        Box::new(
            self.tree
                .range::<Vec<u8>, _>((start, end))
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err)),
        )
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        fail::fail_point!("storage-write", |_| Err(Error::Injected("storage-write")));
        let mut b = sled::Batch::default();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put(k, v) => b.insert(k, v),
                WriteOp::Delete(k) => b.remove(k),
            }
        }
        self.tree.apply_batch(b).map_err(err)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(err)
    }

    fn size_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn clear(&self) -> Result<()> {
        self.tree.clear().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        let dirs = parking_lot::Mutex::new(Vec::new());
        crate::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let e = super::SledEngine::open(dir.path(), 8 << 20).expect("open sled");
            dirs.lock().push(dir);
            Box::new(e)
        });
    }
}
