//! The LIST path: unary Range and RangeStream answered from the stored records.
//!
//! Model. A Range is executed by [`shale_mvcc::wire_range`], which puts each stored record
//! (already an encoded `mvccpb.KeyValue`) into a
//! [`WireRangeResponse`](shale_api::range_wire::WireRangeResponse) as is; the generated KV
//! service sends that type (see `shale-api`'s `build.rs`), so tonic copies each record once
//! into the wire buffer and nothing is decoded or re-encoded. This module adds what the
//! server owns around it:
//!
//! * **Where reads run.** A Range without a limit over a key range can touch every key of the
//!   store; it runs on the [`ListPool`] (a few low-priority threads, one per process) so it
//!   never holds an async worker (which would stall every other request on that worker:
//!   writes, lease keep-alives, watch events) and yields the CPU to the write path.
//!   Count-only and limited Ranges are cheap index walks and reads and run inline.
//! * **The response size limit.** etcd 3.5's gRPC server sends messages up to
//!   `math.MaxInt32` bytes; a larger response fails with `ResourceExhausted` and gRPC's
//!   text `grpc: trying to send message larger than max (<len> vs. <max>)`. Shale answers
//!   the same, with the limit `--max-response-bytes` (default 2147483647). The read stops
//!   holding records once the limit is passed, so an oversized LIST costs at most `max`
//!   bytes of memory and fails before anything is sent.
//! * **RangeStream.** A plain range (key order, no filters) is read page by page at one
//!   pinned revision: at most [`STREAM_CHUNK`] keys and about [`STREAM_CHUNK_BYTES`] bytes a
//!   page, each page read only when the channel to the connection has room, so a stream holds
//!   at most a few pages whatever the range's size. The last chunk carries the header,
//!   `count` and `more`; merging all chunks gives the unary answer. Sorted or filtered
//!   ranges need every key before the first is sent and are read whole, as in etcd.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::Stream;
use prost::Message;
use shale_api::etcdserverpb::RangeRequest;
use shale_api::range_wire::{WireRangeResponse, WireRangeStreamResponse};
use shale_mvcc::wire_range::{self, WireRange};
use shale_mvcc::KeyRange;
use tonic::Status;

use crate::ctx::{status_of, Ctx};
use crate::list_pool::ListPool;

/// etcd 3.5's limit on a message its gRPC server sends (`math.MaxInt32`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Most keys per RangeStream chunk.
pub const STREAM_CHUNK: usize = 500;

/// A RangeStream chunk stops taking keys once its key-values pass this many bytes.
pub const STREAM_CHUNK_BYTES: usize = 4 << 20;

/// The stream of a RangeStream call.
pub type RangeStream =
    Pin<Box<dyn Stream<Item = Result<WireRangeStreamResponse, Status>> + Send + 'static>>;

/// Answers a unary Range (already validated, authorized and past its read barrier).
pub async fn range(ctx: &Arc<Ctx>, r: RangeRequest) -> Result<WireRangeResponse, Status> {
    let store = ctx.store().clone();
    let max = ctx.limits.max_response_bytes;
    let unbounded = r.limit == 0 && !r.range_end.is_empty() && !r.count_only;
    let out = if unbounded {
        read_large(move || wire_range::range(&store, &r, max)).await?
    } else {
        wire_range::range(&store, &r, max)
    }
    .map_err(status_of)?;
    finish(ctx, out, max)
}

/// Runs a read that may touch the whole store on the [`ListPool`] (started on first use),
/// or on tokio's blocking pool if its threads could not be started.
async fn read_large<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    static POOL: OnceLock<Option<ListPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| match ListPool::start() {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "no LIST threads; large reads use the blocking pool");
            None
        }
    });
    match pool {
        Some(p) => p.run(f).await,
        None => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Status::internal(e.to_string())),
    }
}

/// Fills the header and enforces the size limit on the whole message.
fn finish(ctx: &Ctx, out: WireRange, max: usize) -> Result<WireRangeResponse, Status> {
    let (mut resp, dropped) = match out {
        WireRange::Ready(resp) => (resp, 0),
        WireRange::TooLarge { resp, kvs_len } => (resp, kvs_len),
    };
    ctx.fill(&mut resp.header);
    let len = resp.encoded_len() + dropped;
    if len > max {
        return Err(too_large(len, max));
    }
    Ok(resp)
}

