//! Segment files: the on-disk record format of the Raft log and the scan that validates it.
//!
//! # Layout
//!
//! The log directory holds numbered segment files `00000001.log`, `00000002.log`, … (the number
//! is a sequence number, not a log index; at least 8 decimal digits). Sequence numbers of the
//! segments present are always consecutive: purge deletes a prefix, truncate deletes a suffix
//! (highest first), and a new segment always gets `last + 1`.
//!
//! Every segment starts with a 16-byte header:
//!
//! ```text
//! [magic "SHALELOG" 8B][format version u32 LE = 1][crc32 of the previous 12 bytes u32 LE]
//! ```
//!
//! followed by records, each framed as
//!
//! ```text
//! [len u32 LE][crc32 u32 LE][payload: len bytes]
//! payload = [log index u64 LE][batch start u64 LE][bincode(entry)]
//! ```
//!
//! The CRC (crc32, IEEE, as computed by `crc32fast`) covers the whole payload. `batch start` is
//! the byte offset inside this segment at which the write batch (one group commit, ended by one
//! `fdatasync`) containing the record begins. Log indexes strictly increase through the segment
//! sequence (there may be gaps only where openraft's own test-suite appends with gaps).
//!
//! New segments are created as `NNNNNNNN.log.tmp` holding just the header, fsynced, renamed into
//! place and the directory fsynced, so a segment file that exists always has a complete header.
//!
//! # Crash behaviour and the scan
//!
//! A batch is written with one `pwrite` and made durable with one `fdatasync` before any of its
//! entries is acknowledged, and the next batch is only written after that. So after a crash at
//! most one batch — the last one of the last segment — may be partially on disk, and, because
//! the kernel may write back its pages in any order, any *subset* of its bytes may have survived.
//!
//! [`scan`] walks the records and stops at the first one whose frame is incomplete or whose CRC
//! does not match (the *break point*). It then searches the rest of the segment, at every byte
//! offset, for anything that parses as a valid record:
//!
//! * a valid record whose `batch start` is at or before the break point belongs to the same,
//!   never-acknowledged batch: the break point is a torn tail and may be cut off;
//! * a valid record whose `batch start` is after the break point was written by a later batch,
//!   which means the broken record had been fsynced: that is real corruption in the middle of
//!   the log, and opening is refused.
//!
//! A break point in any segment but the last is always refused. Bit rot inside the very last
//! batch is indistinguishable from a torn write and is cut off like one (every WAL shares this
//! limit; Raft re-replicates the entry from the quorum that acknowledged it).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Magic bytes opening every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SHALELOG";
/// On-disk format version written into segment headers.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// `[len u32][crc u32]`.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// `[index u64][batch start u64]` at the start of each payload.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// Largest payload accepted (a sanity bound, far above etcd's 1.5 MiB request limit).
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// File name of segment `seq`.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:08}.log")
}

/// Parse a segment file name back into its sequence number.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The 16-byte segment header.
pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// fsync a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Append a framed record to `buf`: header fields are filled in, the CRC computed.
pub(crate) fn encode_record(buf: &mut Vec<u8>, index: u64, batch_start: u64, entry: &[u8]) {
    let len = (RECORD_HEADER_LEN + entry.len()) as u32;
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[..8].copy_from_slice(&index.to_le_bytes());
    head[8..].copy_from_slice(&batch_start.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&head);
    h.update(entry);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(&head);
    buf.extend_from_slice(entry);
}

/// Total on-disk size of a record carrying `entry_len` bytes of entry.
pub(crate) fn record_len(entry_len: usize) -> u64 {
    (FRAME_HEADER_LEN + RECORD_HEADER_LEN + entry_len) as u64
}

/// A validated record found by [`scan`] or [`decode_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordInfo {
    pub index: u64,
    pub batch_start: u64,
    /// Offset of the frame in the segment.
    pub offset: u64,
    /// Length of the whole frame (header + payload).
    pub len: u32,
}

