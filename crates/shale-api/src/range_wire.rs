//! The server's encoding of `etcdserverpb.RangeResponse` and `RangeStreamResponse`: key-values
//! that are already protobuf-encoded go onto the wire as they are.
//!
//! The MVCC store keeps every change as an encoded `mvccpb.KeyValue` (see
//! `shale-mvcc`'s `record.rs`). A LIST used to decode each stored record into a [`KeyValue`]
//! (copying key and value out of the read buffer), collect those, and let prost encode them
//! again into tonic's buffer: three copies of every value and two allocations per key. An
//! [`EncodedKv`] holds the stored bytes of one record (one [`Bytes`], the buffer storage read
//! them into); encoding a [`WireRangeResponse`] writes the envelope (header, more, count) and
//! each record as field 2 (`repeated mvccpb.KeyValue kvs = 2`, length-delimited) with a single
//! copy into the wire buffer.
//!
//! `keys_only` responses need the record without its value: [`EncodedKv::without_value`]
//! walks the record's fields and drops field 5 (`value`), which is what prost writes for the
//! same `KeyValue` with an empty value.
//!
//! The server's generated KV service uses these types for its Range and RangeStream responses
//! (see `build.rs`: `extern_path` in the servers-only pass); clients and read-only Txns keep
//! the ordinary [`RangeResponse`].
//!
//! Invariants:
//! * A [`WireRangeResponse`] encodes to exactly the bytes prost produces for the equivalent
//!   [`RangeResponse`] (fields in tag order, defaults omitted), provided each [`EncodedKv`]
//!   holds prost's (canonical) encoding of its `KeyValue`. Tests check this byte for byte.
//! * [`WireRangeResponse::encoded_len`](Message::encoded_len) is exact and cheap (no walk of
//!   the values), so callers can enforce a response size limit before sending.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::encoded::{self, Encoded};
use crate::etcdserverpb::{RangeResponse, RangeStreamResponse, ResponseHeader};
use crate::mvccpb::KeyValue;

/// Field number of `RangeResponse.kvs`.
const KVS_TAG: u32 = 2;
/// Field number of `KeyValue.value`.
const VALUE_TAG: u32 = 5;

/// One `mvccpb.KeyValue`, protobuf-encoded (no tag or length prefix); clones share the bytes.
pub type EncodedKv = Encoded<KeyValue>;

impl Encoded<KeyValue> {
    /// The encoding of the same key-value with an empty value (field 5 dropped). Fails on
    /// bytes that are not a well-formed protobuf message.
    pub fn without_value(&self) -> Result<Self, MalformedKv> {
        let all: &[u8] = self.bytes();
        let mut rest = all;
        let mut out = BytesMut::new();
        let mut copied_all = true;
        while !rest.is_empty() {
            let start = all.len() - rest.len();
            let (tag, wire_type) = encoding::decode_key(&mut rest).map_err(MalformedKv::from)?;
            skip_value(wire_type, &mut rest)?;
            let end = all.len() - rest.len();
            if tag == VALUE_TAG {
                if copied_all {
                    out.reserve(all.len());
                    out.put_slice(&all[..start]);
                    copied_all = false;
                }
            } else if !copied_all {
                out.put_slice(&all[start..end]);
            }
        }
        if copied_all {
            return Ok(self.clone());
        }
        Ok(Self::from_bytes(out.freeze()))
    }
}

/// Skips one field value of `wire_type` at the front of `buf`.
fn skip_value(wire_type: WireType, buf: &mut &[u8]) -> Result<(), MalformedKv> {
    let n = match wire_type {
        WireType::Varint => {
            encoding::decode_varint(buf)?;
            0
        }
        WireType::ThirtyTwoBit => 4,
        WireType::SixtyFourBit => 8,
        WireType::LengthDelimited => {
            usize::try_from(encoding::decode_varint(buf)?).map_err(|_| MalformedKv::TRUNCATED)?
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(MalformedKv("a group field (KeyValue has none)".into()))
        }
    };
    if buf.remaining() < n {
        return Err(MalformedKv::TRUNCATED);
    }
    buf.advance(n);
    Ok(())
}

