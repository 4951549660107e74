//! Snapshots of the whole state machine.
//!
//! A snapshot is every key of the state store (MVCC history, leases, alarms and the Raft
//! state of the last applied batch), in key order:
//!
//! ```text
//! "SHALESNAP1" { u32 BE key len, u32 BE value len, key, value }* u32 BE 0xFFFFFFFF, u32 BE crc32c
//! ```
//!
//! The CRC covers every record byte, so a truncated or corrupted snapshot is refused before
//! anything in the store is touched. Writing holds the apply lock, so the snapshot is exactly
//! the state after one applied batch.
//!
//! Such a copy is only made when a peer needs one (a follower behind the purged log, a new
//! member). Snapshots that only let the Raft log be purged take a [`Machine::durable_point`]:
//! a flush, no copy.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;

use shale_mvcc::hash::Crc32c;
use shale_storage::WriteBatch;

use crate::machine::{load_auth, load_inner, Error, Machine, Result};

const MAGIC: &[u8] = b"SHALESNAP1";
const END: u32 = u32::MAX;
const LOAD_BATCH: usize = 4 << 20;

impl Machine {
    /// Makes everything applied so far durable and returns the Raft state it covers,
    /// without copying any data: the state store *is* the snapshot (as etcd's backend is),
    /// so the Raft log up to this point may be purged. Takes the apply lock only for the
    /// engine flush.
    pub fn durable_point(&self) -> Result<Option<Vec<u8>>> {
        let _apply = self.apply_lock.lock();
        self.store().engine().flush()?;
        self.raft_state()
    }

    /// Writes a consistent snapshot to `w`; returns the Raft state it covers.
    pub fn write_snapshot(&self, w: &mut dyn Write) -> Result<Option<Vec<u8>>> {
        let _apply = self.apply_lock.lock();
        self.store().wait_compaction();
        // The log prefix this snapshot covers is purged next: push the state store's own
        // writes out first so a restart never finds it behind a purged log.
        self.store().engine().flush()?;
        let raft = self.raft_state()?;
        let mut crc = Crc32c::default();
        w.write_all(MAGIC)?;
        for item in self
            .store()
            .engine()
            .scan(Bound::Unbounded, Bound::Unbounded)
        {
            let (k, v) = item?;
            let head = [
                (k.len() as u32).to_be_bytes(),
                (v.len() as u32).to_be_bytes(),
            ]
            .concat();
            for part in [&head[..], &k, &v] {
                crc.update(part);
                w.write_all(part)?;
            }
        }
        w.write_all(&END.to_be_bytes())?;
        w.write_all(&crc.finish().to_be_bytes())?;
        w.flush()?;
        Ok(raft)
    }

    /// Replaces the whole state with the snapshot in `r` (verified first).
    pub fn install_snapshot<R: Read + Seek>(&self, r: &mut R) -> Result<()> {
        let start = r.stream_position()?;
        read_records(r, &mut |_, _| Ok(()))?;
        r.seek(SeekFrom::Start(start))?;
        let _apply = self.apply_lock.lock();
        let engine = self.store().engine().clone();
        engine.clear()?;
        let mut batch = WriteBatch::new();
        read_records(r, &mut |k, v| {
            batch.put(k, v);
            if batch.size_bytes() > LOAD_BATCH {
                engine.write(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
        engine.write(batch)?;
        self.store().reload()?;
        let fresh = load_inner(self.store(), &self.config)?;
        *self.inner.lock() = fresh;
        *self.auth.write() = load_auth(self.store())?;
        self.hub().reset(self.store().current_revision());
        Ok(())
    }
}

fn read_u32(r: &mut dyn Read) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)
        .map_err(|e| Error::Corrupt(format!("snapshot truncated: {e}")))?;
    Ok(u32::from_be_bytes(b))
}

fn read_records(r: &mut dyn Read, f: &mut dyn FnMut(Vec<u8>, Vec<u8>) -> Result<()>) -> Result<()> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|e| Error::Corrupt(format!("snapshot truncated: {e}")))?;
    if magic != MAGIC {
        return Err(Error::Corrupt("not a Shale snapshot (bad magic)".into()));
    }
    let mut crc = Crc32c::default();
    loop {
        let klen = read_u32(r)?;
        if klen == END {
            break;
        }
        let vlen = read_u32(r)?;
        if klen > (64 << 20) || vlen > (1 << 30) {
            return Err(Error::Corrupt(format!(
                "snapshot record too large ({klen}/{vlen} bytes)"
            )));
        }
        let mut k = vec![0u8; klen as usize];
        let mut v = vec![0u8; vlen as usize];
        r.read_exact(&mut k)
            .map_err(|e| Error::Corrupt(format!("snapshot truncated: {e}")))?;
        r.read_exact(&mut v)
            .map_err(|e| Error::Corrupt(format!("snapshot truncated: {e}")))?;
        crc.update(&klen.to_be_bytes());
        crc.update(&vlen.to_be_bytes());
        crc.update(&k);
        crc.update(&v);
        f(k, v)?;
    }
    let want = read_u32(r)?;
    if want != crc.finish() {
        return Err(Error::Corrupt("snapshot checksum mismatch".into()));
    }
    Ok(())
}
