//! The data-file frame format of the [`LogEngine`](super::LogEngine) (see the parent module's
//! layout) and the replay of a file into the index on open.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::hint::HintBuilder;
use super::{corrupt, file_name, io, DataFile, Index, Loc, Op};
use crate::engine::{Error, Result, WriteOp};

pub(super) const MAGIC: u32 = 0x5348_4c46; // "SHLF"
pub(super) const HEADER: u64 = 12;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Largest frame accepted on open (a corrupt length must not allocate gigabytes).
const MAX_FRAME: u32 = 1 << 30;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Opens data file `seq` of `dir` for reading and appending (open, replay, from a hint).
pub(super) fn open_data_file(dir: &Path, seq: u32) -> Result<std::fs::File> {
    let path = dir.join(file_name(seq));
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, e))
}

/// Replays one data file into `index`; cuts a torn tail off the last file. Returns the file's
/// hint entries.
pub(super) fn replay(dir: &Path, seq: u32, last: bool, index: &mut Index) -> Result<HintBuilder> {
    let path = dir.join(file_name(seq));
    let file = open_data_file(dir, seq)?;
    let mut data = Vec::new();
    (&file).read_to_end(&mut data).map_err(|e| io(&path, e))?;
    index.files.insert(
        seq,
        DataFile {
            file: Arc::new(file),
            size: 0,
            live: 0,
        },
    );
    let mut hint = HintBuilder::default();
    let mut pos = 0usize;
    let valid_end = loop {
        if pos == data.len() {
            break pos;
        }
        match parse_frame(&data[pos..], seq, pos as u64) {
            Ok((ops, len)) => {
                // parse_frame checked the header: the checksum is there.
                let crc = data.get(pos + 8..pos + 12).map_or(0, be32);
                hint.frame(pos as u64, crc);
                for op in ops {
                    hint.record(&op);
                    index.apply(op);
                }
                pos += len;
            }
            // A crash in the middle of a write: cut the torn frame off.
            Err(_) if last => break pos,
            Err(what) => return Err(corrupt(&path, pos as u64, what)),
        }
    };
    let Some(f) = index.files.get_mut(&seq) else {
        return Err(Error::Engine(format!(
            "{} vanished from the index",
            path.display()
        )));
    };
    if valid_end < data.len() {
        f.file
            .set_len(valid_end as u64)
            .and_then(|_| f.file.sync_all())
            .map_err(|e| io(&path, e))?;
    }
    f.size = valid_end as u64;
    Ok(hint)
}

/// Parses the frame at the start of `b` (at file offset `base`): its ops and total length.
pub(super) fn parse_frame(
    b: &[u8],
    file: u32,
    base: u64,
) -> std::result::Result<(Vec<Op>, usize), &'static str> {
    if b.len() < HEADER as usize {
        return Err("torn frame header");
    }
    if be32(&b[0..4]) != MAGIC {
        return Err("bad frame magic");
    }
    let len = be32(&b[4..8]);
    if len > MAX_FRAME || b.len() < HEADER as usize + len as usize {
        return Err("torn frame");
    }
    let payload = &b[HEADER as usize..HEADER as usize + len as usize];
    if crc32fast::hash(payload) != be32(&b[8..12]) {
        return Err("frame checksum mismatch");
    }
    let mut ops = Vec::new();
    let mut p = 0usize;
    while p < payload.len() {
        let rest = &payload[p..];
        match rest[0] {
            OP_PUT if rest.len() >= 9 => {
                let (kl, vl) = (be32(&rest[1..5]) as usize, be32(&rest[5..9]) as usize);
                if rest.len() < 9 + kl + vl {
                    return Err("truncated put");
                }
                let key = rest[9..9 + kl].to_vec();
                let loc = Loc {
                    file,
                    offset: base + HEADER + (p + 9 + kl) as u64,
                    len: vl as u32,
                };
                ops.push(Op::Put(key, loc));
                p += 9 + kl + vl;
            }
            OP_DELETE if rest.len() >= 5 => {
                let kl = be32(&rest[1..5]) as usize;
                if rest.len() < 5 + kl {
                    return Err("truncated delete");
                }
                ops.push(Op::Delete(rest[5..5 + kl].to_vec()));
                p += 5 + kl;
            }
            _ => return Err("bad op"),
        }
    }
    Ok((ops, HEADER as usize + len as usize))
}

/// Appends `op` to the frame being built in `buf` (header included, frame to start at file
/// offset `base` of data file `file`); returns the index change it makes.
pub(super) fn encode_op(buf: &mut Vec<u8>, op: WriteOp, file: u32, base: u64) -> Op {
    match op {
        WriteOp::Put(k, v) => {
            buf.push(OP_PUT);
            buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
            buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
            buf.extend_from_slice(&k);
            let loc = Loc {
                file,
                offset: base + buf.len() as u64,
                len: v.len() as u32,
            };
            buf.extend_from_slice(&v);
            Op::Put(k, loc)
        }
        WriteOp::Delete(k) => {
            buf.push(OP_DELETE);
            buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
            buf.extend_from_slice(&k);
            Op::Delete(k)
        }
    }
}

/// Bytes `op` takes in a frame (what [`encode_op`] appends).
pub(super) fn op_len(op: &WriteOp) -> usize {
    match op {
        WriteOp::Put(k, v) => put_record_len(k.len(), v.len() as u32) as usize,
        WriteOp::Delete(k) => 5 + k.len(),
    }
}

/// Bytes a put record of a `key_len`-byte key and `value_len`-byte value takes in a frame.
pub(super) fn put_record_len(key_len: usize, value_len: u32) -> u64 {
    9 + key_len as u64 + value_len as u64
}

/// Fills in the header of the frame built in `buf` (which starts with [`HEADER`] bytes
/// reserved by the caller, then the ops of [`encode_op`]); returns the payload's checksum.
pub(super) fn seal_frame(buf: &mut [u8]) -> Result<u32> {
    let len = buf.len() - HEADER as usize;
    if len as u64 > MAX_FRAME as u64 {
        return Err(Error::Engine(format!(
            "a state batch of {len} bytes is larger than the {MAX_FRAME}-byte frame limit"
        )));
    }
    let crc = crc32fast::hash(&buf[HEADER as usize..]);
    buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    buf[4..8].copy_from_slice(&(len as u32).to_be_bytes());
    buf[8..12].copy_from_slice(&crc.to_be_bytes());
    Ok(crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `op_len` is exactly what `encode_op` appends (the append path sizes its buffer by it).
    #[test]
    fn op_len_matches_the_encoding() {
        let ops = [
            WriteOp::Put(b"k".to_vec(), vec![7u8; 1024]),
            WriteOp::Put(Vec::new(), Vec::new()),
            WriteOp::Delete(b"some/longer/key".to_vec()),
            WriteOp::Delete(Vec::new()),
        ];
        let mut buf = vec![0u8; HEADER as usize];
        for op in ops {
            let before = buf.len();
            let want = op_len(&op);
            encode_op(&mut buf, op, 0, 0);
            assert_eq!(buf.len() - before, want);
        }
    }
}
