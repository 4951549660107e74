//! The on-disk layout of the MVCC keyspace.
//!
//! | key                         | value                                   |
//! |-----------------------------|-----------------------------------------|
//! | `k` + revision [+ `t`]      | `mvccpb.KeyValue` (protobuf), a change  |
//! | `m/compact`                 | scheduled compaction revision (i64 BE)  |
//! | `m/compact_done`            | last finished compaction revision       |
//!
//! A tombstone's value is a `KeyValue` holding only the key, exactly like etcd, so a hash over
//! `revision bytes ++ value bytes` is computed over the same bytes etcd hashes.

use bytes::Bytes;
use prost::Message;
use shale_api::mvccpb::KeyValue;

use crate::error::{Error, Result};
use crate::revision::{Revision, REV_BYTES};

pub const KV_PREFIX: u8 = b'k';
pub const META_COMPACT: &[u8] = b"m/compact";
pub const META_COMPACT_DONE: &[u8] = b"m/compact_done";

/// Storage key of a change.
pub fn kv_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(REV_BYTES + 2);
    k.push(KV_PREFIX);
    k.extend_from_slice(&rev.encode(tombstone));
    k
}

/// Storage key bound: first key of revision `main`.
pub fn kv_key_bound(main: i64) -> Vec<u8> {
    kv_key(Revision::new(main, 0), false)
}

/// Parses a storage key of the kv table.
pub fn parse_kv_key(k: &[u8]) -> Result<(Revision, bool)> {
    match k.split_first() {
        Some((&KV_PREFIX, rest)) => {
            Revision::decode(rest).ok_or_else(|| Error::Corrupt(format!("bad revision key {k:?}")))
        }
        _ => Err(Error::Corrupt(format!("not a kv key {k:?}"))),
    }
}

pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    kv.encode_to_vec()
}

pub fn decode_kv(v: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(v).map_err(|e| Error::Corrupt(format!("undecodable key-value: {e}")))
}

pub fn tombstone_kv(key: &Bytes) -> KeyValue {
    KeyValue {
        key: key.clone(),
        ..Default::default()
    }
}

pub fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_i64(v: &[u8]) -> Result<i64> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| Error::Corrupt(format!("bad i64 of {} bytes", v.len())))?;
    Ok(i64::from_be_bytes(b))
}
