//! [`WireCodec`]: the gRPC codec of Shale's generated servers; prost's, with the send buffer
//! sized once.
//!
//! tonic encodes each response into one growing buffer. prost's codec lets the buffer grow
//! as the message is written, so a 100 MiB LIST response is copied again on every doubling
//! of that buffer (about once more in total) and each doubling touches fresh memory. A
//! message's encoded length is known before it is written (for
//! [`WireRangeResponse`](crate::range_wire::WireRangeResponse) it is a sum over record
//! lengths), so this codec reserves exactly that much first and then writes the message
//! once. Decoding is prost's.
//!
//! Invariant: the bytes written are exactly what `prost::Message::encode` writes; only the
//! buffer's growth differs. (tonic's `EncodeBuf` cannot be built outside tonic, so the
//! system tests check this: every response of the differential tests passes through here.)

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstDecoder;

/// Codec of the generated servers (`build.rs`: `codec_path` of the servers pass).
#[derive(Debug, Clone, Copy)]
pub struct WireCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for WireCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for WireCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a message into a buffer reserved to its exact length.
#[derive(Debug, Clone, Copy)]
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
