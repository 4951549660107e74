//! Byte formats of the key-index checkpoint: header, chunks, pending marker.
//!
//! ```text
//! c/ckpt/h                     header  = "SKIC" | format u32 | rev i64 | fingerprint u32
//!                                        | keys u64 | chunk count u32 | { len u32, crc u32 }*
//!                                        | crc32 of everything before        (all BE)
//! c/ckpt/d/ rev i64 | n u32    chunk n = entry*
//! c/ckpt/p                     pending = rev i64 | chunks written u32
//! entry = varint key len | key | zz lease | varint gens | deleted u8
//!         | gen* ;  gen = zz ver | zz created main | varint revs | (zz main delta, zz sub)*
//! ```
//!
//! `varint` is LEB128, `zz` a zigzag-encoded LEB128 i64. Revision mains are stored as deltas
//! from the previous revision of the same key (the first from 0), which keeps the common
//! single-revision key at a handful of bytes besides its name.
//!
//! An entry lists the key's *non-empty* generations, oldest first; `deleted` says the key is
//! deleted at the checkpoint revision (its last listed generation ends with the tombstone and
//! an empty live generation follows). The `created` revision keeps only its main part, which
//! is all a key-value carries (`create_revision`) and so all a rebuild from storage can know.
//!
//! Decoding never panics and never trusts a length: every count is checked against the bytes
//! left, and every entry against the index invariants (keys strictly increasing across the
//! whole checkpoint, revisions strictly increasing within a key, versions positive).

use bytes::Bytes;

use crate::key_index::{Generation, KeyIndex};
use crate::revision::Revision;

pub(crate) const FORMAT: u32 = 1;
const MAGIC: &[u8; 4] = b"SKIC";
/// Every checkpoint record lives under this prefix; no other table of the state store uses
/// `c/` (MVCC uses `k` and `m/`, the state machine `a/ l/ o/ p/ r/ u/ x/`).
pub(crate) const PREFIX: &[u8] = b"c/ckpt/";
pub(crate) const HEADER_KEY: &[u8] = b"c/ckpt/h";
pub(crate) const PENDING_KEY: &[u8] = b"c/ckpt/p";
const CHUNK_PREFIX: &[u8] = b"c/ckpt/d/";

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub String);

fn bad<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

pub(crate) fn chunk_key(rev: i64, n: u32) -> Vec<u8> {
    let mut k = CHUNK_PREFIX.to_vec();
    k.extend_from_slice(&rev.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Size and checksum of one chunk, as the header records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub len: u32,
    pub crc: u32,
}

impl ChunkMeta {
    pub fn of(chunk: &[u8]) -> Self {
        Self {
            len: chunk.len() as u32,
            crc: crc32fast::hash(chunk),
        }
    }
}

/// The header: written last, in the batch that makes a checkpoint current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The checkpoint holds the index exactly as of this revision.
    pub rev: i64,
    /// CRC of the first stored change of revision `rev` (storage key and value): ties the
    /// checkpoint to this history.
    pub fingerprint: u32,
    pub keys: u64,
    pub chunks: Vec<ChunkMeta>,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + 8 * self.chunks.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT.to_be_bytes());
        b.extend_from_slice(&self.rev.to_be_bytes());
        b.extend_from_slice(&self.fingerprint.to_be_bytes());
        b.extend_from_slice(&self.keys.to_be_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            b.extend_from_slice(&c.len.to_be_bytes());
            b.extend_from_slice(&c.crc.to_be_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let Some((body, crc)) = b.split_last_chunk::<4>() else {
            return bad("header truncated");
        };
        if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
            return bad("header checksum mismatch");
        }
        let mut r = Fixed(body);
        if r.take::<4>()? != *MAGIC {
            return bad("not a checkpoint header");
        }
        let format = u32::from_be_bytes(r.take()?);
        if format != FORMAT {
            return bad(format!(
                "checkpoint format {format}, this build reads {FORMAT}"
            ));
        }
        let rev = i64::from_be_bytes(r.take()?);
        let fingerprint = u32::from_be_bytes(r.take()?);
        let keys = u64::from_be_bytes(r.take()?);
        let n = u32::from_be_bytes(r.take()?) as usize;
        if r.0.len() != n * 8 {
            return bad("header chunk table has the wrong length");
        }
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkMeta {
                len: u32::from_be_bytes(r.take()?),
                crc: u32::from_be_bytes(r.take()?),
            });
        }
        Ok(Self {
            rev,
            fingerprint,
            keys,
            chunks,
        })
    }
}

