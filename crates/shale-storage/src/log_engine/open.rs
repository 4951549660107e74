//! Opening a [`LogEngine`](super::LogEngine) directory: the index is rebuilt from the hints of
//! sealed data files where they are valid, and from the data everywhere else.
//!
//! Files are visited in sequence order, so the index sees the same ops in the same order
//! whichever way each file was read (see the hint module). The last file is the active one: it
//! is always replayed (its torn tail cut off) and its hint entries rebuilt in memory, and a hint
//! beside it, left by a roll that did not finish, is deleted (it would describe a shorter file
//! and be refused anyway). A sealed file with no usable hint is replayed and its hint written
//! right away, so a directory from before hints, or with damaged hints, opens quickly the next
//! time. Leftover temporary files and hints without a data file are deleted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::frame::replay;
use super::hint::{self, HintBuilder, Loaded};
use super::identity::EngineId;
use super::{file_name, io, DataFile, Index};
use crate::engine::Result;

/// How the data files were read by the last open (see [`LogEngine::open_stats`]).
///
/// [`LogEngine::open_stats`]: super::LogEngine::open_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Sealed data files indexed from their hint.
    pub files_from_hints: usize,
    /// Data files replayed in full (the active file, and sealed files without a usable hint).
    pub files_replayed: usize,
    /// Hints found but refused (damaged, stale or foreign), each logged.
    pub hints_rejected: usize,
    /// Hints written during the open for sealed files that had none.
    pub hints_written: usize,
}

/// Sealed data files indexed from their hints by every open in this process.
static FILES_FROM_HINTS: AtomicU64 = AtomicU64::new(0);

/// How many data files all the log engines opened in this process indexed from their hints
/// (tests use it to check that runs with reopens exercise hints).
pub fn files_opened_from_hints() -> u64 {
    FILES_FROM_HINTS.load(Ordering::Relaxed)
}

/// The directory's data files, hint files and temporary files.
struct Listing {
    data: Vec<u32>,
    hints: Vec<u32>,
    tmp: Vec<String>,
}

fn list(dir: &Path) -> Result<Listing> {
    let mut l = Listing {
        data: Vec::new(),
        hints: Vec::new(),
        tmp: Vec::new(),
    };
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let Ok(name) = entry.map_err(|e| io(dir, e))?.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".tmp") {
            l.tmp.push(name);
        } else if let Some(seq) = name.strip_suffix(".dat").and_then(|s| s.parse().ok()) {
            l.data.push(seq);
        } else if let Some(seq) = name.strip_suffix(".hint").and_then(|s| s.parse().ok()) {
            l.hints.push(seq);
        }
    }
    l.data.sort_unstable();
    Ok(l)
}

fn remove(dir: &Path, name: &str) {
    let path = dir.join(name);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete a stale log-engine file");
    }
}

/// Rebuilds the index of `dir`; returns it with the active (last) file's hint entries, if
/// there is a data file at all.
pub(super) fn load(
    dir: &Path,
    id: &EngineId,
    stats: &mut OpenStats,
) -> Result<(Index, Option<(u32, HintBuilder)>)> {
    let listing = list(dir)?;
    for name in &listing.tmp {
        remove(dir, name);
    }
    let active = listing.data.last().copied();
    for &seq in &listing.hints {
        if Some(seq) == active || listing.data.binary_search(&seq).is_err() {
            remove(dir, &hint::hint_name(seq));
        }
    }
    let mut index = Index::default();
    let mut last = None;
    for &seq in &listing.data {
        if Some(seq) == active {
            let builder = replay(dir, seq, true, &mut index)?;
            stats.files_replayed += 1;
            last = Some((seq, builder));
        } else if !from_hint(dir, id, seq, &mut index, stats)? {
            let builder = replay(dir, seq, false, &mut index)?;
            stats.files_replayed += 1;
            let size = index.files.get(&seq).map_or(0, |f| f.size);
            match hint::write(dir, id, seq, size, &builder) {
                Ok(()) => stats.hints_written += 1,
                Err(e) => tracing::warn!(
                    file = %dir.join(file_name(seq)).display(),
                    error = %e,
                    "cannot write the hint of a replayed state data file; it will be replayed again"
                ),
            }
        }
    }
    Ok((index, last))
}

/// Indexes sealed data file `seq` from its hint; `false` if there is no usable hint.
fn from_hint(
    dir: &Path,
    id: &EngineId,
    seq: u32,
    index: &mut Index,
    stats: &mut OpenStats,
) -> Result<bool> {
    let file = super::frame::open_data_file(dir, seq)?;
    match hint::load(dir, id, seq, &file) {
        Loaded::Ops(ops, size) => {
            index.files.insert(
                seq,
                DataFile {
                    file: Arc::new(file),
                    size,
                    live: 0,
                },
            );
            for op in ops {
                index.apply(op);
            }
            stats.files_from_hints += 1;
            FILES_FROM_HINTS.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        }
        Loaded::Missing => Ok(false),
        Loaded::Invalid(why) => {
            tracing::warn!(
                hint = %dir.join(hint::hint_name(seq)).display(),
                reason = %why,
                "ignoring an invalid hint file; replaying its state data file instead"
            );
            stats.hints_rejected += 1;
            Ok(false)
        }
    }
}
