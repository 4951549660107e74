//! The server's encoding of `etcdserverpb.WatchResponse`: events encoded once, shared by
//! every watcher they go to.
//!
//! With hundreds of watchers on one prefix (kube-apiserver's informers, one per resource per
//! apiserver) each committed event goes to each of them. Encoding the event once per watcher
//! would make delivery cost `events × watchers` protobuf encodings. Instead, the watch hub
//! encodes each `mvccpb.Event` once per committed batch into an [`EncodedEvent`] (one
//! [`Bytes`], shared by reference count) and hands watchers a [`WireWatchResponse`]: the small
//! per-watcher envelope (header, watch id, flags) plus the shared event bytes. Encoding a
//! `WireWatchResponse` writes the envelope's fields and copies each event's bytes as field 11
//! (`repeated mvccpb.Event events = 11`, length-delimited); nothing is re-encoded.
//!
//! The server's generated Watch service uses this type for its responses (see `build.rs`:
//! `extern_path(".etcdserverpb.WatchResponse", …)` in the servers-only pass); clients keep the
//! ordinary [`WatchResponse`](crate::etcdserverpb::WatchResponse).
//!
//! Invariants:
//! * A [`WireWatchResponse`] encodes to exactly the bytes prost produces for the equivalent
//!   `WatchResponse` (fields in tag order, defaults omitted), so any decoder sees the same
//!   message. Tests check this byte for byte.
//! * An [`EncodedEvent`] holds the encoding of one complete `mvccpb.Event` (without tag or
//!   length prefix). [`EncodedEvent::with_prev_kv`] appends field 3 to an encoding that has
//!   none; since prost writes fields in tag order, the result equals the encoding of the event
//!   with `prev_kv` set.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::encoded::{self, Encoded};
use crate::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::mvccpb::{Event, KeyValue};

/// Field number of `WatchResponse.events`.
const EVENTS_TAG: u32 = 11;
/// Field number of `Event.prev_kv`.
const PREV_KV_TAG: u32 = 3;

/// One `mvccpb.Event`, protobuf-encoded once; clones share the bytes.
pub type EncodedEvent = Encoded<Event>;

impl Encoded<Event> {
    /// The encoding of this event with `prev_kv` set to `prev`. `self` must have been encoded
    /// without a `prev_kv`.
    pub fn with_prev_kv(&self, prev: &KeyValue) -> Self {
        let mut buf =
            BytesMut::with_capacity(self.len() + encoding::message::encoded_len(PREV_KV_TAG, prev));
        buf.put_slice(self.bytes());
        encoding::message::encode(PREV_KV_TAG, prev, &mut buf);
        Self::from_bytes(buf.freeze())
    }
}

/// `etcdserverpb.WatchResponse` with pre-encoded events; see the module documentation.
/// Field for field the same as [`WatchResponse`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WireWatchResponse {
    pub header: Option<ResponseHeader>,
    pub watch_id: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub fragment: bool,
    pub events: Vec<EncodedEvent>,
}

impl WireWatchResponse {
    /// Encodes `resp`'s events; the inverse of [`Self::to_response`].
    pub fn from_response(resp: &WatchResponse) -> Self {
        Self {
            header: resp.header,
            watch_id: resp.watch_id,
            created: resp.created,
            canceled: resp.canceled,
            compact_revision: resp.compact_revision,
            cancel_reason: resp.cancel_reason.clone(),
            fragment: resp.fragment,
            events: resp.events.iter().map(EncodedEvent::encode).collect(),
        }
    }

    /// The ordinary message, events decoded.
    pub fn to_response(&self) -> Result<WatchResponse, DecodeError> {
        Ok(WatchResponse {
            header: self.header,
            watch_id: self.watch_id,
            created: self.created,
            canceled: self.canceled,
            compact_revision: self.compact_revision,
            cancel_reason: self.cancel_reason.clone(),
            fragment: self.fragment,
            events: self
                .events
                .iter()
                .map(EncodedEvent::decode)
                .collect::<Result<_, _>>()?,
        })
    }
}

fn named(field: &'static str) -> impl FnOnce(DecodeError) -> DecodeError {
    encoded::named("WatchResponse", field)
}

impl Message for WireWatchResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Tag order, defaults omitted: what prost writes for `WatchResponse`.
        if let Some(h) = &self.header {
            encoding::message::encode(1, h, buf);
        }
        if self.watch_id != 0 {
            encoding::int64::encode(2, &self.watch_id, buf);
        }
        if self.created {
            encoding::bool::encode(3, &self.created, buf);
        }
        if self.canceled {
            encoding::bool::encode(4, &self.canceled, buf);
        }
        if self.compact_revision != 0 {
            encoding::int64::encode(5, &self.compact_revision, buf);
        }
        if !self.cancel_reason.is_empty() {
            encoding::string::encode(6, &self.cancel_reason, buf);
        }
        if self.fragment {
            encoding::bool::encode(7, &self.fragment, buf);
        }
        for ev in &self.events {
            ev.encode_field(EVENTS_TAG, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
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
            2 => encoding::int64::merge(wire_type, &mut self.watch_id, buf, ctx)
                .map_err(named("watch_id")),
            3 => encoding::bool::merge(wire_type, &mut self.created, buf, ctx)
                .map_err(named("created")),
            4 => encoding::bool::merge(wire_type, &mut self.canceled, buf, ctx)
                .map_err(named("canceled")),
            5 => encoding::int64::merge(wire_type, &mut self.compact_revision, buf, ctx)
                .map_err(named("compact_revision")),
            6 => encoding::string::merge(wire_type, &mut self.cancel_reason, buf, ctx)
                .map_err(named("cancel_reason")),
            7 => encoding::bool::merge(wire_type, &mut self.fragment, buf, ctx)
                .map_err(named("fragment")),
            EVENTS_TAG => {
                let mut ev = Bytes::new();
                encoding::bytes::merge(wire_type, &mut ev, buf, ctx).map_err(named("events"))?;
                self.events.push(EncodedEvent::from_bytes(ev));
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let events: usize = self.events.iter().map(|ev| ev.field_len(EVENTS_TAG)).sum();
        self.header
            .as_ref()
            .map_or(0, |h| encoding::message::encoded_len(1, h))
            + if self.watch_id != 0 {
                encoding::int64::encoded_len(2, &self.watch_id)
            } else {
                0
            }
            + if self.created { 2 } else { 0 }
            + if self.canceled { 2 } else { 0 }
            + if self.compact_revision != 0 {
                encoding::int64::encoded_len(5, &self.compact_revision)
            } else {
                0
            }
            + if self.cancel_reason.is_empty() {
                0
            } else {
                encoding::string::encoded_len(6, &self.cancel_reason)
            }
            + if self.fragment { 2 } else { 0 }
            + events
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests;
