//! The LIST path of a running member: the response size limit (etcd 3.5's gRPC error, and
//! nothing else stalls while oversized LISTs fail) and RangeStream (chunks merge to the
//! unary answer, each chunk bounded). Every wait is on a condition, with a deadline.

use std::time::Duration;

use prost::Message;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use shale_testkit::process::{shale_bin, EtcdProcess};
use tonic::transport::Channel;
use tonic::Code;

fn start(args: &[&str]) -> EtcdProcess {
    EtcdProcess::start(&shale_bin().expect("shale binary"), args).expect("start shale")
}

async fn client(p: &EtcdProcess) -> KvClient<Channel> {
    KvClient::connect(p.endpoint())
        .await
        .expect("connect")
        .max_decoding_message_size(usize::MAX)
}

async fn load(kv: &mut KvClient<Channel>, n: usize, size: usize) {
    for i in 0..n {
        kv.put(PutRequest {
            key: format!("/registry/pods/{i:05}").into(),
            value: vec![(i % 251) as u8; size].into(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
}

fn pods() -> RangeRequest {
    RangeRequest {
        key: "/registry/pods/".into(),
        range_end: "/registry/pods0".into(),
        ..Default::default()
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_list_fails_like_etcd_and_nothing_stalls() {
    const MAX: usize = 100_000;
    let p = start(&["--max-response-bytes", "100000"]);
    let mut kv = client(&p).await;
    load(&mut kv, 40, 4000).await;
    // The full answer, read in pages that fit, rebuilt as the one response it would be.
    let mut full = RangeResponse::default();
    let mut key = pods().key;
    loop {
        let page = kv
            .range(RangeRequest {
                key: key.clone(),
                limit: 10,
                ..pods()
            })
            .await
            .expect("page")
            .into_inner();
        full.kvs.extend(page.kvs.iter().cloned());
        full.header = page.header;
        full.count = full.kvs.len() as i64;
        if !page.more {
            break;
        }
        let mut next = page.kvs.last().expect("a key").key.to_vec();
        next.push(0);
        key = next.into();
    }
    assert_eq!(full.kvs.len(), 40);
    let len = full.encoded_len();
    assert!(len > MAX);

    let e = within("oversized list", kv.range(pods()))
        .await
        .expect_err("too large");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(
        e.message(),
        format!("grpc: trying to send message larger than max ({len} vs. {MAX})")
    );
    // keys_only, sorted and RangeStream-whole answers obey the same limit; fitting ones pass.
    let keys = within(
        "keys-only list",
        kv.range(RangeRequest {
            keys_only: true,
            ..pods()
        }),
    )
    .await
    .expect("keys only fits")
    .into_inner();
    assert_eq!(keys.kvs.len(), 40);
    let e = within(
        "sorted list",
        kv.range(RangeRequest {
            sort_order: 2,
            ..pods()
        }),
    )
    .await
    .expect_err("too large");
    assert_eq!(e.code(), Code::ResourceExhausted);

    // Oversized LISTs in a loop beside writes and small reads: those keep being answered.
    let mut lists = Vec::new();
    for _ in 0..4 {
        let mut kv = client(&p).await;
        lists.push(tokio::spawn(async move {
            for _ in 0..20 {
                let e = kv.range(pods()).await.expect_err("too large");
                assert_eq!(e.code(), Code::ResourceExhausted);
            }
        }));
    }
    for i in 0..50 {
        within("put beside oversized lists", async {
            kv.put(PutRequest {
                key: format!("/other/{i}").into(),
                value: "v".into(),
                ..Default::default()
            })
            .await
            .expect("put")
        })
        .await;
        let got = within(
            "small range",
            kv.range(RangeRequest {
                key: format!("/other/{i}").into(),
                ..Default::default()
            }),
        )
        .await
        .expect("range")
        .into_inner();
        assert_eq!(got.kvs.len(), 1);
    }
    for l in lists {
        within("oversized lists", l).await.expect("list task");
    }
}

/// Reads a RangeStream, checking each chunk's size; returns the chunks merged.
async fn stream(kv: &mut KvClient<Channel>, r: RangeRequest, max_chunk: usize) -> RangeResponse {
    let mut s = within("range stream", kv.range_stream(r))
        .await
        .expect("range stream")
        .into_inner();
    let mut merged = RangeResponse::default();
    let mut chunks = 0;
    while let Some(c) = within("chunk", s.message()).await.expect("chunk") {
        chunks += 1;
        let c = c.range_response.expect("a range response in every chunk");
        assert!(
            c.encoded_len() <= max_chunk,
            "chunk of {} bytes",
            c.encoded_len()
        );
        assert!(c.kvs.len() <= 500);
        merged.kvs.extend(c.kvs);
        if c.header.is_some() {
            merged.header = c.header;
            merged.count = c.count;
            merged.more = c.more;
        }
    }
    assert!(chunks >= 1);
    merged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_merges_to_the_unary_answer_in_bounded_chunks() {
    let p = start(&[]);
    let mut kv = client(&p).await;
    // 12 MiB of pods: chunks are cut by bytes (4 MiB) before they reach 500 keys.
    load(&mut kv, 1200, 10_000).await;
    let rev = kv
        .range(RangeRequest {
            count_only: true,
            ..pods()
        })
        .await
        .expect("count")
        .into_inner()
        .header
        .expect("header")
        .revision;
    load(&mut kv, 10, 10_000).await; // newer versions: reads at `rev` must not see them
    let max_chunk = (4 << 20) + 2 * 10_100;
    let requests = [
        pods(),
        RangeRequest {
            keys_only: true,
            ..pods()
        },
        RangeRequest {
            limit: 700,
            ..pods()
        },
        RangeRequest {
            revision: rev,
            ..pods()
        },
        RangeRequest {
            sort_order: 2,
            limit: 30,
            ..pods()
        },
        RangeRequest {
            count_only: true,
            ..pods()
        },
        RangeRequest {
            key: "/registry/pods/00007".into(),
            ..Default::default()
        },
    ];
    for r in requests {
        let mut unary = kv.range(r.clone()).await.expect("range").into_inner();
        let mut merged = stream(&mut kv, r.clone(), max_chunk).await;
        // The headers may differ only if a write came between (none does here).
        unary.header = unary.header.map(|h| h.revision).map(|revision| {
            shale_api::etcdserverpb::ResponseHeader {
                revision,
                ..Default::default()
            }
        });
        merged.header = merged.header.map(|h| h.revision).map(|revision| {
            shale_api::etcdserverpb::ResponseHeader {
                revision,
                ..Default::default()
            }
        });
        assert_eq!(merged, unary, "{:?}", (r.limit, r.keys_only, r.revision));
    }
}
