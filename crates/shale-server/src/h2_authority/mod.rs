//! Accepting the URL-shaped HTTP/2 `:authority` that etcdctl 3.4 sends.
//!
//! etcdctl 3.4 dials some commands (`endpoint status`, `endpoint hashkv`) through grpc-go with
//! the target `passthrough:///http://127.0.0.1:2379`, and grpc-go puts everything after the
//! last `/` of the scheme-less target — `http://127.0.0.1:2379` — into the `:authority`
//! pseudo-header. Go's HTTP/2 server (real etcd) accepts that; the `h2` crate under tonic
//! parses `:authority` as a URI authority, fails on the `://`, and resets the stream with
//! `PROTOCOL_ERROR`. h2 has no switch to relax this, so [`AuthorityFix`] repairs the bytes
//! before h2 sees them: it wraps each accepted connection and rewrites such an `:authority`
//! to its authority part (`127.0.0.1:2379`). tonic routes by `:path` only, so nothing else
//! depends on the exact value.
//!
//! # What the wrapper does
//!
//! Writes pass through untouched. On the read side:
//!
//! * If the connection does not start with the 24-byte HTTP/2 client preface (HTTP/1.1
//!   clients: `curl /health`, `/metrics`), every byte passes through unchanged, forever.
//! * Otherwise the stream is parsed as HTTP/2 frames (9-byte header: 24-bit length, type,
//!   flags, 31-bit stream id). Every frame other than HEADERS is copied through as is (payloads
//!   of DATA frames are even read straight into the caller's buffer). A HEADERS frame is held
//!   back, together with its CONTINUATION frames, until the one carrying END_HEADERS has
//!   arrived; the header block fragments are joined (dropping the PADDED padding, keeping the
//!   PRIORITY fields) and the block is walked as HPACK (RFC 7541 §6). Only when an
//!   `:authority` literal holds a value with `://` is anything changed: the block is then
//!   re-emitted as a HEADERS frame plus, above 16 384 bytes (the smallest legal
//!   SETTINGS_MAX_FRAME_SIZE), CONTINUATION frames, keeping END_STREAM and PRIORITY and
//!   dropping PADDED. A block without such a value is forwarded byte for byte as received.
//!
//! # The HPACK rewrite
//!
//! The walk follows the representations of RFC 7541 §6 without a header table of its own:
//! indexed fields (`1xxxxxxx`) and dynamic table size updates (`001xxxxx`) are skipped over;
//! literals (`01xxxxxx` with incremental indexing, `0000xxxx` without indexing, `0001xxxx`
//! never indexed) carry a name index (0 = a literal name string follows) and a value string.
//! A literal is an `:authority` when its name index is 1 (`:authority` in the static table) or
//! its literal name is `:authority`. Its value (Huffman-decoded when its H bit is set, with the
//! canonical code of RFC 7541 Appendix B) is rewritten only if it contains `://`: the scheme
//! through `://` and anything from the first `/`, `?` or `#` after it are cut off; a value
//! left empty (`unix:///path`) becomes `localhost`. The new value is written as a plain
//! (non-Huffman) string; every other byte of the block stays identical.
//!
//! Why this cannot desynchronise the HPACK dynamic table, although the client's and the
//! server's tables now hold different `:authority` values: a literal with incremental
//! indexing adds an entry of size `32 + name + value` (decoded octets, not wire bytes) to both
//! tables, and the rewritten value is always strictly shorter than the original (so an
//! original shorter than `localhost` with an empty authority is left alone). The server's
//! entries are therefore never larger than the client's, entry for entry, so under the same
//! maximum size the server evicts no earlier than the client: the server's table is always the
//! client's table (newest first, values aside) followed by zero or more older entries the
//! client has already evicted. (This holds even for an entry larger than the whole table: the
//! client empties its table, the server may keep the smaller rewritten entry, which is then
//! older than anything the client adds next.) HPACK indices count from the newest entry, and
//! the client only uses indices within its own table, so every index means the same entry on
//! both sides —
//! an indexed reference to the rewritten entry simply yields the rewritten `:authority`.
//! (A literal whose name refers to a *dynamic* entry named `:authority` is not recognised and
//! passes through unchanged; grpc-go always uses the static index 1.)
//!
//! # Failure behaviour
//!
//! The wrapper never panics on input. Any framing or HPACK error (bad padding, a frame other
//! than CONTINUATION inside a header block, a truncated integer or string, bad Huffman code,
//! a header block over [`MAX_HEADER_SEQUENCE`] bytes) stops the rewriting for good: the bytes
//! in question and everything after them pass through unchanged, so h2 sees the original
//! input and reports the protocol error itself. At end of input, held-back bytes are flushed
//! unchanged.

