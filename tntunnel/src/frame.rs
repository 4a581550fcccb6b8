//! Frames: a one-byte header, a varint body length, and an opaque body.
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-----------+----------------------+-----------------+
//! |C|R|   type    | length (LEB128, 1-4) | body (length B) |
//! +-+-+-----------+----------------------+-----------------+
//! C: the body is compressed (negotiated algorithm)
//! R: reserved, must be zero
//! ```
//!
//! Types `0x01..=0x0F` are tunnel control frames owned by this crate (hello,
//! close); types `0x10..=0x3F` are application frames whose meaning belongs
//! to the layer above (the Pike channel). Type `0x00` is never valid.

use bytes::Bytes;
use proto::tunnel::Compression;

use crate::error::FrameError;

/// Header bit: the body is compressed with the negotiated algorithm.
pub(crate) const FLAG_COMPRESSED: u8 = 0x80;
/// Header bit reserved for a future extension; must be zero.
pub(crate) const FLAG_RESERVED: u8 = 0x40;
/// Mask of the frame-type bits of the header byte.
pub(crate) const TYPE_MASK: u8 = 0x3f;

/// The type of a frame: six bits of the header byte.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct FrameType(u8);

impl FrameType {
    /// The client's first frame (`pike.tunnel.v1.ClientHello`).
    pub const CLIENT_HELLO: Self = Self(0x01);
    /// The server's answer to the hello (`pike.tunnel.v1.ServerHello`).
    pub const SERVER_HELLO: Self = Self(0x02);
    /// A close with a reason (`pike.tunnel.v1.Close`); the sender closes next.
    pub const CLOSE: Self = Self(0x03);

    /// First frame type available to the layer above the tunnel.
    pub const APP_FIRST: u8 = 0x10;
    /// Last frame type available to the layer above the tunnel.
    pub const APP_LAST: u8 = 0x3f;

    /// An application frame type, for constants of the layer above.
    ///
    /// Meant for `const` items, where an out-of-range code fails the build:
    /// `const DOWNLINK: FrameType = FrameType::app(0x18);`. Use
    /// [`FrameType::try_from`] for values that come from outside.
    ///
    /// # Panics
    ///
    /// If `code` is outside `0x10..=0x3F` (at compile time in a `const`).
    pub const fn app(code: u8) -> Self {
        assert!(
            code >= Self::APP_FIRST && code <= Self::APP_LAST,
            "application frame types are 0x10..=0x3F"
        );
        Self(code)
    }

    /// The numeric code of this type.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// Whether this is a tunnel control frame (hello, close) rather than an
    /// application frame.
    pub const fn is_control(self) -> bool {
        self.0 < Self::APP_FIRST
    }
}

impl TryFrom<u8> for FrameType {
    type Error = FrameError;

    /// Accepts the defined control types and the whole application range.
    fn try_from(code: u8) -> Result<Self, FrameError> {
        match code {
            0x01..=0x03 | Self::APP_FIRST..=Self::APP_LAST => Ok(Self(code)),
            _ => Err(FrameError::UnknownFrameType(code)),
        }
    }
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::CLIENT_HELLO => f.write_str("client-hello"),
            Self::SERVER_HELLO => f.write_str("server-hello"),
            Self::CLOSE => f.write_str("close"),
            Self(code) => write!(f, "app-{code:#04x}"),
        }
    }
}

/// How the codec treats a frame's body when it writes the frame.
///
/// Frames built with [`Frame::new`] or [`Frame::from_message`] are
/// [`Auto`](Self::Auto): each connection's codec decides on compression.
/// A frame meant for many connections is prepared once with
/// [`Frame::prepare`], which decides (and compresses) once, so the codecs
/// only copy the shared body.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum BodyForm {
    /// An uncompressed body; the codec compresses it when compression was
    /// negotiated, the body reaches the threshold and compressing makes it
    /// smaller.
    #[default]
    Auto,
    /// An uncompressed body written as is (the sender already found that
    /// compression does not pay, or that the body is below the threshold).
    Raw,
    /// A body already compressed with this algorithm, written as is with the
    /// C bit. A codec that negotiated another algorithm (or none) refuses to
    /// write it ([`FrameError::CompressionNotNegotiated`]).
    Compressed(Compression),
}

/// One frame: its type and its body.
///
/// The body is uncompressed, except in a frame made by [`Frame::prepare`]
/// with [`BodyForm::Compressed`] (see [`Frame::form`]); decoded frames are
/// always uncompressed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Frame {
    /// What the body is.
    pub ty: FrameType,
    /// The body, usually an encoded protobuf message.
    pub body: Bytes,
    form: BodyForm,
}

