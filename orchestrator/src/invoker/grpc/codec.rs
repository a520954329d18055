//! A tonic codec for [`DynamicMessage`]: requests are encoded as they are (a dynamic message
//! knows its own descriptor) and responses are decoded with the method's output descriptor,
//! which is only known at run time (from reflection).

use std::{error::Error as StdError, fmt, sync::Arc};

use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Encodes [`DynamicMessage`] requests and decodes responses of one message type.
#[derive(Debug, Clone)]
pub struct DynamicCodec {
    response: MessageDescriptor,
}

impl DynamicCodec {
    /// A codec whose decoder produces messages of type `response`.
    pub fn new(response: MessageDescriptor) -> Self {
        Self { response }
    }
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder { response: self.response.clone() }
    }
}

/// The encoding half of [`DynamicCodec`].
#[derive(Debug, Clone, Copy)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        // EncodeBuf grows on demand, so prost's "not enough space" cannot happen; map it anyway
        // rather than panic.
        item.encode(dst).map_err(|err| Status::internal(format!("encoding the request failed: {err}")))
    }
}

/// The decoding half of [`DynamicCodec`].
#[derive(Debug, Clone)]
pub struct DynamicDecoder {
    response: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.response.clone(), src).map(Some).map_err(|err| {
            // The server answered, so it applied the call; a status alone would read like a
            // server-side Internal error. The marker source lets the error mapping tell the
            // two apart (see `error::status_error`).
            let failure =
                ResponseDecodeError { message_type: self.response.full_name().to_owned(), reason: err.to_string() };
            let mut status = Status::internal(failure.to_string());
            status.set_source(Arc::new(failure));
            status
        })
    }
}

/// The participant's answer did not decode as the method's response type (the participant
/// and its reflection disagree, or the schema changed under us).
#[derive(Debug, Clone)]
pub struct ResponseDecodeError {
    pub message_type: String,
    pub reason: String,
}

impl fmt::Display for ResponseDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the response does not decode as {}: {}", self.message_type, self.reason)
    }
}

impl StdError for ResponseDecodeError {}
