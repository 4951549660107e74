//! Hint files of the [`LogEngine`](super::LogEngine): what a sealed data file did to the index,
//! without its values, so that opening the engine reads O(keys) bytes instead of O(data).
//!
//! # Model
//!
//! A data file is sealed when the engine rolls to the next one: it is fsynced and never changes
//! again until garbage collection deletes it. At that moment the engine writes beside it a hint
//! (`00000003.hint` for `00000003.dat`) listing, in file order, every op of the data file: the
//! op type, the key and, for a put, where the value lives (offset and length). Applying those
//! ops to the index in order gives exactly the keys, locations and live-byte counts that
//! replaying the data file would, because both go through the same `Index::apply`.
//!
//! The entries of the active file's hint are collected in memory (a [`HintBuilder`]) as its
//! frames are appended, or rebuilt while it is replayed on open, so sealing never re-reads the
//! data. Writing a hint is an optimisation: a failure is logged and the file is replayed at the
//! next open instead.
//!
//! # Layout
//!
//! ```text
//! header (64 bytes, big-endian):
//!   magic "SHLH" u32 | version u32 | engine id [16] | data file seq u32 | data file size u64
//!   | last frame offset u64 | last frame crc u32 | body length u64 | body crc32 u32
//!   | header crc32 u32 (of the 60 bytes before it)
//! body = entry*;  entry = 1 | klen u32 | key | value offset u64 | value length u32   (put)
//!                       | 2 | klen u32 | key                                        (delete)
//! ```
//!
//! # Invariants
//!
//! * A hint is never trusted blindly. It is used only if its header and body checksums hold,
//!   it names this engine directory (the random id of `engine.id`, so a hint copied from
//!   another data dir is refused), its data file's sequence number and current size, and the
//!   last frame of that data file sits where the hint says with the checksum it recorded (so a
//!   hint of another or a rewritten data file is refused), and every value it points at lies
//!   inside the data file. Otherwise it is ignored with a warning and the data file replayed.
//! * A hint is written atomically: a temporary file, fsync, rename, directory fsync. A crash
//!   at any step leaves either no hint (the file is replayed) or a complete one; leftover
//!   temporary files are deleted on open.
//! * Decoding never panics: every length is checked against the bytes actually read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::identity::EngineId;
use super::{Loc, Op};

const MAGIC: u32 = 0x5348_4c48; // "SHLH"
const VERSION: u32 = 1;
pub(super) const HEADER_LEN: usize = 64;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// The data file's frame header (see the frame module): magic, length, crc.
const FRAME_HEADER: usize = 12;

pub(super) fn hint_name(seq: u32) -> String {
    format!("{seq:08}.hint")
}

pub(super) fn tmp_name(seq: u32) -> String {
    format!("{seq:08}.hint.tmp")
}

/// The hint entries of the file being written, collected as its frames are appended.
#[derive(Debug, Default)]
pub(super) struct HintBuilder {
    body: Vec<u8>,
    /// Offset and payload checksum of the data file's last frame.
    last_frame: Option<(u64, u32)>,
}

impl HintBuilder {
    /// A frame with payload checksum `crc` was appended at `offset`.
    pub(super) fn frame(&mut self, offset: u64, crc: u32) {
        self.last_frame = Some((offset, crc));
    }

    /// Records one op of the last frame.
    pub(super) fn record(&mut self, op: &Op) {
        match op {
            Op::Put(k, loc) => {
                self.body.push(OP_PUT);
                self.body.extend_from_slice(&(k.len() as u32).to_be_bytes());
                self.body.extend_from_slice(k);
                self.body.extend_from_slice(&loc.offset.to_be_bytes());
                self.body.extend_from_slice(&loc.len.to_be_bytes());
            }
            Op::Delete(k) => {
                self.body.push(OP_DELETE);
                self.body.extend_from_slice(&(k.len() as u32).to_be_bytes());
                self.body.extend_from_slice(k);
            }
        }
    }

    /// The header of the hint for data file `seq` of `size` bytes in engine `id`.
    fn header(&self, id: &EngineId, seq: u32, size: u64) -> [u8; HEADER_LEN] {
        let (frame_off, frame_crc) = self.last_frame.unwrap_or((0, 0));
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&VERSION.to_be_bytes());
        h[8..24].copy_from_slice(id.as_bytes());
        h[24..28].copy_from_slice(&seq.to_be_bytes());
        h[28..36].copy_from_slice(&size.to_be_bytes());
        h[36..44].copy_from_slice(&frame_off.to_be_bytes());
        h[44..48].copy_from_slice(&frame_crc.to_be_bytes());
        h[48..56].copy_from_slice(&(self.body.len() as u64).to_be_bytes());
        h[56..60].copy_from_slice(&crc32fast::hash(&self.body).to_be_bytes());
        let crc = crc32fast::hash(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_be_bytes());
        h
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn injected(step: &str) -> io::Error {
    io::Error::other(format!("injected failure at {step}"))
}

/// Writes the hint of sealed data file `seq` (`size` bytes) atomically.
pub(super) fn write(
    dir: &Path,
    id: &EngineId,
    seq: u32,
    size: u64,
    hint: &HintBuilder,
) -> io::Result<()> {
    let tmp = dir.join(tmp_name(seq));
    let header = hint.header(id, seq, size);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&header)?;
    fail::fail_point!("log-hint-write-torn", |_| Err(injected(
        "log-hint-write-torn"
    )));
    f.write_all(&hint.body)?;
    f.sync_all()?;
    drop(f);
    fail::fail_point!("log-hint-before-rename", |_| Err(injected(
        "log-hint-before-rename"
    )));
    std::fs::rename(&tmp, dir.join(hint_name(seq)))?;
    fail::fail_point!("log-hint-before-dir-sync", |_| Err(injected(
        "log-hint-before-dir-sync"
    )));
    sync_dir(dir)
}