impl Frame {
    /// A frame from a type and body bytes.
    pub fn new(ty: FrameType, body: impl Into<Bytes>) -> Self {
        Self {
            ty,
            body: body.into(),
            form: BodyForm::Auto,
        }
    }

    /// A frame whose body is `message` encoded as protobuf.
    pub fn from_message(ty: FrameType, message: &impl prost::Message) -> Self {
        Self::new(ty, Bytes::from(message.encode_to_vec()))
    }

    /// A frame to be written to many connections that negotiated
    /// `compression`, with compression decided once here instead of by each
    /// connection's codec: a `body` of at least `threshold` bytes is
    /// compressed when that makes it smaller ([`BodyForm::Compressed`]),
    /// otherwise it is kept as is ([`BodyForm::Raw`], sharing `body`).
    /// Clones of the result share its bytes.
    pub fn prepare(ty: FrameType, body: Bytes, compression: Compression, threshold: usize) -> Self {
        let packed = (body.len() >= threshold)
            .then(|| crate::compression::compress(compression, &body))
            .flatten();
        match packed {
            Some(packed) => Self {
                ty,
                body: Bytes::from(packed),
                form: BodyForm::Compressed(compression),
            },
            None => Self {
                ty,
                body,
                form: BodyForm::Raw,
            },
        }
    }

    /// How the codec treats the body (see [`BodyForm`]).
    pub fn form(&self) -> BodyForm {
        self.form
    }

    /// Decodes the body as the protobuf message `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, FrameError> {
        M::decode(self.body.clone()).map_err(|source| FrameError::MalformedBody {
            ty: self.ty,
            source,
        })
    }

    /// A close frame with a code and a human-readable reason.
    pub fn close(code: proto::tunnel::ErrorCode, message: impl Into<String>) -> Self {
        Self::from_message(
            FrameType::CLOSE,
            &proto::tunnel::Close {
                code: code as i32,
                message: message.into(),
                reconnect: None,
            },
        )
    }

    /// Bytes this frame takes on the wire when sent with its body as it is
    /// (uncompressed, or as prepared).
    pub fn encoded_len(&self) -> usize {
        1 + crate::varint::encoded_len(self.body.len()) + self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_type_ranges() {
        assert_eq!(
            FrameType::try_from(0x00),
            Err(FrameError::UnknownFrameType(0x00))
        );
        assert_eq!(
            FrameType::try_from(0x04),
            Err(FrameError::UnknownFrameType(0x04))
        );
        assert_eq!(
            FrameType::try_from(0x0f),
            Err(FrameError::UnknownFrameType(0x0f))
        );
        assert_eq!(
            FrameType::try_from(0x40),
            Err(FrameError::UnknownFrameType(0x40))
        );
        assert_eq!(FrameType::try_from(0x10), Ok(FrameType::app(0x10)));
        assert_eq!(FrameType::try_from(0x3f), Ok(FrameType::app(0x3f)));
        assert!(FrameType::CLOSE.is_control());
        assert!(!FrameType::app(0x10).is_control());
        assert_eq!(FrameType::app(0x18).to_string(), "app-0x18");
    }

    #[test]
    fn prepare_compresses_once_when_it_pays() {
        let text = Bytes::from(b"abcdabcdabcdabcd".repeat(100));
        let ty = FrameType::app(0x24);
        let packed = Frame::prepare(ty, text.clone(), Compression::Lz4, 1024);
        assert_eq!(packed.form(), BodyForm::Compressed(Compression::Lz4));
        assert!(packed.body.len() < text.len());

        // Below the threshold, without compression, or when it does not pay:
        // the same bytes, marked raw.
        for (body, compression) in [
            (text.slice(..100), Compression::Lz4),
            (text.clone(), Compression::None),
        ] {
            let raw = Frame::prepare(ty, body.clone(), compression, 1024);
            assert_eq!(raw.form(), BodyForm::Raw);
            assert_eq!(raw.body.as_ptr(), body.as_ptr());
        }
        assert_eq!(Frame::new(ty, text).form(), BodyForm::Auto);
    }

    #[test]
    fn encoded_len_counts_header_and_prefix() {
        assert_eq!(
            Frame::new(FrameType::app(0x28), Bytes::new()).encoded_len(),
            2
        );
        assert_eq!(
            Frame::new(FrameType::app(0x18), vec![0u8; 200]).encoded_len(),
            203
        );
    }
}
