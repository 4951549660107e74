//! [`Encoded`]: one protobuf message kept in its encoded form, shared by reference count.
//!
//! The server sends some messages many times (an event to every watcher) or straight from
//! storage (a stored key-value in a LIST). Keeping them as their encoding means the response
//! types of [`crate::watch_wire`] and [`crate::range_wire`] copy bytes into the wire buffer
//! instead of encoding again. `Encoded<M>` holds the encoding of one complete `M` without tag
//! or length prefix; the type parameter only says which message the bytes are (nothing is
//! checked when wrapping bytes: the caller vouches for them).

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding;
use prost::{DecodeError, Message};

/// The encoding of one `M`; clones share the bytes.
pub struct Encoded<M> {
    bytes: Bytes,
    // `fn() -> M`: the type says what the bytes decode to; no `M` is owned, so no bounds on
    // `M` are needed for the impls below.
    kind: PhantomData<fn() -> M>,
}

impl<M: Message + Default> Encoded<M> {
    /// Encodes `m`.
    pub fn encode(m: &M) -> Self {
        let mut buf = BytesMut::with_capacity(m.encoded_len());
        m.encode_raw(&mut buf);
        Self::from_bytes(buf.freeze())
    }

    /// Decodes the message (tests, sorting, diagnostics).
    pub fn decode(&self) -> Result<M, DecodeError> {
        M::decode(self.bytes.clone())
    }
}

impl<M> Encoded<M> {
    /// Wraps bytes that hold one encoded `M` (not checked).
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }

    /// The encoding (no tag or length prefix).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Length of the encoding; what `prost::Message::encoded_len` gives for the message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes the message as length-delimited field `tag` of an enclosing message.
    pub(crate) fn encode_field(&self, tag: u32, buf: &mut impl BufMut) {
        encoding::encode_key(tag, encoding::WireType::LengthDelimited, buf);
        encoding::encode_varint(self.bytes.len() as u64, buf);
        buf.put_slice(&self.bytes);
    }

    /// Encoded length of the message as field `tag`.
    pub(crate) fn field_len(&self, tag: u32) -> usize {
        encoding::key_len(tag) + encoding::encoded_len_varint(self.len() as u64) + self.len()
    }
}

impl<M> Clone for Encoded<M> {
    fn clone(&self) -> Self {
        Self::from_bytes(self.bytes.clone())
    }
}

impl<M> Default for Encoded<M> {
    fn default() -> Self {
        Self::from_bytes(Bytes::new())
    }
}

impl<M> PartialEq for Encoded<M> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<M> Eq for Encoded<M> {}

impl<M> std::fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Encoded").field(&self.bytes).finish()
    }
}

/// Adds `message.field` to a decode error's path (the response types' `merge_field`).
pub(crate) fn named(
    message: &'static str,
    field: &'static str,
) -> impl FnOnce(DecodeError) -> DecodeError {
    move |mut e| {
        e.push(message, field);
        e
    }
}
