//! HTTP/2 framing: finding a complete header block (HEADERS plus CONTINUATION frames) and
//! re-emitting a rewritten one.

use super::hpack::rewrite_block;
use super::{Malformed, MAX_HEADER_SEQUENCE};

pub(super) const FRAME_HEADER_LEN: usize = 9;
/// Frames we emit never exceed the smallest legal SETTINGS_MAX_FRAME_SIZE.
pub(super) const MAX_FRAME_PAYLOAD: usize = 16_384;
pub(super) const TYPE_HEADERS: u8 = 0x1;
pub(super) const TYPE_CONTINUATION: u8 = 0x9;
pub(super) const FLAG_END_STREAM: u8 = 0x1;
pub(super) const FLAG_END_HEADERS: u8 = 0x4;
pub(super) const FLAG_PADDED: u8 = 0x8;
pub(super) const FLAG_PRIORITY: u8 = 0x20;

pub(super) enum Scan {
    /// More bytes are needed to see the whole header block.
    Incomplete,
    /// Not a well-formed header block (or too large to rewrite).
    Invalid,
    /// The HEADERS frame and its CONTINUATION frames take this many bytes.
    Complete(usize),
}

pub(super) fn frame_len(header: &[u8]) -> usize {
    (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2])
}

pub(super) fn stream_id(header: &[u8]) -> [u8; 4] {
    [header[5] & 0x7f, header[6], header[7], header[8]]
}

/// `buf` starts with a HEADERS frame header; finds the end of its header block.
pub(super) fn scan_header_sequence(buf: &[u8]) -> Scan {
    let sid = stream_id(buf);
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + FRAME_HEADER_LEN) else {
            return Scan::Incomplete;
        };
        let expected = if pos == 0 {
            TYPE_HEADERS
        } else {
            TYPE_CONTINUATION
        };
        if header[3] != expected || stream_id(header) != sid {
            return Scan::Invalid;
        }
        let end = pos + FRAME_HEADER_LEN + frame_len(header);
        if end > MAX_HEADER_SEQUENCE {
            return Scan::Invalid;
        }
        if end > buf.len() {
            return Scan::Incomplete;
        }
        if header[4] & FLAG_END_HEADERS != 0 {
            return Scan::Complete(end);
        }
        pos = end;
    }
}

/// Appends to `out` the header block sequence `seq` (HEADERS + CONTINUATION frames, complete),
/// rewritten if its `:authority` needs it, else unchanged. On `Err`, `out` is unchanged.
pub(super) fn rewrite_sequence(
    seq: &[u8],
    block: &mut Vec<u8>,
    rewritten: &mut Vec<u8>,
    decoded: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    let flags = seq[4];
    let first_end = FRAME_HEADER_LEN + frame_len(seq);
    let payload = &seq[FRAME_HEADER_LEN..first_end];
    let (mut start, mut end) = (0, payload.len());
    if flags & FLAG_PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or(Malformed)?);
        start = 1;
        end = end.checked_sub(pad).ok_or(Malformed)?;
    }
    let priority_start = start;
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    if start > end {
        return Err(Malformed);
    }
    let priority = &payload[priority_start..start];
    block.clear();
    block.extend_from_slice(&payload[start..end]);
    let mut pos = first_end;
    while pos < seq.len() {
        let next = pos + FRAME_HEADER_LEN + frame_len(&seq[pos..]);
        block.extend_from_slice(&seq[pos + FRAME_HEADER_LEN..next]);
        pos = next;
    }

    rewritten.clear();
    if !rewrite_block(block, rewritten, decoded)? {
        out.extend_from_slice(seq);
        return Ok(());
    }

    let sid = stream_id(seq);
    let keep = flags & (FLAG_END_STREAM | FLAG_PRIORITY);
    let first_len = rewritten.len().min(MAX_FRAME_PAYLOAD - priority.len());
    let (first, mut rest) = rewritten.split_at(first_len);
    let end_headers = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
    put_frame_header(
        out,
        priority.len() + first.len(),
        TYPE_HEADERS,
        keep | end_headers,
        sid,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        let end_headers = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), TYPE_CONTINUATION, end_headers, sid);
        out.extend_from_slice(chunk);
        rest = tail;
    }
    Ok(())
}

pub(super) fn put_frame_header(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, sid: [u8; 4]) {
    debug_assert!(len <= MAX_FRAME_PAYLOAD);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
    out.extend_from_slice(&sid);
}