mod frames;
mod hpack;
mod huffman;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use frames::{
    frame_len, rewrite_sequence, scan_header_sequence, Scan, FRAME_HEADER_LEN, TYPE_HEADERS,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Header blocks (HEADERS plus CONTINUATION frames, on the wire) larger than this are not
/// rewritten: the connection switches to pass-through and h2 applies its own limits.
pub const MAX_HEADER_SEQUENCE: usize = 1 << 20;

const READ_CHUNK: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Fewer than 24 bytes seen, all matching the preface so far.
    Detect,
    /// HTTP/2: parsing frames, rewriting header blocks.
    Frames,
    /// Not HTTP/2, or rewriting gave up: every byte passes through.
    Passthrough,
}

/// A connection whose incoming HTTP/2 header blocks get a URL-shaped `:authority` repaired
/// (see the [module docs](self)). Writes and non-HTTP/2 traffic pass through unchanged.
#[derive(Debug)]
pub struct AuthorityFix<T> {
    inner: T,
    mode: Mode,
    /// Bytes read from `inner`; `input[in_start..in_end]` are not processed yet.
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Processed bytes; `output[out_pos..]` not yet handed to the reader.
    output: Vec<u8>,
    out_pos: usize,
    /// Payload bytes of the current pass-through frame still to forward.
    payload_left: usize,
    eof: bool,
    /// Reused scratch buffers: the joined header block, the rewritten block, a decoded string.
    block: Vec<u8>,
    rewritten: Vec<u8>,
    decoded: Vec<u8>,
}

