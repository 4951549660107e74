//! The HPACK Huffman decoder (RFC 7541 Appendix B).

use super::Malformed;

/// Code length in bits of each symbol 0..=256 (256 = EOS) of the HPACK Huffman code (RFC 7541
/// Appendix B). The code is canonical (codes are consecutive in order of length, then symbol),
/// so the lengths alone define it.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const HUFFMAN_MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// Canonical decoding tables: symbols ordered by (length, symbol), and how many codes each
/// length has.
struct Canonical {
    count: [u16; HUFFMAN_MAX_LEN + 1],
    symbols: [u16; 257],
}

const CANONICAL: Canonical = {
    let mut count = [0u16; HUFFMAN_MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[HUFFMAN_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut symbols = [0u16; 257];
    let mut k = 0;
    let mut len = 1;
    while len <= HUFFMAN_MAX_LEN {
        let mut s = 0;
        while s < 257 {
            if HUFFMAN_LENGTHS[s] as usize == len {
                symbols[k] = s as u16;
                k += 1;
            }
            s += 1;
        }
        len += 1;
    }
    Canonical { count, symbols }
};

/// Decodes a Huffman-coded string (RFC 7541 §5.2) into `out` (cleared first). Rejects EOS
/// inside the string and padding that is longer than 7 bits or not all ones.
pub(super) fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    out.clear();
    // Canonical decoding, one bit at a time (as zlib's puff.c): `code` holds the bits of the
    // current symbol so far, `first` the first code of length `len`, `index` the number of
    // symbols with shorter codes.
    let (mut code, mut first, mut index, mut len) = (0u32, 0u32, 0usize, 0usize);
    for &byte in src {
        for bit in (0..8).rev() {
            code |= u32::from((byte >> bit) & 1);
            len += 1;
            let count = u32::from(CANONICAL.count[len]);
            if code < first + count {
                let sym = CANONICAL.symbols[index + (code - first) as usize];
                if sym == EOS {
                    return Err(Malformed);
                }
                out.push(sym as u8);
                (code, first, index, len) = (0, 0, 0, 0);
            } else {
                if len == HUFFMAN_MAX_LEN {
                    return Err(Malformed);
                }
                index += count as usize;
                first = (first + count) << 1;
                code <<= 1;
            }
        }
    }
    // Padding: a prefix of EOS (all ones), at most 7 bits. `code` was shifted once more.
    if len > 7 || code >> 1 != (1 << len) - 1 {
        return Err(Malformed);
    }
    Ok(())
}

#[cfg(test)]
/// Huffman-encodes `s` with the canonical code (test helper; the wrapper never encodes).
pub(super) fn huffman_encode(s: &[u8]) -> Vec<u8> {
    let mut codes = [0u32; 257];
    let mut code = 0u32;
    let mut prev_len = 0u8;
    for (k, &sym) in CANONICAL.symbols.iter().enumerate() {
        let len = HUFFMAN_LENGTHS[usize::from(sym)];
        if k > 0 {
            code = (code + 1) << (len - prev_len);
        }
        prev_len = len;
        codes[usize::from(sym)] = code;
    }
    let (mut acc, mut nbits, mut out) = (0u64, 0u32, Vec::new());
    for &c in s {
        let len = u32::from(HUFFMAN_LENGTHS[usize::from(c)]);
        acc = (acc << len) | u64::from(codes[usize::from(c)]);
        nbits += len;
        while nbits >= 8 {
            out.push((acc >> (nbits - 8)) as u8);
            nbits -= 8;
        }
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_matches_rfc7541_examples() {
        // RFC 7541 C.4.1 and C.6.1.
        let www = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut out = Vec::new();
        huffman_decode(&www, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        assert_eq!(huffman_encode(b"www.example.com"), www);
        let url = [
            0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82,
            0xae, 0x43, 0xd3,
        ];
        huffman_decode(&url, &mut out).unwrap();
        assert_eq!(out, b"https://www.example.com");
        let date = [
            0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b,
            0x81, 0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff,
        ];
        huffman_decode(&date, &mut out).unwrap();
        assert_eq!(out, b"Mon, 21 Oct 2013 20:13:21 GMT");
    }

    #[test]
    fn huffman_round_trips_every_byte_and_rejects_bad_padding() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        huffman_decode(&huffman_encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
        huffman_decode(&[], &mut out).unwrap();
        assert!(out.is_empty());
        // '0' is 00000: padding with zeros is invalid; a whole byte of ones is too long.
        assert_eq!(huffman_decode(&[0x00], &mut out), Err(Malformed));
        assert_eq!(huffman_decode(&[0x07, 0xff], &mut out), Err(Malformed));
        assert!(huffman_decode(&[0x07], &mut out).is_ok()); // "0" + 3 bits of padding
        assert_eq!(out, b"0");
        // EOS (30 ones) inside the string.
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xff], &mut out),
            Err(Malformed)
        );
    }
}
