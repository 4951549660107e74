//! Small atomically replaced metadata files: `vote`, `purged` and `committed`.
//!
//! # Format
//!
//! ```text
//! [magic "SHMF" 4B][payload len u32 LE][crc32 of payload u32 LE][payload = bincode(value)]
//! ```
//!
//! # Writing
//!
//! A new value is written to `<name>.tmp`, fsynced, renamed over `<name>` and the directory is
//! fsynced (`durable = true`). Readers therefore see either the complete old or the complete new
//! value, never a mix, and once [`write`] returns the new value survives power loss.
//!
//! `committed` is written with `durable = false` (no fsyncs): it is an optional hint that lets
//! openraft re-apply committed entries at startup, and losing or reverting it is safe — openraft
//! then starts from the state machine's applied index. If such a file is found damaged after a
//! crash it is ignored with a warning. `vote` and `purged` are always durable, and a damaged one
//! makes open fail: forgetting a vote can elect two leaders in one term.
//!
//! # Crash behaviour
//!
//! A crash before the rename leaves `<name>.tmp`, which open deletes; the old value stays. A
//! crash after the rename but before the directory fsync may leave either value — both are
//! complete and checksummed.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::LogStoreError;
use crate::segment::sync_dir;

const META_MAGIC: &[u8; 4] = b"SHMF";
const META_HEADER_LEN: usize = 12;
const MAX_META_LEN: u64 = 1 << 20;

/// Encode options shared by every serde payload of the log store: fixed-width little-endian
/// integers, a hard size limit on decode so a damaged length prefix cannot trigger a huge
/// allocation, and no trailing bytes.
pub(crate) fn codec() -> impl bincode::Options + Copy {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(1 << 30)
}

/// Serialize `value` into a framed meta file image.
fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    use bincode::Options;
    let payload = codec()
        .serialize(value)
        .map_err(|e| io::Error::other(format!("encode: {e}")))?;
    let mut out = Vec::with_capacity(META_HEADER_LEN + payload.len());
    out.extend_from_slice(META_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decode a meta file image. `Err` carries a human-readable reason.
fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    use bincode::Options;
    if data.len() < META_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than its header",
            data.len()
        ));
    }
    if &data[..4] != META_MAGIC {
        return Err("bad magic".into());
    }
    let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let crc = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    let payload = &data[META_HEADER_LEN..];
    if payload.len() != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("crc mismatch".into());
    }
    codec()
        .deserialize(payload)
        .map_err(|e| format!("cannot decode: {e}"))
}

/// One metadata file in the log directory.
#[derive(Debug, Clone)]
pub(crate) struct MetaFile {
    dir: PathBuf,
    name: &'static str,
    /// Human name used in error messages ("vote", "purged log id", …).
    what: &'static str,
    /// Failpoint evaluated after the tmp file is durable and before the rename.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    failpoint: &'static str,
}

impl MetaFile {
    pub fn new(
        dir: &Path,
        name: &'static str,
        what: &'static str,
        failpoint: &'static str,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name,
            what,
            failpoint,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// Read the current value. `Ok(None)` if the file does not exist.
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, LogStoreError> {
        let path = self.path();
        let data = match read_bounded(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogStoreError::io(path, e)),
        };
        decode(&data)
            .map(Some)
            .map_err(|reason| LogStoreError::CorruptMeta {
                what: self.what,
                path,
                reason,
            })
    }

    /// Atomically replace the value; with `durable` it survives power loss once this returns.
    pub fn write<T: Serialize>(&self, value: &T, durable: bool) -> io::Result<()> {
        let image = encode(value)?;
        let tmp = self.dir.join(format!("{}.tmp", self.name));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&image)?;
            if durable {
                f.sync_all()?;
            }
        }
        fail::fail_point!(self.failpoint, |_| Err(io::Error::other(format!(
            "failpoint {}",
            self.failpoint
        ))));
        std::fs::rename(&tmp, self.path())?;
        if durable {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_META_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("metadata file is {len} bytes, larger than any value it can hold"),
        ));
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaFile::new(dir.path(), "vote", "vote", "raft-vote-before-rename");
        assert_eq!(m.read::<(u64, u64)>().unwrap(), None);
        m.write(&(7u64, 9u64), true).unwrap();
        assert_eq!(m.read::<(u64, u64)>().unwrap(), Some((7, 9)));
        m.write(&(8u64, 1u64), false).unwrap();
        assert_eq!(m.read::<(u64, u64)>().unwrap(), Some((8, 1)));

        let image = std::fs::read(m.path()).unwrap();
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 0x01;
            std::fs::write(m.path(), &bad).unwrap();
            let err = m.read::<(u64, u64)>().unwrap_err();
            assert!(err.to_string().contains("vote file"), "{err}");
        }
        for cut in 0..image.len() {
            std::fs::write(m.path(), &image[..cut]).unwrap();
            assert!(m.read::<(u64, u64)>().is_err());
        }
    }
}