/// What [`load`] found.
pub(super) enum Loaded {
    /// A valid hint: the data file's ops, in order, and its size.
    Ops(Vec<Op>, u64),
    /// No hint beside the data file.
    Missing,
    /// A hint that must not be used, and why.
    Invalid(String),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads and checks the hint of data file `seq` (open as `data`) of engine `id`.
pub(super) fn load(dir: &Path, id: &EngineId, seq: u32, data: &File) -> Loaded {
    let path = dir.join(hint_name(seq));
    let mut bytes = Vec::new();
    match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Invalid(format!("cannot be read: {e}")),
    }
    let data_size = match data.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Loaded::Invalid(format!("data file cannot be inspected: {e}")),
    };
    match check(&bytes, id, seq, data, data_size) {
        Ok(ops) => Loaded::Ops(ops, data_size),
        Err(why) => Loaded::Invalid(why),
    }
}

fn check(
    b: &[u8],
    id: &EngineId,
    seq: u32,
    data: &File,
    data_size: u64,
) -> Result<Vec<Op>, String> {
    let h = b.get(..HEADER_LEN).ok_or("truncated header")?;
    let field = |at| be32(h, at).ok_or("short header");
    let field64 = |at| be64(h, at).ok_or("short header");
    if field(0)? != MAGIC {
        return Err("bad magic".into());
    }
    if crc32fast::hash(&h[0..60]) != field(60)? {
        return Err("header checksum mismatch".into());
    }
    if field(4)? != VERSION {
        return Err(format!("unknown version {}", field(4)?));
    }
    if &h[8..24] != id.as_bytes() {
        return Err("written by another engine directory (engine id differs)".into());
    }
    if field(24)? != seq {
        return Err(format!("describes data file {} instead", field(24)?));
    }
    let size = field64(28)?;
    if size != data_size {
        return Err(format!(
            "describes {size} bytes of data, the data file has {data_size}"
        ));
    }
    let body = &b[HEADER_LEN..];
    if field64(48)? != body.len() as u64 {
        return Err(format!(
            "body of {} bytes, header says {}",
            body.len(),
            field64(48)?
        ));
    }
    if crc32fast::hash(body) != field(56)? {
        return Err("body checksum mismatch".into());
    }
    check_last_frame(data, size, field64(36)?, field(44)?)?;
    parse_body(body, seq, size).ok_or_else(|| "malformed entry".into())
}

/// The data file's last frame is at `off` with payload checksum `crc` and ends at `size`.
fn check_last_frame(data: &File, size: u64, off: u64, crc: u32) -> Result<(), String> {
    if size == 0 {
        return if off == 0 && crc == 0 {
            Ok(())
        } else {
            Err("names a last frame in an empty data file".into())
        };
    }
    let mut fh = [0u8; FRAME_HEADER];
    let mismatch = || "the data file's last frame differs (hint of another data file)".to_string();
    if off
        .checked_add(FRAME_HEADER as u64)
        .is_none_or(|end| end > size)
    {
        return Err(mismatch());
    }
    data.read_exact_at(&mut fh, off)
        .map_err(|e| format!("data file cannot be read: {e}"))?;
    let len = be32(&fh, 4).ok_or_else(mismatch)? as u64;
    let stored_crc = be32(&fh, 8).ok_or_else(mismatch)?;
    let magic = be32(&fh, 0).ok_or_else(mismatch)?;
    if magic != super::frame::MAGIC || stored_crc != crc || off + FRAME_HEADER as u64 + len != size
    {
        return Err(mismatch());
    }
    Ok(())
}

/// The ops of a hint body, each put's value checked to lie inside a data file of `size` bytes.
fn parse_body(body: &[u8], seq: u32, size: u64) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    let mut p = 0usize;
    while p < body.len() {
        let kind = *body.get(p)?;
        let kl = be32(body, p + 1)? as usize;
        let key = body.get(p + 5..(p + 5).checked_add(kl)?)?.to_vec();
        p += 5 + kl;
        match kind {
            OP_PUT => {
                let offset = be64(body, p)?;
                let len = be32(body, p + 8)?;
                if offset < FRAME_HEADER as u64 || offset.checked_add(len as u64)? > size {
                    return None;
                }
                ops.push(Op::Put(
                    key,
                    Loc {
                        file: seq,
                        offset,
                        len,
                    },
                ));
                p += 12;
            }
            OP_DELETE => ops.push(Op::Delete(key)),
            _ => return None,
        }
    }
    Some(ops)
}