/// Why a record failed to parse at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Broken {
    Truncated(&'static str),
    BadLength(u32),
    BadCrc { stored: u32, computed: u32 },
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Truncated(what) => write!(f, "incomplete {what}"),
            Broken::BadLength(l) => write!(f, "impossible record length {l}"),
            Broken::BadCrc { stored, computed } => {
                write!(
                    f,
                    "crc mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
        }
    }
}

/// Parse one frame at `offset` of `data` (a whole segment). Returns the record and the entry
/// bytes. Never panics, whatever the input.
pub(crate) fn decode_record(data: &[u8], offset: u64) -> Result<(RecordInfo, &[u8]), Broken> {
    let start = usize::try_from(offset).map_err(|_| Broken::Truncated("frame header"))?;
    let rest = data.get(start..).ok_or(Broken::Truncated("frame header"))?;
    if rest.len() < FRAME_HEADER_LEN {
        return Err(Broken::Truncated("frame header"));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if (len as usize) < RECORD_HEADER_LEN || len as usize > MAX_PAYLOAD_LEN {
        return Err(Broken::BadLength(len));
    }
    let payload = rest
        .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len as usize)
        .ok_or(Broken::Truncated("record payload"))?;
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Err(Broken::BadCrc { stored, computed });
    }
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&payload[..8]);
    let mut bs = [0u8; 8];
    bs.copy_from_slice(&payload[8..16]);
    let info = RecordInfo {
        index: u64::from_le_bytes(idx),
        batch_start: u64::from_le_bytes(bs),
        offset,
        len: len + FRAME_HEADER_LEN as u32,
    };
    Ok((info, &payload[RECORD_HEADER_LEN..]))
}

/// How a segment scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte after the header belongs to a valid record.
    Clean,
    /// A torn tail starting at `offset`: safe to cut off (only allowed in the last segment).
    TornTail { offset: u64, reason: String },
    /// Corruption followed by data from a later batch: refuse to open.
    Corrupt { offset: u64, reason: String },
}

/// Result of scanning one segment.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub records: Vec<RecordInfo>,
    pub end: ScanEnd,
}

impl SegmentScan {
    /// Length of the valid prefix of the segment.
    pub fn valid_len(&self) -> u64 {
        self.records
            .last()
            .map(|r| r.offset + r.len as u64)
            .unwrap_or(SEGMENT_HEADER_LEN)
    }
}

