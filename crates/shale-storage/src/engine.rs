//! The [`Engine`] trait and the [`WriteBatch`] it commits atomically.

use std::ops::Bound;

/// Errors from a storage engine. Every storage error is non-deterministic (it depends on the
/// machine, not on the command being applied): the caller must stop applying and surface it,
/// never turn it into a client-visible "the request failed" answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying engine failed (I/O error, corruption detected by the engine).
    #[error("storage engine failure: {0}; the data directory may be damaged, restore this member from a snapshot or a peer")]
    Engine(String),
    /// An injected failure (fail points in tests).
    #[error("injected storage failure at {0}")]
    Injected(&'static str),
}

impl Error {
    /// Storage errors never depend only on the input: retrying on another machine may succeed,
    /// so they must not be returned to a client as a final answer.
    pub fn is_deterministic(&self) -> bool {
        false
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An ordered iterator over a key range.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A set of writes committed atomically and in order (a later write to the same key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    bytes: usize,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (k, v) = (key.into(), value.into());
        self.bytes += k.len() + v.len();
        self.ops.push(WriteOp::Put(k, v));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        let k = key.into();
        self.bytes += k.len();
        self.ops.push(WriteOp::Delete(k));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Approximate payload size of the batch in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

/// An ordered keyspace with atomic batches. See the crate documentation for the contract.
pub trait Engine: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Iterates keys in `range` in ascending order.
    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> ScanIter<'_>;

    /// Commits every write of `batch` atomically.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Pushes committed batches towards disk. Not a durability barrier on every engine.
    fn flush(&self) -> Result<()>;

    /// Bytes the engine occupies on disk (or in memory for the in-memory engine).
    fn size_bytes(&self) -> u64;

    /// Removes every key (used when installing a snapshot).
    fn clear(&self) -> Result<()>;
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Borrows an owned bound (scans keep their position as owned bounds between chunks).
fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Pairs fetched per step of a [`chunked_scan`].
const CHUNK: usize = 256;

/// A scan that asks `fetch(start, end, limit)` for up to 256 pairs at a time and resumes
/// after the last key it got, so an engine holds its lock for one chunk, never while the
/// caller consumes. An error ends the scan.
pub(crate) fn chunked_scan<'a, F>(start: Bound<&[u8]>, end: Bound<&[u8]>, fetch: F) -> ScanIter<'a>
where
    F: FnMut(Bound<&[u8]>, Bound<&[u8]>, usize) -> Result<Vec<KvPair>> + Send + 'a,
{
    Box::new(ChunkedScan {
        fetch,
        next: start.map(|s| s.to_vec()),
        end: end.map(|e| e.to_vec()),
        buf: Vec::new().into_iter(),
        done: false,
    })
}

struct ChunkedScan<F> {
    fetch: F,
    next: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buf: std::vec::IntoIter<KvPair>,
    done: bool,
}

impl<F> Iterator for ChunkedScan<F>
where
    F: FnMut(Bound<&[u8]>, Bound<&[u8]>, usize) -> Result<Vec<KvPair>>,
{
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.buf.next() {
            return Some(Ok(kv));
        }
        if self.done {
            return None;
        }
        match (self.fetch)(bound_ref(&self.next), bound_ref(&self.end), CHUNK) {
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok(chunk) => {
                let last = chunk.last()?.0.clone();
                self.next = Bound::Excluded(last);
                self.buf = chunk.into_iter();
                self.buf.next().map(Ok)
            }
        }
    }
}
