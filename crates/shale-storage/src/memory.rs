//! [`MemoryEngine`]: the in-memory twin of the sled engine, a `BTreeMap` behind a lock.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use crate::engine::{chunked_scan, Engine, Result, ScanIter, WriteBatch, WriteOp};

/// An in-memory [`Engine`]. Batches are atomic because they are applied under one write lock.
#[derive(Default)]
pub struct MemoryEngine {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> ScanIter<'_> {
        chunked_scan(start, end, |from, to, limit| {
            Ok(self
                .map
                .read()
                .range::<[u8], _>((from, to))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut map = self.map.write();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.map
            .read()
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn clear(&self) -> Result<()> {
        self.map.write().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        crate::conformance::run_all(&|| Box::new(super::MemoryEngine::new()));
    }
}