/// gRPC's status for a message over the send limit (grpc-go's wording, which etcd clients
/// see).
pub fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "grpc: trying to send message larger than max ({len} vs. {max})"
    ))
}

/// Answers a RangeStream (already validated, authorized and past its read barrier).
pub fn stream(ctx: Arc<Ctx>, mut r: RangeRequest) -> RangeStream {
    // Pin the revision so every chunk reads the same snapshot.
    if r.revision <= 0 {
        r.revision = ctx.store().current_revision();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let result = if wire_range::is_plain(&r) && !r.count_only {
            stream_pages(&ctx, r, &tx).await
        } else {
            stream_whole(&ctx, r, &tx).await
        };
        if let Err(s) = result {
            let _ = tx.send(Err(s)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

type Tx = tokio::sync::mpsc::Sender<Result<WireRangeStreamResponse, Status>>;

fn chunk(resp: WireRangeResponse) -> WireRangeStreamResponse {
    WireRangeStreamResponse {
        range_response: Some(resp),
    }
}

/// A sorted or filtered range: read whole, sent in chunks, the last with the header.
async fn stream_whole(ctx: &Arc<Ctx>, r: RangeRequest, tx: &Tx) -> Result<(), Status> {
    let store = ctx.store().clone();
    let max = ctx.limits.max_response_bytes;
    let out = read_large(move || wire_range::range(&store, &r, max))
        .await?
        .map_err(status_of)?;
    let mut resp = finish(ctx, out, max)?;
    let mut kvs = std::mem::take(&mut resp.kvs);
    while kvs.len() > STREAM_CHUNK {
        let rest = kvs.split_off(STREAM_CHUNK);
        let part = WireRangeResponse {
            kvs,
            ..Default::default()
        };
        if tx.send(Ok(chunk(part))).await.is_err() {
            return Ok(());
        }
        kvs = rest;
    }
    resp.kvs = kvs;
    let _ = tx.send(Ok(chunk(resp))).await;
    Ok(())
}

/// A plain range: page by page at the pinned revision.
async fn stream_pages(ctx: &Arc<Ctx>, r: RangeRequest, tx: &Tx) -> Result<(), Status> {
    let limit = usize::try_from(r.limit).unwrap_or(0);
    let mut sent = 0usize;
    let mut key = r.key.clone();
    loop {
        // Wait for room first: a slow reader holds no page but the one being sent.
        let permit = match tx.reserve().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let want = if limit > 0 {
            (limit - sent).min(STREAM_CHUNK)
        } else {
            STREAM_CHUNK
        };
        let store = ctx.store().clone();
        let range = KeyRange::new(key.clone(), r.range_end.clone());
        let (at, keys_only) = (r.revision, r.keys_only);
        let (kvs, more) = read_large(move || {
            wire_range::page(&store, &range, at, keys_only, want, STREAM_CHUNK_BYTES)
        })
        .await?
        .map_err(status_of)?;
        sent += kvs.len();
        let next = kvs.last().map(|kv| kv.decode().map(|kv| kv.key));
        let done = !more || (limit > 0 && sent >= limit) || kvs.is_empty();
        if done {
            // The count and `more` of the whole range, and the header, go last.
            let total = wire_range::range(
                ctx.store(),
                &RangeRequest {
                    count_only: true,
                    ..r.clone()
                },
                usize::MAX,
            )
            .map_err(status_of)?;
            let WireRange::Ready(mut last) = total else {
                return Err(Status::internal("a count-only range has no key-values"));
            };
            last.more = limit > 0 && last.count > sent as i64;
            last.kvs = kvs;
            ctx.fill(&mut last.header);
            permit.send(Ok(chunk(last)));
            return Ok(());
        }
        let last_key = next
            .transpose()
            .map_err(|e| Status::internal(format!("undecodable stored key-value: {e}")))?
            .unwrap_or_default();
        let mut k = last_key.to_vec();
        k.push(0);
        key = Bytes::from(k);
        permit.send(Ok(chunk(WireRangeResponse {
            kvs,
            ..Default::default()
        })));
    }
}
