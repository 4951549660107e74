//! [`KeyRange`]: how etcd requests name keys.
//!
//! A request carries `key` and `range_end`: an empty `range_end` names the single key `key`;
//! `range_end = "\0"` names every key `>= key`; otherwise the half-open interval
//! `[key, range_end)` (empty when `range_end <= key`). A prefix is `[p, p+1)`.

use std::ops::Bound;

use bytes::Bytes;

/// A set of keys named by a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Bytes),
    /// `[start, end)`.
    Interval(Bytes, Bytes),
    /// Every key `>= start`.
    From(Bytes),
}

impl KeyRange {
    /// Interprets a request's `key` and `range_end`.
    pub fn new(key: Bytes, range_end: Bytes) -> Self {
        if range_end.is_empty() {
            KeyRange::Single(key)
        } else if range_end.as_ref() == [0] {
            KeyRange::From(key)
        } else {
            KeyRange::Interval(key, range_end)
        }
    }

    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(k) | KeyRange::Interval(k, _) | KeyRange::From(k) => k,
        }
    }

    /// Bounds for an ordered map lookup.
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(k) => (Bound::Included(k), Bound::Included(k)),
            KeyRange::Interval(s, e) => {
                if e <= s {
                    // Empty: an impossible range that BTreeMap accepts.
                    (Bound::Included(s), Bound::Excluded(s))
                } else {
                    (Bound::Included(s), Bound::Excluded(e))
                }
            }
            KeyRange::From(s) => (Bound::Included(s), Bound::Unbounded),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_ref() == key,
            KeyRange::Interval(s, e) => key >= s.as_ref() && key < e.as_ref(),
            KeyRange::From(s) => key >= s.as_ref(),
        }
    }

    /// True when the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        starts_before_end(a0, b1) && starts_before_end(b0, a1)
    }
}

fn starts_before_end(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let s = match start {
        Bound::Included(s) | Bound::Excluded(s) => s,
        Bound::Unbounded => return true,
    };
    match end {
        Bound::Included(e) => s <= e,
        Bound::Excluded(e) => s < e,
        Bound::Unbounded => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn request_forms() {
        assert_eq!(
            KeyRange::new(b("a"), Bytes::new()),
            KeyRange::Single(b("a"))
        );
        assert_eq!(
            KeyRange::new(b("a"), Bytes::from_static(b"\0")),
            KeyRange::From(b("a"))
        );
        let r = KeyRange::new(b("a"), b("c"));
        assert!(r.contains(b"a") && r.contains(b"b\xff") && !r.contains(b"c"));
        let empty = KeyRange::new(b("c"), b("a"));
        assert!(!empty.contains(b"c") && !empty.contains(b"b"));
        let all = KeyRange::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
        assert!(all.contains(b"\0") && all.contains(b"zzz"));
    }

    #[test]
    fn overlap() {
        let ab = KeyRange::new(b("a"), b("b"));
        assert!(ab.overlaps(&KeyRange::Single(b("a"))));
        assert!(!ab.overlaps(&KeyRange::Single(b("b"))));
        assert!(ab.overlaps(&KeyRange::From(b("a\x01"))));
        assert!(!ab.overlaps(&KeyRange::new(b("b"), b("c"))));
        assert!(KeyRange::From(b("x")).overlaps(&KeyRange::From(b("a"))));
    }
}
