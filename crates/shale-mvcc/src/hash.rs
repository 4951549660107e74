//! `Hash` and `HashKV`: consistency checks over the stored state.
//!
//! `HashKV(rev)` is a CRC-32C (Castagnoli) over the byte string `"key"` followed by every
//! stored change with revision `<= rev`, as `revision bytes ++ value bytes`, skipping changes
//! at or below the compaction revision that a compaction will delete. Equal histories give
//! equal hashes on every member, whatever the progress of their physical compaction.

use std::ops::Bound;

use shale_api::error::EtcdError;

use crate::error::Result;
use crate::record::{kv_key_bound, parse_kv_key, KV_PREFIX};
use crate::store::MvccStore;

/// A running CRC-32C.
pub struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        Self { table, crc: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.crc;
        for &b in data {
            c = self.table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
        self.crc = c;
    }

    pub fn finish(&self) -> u32 {
        !self.crc
    }
}

/// Result of [`hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The store's current revision.
    pub current_rev: i64,
    pub compact_rev: i64,
    /// The revision the hash covers.
    pub hash_rev: i64,
}

/// etcd's HashKV at `rev` (0 = current).
pub fn hash_kv(store: &MvccStore, rev: i64) -> Result<HashKv> {
    let current = store.current_revision();
    let compact = store.compact_revision();
    if rev > 0 && rev <= compact {
        return Err(EtcdError::Compacted.into());
    }
    if rev > current {
        return Err(EtcdError::FutureRev.into());
    }
    let rev = if rev <= 0 { current } else { rev };
    let keep = if compact > 0 {
        store.shared.index.read().keep(compact)
    } else {
        Default::default()
    };
    let mut h = Crc32c::default();
    h.update(b"key");
    let start = [KV_PREFIX];
    let end = kv_key_bound(rev + 1);
    for item in store
        .engine()
        .scan(Bound::Included(&start[..]), Bound::Excluded(&end[..]))
    {
        let (k, v) = item?;
        let (r, _) = parse_kv_key(&k)?;
        // Skip what the compaction deletes, even when it keeps nothing at all (etcd skips
        // nothing then, which makes its hash depend on the progress of physical compaction).
        if r.main <= compact && !keep.contains(&r) {
            continue;
        }
        h.update(&k[1..]);
        h.update(&v);
    }
    Ok(HashKv {
        hash: h.finish(),
        current_rev: current,
        compact_rev: compact,
        hash_rev: rev,
    })
}

/// A hash of the whole state store (etcd's `Hash`, over its whole database).
pub fn hash_all(store: &MvccStore) -> Result<u32> {
    let mut h = Crc32c::default();
    for item in store.engine().scan(Bound::Unbounded, Bound::Unbounded) {
        let (k, v) = item?;
        // Key-index checkpoints are a cache each member writes at its own times.
        if k.starts_with(crate::checkpoint::codec::PREFIX) {
            continue;
        }
        h.update(&k);
        h.update(&v);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_check_value() {
        let mut h = super::Crc32c::default();
        h.update(b"123456789");
        assert_eq!(h.finish(), 0xE306_9283);
    }
}