/// Check the segment header. `Err` carries the reason the file is not ours.
pub(crate) fn check_header(data: &[u8]) -> Result<(), String> {
    if data.len() < SEGMENT_HEADER_LEN as usize {
        return Err(format!(
            "file is {} bytes, shorter than the header",
            data.len()
        ));
    }
    if &data[..8] != SEGMENT_MAGIC {
        return Err("bad magic".to_string());
    }
    let crc = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
    if crc != crc32fast::hash(&data[..12]) {
        return Err("header crc mismatch".to_string());
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

/// Scan a whole segment (header already checked). `prev_index` is the last index of the
/// previous segment, used to order-check records and to narrow the resync search.
pub(crate) fn scan(data: &[u8], prev_index: Option<u64>) -> SegmentScan {
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut last_index = prev_index;
    let total = data.len() as u64;
    while offset < total {
        let broken = match decode_record(data, offset) {
            Ok((rec, _)) => {
                let in_order = last_index.is_none_or(|l| rec.index > l);
                let bs_ok = rec.batch_start >= SEGMENT_HEADER_LEN && rec.batch_start <= offset;
                if in_order && bs_ok {
                    last_index = Some(rec.index);
                    offset += rec.len as u64;
                    records.push(rec);
                    continue;
                }
                format!(
                    "record for index {} (batch start {}) out of order after index {:?}",
                    rec.index, rec.batch_start, last_index
                )
            }
            Err(b) => b.to_string(),
        };
        let end = classify_break(data, offset, last_index, broken);
        return SegmentScan { records, end };
    }
    SegmentScan {
        records,
        end: ScanEnd::Clean,
    }
}

/// Decide whether the break at `at` is a torn tail or mid-log corruption by searching for
/// valid records after it (see the module documentation).
fn classify_break(data: &[u8], at: u64, last_index: Option<u64>, reason: String) -> ScanEnd {
    let total = data.len() as u64;
    let min_frame = (FRAME_HEADER_LEN + RECORD_HEADER_LEN) as u64;
    let mut o = at + 1;
    while o + min_frame <= total {
        let s = o as usize;
        // Cheap pre-filter before computing a CRC: plausible length, index and batch start.
        let len = u32::from_le_bytes([data[s], data[s + 1], data[s + 2], data[s + 3]]) as u64;
        let remaining = total - o - FRAME_HEADER_LEN as u64;
        let plausible_len = len >= RECORD_HEADER_LEN as u64 && len <= remaining;
        if plausible_len {
            let p = s + FRAME_HEADER_LEN;
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[p..p + 8]);
            let index = u64::from_le_bytes(b);
            b.copy_from_slice(&data[p + 8..p + 16]);
            let batch_start = u64::from_le_bytes(b);
            let index_ok = match last_index {
                Some(l) => index > l && index - l <= total,
                None => true,
            };
            let bs_ok = (SEGMENT_HEADER_LEN..=o).contains(&batch_start);
            if index_ok && bs_ok {
                if let Ok((rec, _)) = decode_record(data, o) {
                    if rec.batch_start > at {
                        return ScanEnd::Corrupt {
                            offset: at,
                            reason: format!(
                                "{reason}; a valid record for index {} written by a later batch \
                                 follows at offset {}",
                                rec.index, rec.offset
                            ),
                        };
                    }
                }
            }
        }
        o += 1;
    }
    ScanEnd::TornTail { offset: at, reason }
}

/// Paths of the segment files in `dir`, sorted by sequence number. Also removes leftover
/// `*.tmp` files from interrupted creations or metadata writes.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            tracing::info!(
                file = name,
                "removing leftover temporary file from an earlier crash"
            );
            std::fs::remove_file(ent.path())?;
            continue;
        }
        if let Some(seq) = parse_segment_file_name(name) {
            out.push((seq, ent.path()));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Create segment `seq` atomically (tmp + fsync + rename + dir fsync) and open it read/write.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> io::Result<(PathBuf, File)> {
    use std::io::Write;
    let path = dir.join(segment_file_name(seq));
    let tmp = dir.join(format!("{}.tmp", segment_file_name(seq)));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&segment_header())?;
        f.sync_all()?;
    }
    fail::fail_point!("raft-segment-before-rename", |_| Err(io::Error::other(
        "failpoint raft-segment-before-rename"
    )));
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(records: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut data = segment_header().to_vec();
        for (index, bs, entry) in records {
            encode_record(&mut data, *index, *bs, entry);
        }
        data
    }

    /// Three batches: [1,2] at 16, [3] and [4,5].
    fn three_batches() -> (Vec<u8>, Vec<u64>) {
        let mut data = segment_header().to_vec();
        let mut offs = Vec::new();
        let b0 = data.len() as u64;
        for i in 1..=2u64 {
            offs.push(data.len() as u64);
            encode_record(&mut data, i, b0, format!("entry-{i}").as_bytes());
        }
        let b1 = data.len() as u64;
        offs.push(b1);
        encode_record(&mut data, 3, b1, b"entry-3");
        let b2 = data.len() as u64;
        for i in 4..=5u64 {
            offs.push(data.len() as u64);
            encode_record(
                &mut data,
                i,
                b2,
                format!("entry-{i}-longer-payload").as_bytes(),
            );
        }
        (data, offs)
    }

    #[test]
    fn names_roundtrip() {
        assert_eq!(segment_file_name(12), "00000012.log");
        assert_eq!(parse_segment_file_name("00000012.log"), Some(12));
        assert_eq!(parse_segment_file_name("123456789.log"), Some(123456789));
        assert_eq!(parse_segment_file_name("12.log"), None);
        assert_eq!(parse_segment_file_name("00000012.log.tmp"), None);
        assert_eq!(parse_segment_file_name("0000001x.log"), None);
    }

    #[test]
    fn clean_scan() {
        let (data, offs) = three_batches();
        check_header(&data).unwrap();
        let s = scan(&data, None);
        assert_eq!(s.end, ScanEnd::Clean);
        let idx: Vec<u64> = s.records.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4, 5]);
        assert_eq!(s.records.iter().map(|r| r.offset).collect::<Vec<_>>(), offs);
        assert_eq!(s.valid_len(), data.len() as u64);
        let (_, e) = decode_record(&data, offs[2]).unwrap();
        assert_eq!(e, b"entry-3");
    }

    #[test]
    fn header_checks() {
        assert!(check_header(b"SHALE").is_err());
        let mut h = segment_header().to_vec();
        h[0] = b'X';
        assert!(check_header(&h).is_err());
        let mut h = segment_header().to_vec();
        h[9] = 7;
        assert!(check_header(&h).is_err());
    }

    /// Cutting the file at every byte offset inside the last record is a torn tail that is
    /// cut back exactly to the start of that record.
    #[test]
    fn torn_tail_at_every_byte_of_last_record() {
        let (data, offs) = three_batches();
        let last = *offs.last().unwrap();
        for cut in last + 1..data.len() as u64 {
            let s = scan(&data[..cut as usize], None);
            match &s.end {
                ScanEnd::TornTail { offset, .. } => assert_eq!(*offset, last, "cut {cut}"),
                other => panic!("cut {cut}: {other:?}"),
            }
            assert_eq!(s.valid_len(), last);
            assert_eq!(s.records.len(), 4);
        }
    }

    /// Every byte of the last batch garbled or zeroed (any page subset lost) is a torn tail.
    #[test]
    fn garbage_inside_last_batch_is_torn() {
        let (data, offs) = three_batches();
        let batch_start = offs[3];
        for pos in batch_start..data.len() as u64 {
            for val in [0u8, 0xff] {
                let mut d = data.clone();
                if d[pos as usize] == val {
                    continue;
                }
                d[pos as usize] = val;
                let s = scan(&d, None);
                match &s.end {
                    ScanEnd::TornTail { offset, .. } => {
                        assert!(*offset >= batch_start, "pos {pos}");
                        assert!(s.records.len() >= 3);
                    }
                    other => panic!("pos {pos}: {other:?}"),
                }
            }
        }
    }

    /// A flipped byte in an earlier (fsynced) batch, followed by the valid later batch, is
    /// mid-log corruption.
    #[test]
    fn corruption_before_a_later_batch_is_refused() {
        let (data, offs) = three_batches();
        for pos in SEGMENT_HEADER_LEN..offs[3] {
            let mut d = data.clone();
            d[pos as usize] ^= 0x5a;
            let s = scan(&d, None);
            match &s.end {
                ScanEnd::Corrupt { offset, .. } => assert!(*offset < offs[3], "pos {pos}"),
                other => panic!("pos {pos}: {other:?}"),
            }
        }
    }

    #[test]
    fn out_of_order_index_is_a_break() {
        let data = build(&[(5, 16, b"a"), (4, 16, b"b")]);
        let s = scan(&data, None);
        assert!(matches!(s.end, ScanEnd::TornTail { .. }));
        assert_eq!(s.records.len(), 1);
        let data = build(&[(5, 16, b"a")]);
        let s = scan(&data, Some(5));
        assert!(matches!(s.end, ScanEnd::TornTail { .. }));
        assert!(s.records.is_empty());
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let mut seed = 0x1234_5678u64;
        for n in 0..2000usize {
            let mut d = segment_header().to_vec();
            for _ in 0..(n % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                d.push(seed as u8);
            }
            let _ = scan(&d, None);
            let _ = decode_record(&d, (n % 40) as u64);
        }
        let _ = decode_record(&[], u64::MAX);
    }
}
