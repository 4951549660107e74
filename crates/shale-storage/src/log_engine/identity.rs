//! The identity of a [`LogEngine`](super::LogEngine) directory: a random 128-bit id, made when
//! the engine first opens the directory and kept in `engine.id`, that every hint file carries.
//!
//! # Model and invariants
//!
//! * The id only has to tell engine directories apart, so that a hint copied from another data
//!   dir (same file names, same sizes by chance) is refused. It is not a secret.
//! * `engine.id` is written atomically (temporary file, fsync, rename, directory fsync). A
//!   directory written before hints existed has no id: one is made on open, and hints are
//!   written from then on.
//! * An unreadable or malformed id file is replaced by a new id (with a warning): existing
//!   hints then no longer match, so their data files are replayed and their hints rewritten.
//!   Nothing is lost; the next open is slow once.

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::{Error, Result};

pub(super) const ID_FILE: &str = "engine.id";
const ID_TMP: &str = "engine.id.tmp";
const PREFIX: &str = "shale-log-engine ";

/// A random id of an engine directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EngineId([u8; 16]);

impl EngineId {
    pub(super) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id: std's `RandomState` is seeded from the operating system's random
    /// source, mixed here with the time and the process id.
    fn generate() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut out = [0u8; 16];
        for (i, half) in out.chunks_mut(8).enumerate() {
            let mut h = RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u32(std::process::id());
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_be_bytes());
        }
        Self(out)
    }

    fn encode(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}\n")
    }

    fn decode(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(PREFIX)?.strip_suffix('\n')?;
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Engine(format!("{}: {e}", path.display()))
}

/// The id of the engine directory `dir`, made (and stored) if it has none.
pub(super) fn load_or_create(dir: &Path) -> Result<EngineId> {
    let path = dir.join(ID_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            if let Some(id) = std::str::from_utf8(&bytes).ok().and_then(EngineId::decode) {
                return Ok(id);
            }
            tracing::warn!(
                path = %path.display(),
                "the engine id file is malformed; making a new id (every data file is replayed once)"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path, e)),
    }
    let id = EngineId::generate();
    let tmp = dir.join(ID_TMP);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(id.encode().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_differ() {
        let a = EngineId::generate();
        let b = EngineId::generate();
        assert_ne!(a, b);
        assert_eq!(EngineId::decode(&a.encode()), Some(a));
        assert_eq!(EngineId::decode("shale-log-engine 12\n"), None);
        assert_eq!(EngineId::decode(""), None);
        let mut s = a.encode();
        s.replace_range(20..21, "é");
        assert_eq!(EngineId::decode(&s), None);
    }

    #[test]
    fn an_id_is_kept_and_a_malformed_one_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("create");
        assert_eq!(load_or_create(dir.path()).expect("load"), a);
        std::fs::write(dir.path().join(ID_FILE), b"garbage").expect("damage");
        let b = load_or_create(dir.path()).expect("replace");
        assert_ne!(a, b);
        assert_eq!(load_or_create(dir.path()).expect("load"), b);
    }
}
