//! The HPACK walk (RFC 7541 §6) that finds and repairs a URL-shaped `:authority` value.

use super::huffman::huffman_decode;
use super::Malformed;

/// Walks the HPACK header block `src`. If some `:authority` value needs repair, writes the
/// whole rewritten block to `dst` and returns true; otherwise leaves `dst` alone and returns
/// false.
pub(super) fn rewrite_block(
    src: &[u8],
    dst: &mut Vec<u8>,
    decoded: &mut Vec<u8>,
) -> Result<bool, Malformed> {
    let mut i = 0;
    let mut copied = 0;
    let mut changed = false;
    while let Some(&b) = src.get(i) {
        if b & 0x80 != 0 {
            // Indexed header field.
            i += decode_int(&src[i..], 7)?.1;
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            i += decode_int(&src[i..], 5)?.1;
            continue;
        }
        // Literal: with incremental indexing (01), without indexing (0000), never indexed (0001).
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let (name_index, n) = decode_int(&src[i..], prefix)?;
        i += n;
        let is_authority = if name_index == 0 {
            let name = parse_string(src, i)?;
            i = name.end;
            decoded_eq(src, &name, b":authority", decoded)?
        } else {
            name_index == 1
        };
        let value = parse_string(src, i)?;
        i = value.end;
        if !is_authority {
            continue;
        }
        let raw = &src[value.start..value.end];
        let plain: &[u8] = if value.huffman {
            huffman_decode(raw, decoded)?;
            decoded
        } else {
            raw
        };
        if let Some(fixed) = fixed_authority(plain) {
            dst.extend_from_slice(&src[copied..value.header]);
            encode_int(dst, fixed.len(), 7, 0);
            dst.extend_from_slice(fixed);
            copied = value.end;
            changed = true;
        }
    }
    if changed {
        dst.extend_from_slice(&src[copied..]);
    }
    Ok(changed)
}

/// A string literal (RFC 7541 §5.2) in a header block.
pub(super) struct StringRef {
    /// Offset of its first byte (the H bit and length).
    pub(super) header: usize,
    huffman: bool,
    /// Its octets: `start..end`.
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) fn parse_string(src: &[u8], at: usize) -> Result<StringRef, Malformed> {
    let first = *src.get(at).ok_or(Malformed)?;
    let (len, n) = decode_int(&src[at..], 7)?;
    let start = at + n;
    let end = start.checked_add(len).ok_or(Malformed)?;
    if end > src.len() {
        return Err(Malformed);
    }
    Ok(StringRef {
        header: at,
        huffman: first & 0x80 != 0,
        start,
        end,
    })
}

fn decoded_eq(
    src: &[u8],
    s: &StringRef,
    want: &[u8],
    decoded: &mut Vec<u8>,
) -> Result<bool, Malformed> {
    let raw = &src[s.start..s.end];
    if !s.huffman {
        return Ok(raw == want);
    }
    // Every symbol takes at most 30 bits: longer encodings cannot decode to `want`.
    if raw.len() > want.len() * 4 {
        return Ok(false);
    }
    huffman_decode(raw, decoded)?;
    Ok(decoded.as_slice() == want)
}

/// The repaired `:authority` for `value`, or `None` if it is left alone: `http://h:p/x` →
/// `h:p`. Always strictly shorter than `value` (see the module docs for why that matters).
fn fixed_authority(value: &[u8]) -> Option<&[u8]> {
    let at = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[at + 3..];
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = &rest[..end];
    if !host.is_empty() {
        Some(host)
    } else if value.len() > b"localhost".len() {
        Some(b"localhost")
    } else {
        None
    }
}

/// Decodes an HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1) at the start of
/// `src`: (value, bytes used).
fn decode_int(src: &[u8], prefix: u32) -> Result<(usize, usize), Malformed> {
    let max = (1u8 << prefix) - 1;
    let first = src.first().ok_or(Malformed)? & max;
    if first < max {
        return Ok((usize::from(first), 1));
    }
    let mut value = u64::from(max);
    let mut shift = 0u32;
    for (k, &b) in src[1..].iter().enumerate() {
        if shift > 28 {
            return Err(Malformed); // far beyond any real length or index
        }
        value += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let value = usize::try_from(value).map_err(|_| Malformed)?;
            return Ok((value, k + 2));
        }
        shift += 7;
    }
    Err(Malformed)
}

/// Appends `value` as an HPACK integer with a `prefix`-bit prefix; `flags` fills the bits above
/// the prefix in the first byte.
pub(super) fn encode_int(dst: &mut Vec<u8>, mut value: usize, prefix: u32, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        dst.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    dst.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_rfc7541_c1() {
        let mut v = Vec::new();
        encode_int(&mut v, 10, 5, 0);
        assert_eq!(v, [0x0a]);
        v.clear();
        encode_int(&mut v, 1337, 5, 0);
        assert_eq!(v, [0x1f, 0x9a, 0x0a]);
        assert_eq!(decode_int(&v, 5), Ok((1337, 3)));
        assert_eq!(decode_int(&[0x2a], 8 - 1), Ok((42, 1)));
        assert_eq!(decode_int(&[0x1f, 0x9a], 5), Err(Malformed));
        assert_eq!(
            decode_int(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 7),
            Err(Malformed)
        );
        for n in [0, 1, 126, 127, 128, 300, 16_384, 1 << 20] {
            v.clear();
            encode_int(&mut v, n, 7, 0x80);
            assert_eq!(decode_int(&v, 7), Ok((n, v.len())));
        }
    }

    #[test]
    fn fixed_authority_cases() {
        assert_eq!(fixed_authority(b"127.0.0.1:2379"), None);
        assert_eq!(
            fixed_authority(b"http://127.0.0.1:1/"),
            Some(&b"127.0.0.1:1"[..])
        );
        assert_eq!(fixed_authority(b"https://h:2/a/b?c"), Some(&b"h:2"[..]));
        assert_eq!(
            fixed_authority(b"unix:///tmp/etcd.sock"),
            Some(&b"localhost"[..])
        );
        assert_eq!(fixed_authority(b"x:///"), None);
    }
}
