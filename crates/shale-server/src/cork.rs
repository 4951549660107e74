//! [`Cork`]: a connection that gathers the writes of one scheduler pass into one syscall.
//!
//! An HTTP/2 connection (hyper's `h2`) does all its socket writes in the connection task: a
//! request's handler runs in a task of its own, queues its response frames and wakes the
//! connection task, which encodes them and flushes. Under load many handlers finish at
//! about the same time, but tokio runs a task woken by the running task next (its LIFO
//! slot), so the connection task flushes after almost every response: the profile of 500
//! clients over 50 connections showed 2.2 `writev` calls per unary request, and loopback
//! TCP sends were the largest single cost of a linearizable range (Go's gRPC server batches
//! frames across streams and flushes once it has no more work).
//!
//! `Cork` buffers writes and answers the *first* flush of a batch with "not yet", after
//! waking the connection task again: tokio requeues a task that woke itself at the back of
//! the run queue, so every handler already queued runs first and adds its frames; the next
//! flush writes everything at once. An idle connection pays one requeue (microseconds),
//! never a timer: it is corking, not Nagle.
//!
//! Invariants: bytes reach the socket in the order they were written; a flush that returns
//! `Ready` has put every buffered byte into the socket; at most [`MAX_BUFFERED`] bytes are
//! held (beyond that a write first drains the buffer); reads pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write drains the buffer first.
pub const MAX_BUFFERED: usize = 256 << 10;

/// A write-gathering wrapper around a connection (see the [module docs](self)).
#[derive(Debug)]
pub struct Cork<T> {
    inner: T,
    buf: Vec<u8>,
    /// `buf[written..]` is not in the socket yet.
    written: usize,
    /// The current flush was already deferred once.
    deferred: bool,
}

impl<T> Cork<T> {
    pub fn new(inner: T) -> Self {
        Cork {
            inner,
            buf: Vec::new(),
            written: 0,
            deferred: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> Cork<T> {
    /// Writes every buffered byte to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        // Do not keep a burst's worth of memory on an idle connection.
        if self.buf.capacity() > MAX_BUFFERED {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Cork<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Cork<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending() + data.len() > MAX_BUFFERED {
            ready!(this.poll_drain(cx))?;
            if data.len() >= MAX_BUFFERED {
                // Large enough on its own: no copy.
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.pending() + total > MAX_BUFFERED {
            ready!(this.poll_drain(cx))?;
            if total >= MAX_BUFFERED {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending() > 0 {
            if !this.deferred {
                this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.deferred = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.deferred = false;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Cork<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_arrive_in_order_only_after_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Cork::new(a);
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        // Nothing in the pipe before the flush.
        let mut probe = [0u8; 1];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe)).await;
        assert!(early.is_err(), "bytes reached the peer before the flush");
        w.flush().await.unwrap();
        let mut got = vec![0u8; 11];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
    }

    #[tokio::test]
    async fn large_writes_drain_first_and_keep_order() {
        let (a, mut b) = tokio::io::duplex(64 << 10);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut w = Cork::new(a);
        let mut want = Vec::new();
        for i in 0..40u32 {
            // A mix of small writes and writes larger than the cork.
            let len = if i % 7 == 0 {
                MAX_BUFFERED + 3
            } else {
                1000 + i as usize
            };
            let chunk = vec![(i % 251) as u8; len];
            w.write_all(&chunk).await.unwrap();
            want.extend_from_slice(&chunk);
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), want);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_buffered() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = Cork::new(a);
        w.write_all(b"tail").await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"tail");
    }
}