/// Marker of a checkpoint being written: its revision and how many chunks exist so far.
/// Written with every chunk, deleted with the header write, so chunks of an interrupted
/// checkpoint can always be found and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub rev: i64,
    pub written: u32,
}

impl Pending {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.rev.to_be_bytes().to_vec();
        b.extend_from_slice(&self.written.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = Fixed(b);
        let rev = i64::from_be_bytes(r.take()?);
        let written = u32::from_be_bytes(r.take()?);
        if !r.0.is_empty() {
            return bad("pending marker has trailing bytes");
        }
        Ok(Self { rev, written })
    }
}

struct Fixed<'a>(&'a [u8]);

impl Fixed<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return bad("header truncated");
        };
        self.0 = rest;
        Ok(*head)
    }
}

/// A key's history cut at a revision: what the index held for it at that revision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cut {
    /// Non-empty generations, oldest first.
    pub gens: Vec<Generation>,
    /// The key is deleted at the cut (the last generation is closed by its tombstone).
    pub deleted: bool,
    /// Revisions above the cut were dropped: the index's lease may belong to one of them.
    pub trimmed: bool,
}

impl Cut {
    /// Cuts `ki` at revision `at`, dropping every revision above it; `None` when nothing of
    /// the key is left (it was created after `at`).
    pub fn of(ki: &KeyIndex, at: i64) -> Option<Cut> {
        let last = ki.generations.len().saturating_sub(1);
        let mut gens = Vec::with_capacity(ki.generations.len());
        let mut deleted = false;
        let mut trimmed = false;
        for (i, g) in ki.generations.iter().enumerate() {
            let n = g.count_le(at);
            let dropped = g.revs.len() - n;
            trimmed |= dropped > 0;
            if n == 0 {
                continue;
            }
            // A closed generation keeps its tombstone only if the tombstone is at or below
            // the cut; otherwise the key was still live at the cut.
            deleted = i != last && dropped == 0;
            gens.push(Generation {
                ver: g.ver - dropped as i64,
                created: Revision::new(g.created.main, 0),
                revs: g.revs[..n].to_vec(),
            });
        }
        if gens.is_empty() {
            return None;
        }
        Some(Cut {
            gens,
            deleted,
            trimmed,
        })
    }