/// Bytes that are not a well-formed protobuf message (see [`EncodedKv::without_value`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed key-value encoding: {0}")]
pub struct MalformedKv(std::borrow::Cow<'static, str>);

impl MalformedKv {
    const TRUNCATED: Self = Self(std::borrow::Cow::Borrowed("a field runs past the end"));
}

impl From<DecodeError> for MalformedKv {
    fn from(e: DecodeError) -> Self {
        Self(e.to_string().into())
    }
}

/// `etcdserverpb.RangeResponse` with pre-encoded key-values; see the module documentation.
/// Field for field the same as [`RangeResponse`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WireRangeResponse {
    pub header: Option<ResponseHeader>,
    pub kvs: Vec<EncodedKv>,
    pub more: bool,
    pub count: i64,
}

impl WireRangeResponse {
    /// Encodes `resp`'s key-values; the inverse of [`Self::to_response`].
    pub fn from_response(resp: &RangeResponse) -> Self {
        Self {
            header: resp.header,
            kvs: resp.kvs.iter().map(EncodedKv::encode).collect(),
            more: resp.more,
            count: resp.count,
        }
    }

    /// The ordinary message, key-values decoded.
    pub fn to_response(&self) -> Result<RangeResponse, DecodeError> {
        Ok(RangeResponse {
            header: self.header,
            kvs: self
                .kvs
                .iter()
                .map(EncodedKv::decode)
                .collect::<Result<_, _>>()?,
            more: self.more,
            count: self.count,
        })
    }

    /// Encoded length of field 2 for `kv`: what one key-value adds to the response.
    pub fn kv_field_len(kv: &EncodedKv) -> usize {
        kv.field_len(KVS_TAG)
    }
}

fn named(field: &'static str) -> impl FnOnce(DecodeError) -> DecodeError {
    encoded::named("RangeResponse", field)
}

impl Message for WireRangeResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Tag order, defaults omitted: what prost writes for `RangeResponse`.
        if let Some(h) = &self.header {
            encoding::message::encode(1, h, buf);
        }
        for kv in &self.kvs {
            kv.encode_field(KVS_TAG, buf);
        }
        if self.more {
            encoding::bool::encode(3, &self.more, buf);
        }
        if self.count != 0 {
            encoding::int64::encode(4, &self.count, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge(
                wire_type,
                self.header.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(named("header")),
            KVS_TAG => {
                let mut kv = Bytes::new();
                encoding::bytes::merge(wire_type, &mut kv, buf, ctx).map_err(named("kvs"))?;
                self.kvs.push(EncodedKv::from_bytes(kv));
                Ok(())
            }
            3 => encoding::bool::merge(wire_type, &mut self.more, buf, ctx).map_err(named("more")),
            4 => {
                encoding::int64::merge(wire_type, &mut self.count, buf, ctx).map_err(named("count"))
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let kvs: usize = self.kvs.iter().map(|kv| kv.field_len(KVS_TAG)).sum();
        self.header
            .as_ref()
            .map_or(0, |h| encoding::message::encoded_len(1, h))
            + kvs
            + if self.more { 2 } else { 0 }
            + if self.count != 0 {
                encoding::int64::encoded_len(4, &self.count)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// `etcdserverpb.RangeStreamResponse` around a [`WireRangeResponse`] (field 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WireRangeStreamResponse {
    pub range_response: Option<WireRangeResponse>,
}

impl WireRangeStreamResponse {
    /// The ordinary message, key-values decoded.
    pub fn to_response(&self) -> Result<RangeStreamResponse, DecodeError> {
        Ok(RangeStreamResponse {
            range_response: self
                .range_response
                .as_ref()
                .map(WireRangeResponse::to_response)
                .transpose()?,
        })
    }
}

impl Message for WireRangeStreamResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(r) = &self.range_response {
            encoding::message::encode(1, r, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge(
                wire_type,
                self.range_response.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|mut e| {
                e.push("RangeStreamResponse", "range_response");
                e
            }),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.range_response
            .as_ref()
            .map_or(0, |r| encoding::message::encoded_len(1, r))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests;
