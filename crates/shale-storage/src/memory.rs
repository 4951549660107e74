//! [`MemoryEngine`]: the in-memory twin of the sled engine, a `BTreeMap` behind a lock.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use crate::engine::{Engine, KvPair, Result, ScanIter, WriteBatch, WriteOp};

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
        // Copy out in chunks so the lock is not held by a slow consumer.
        let start = start.map(|s| s.to_vec());
        let end = end.map(|e| e.to_vec());
        Box::new(ChunkedScan {
            engine: self,
            next: start,
            end,
            buf: Vec::new().into_iter(),
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

struct ChunkedScan<'a> {
    engine: &'a MemoryEngine,
    next: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buf: std::vec::IntoIter<KvPair>,
}

const CHUNK: usize = 256;

impl Iterator for ChunkedScan<'_> {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.buf.next() {
            return Some(Ok(kv));
        }
        let map = self.engine.map.read();
        let chunk: Vec<KvPair> = map
            .range::<[u8], _>((as_ref(&self.next), as_ref(&self.end)))
            .take(CHUNK)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        drop(map);
        let last = chunk.last()?.0.clone();
        self.next = Bound::Excluded(last);
        self.buf = chunk.into_iter();
        self.buf.next().map(Ok)
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        crate::conformance::run_all(&|| Box::new(super::MemoryEngine::new()));
    }
}
