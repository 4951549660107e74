//! A conformance suite every [`Engine`](crate::Engine) must pass; run by each engine's tests.

use std::ops::Bound;

use crate::engine::{prefix_end, Engine, WriteBatch};

/// Runs every check against fresh engines made by `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Engine>) {
    point_reads(&*make());
    batches_are_ordered(&*make());
    scans_respect_bounds(&*make());
    long_scans_cross_chunks(&*make());
    clear_removes_everything(&*make());
}

fn put(e: &dyn Engine, k: &[u8], v: &[u8]) {
    let mut b = WriteBatch::new();
    b.put(k, v);
    e.write(b).expect("write");
}

fn keys(e: &dyn Engine, s: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Vec<u8>> {
    e.scan(s, end).map(|r| r.expect("scan").0).collect()
}

fn point_reads(e: &dyn Engine) {
    assert_eq!(e.get(b"a").expect("get"), None);
    put(e, b"a", b"1");
    assert_eq!(e.get(b"a").expect("get"), Some(b"1".to_vec()));
    let mut b = WriteBatch::new();
    b.delete(b"a".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(b"a").expect("get"), None);
}

fn batches_are_ordered(e: &dyn Engine) {
    let mut b = WriteBatch::new();
    b.put(b"k".to_vec(), b"1".to_vec());
    b.delete(b"k".to_vec());
    b.put(b"k".to_vec(), b"2".to_vec());
    b.put(b"j".to_vec(), b"x".to_vec());
    b.delete(b"j".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(b"k").expect("get"), Some(b"2".to_vec()));
    assert_eq!(e.get(b"j").expect("get"), None);
}

fn scans_respect_bounds(e: &dyn Engine) {
    for k in [&b"a"[..], b"b", b"b\x00", b"ba", b"c", b"\xff\xff"] {
        put(e, k, b"v");
    }
    use Bound::*;
    assert_eq!(
        keys(e, Included(b"b"), Excluded(b"c")),
        vec![b"b".to_vec(), b"b\x00".to_vec(), b"ba".to_vec()]
    );
    assert_eq!(
        keys(e, Excluded(b"b"), Included(b"c")),
        vec![b"b\x00".to_vec(), b"ba".to_vec(), b"c".to_vec()]
    );
    assert_eq!(keys(e, Unbounded, Unbounded).len(), 6);
    assert_eq!(
        keys(e, Included(b"\xff"), Unbounded),
        vec![b"\xff\xff".to_vec()]
    );
    let end = prefix_end(b"b").expect("end");
    assert_eq!(keys(e, Included(b"b"), Excluded(&end)).len(), 3);
    assert_eq!(prefix_end(b"\xff\xff"), None);
}

fn long_scans_cross_chunks(e: &dyn Engine) {
    let mut b = WriteBatch::new();
    for i in 0..1000u32 {
        b.put(i.to_be_bytes().to_vec(), vec![1]);
    }
    e.write(b).expect("write");
    let got = keys(e, Bound::Unbounded, Bound::Unbounded);
    assert_eq!(got.len(), 1000);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

fn clear_removes_everything(e: &dyn Engine) {
    put(e, b"x", b"y");
    e.clear().expect("clear");
    assert!(keys(e, Bound::Unbounded, Bound::Unbounded).is_empty());
}