    /// The index entry this cut stands for.
    pub fn into_key_index(self, lease: i64) -> KeyIndex {
        let mut generations = self.gens;
        let modified = generations
            .last()
            .and_then(|g| g.revs.last().copied())
            .unwrap_or_default();
        if self.deleted {
            generations.push(Generation::default());
        }
        KeyIndex {
            modified,
            generations,
            lease: if self.deleted { 0 } else { lease },
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zz(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends one entry to a chunk.
pub(crate) fn encode_entry(out: &mut Vec<u8>, key: &[u8], lease: i64, cut: &Cut) {
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    put_zz(out, if cut.deleted { 0 } else { lease });
    put_varint(out, cut.gens.len() as u64);
    out.push(cut.deleted as u8);
    let mut prev = 0i64;
    for g in &cut.gens {
        put_zz(out, g.ver);
        put_zz(out, g.created.main);
        put_varint(out, g.revs.len() as u64);
        for r in &g.revs {
            put_zz(out, r.main.wrapping_sub(prev));
            put_zz(out, r.sub);
            prev = r.main;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&b, rest)) = self.0.split_first() else {
                return bad("chunk truncated inside a number");
            };
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        bad("number longer than 64 bits")
    }

    fn zz(&mut self) -> Result<i64, Malformed> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count of items each taking at least `min_bytes`: never more than the bytes left.
    fn count(&mut self, min_bytes: usize) -> Result<usize, Malformed> {
        let n = self.varint()?;
        if n > (self.0.len() / min_bytes.max(1)) as u64 {
            return bad(format!("count {n} exceeds the bytes left"));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return bad("chunk truncated inside a key");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

/// Decodes one chunk, appending its entries to `out`. `out`'s last key (from the previous
/// chunks) must sort before this chunk's first.
pub(crate) fn decode_chunk(b: &[u8], out: &mut Vec<(Bytes, KeyIndex)>) -> Result<(), Malformed> {
    let mut r = Reader(b);
    while !r.0.is_empty() {
        let klen = r.count(1)?;
        let key = r.bytes(klen)?;
        if out.last().is_some_and(|(prev, _)| prev.as_ref() >= key) {
            return bad("keys out of order");
        }
        let lease = r.zz()?;
        let ngens = r.count(3)?;
        let deleted = match r.bytes(1)? {
            [0] => false,
            [1] => true,
            _ => return bad("bad deleted flag"),
        };
        if ngens == 0 {
            return bad("key without history");
        }
        let mut gens = Vec::with_capacity(ngens);
        let mut prev = Revision::new(0, -1);
        for _ in 0..ngens {
            let ver = r.zz()?;
            let created = Revision::new(r.zz()?, 0);
            let n = r.count(2)?;
            if n == 0 {
                return bad("empty generation");
            }
            let mut revs = Vec::with_capacity(n);
            for _ in 0..n {
                let main = prev.main.wrapping_add(r.zz()?);
                let rev = Revision::new(main, r.zz()?);
                if rev <= prev || rev.sub < 0 {
                    return bad("revisions out of order");
                }
                revs.push(rev);
                prev = rev;
            }
            if ver < n as i64 || created.main > revs[0].main || created.main <= 0 {
                return bad("inconsistent generation");
            }
            gens.push(Generation { ver, created, revs });
        }
        let cut = Cut {
            gens,
            deleted,
            trimmed: false,
        };
        out.push((Bytes::copy_from_slice(key), cut.into_key_index(lease)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_index::tests::r;

    fn sample() -> KeyIndex {
        // put@2 put@4 del@6 | put@8 put@10.1
        let mut k = KeyIndex::new();
        k.put(r(2));
        k.put(r(4));
        k.tombstone(r(6));
        k.put(Revision::new(8, 2));
        k.put(Revision::new(10, 1));
        k.lease = 7;
        k
    }

    #[test]
    fn cut_drops_revisions_above_the_cut() {
        let k = sample();
        assert_eq!(Cut::of(&k, 1), None);
        let at3 = Cut::of(&k, 3).expect("cut").into_key_index(7);
        assert_eq!(at3.generations.len(), 1);
        assert_eq!(at3.generations[0].revs, vec![r(2)]);
        assert_eq!(at3.get(3).map(|a| a.version), Some(1));
        let at6 = Cut::of(&k, 7).expect("cut");
        assert!(at6.deleted && at6.trimmed);
        let at6 = at6.into_key_index(7);
        assert!(at6.is_deleted());
        assert_eq!(at6.lease, 0);
        assert_eq!(at6.modified, r(6));
        let all = Cut::of(&k, 10).expect("cut");
        assert!(!all.deleted && !all.trimmed);
        let at10 = all.into_key_index(7);
        let view = |ki: &KeyIndex, at| ki.get(at).map(|a| (a.modified, a.version, a.created.main));
        for at in 0..12 {
            assert_eq!(view(&at10, at), view(&k, at), "read at {at}");
        }
        assert_eq!(
            at10.generations[1].created,
            r(8),
            "created keeps its main only"
        );
    }

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let k = sample();
        let mut chunk = Vec::new();
        for (name, at) in [("a", 3), ("b", 7), ("c", 10)] {
            encode_entry(
                &mut chunk,
                name.as_bytes(),
                7,
                &Cut::of(&k, at).expect("cut"),
            );
        }
        let mut out = Vec::new();
        decode_chunk(&chunk, &mut out).expect("decode");
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].1.generations, Cut::of(&k, 10).expect("c").gens);
        assert_eq!(out[2].1.lease, 7);
        // Every prefix and every single-byte change either decodes or fails cleanly.
        for n in 0..chunk.len() {
            let _ = decode_chunk(&chunk[..n], &mut Vec::new());
            let mut c = chunk.clone();
            c[n] ^= 0x5a;
            let _ = decode_chunk(&c, &mut Vec::new());
        }
        // Keys must keep increasing from one chunk to the next.
        assert!(decode_chunk(&chunk, &mut out).is_err());
    }

    #[test]
    fn header_and_pending_round_trip() {
        let h = Header {
            rev: 42,
            fingerprint: 9,
            keys: 3,
            chunks: vec![ChunkMeta { len: 5, crc: 6 }, ChunkMeta { len: 7, crc: 8 }],
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b).expect("decode"), h);
        for n in 0..b.len() {
            assert!(Header::decode(&b[..n]).is_err());
            let mut c = b.clone();
            c[n] ^= 1;
            assert!(Header::decode(&c).is_err());
        }
        let p = Pending { rev: 5, written: 2 };
        assert_eq!(Pending::decode(&p.encode()).expect("pending"), p);
        assert!(Pending::decode(&[1, 2]).is_err());
    }
}
