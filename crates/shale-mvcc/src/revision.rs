//! Revisions and their byte encoding.
//!
//! A revision is a pair `(main, sub)`: `main` is the cluster-wide revision of a write request,
//! `sub` numbers the changes inside that request (a Txn that writes three keys produces
//! `(r, 0)`, `(r, 1)`, `(r, 2)`). Revisions order lexicographically by `(main, sub)`.
//!
//! On disk a change is stored under its revision, encoded as 8 big-endian bytes of `main`,
//! the byte `_`, 8 big-endian bytes of `sub`, and a trailing `t` for a tombstone (a delete).
//! Big-endian keeps byte order equal to revision order, so history is a plain range scan.

use std::fmt;

/// Length of an encoded revision without the tombstone marker.
pub const REV_BYTES: usize = 17;
const TOMBSTONE: u8 = b't';

/// A `(main, sub)` revision pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Encodes the revision; `tombstone` appends the delete marker.
    pub fn encode(&self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES + 1);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE);
        }
        b
    }

    /// Decodes an encoded revision, returning it and whether it is a tombstone. `None` for
    /// bytes that are not an encoded revision.
    pub fn decode(b: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match b.len() {
            REV_BYTES => false,
            n if n == REV_BYTES + 1 && b[REV_BYTES] == TOMBSTONE => true,
            _ => return None,
        };
        if b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_orders() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(300, 7),
        ];
        for w in revs.windows(2) {
            assert!(w[0].encode(false) < w[1].encode(false));
        }
        for r in revs {
            assert_eq!(Revision::decode(&r.encode(false)), Some((r, false)));
            assert_eq!(Revision::decode(&r.encode(true)), Some((r, true)));
        }
        assert_eq!(Revision::decode(b"short"), None);
        let mut bad = Revision::new(1, 1).encode(false);
        bad[8] = b'x';
        assert_eq!(Revision::decode(&bad), None);
        let mut bad = Revision::new(1, 1).encode(false);
        bad.push(b'x');
        assert_eq!(Revision::decode(&bad), None);
    }
}
