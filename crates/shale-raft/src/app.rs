//! Shale's openraft type configuration and the log entry payloads.
//!
//! A log entry's application data is one [`Command`]: an `InternalBatch` protobuf of the
//! client requests the leader's proposer gathered while the previous entry was being made
//! durable. It is
//! serialized as its protobuf bytes (so the Raft log holds exactly the bytes a client sent,
//! plus the leader's decisions such as lease ids and the clock), and decoding a damaged entry
//! is an error, never a panic. [`Reply`] is the state machine's answer to one entry.

use std::fmt;

use prost::Message;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shale_api::shalepb::{InternalBatch, InternalBatchResponse};

/// Application data of a log entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Command(pub InternalBatch);

/// The state machine's answer to one entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply(pub InternalBatchResponse);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} requests", self.0.requests.len())
    }
}

struct ProtoVisitor<T>(std::marker::PhantomData<T>);

impl<T: Message + Default> Visitor<'_> for ProtoVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("protobuf bytes")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
        T::decode(v).map_err(|e| E::custom(format!("undecodable protobuf in raft entry: {e}")))
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<T, E> {
        self.visit_bytes(&v)
    }
}

macro_rules! proto_serde {
    ($t:ident, $inner:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0.encode_to_vec())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_bytes(ProtoVisitor::<$inner>(std::marker::PhantomData))
                    .map($t)
            }
        }
    };
}

proto_serde!(Command, InternalBatch);
proto_serde!(Reply, InternalBatchResponse);

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
        let c = Command(InternalBatch {
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
        assert_eq!(bincode::deserialize::<Command>(&b).expect("deserialize"), c);
        // bincode frames bytes as a u64 length and the bytes: feed an invalid protobuf.
        let mut garbage = 3u64.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff, 0xff]);
        assert!(bincode::deserialize::<Command>(&garbage).is_err());
        assert!(bincode::deserialize::<Command>(&garbage[..5]).is_err());
    }
}
