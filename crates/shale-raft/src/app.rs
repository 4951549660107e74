//! Shale's openraft type configuration and the log entry payloads.
//!
//! A log entry's application data is one [`Command`]: an `InternalBatch` protobuf of the
//! client requests the leader's proposer gathered while the previous entry was being made
//! durable. It is serialized as its protobuf bytes (so the Raft log holds exactly the bytes a
//! client sent, plus the leader's decisions such as lease ids and the clock), and decoding a
//! damaged entry is an error, never a panic. A `Command` keeps both forms: the decoded batch
//! (shared, so the clones openraft makes for its log cache, replication and apply are cheap)
//! and its encoding, made once when the leader creates it (or kept as received by a
//! follower), so the log append and every AppendEntries to a follower copy those bytes instead
//! of encoding the batch again. [`Reply`] is the state machine's answer to one entry.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shale_api::shalepb::{InternalBatch, InternalBatchResponse, InternalRequest};

/// Application data of a log entry: a batch of requests and its protobuf encoding.
#[derive(Clone, Default)]
pub struct Command {
    batch: Arc<InternalBatch>,
    /// `batch.encode_to_vec()`, made once.
    raw: Bytes,
}

impl Command {
    /// Wraps `batch`, encoding it once.
    pub fn new(batch: InternalBatch) -> Self {
        let raw = Bytes::from(batch.encode_to_vec());
        Self {
            batch: Arc::new(batch),
            raw,
        }
    }

    /// Decodes an encoded batch. The requests' byte fields share `raw`'s buffer.
    pub fn decode(raw: Bytes) -> Result<Self, prost::DecodeError> {
        let batch = InternalBatch::decode(raw.clone())?;
        Ok(Self {
            batch: Arc::new(batch),
            raw,
        })
    }

    pub fn batch(&self) -> &InternalBatch {
        &self.batch
    }

    /// The protobuf encoding of the batch.
    pub fn encoded(&self) -> &Bytes {
        &self.raw
    }

    /// The batch's requests (copied out if another clone of this command is alive; the
    /// copies share the requests' byte buffers).
    pub fn into_requests(self) -> Vec<InternalRequest> {
        match Arc::try_unwrap(self.batch) {
            Ok(b) => b.requests,
            Err(shared) => shared.requests.clone(),
        }
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        self.batch == other.batch
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Command").field(&*self.batch).finish()
    }
}

/// The state machine's answer to one entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply(pub InternalBatchResponse);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} requests", self.batch.requests.len())
    }
}

fn undecodable<E: serde::de::Error>(e: prost::DecodeError) -> E {
    E::custom(format!("undecodable protobuf in raft entry: {e}"))
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.raw)
    }
}

struct CommandVisitor;

impl Visitor<'_> for CommandVisitor {
    type Value = Command;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("protobuf bytes")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Command, E> {
        Command::decode(Bytes::copy_from_slice(v)).map_err(undecodable)
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Command, E> {
        Command::decode(Bytes::from(v)).map_err(undecodable)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(CommandVisitor)
    }
}

struct ProtoVisitor<T>(std::marker::PhantomData<T>);

impl<T: Message + Default> Visitor<'_> for ProtoVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("protobuf bytes")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
        T::decode(v).map_err(undecodable)
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<T, E> {
        self.visit_bytes(&v)
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(ProtoVisitor::<InternalBatchResponse>(
            std::marker::PhantomData,
        ))
        .map(Reply)
    }
}

/// Member id (etcd's uint64 member ID).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Shale's openraft types.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;

#[cfg(test)]
mod tests {
    use super::*;
    use shale_api::etcdserverpb::PutRequest;
    use shale_api::shalepb::internal_request::Request;

    #[test]
    fn command_round_trips_through_bincode_and_rejects_garbage() {
        let c = Command::new(InternalBatch {
            requests: vec![shale_api::shalepb::InternalRequest {
                id: 7,
                now_unix_ms: 1,
                request: Some(Request::Put(PutRequest {
                    key: "k".into(),
                    value: "v".into(),
                    ..Default::default()
                })),
            }],
        });
        let b = bincode::serialize(&c).expect("serialize");
        assert_eq!(
            &b[8..],
            &c.batch().encode_to_vec()[..],
            "the log holds the protobuf"
        );
        assert_eq!(bincode::deserialize::<Command>(&b).expect("deserialize"), c);
        // bincode frames bytes as a u64 length and the bytes: feed an invalid protobuf.
        let mut garbage = 3u64.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff, 0xff]);
        assert!(bincode::deserialize::<Command>(&garbage).is_err());
        assert!(bincode::deserialize::<Command>(&garbage[..5]).is_err());
    }
}