impl<T> AuthorityFix<T> {
    pub fn new(inner: T) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Detect,
            input: Vec::new(),
            in_start: 0,
            in_end: 0,
            output: Vec::new(),
            out_pos: 0,
            payload_left: 0,
            eof: false,
            block: Vec::new(),
            rewritten: Vec::new(),
            decoded: Vec::new(),
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Moves as much buffered input as possible to `output`.
    fn process(&mut self) {
        loop {
            let avail = &self.input[self.in_start..self.in_end];
            if avail.is_empty() {
                return;
            }
            match self.mode {
                Mode::Detect => {
                    let n = avail.len().min(PREFACE.len());
                    if avail[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n == PREFACE.len() {
                        self.output.extend_from_slice(PREFACE);
                        self.in_start += n;
                        self.mode = Mode::Frames;
                    } else {
                        return;
                    }
                }
                Mode::Passthrough => {
                    self.output.extend_from_slice(avail);
                    self.in_start = self.in_end;
                    return;
                }
                Mode::Frames if self.payload_left > 0 => {
                    let n = avail.len().min(self.payload_left);
                    self.output.extend_from_slice(&avail[..n]);
                    self.in_start += n;
                    self.payload_left -= n;
                }
                Mode::Frames => {
                    if avail.len() < FRAME_HEADER_LEN {
                        return;
                    }
                    if avail[3] != TYPE_HEADERS {
                        self.output.extend_from_slice(&avail[..FRAME_HEADER_LEN]);
                        self.in_start += FRAME_HEADER_LEN;
                        self.payload_left = frame_len(avail);
                        continue;
                    }
                    match scan_header_sequence(avail) {
                        Scan::Incomplete => return,
                        Scan::Invalid => self.mode = Mode::Passthrough,
                        Scan::Complete(total) => {
                            let seq = &avail[..total];
                            let ok = rewrite_sequence(
                                seq,
                                &mut self.block,
                                &mut self.rewritten,
                                &mut self.decoded,
                                &mut self.output,
                            );
                            if ok.is_err() {
                                self.output.extend_from_slice(seq);
                                self.mode = Mode::Passthrough;
                            }
                            self.in_start += total;
                        }
                    }
                }
            }
        }
    }

    /// Makes room for at least `READ_CHUNK` more bytes after `in_end`.
    fn make_room(&mut self) {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
            // Give back the memory of an unusually large header block.
            if self.input.len() > 4 * READ_CHUNK {
                self.input = Vec::new();
            }
            if self.output.capacity() > 4 * READ_CHUNK {
                self.output = Vec::new();
            }
        } else if self.in_start > 0 {
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.input.len() - self.in_end < READ_CHUNK {
            self.input.resize(self.in_end + READ_CHUNK, 0);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.in_start == this.in_end {
                match this.mode {
                    Mode::Passthrough => {
                        if !this.input.is_empty() {
                            this.input = Vec::new(); // no longer needed
                            this.in_start = 0;
                            this.in_end = 0;
                        }
                        return Pin::new(&mut this.inner).poll_read(cx, buf);
                    }
                    Mode::Frames if this.payload_left > 0 && !this.eof => {
                        // Frame payload: read it straight into the caller's buffer.
                        let want = this.payload_left.min(buf.remaining());
                        let dst = buf.initialize_unfilled_to(want);
                        let mut rb = ReadBuf::new(dst);
                        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                        let n = rb.filled().len();
                        if n == 0 {
                            this.eof = true;
                        }
                        this.payload_left -= n;
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    _ => {}
                }
            }
            this.process();
            if this.out_pos < this.output.len() {
                continue;
            }
            if this.eof {
                if this.in_start < this.in_end {
                    // Incomplete frame or header block at end of input: forward it as is.
                    let rest = &this.input[this.in_start..this.in_end];
                    this.output.extend_from_slice(rest);
                    this.in_start = this.in_end;
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            this.make_room();
            let mut rb = ReadBuf::new(&mut this.input[this.in_end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                this.eof = true;
            } else {
                this.in_end += n;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Malformed input: stop rewriting.
#[derive(Debug, PartialEq, Eq)]
struct Malformed;

#[cfg(test)]
mod tests {
    use super::frames::{
        put_frame_header, stream_id, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY,
        MAX_FRAME_PAYLOAD, TYPE_CONTINUATION,
    };
    use super::hpack::{encode_int, parse_string};
    use super::huffman::huffman_encode;
    use super::*;
    use tokio::io::AsyncReadExt;

    // ------------------------------------------------------------ helpers

    fn string(dst: &mut Vec<u8>, s: &[u8], huffman: bool) {
        if huffman {
            let h = huffman_encode(s);
            encode_int(dst, h.len(), 7, 0x80);
            dst.extend_from_slice(&h);
        } else {
            encode_int(dst, s.len(), 7, 0);
            dst.extend_from_slice(s);
        }
    }

    /// A header block like grpc-go's: :method POST, :scheme http, :path, :authority (literal
    /// with incremental indexing, static name index 1), content-type, te.
    fn grpc_block(authority: &[u8], huffman: bool) -> Vec<u8> {
        let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
        b.push(0x44); // :path, literal with indexing, name index 4
        string(&mut b, b"/etcdserverpb.Maintenance/Status", huffman);
        b.push(0x41); // :authority
        string(&mut b, authority, huffman);
        b.push(0x40); // literal name, with indexing
        string(&mut b, b"content-type", huffman);
        string(&mut b, b"application/grpc", huffman);
        b.push(0x00); // literal name, without indexing
        string(&mut b, b"te", false);
        string(&mut b, b"trailers", false);
        b
    }

    fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_frame_header(&mut f, payload.len(), ty, flags, sid.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HTTP/2 connection: preface, SETTINGS, then `rest`, then a DATA frame.
    fn connection(rest: &[u8]) -> Vec<u8> {
        let mut all = PREFACE.to_vec();
        all.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        all.extend_from_slice(rest);
        all.extend(frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 2, 0xab, 0xcd]));
        all
    }

    /// Reads everything through an `AuthorityFix`, the inner reader yielding `chunk` bytes a
    /// read (1 = byte by byte).
    async fn run(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut b = chunk_reader(input, chunk);
        let mut fix = AuthorityFix::new(&mut b);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        out
    }

    fn chunk_reader(input: &[u8], chunk: usize) -> ChunkReader {
        ChunkReader {
            data: input.to_vec(),
            pos: 0,
            chunk,
            pending: false,
        }
    }

    /// Yields at most `chunk` bytes a read, alternating with `Pending` to exercise wakeups.
    struct ChunkReader {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
        pending: bool,
    }

    impl AsyncRead for ChunkReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.pending {
                self.pending = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending = false;
            let n = self
                .chunk
                .min(buf.remaining())
                .min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Splits a rewritten stream back into (frame header, payload) pairs after the preface.
    fn frames_of(mut s: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(s.starts_with(PREFACE));
        s = &s[PREFACE.len()..];
        let mut v = Vec::new();
        while !s.is_empty() {
            let len = frame_len(s);
            let sid = u32::from_be_bytes(stream_id(s));
            v.push((s[3], s[4], sid, s[9..9 + len].to_vec()));
            s = &s[9 + len..];
        }
        v
    }

    const CHUNKS: [usize; 4] = [1, 7, 100, 1 << 20];
    // ------------------------------------------------------------ the stream

    #[tokio::test]
    async fn http1_passes_through() {
        for input in [
            &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PRI * HTTP/1.1\r\n",
            b"P",
            b"",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n", // truncated preface, then EOF
        ] {
            for chunk in CHUNKS {
                assert_eq!(run(input, chunk).await, input, "{input:?} / {chunk}");
            }
        }
    }

    #[tokio::test]
    async fn plain_url_authority_is_stripped() {
        let input = connection(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &grpc_block(b"http://127.0.0.1:1/", false),
        ));
        let expected = connection(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &grpc_block(b"127.0.0.1:1", false),
        ));
        for chunk in CHUNKS {
            assert_eq!(run(&input, chunk).await, expected, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn huffman_url_authority_is_replaced_by_plain_authority() {
        let input = connection(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            3,
            &grpc_block(b"http://127.0.0.1:23999", true),
        ));
        let out = run(&input, 1).await;
        let frames = frames_of(&out);
        let (ty, flags, sid, block) = &frames[1];
        assert_eq!(
            (*ty, *flags, *sid),
            (TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3)
        );
        // Same block, except the :authority value is now a plain string.
        let mut want = grpc_block(b"http://127.0.0.1:23999", true);
        let at = want.iter().position(|&b| b == 0x41).unwrap();
        let old = parse_string(&want, at + 1).unwrap();
        let mut plain = Vec::new();
        string(&mut plain, b"127.0.0.1:23999", false);
        want.splice(old.header..old.end, plain);
        assert_eq!(block, &want);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2].0, 0x0); // DATA after it, unchanged
    }

    #[tokio::test]
    async fn good_authorities_and_other_frames_are_untouched() {
        let mut rest = Vec::new();
        rest.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &grpc_block(b"127.0.0.1:2379", true),
        ));
        rest.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            3,
            &grpc_block(b"localhost", false),
        ));
        rest.extend(frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING
        rest.extend(frame(0x8, 0, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        rest.extend(frame(0x0, 0x8, 1, &[2, 9, 9, 0, 0])); // padded DATA
        let indexed_only = [0x83, 0x86, 0x84, 0xbe]; // includes a dynamic-table reference
        rest.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 5, &{
            let mut p = vec![3];
            p.extend(indexed_only);
            p.extend([0, 0, 0]);
            p
        }));
        let input = connection(&rest);
        for chunk in CHUNKS {
            assert_eq!(run(&input, chunk).await, input, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn literal_authority_name_and_never_indexed_forms() {
        // :authority as a literal name (plain and Huffman), never indexed / without indexing.
        let mut block = vec![0x82, 0x10];
        string(&mut block, b":authority", false);
        string(&mut block, b"http://a:1", false);
        block.push(0x00);
        string(&mut block, b":authority", true);
        string(&mut block, b"https://b:2/", true);
        block.push(0x01); // without indexing, name index 1
        string(&mut block, b"c:3", false);
        block.push(0x20); // dynamic table size update to 0
        let mut want = vec![0x82, 0x10];
        string(&mut want, b":authority", false);
        string(&mut want, b"a:1", false);
        want.push(0x00);
        string(&mut want, b":authority", true);
        string(&mut want, b"b:2", false);
        want.push(0x01);
        string(&mut want, b"c:3", false);
        want.push(0x20);
        let input = connection(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        let expected = connection(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &want));
        assert_eq!(run(&input, 3).await, expected);
    }

    #[tokio::test]
    async fn continuation_padding_and_priority_are_reassembled() {
        let block = grpc_block(b"http://127.0.0.1:1/", false);
        let (a, b) = block.split_at(10);
        let (b, c) = b.split_at(20);
        let mut first = vec![4]; // pad length
        first.extend([0x80, 0, 0, 7, 200]); // priority: exclusive, depends on 7, weight 200
        first.extend(a);
        first.extend([0; 4]);
        let mut rest = frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            1,
            &first,
        );
        rest.extend(frame(TYPE_CONTINUATION, 0, 1, b));
        rest.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c));
        let input = connection(&rest);

        let mut payload = vec![0x80, 0, 0, 7, 200];
        payload.extend(grpc_block(b"127.0.0.1:1", false));
        let expected = connection(&frame(
            TYPE_HEADERS,
            FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS,
            1,
            &payload,
        ));
        for chunk in CHUNKS {
            assert_eq!(run(&input, chunk).await, expected, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn large_rewritten_block_is_split_into_continuations() {
        let mut block = grpc_block(b"http://h:1", false);
        block.push(0x00); // a big custom metadata entry
        string(&mut block, b"x-big", false);
        string(&mut block, &vec![b'v'; 40_000], false);
        let mut rest = Vec::new();
        for (k, part) in block.chunks(16_384).enumerate() {
            let last = (k + 1) * 16_384 >= block.len();
            let ty = if k == 0 {
                TYPE_HEADERS
            } else {
                TYPE_CONTINUATION
            };
            rest.extend(frame(ty, if last { FLAG_END_HEADERS } else { 0 }, 1, part));
        }
        let input = connection(&rest);
        let out = run(&input, 1000).await;
        let frames = frames_of(&out);
        let headers: Vec<_> = frames.iter().filter(|f| f.0 != 0x4 && f.0 != 0x0).collect();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[0].0, TYPE_HEADERS);
        assert_eq!(headers[0].1, 0);
        assert_eq!(headers[1].0, TYPE_CONTINUATION);
        assert_eq!(headers[2].1, FLAG_END_HEADERS);
        assert!(headers.iter().all(|f| f.3.len() <= MAX_FRAME_PAYLOAD));
        let joined: Vec<u8> = headers.iter().flat_map(|f| f.3.clone()).collect();
        let mut want = grpc_block(b"h:1", false);
        want.extend_from_slice(&block[grpc_block(b"http://h:1", false).len()..]);
        assert_eq!(joined, want);
    }

    #[tokio::test]
    async fn malformed_input_passes_through() {
        let good = frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &grpc_block(b"http://h:1", false),
        );
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Truncated HPACK string in the block.
        let mut bad = grpc_block(b"http://h:1", false);
        bad.extend([0x00, 0x7f]);
        cases.push(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &bad));
        // Padding longer than the payload.
        cases.push(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED,
            1,
            &[200, 0x82],
        ));
        // Priority flag without room for it.
        cases.push(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_PRIORITY,
            1,
            &[0, 0],
        ));
        // A DATA frame between HEADERS and CONTINUATION.
        let mut interleaved = frame(TYPE_HEADERS, 0, 1, &[0x82]);
        interleaved.extend(frame(0x0, 0, 1, b"x"));
        interleaved.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x86]));
        cases.push(interleaved);
        // CONTINUATION on another stream.
        let mut other = frame(TYPE_HEADERS, 0, 1, &[0x82]);
        other.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[0x86]));
        cases.push(other);
        // A frame length beyond the rewrite limit.
        cases.push(vec![
            0xff,
            0xff,
            0xff,
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            0,
            0,
            0,
            1,
            0x82,
        ]);
        // Bad Huffman in the :authority value.
        cases.push(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0x41, 0x81, 0x00],
        ));
        for case in cases {
            // After the error nothing is rewritten, not even a later fixable block.
            let mut rest = case.clone();
            rest.extend(&good);
            let input = connection(&rest);
            for chunk in CHUNKS {
                assert_eq!(run(&input, chunk).await, input, "{case:?} / chunk {chunk}");
            }
        }
        // Garbage after the preface, and an incomplete header block at EOF.
        let mut garbage = PREFACE.to_vec();
        garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let mut partial = PREFACE.to_vec();
        partial.extend(&good[..good.len() - 1]);
        for input in [garbage, partial] {
            for chunk in CHUNKS {
                assert_eq!(run(&input, chunk).await, input, "chunk {chunk}");
            }
        }
    }

    #[tokio::test]
    async fn data_payloads_and_writes_pass_through() {
        use tokio::io::AsyncWriteExt;
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut rest = Vec::new();
        for part in payload.chunks(16_384) {
            rest.extend(frame(0x0, 0, 1, part));
        }
        rest.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &grpc_block(b"http://h:1", false),
        ));
        let input = connection(&rest);
        let out = run(&input, 1 << 20).await;
        assert_eq!(
            out.len(),
            input.len() - grpc_block(b"http://h:1", false).len() + grpc_block(b"h:1", false).len()
        );
        assert_eq!(out[..input.len() - 200], input[..input.len() - 200]);

        let (client, mut server) = tokio::io::duplex(64);
        let mut fix = AuthorityFix::new(client);
        fix.write_all(b"hello").await.unwrap();
        fix.flush().await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
