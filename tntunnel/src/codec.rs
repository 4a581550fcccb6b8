//! The frame codec: [`Frame`]s to and from bytes, on `tokio_util::codec`.

use bytes::{Buf, BytesMut};
use proto::tunnel::Compression;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::compression::{self, DEFAULT_COMPRESSION_THRESHOLD};
use crate::error::{CodecError, FrameError};
use crate::frame::{BodyForm, FLAG_COMPRESSED, FLAG_RESERVED, Frame, FrameType, TYPE_MASK};
use crate::varint::{self, MAX_VARINT_VALUE, Varint};

/// Default largest frame body accepted: 1 MiB (NATS's default payload limit).
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 1 << 20;

/// Decodes and encodes [`Frame`]s.
///
/// The receive limit is checked on the length prefix, before any byte of the
/// body is buffered, and again on the declared size of a compressed body.
/// Every malformed input is a [`FrameError`]; the codec never panics on input.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    state: DecodeState,
    max_frame_length: usize,
    peer_max_frame_length: usize,
    compression: Compression,
    compression_threshold: usize,
}

#[derive(Clone, Copy, Debug)]
enum DecodeState {
    Head,
    Body { header: u8, len: usize },
}

/// Configures a [`FrameCodec`]; also builds [`Framed`] adapters directly.
#[derive(Clone, Debug)]
pub struct FrameCodecBuilder {
    max_frame_length: usize,
    peer_max_frame_length: usize,
    compression: Compression,
    compression_threshold: usize,
}

impl FrameCodec {
    /// A codec with the default limits and no compression.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the default settings.
    pub fn builder() -> FrameCodecBuilder {
        FrameCodecBuilder::default()
    }

    /// Sets the compression used for outgoing bodies at or above the
    /// threshold and accepted on incoming frames (agreed in the handshake).
    pub fn set_compression(&mut self, compression: Compression) {
        self.compression = compression;
    }

    /// Sets the largest frame the peer accepts; larger outgoing frames fail
    /// to encode instead of being sent to be refused.
    pub fn set_peer_max_frame_length(&mut self, len: usize) {
        self.peer_max_frame_length = len.min(MAX_VARINT_VALUE);
    }

    /// The largest frame body this codec accepts.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The compression in use.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The smallest body this codec compresses.
    pub fn compression_threshold(&self) -> usize {
        self.compression_threshold
    }

    fn decode_head(&mut self, src: &mut BytesMut) -> Result<Option<(u8, usize)>, FrameError> {
        let Some(&header) = src.first() else {
            return Ok(None);
        };
        if header & FLAG_RESERVED != 0 {
            return Err(FrameError::ReservedFlag(header));
        }
        FrameType::try_from(header & TYPE_MASK)?;
        let (len, prefix) = match varint::decode(&src[1..])? {
            Varint::Complete { value, len } => (value, len),
            Varint::Incomplete => return Ok(None),
        };
        if len > self.max_frame_length {
            return Err(FrameError::FrameTooLarge {
                len,
                max: self.max_frame_length,
            });
        }
        src.advance(1 + prefix);
        Ok(Some((header, len)))
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let (header, len) = match self.state {
            DecodeState::Head => match self.decode_head(src)? {
                Some(head) => head,
                None => {
                    // Room for the largest header, no more: idle connections
                    // must not hold big buffers.
                    src.reserve(1 + varint::MAX_VARINT_LEN);
                    return Ok(None);
                }
            },
            DecodeState::Body { header, len } => (header, len),
        };
        if src.len() < len {
            self.state = DecodeState::Body { header, len };
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.state = DecodeState::Head;
        let mut body = src.split_to(len).freeze();
        if header & FLAG_COMPRESSED != 0 {
            body = compression::decompress(self.compression, &body, self.max_frame_length)?;
        }
        // The type was validated in `decode_head`.
        let ty = FrameType::try_from(header & TYPE_MASK)?;
        Ok(Some(Frame::new(ty, body)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && matches!(self.state, DecodeState::Head) => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }
            .into()),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut header = frame.ty.code();
        let packed = match frame.form() {
            BodyForm::Auto if frame.body.len() >= self.compression_threshold => {
                compression::compress(self.compression, &frame.body)
            }
            BodyForm::Auto | BodyForm::Raw => None,
            BodyForm::Compressed(algorithm) => {
                // Prepared once for many connections: sent as is, but only
                // to a peer that agreed to this algorithm.
                if algorithm != self.compression || algorithm == Compression::None {
                    return Err(FrameError::CompressionNotNegotiated.into());
                }
                header |= FLAG_COMPRESSED;
                None
            }
        };
        let body: &[u8] = match &packed {
            Some(packed) => {
                header |= FLAG_COMPRESSED;
                packed
            }
            None => &frame.body,
        };
        if body.len() > self.peer_max_frame_length {
            return Err(FrameError::FrameTooLarge {
                len: body.len(),
                max: self.peer_max_frame_length,
            }
            .into());
        }
        // Header and length prefix go out as one small slice.
        let mut head = [0u8; 1 + varint::MAX_VARINT_LEN];
        head[0] = header;
        let head_len = 1 + varint::encode_into(body.len(), &mut head[1..]);
        dst.reserve(head_len + body.len());
        dst.extend_from_slice(&head[..head_len]);
        dst.extend_from_slice(body);
        Ok(())
    }
}

impl FrameCodecBuilder {
    /// Largest frame body accepted from the peer (default 1 MiB, at most
    /// 2^28 - 1). Values above the varint's range are clamped.
    pub fn max_frame_length(&mut self, len: usize) -> &mut Self {
        self.max_frame_length = len.min(MAX_VARINT_VALUE);
        self
    }

    /// Largest frame body the peer accepts (default: same as ours).
    pub fn peer_max_frame_length(&mut self, len: usize) -> &mut Self {
        self.peer_max_frame_length = len.min(MAX_VARINT_VALUE);
        self
    }

    /// Compression for outgoing large bodies and accepted on input (default
    /// none: it is switched on by the handshake).
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.compression = compression;
        self
    }

    /// Smallest body worth compressing (default 1024 bytes).
    pub fn compression_threshold(&mut self, len: usize) -> &mut Self {
        self.compression_threshold = len;
        self
    }

    /// The codec.
    pub fn build(&self) -> FrameCodec {
        FrameCodec {
            state: DecodeState::Head,
            max_frame_length: self.max_frame_length,
            peer_max_frame_length: self.peer_max_frame_length,
            compression: self.compression,
            compression_threshold: self.compression_threshold,
        }
    }

    /// A [`Framed`] over `io` with this codec.
    pub fn new_framed<T: AsyncRead + AsyncWrite>(&self, io: T) -> Framed<T, FrameCodec> {
        Framed::new(io, self.build())
    }
}

impl Default for FrameCodecBuilder {
    fn default() -> Self {
        Self {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            peer_max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            compression: Compression::None,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
        }
    }
}
