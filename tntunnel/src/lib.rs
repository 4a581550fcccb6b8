//! `tntunnel`: the general channel that carries Pike over a byte stream.
//!
//! This layer knows frames, encryption and the versioned handshake, and
//! nothing of Pike's semantics: application frames (types `0x10..=0x3F`)
//! carry opaque bodies for the layer above, the way Meituan's TNTunnel
//! carried Pike as the payload of the Shark protocol. It sits on any
//! `AsyncRead + AsyncWrite` stream, usually a `tunnelkit` TCP or QUIC
//! connection, optionally wrapped in TLS 1.3.
//!
//! - [`FrameCodec`]: the byte layout of frames (see `docs/protocol.md`),
//!   with a receive limit checked before allocating and typed errors for
//!   every malformed input.
//! - [`ClientHandshake`] / [`ServerHandshake`]: the hello exchange as
//!   sans-IO state machines; [`connect`] and [`accept`] drive them over a
//!   stream.
//! - Per-frame LZ4 compression of large bodies, agreed in the handshake.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use tntunnel::proto::tunnel::{ClientHello, ServerHello};
//! use tntunnel::{Frame, FrameType, TunnelConfig};
//!
//! let (client_io, server_io) = tokio::io::duplex(4096);
//! let config = TunnelConfig::default();
//! let server = tokio::spawn(async move {
//!     let config = TunnelConfig::default();
//!     let incoming = tntunnel::accept(server_io, &config).await?;
//!     assert_eq!(incoming.hello().app_id, "demo");
//!     let mut framed = incoming.accept(ServerHello { connection_token: "t1".into(), ..Default::default() }).await?;
//!     let frame = framed.next().await.expect("a frame")?;
//!     framed.send(frame).await?; // echo
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let hello = ClientHello { app_id: "demo".into(), ..Default::default() };
//! let (mut framed, server_hello) = tntunnel::connect(client_io, hello, &config).await?;
//! assert_eq!(server_hello.connection_token, "t1");
//! framed.send(Frame::new(FrameType::app(0x10), &b"hi"[..])).await?;
//! let echo = framed.next().await.expect("echo")?;
//! assert_eq!(&echo.body[..], b"hi");
//! server.await?.map_err(|e| e.to_string())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---|---|---|
//! | `tls` | yes | TLS 1.3 over TCP: the `tls` module, `ClientSecurity::Tls` and `ServerSecurity::Tls` (tokio-rustls, ring; rcgen for the self-signed development certificate). Without it, plain streams only. |
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod codec;
mod compression;
mod config;
mod error;
mod frame;
mod handshake;
mod security;
#[cfg(feature = "tls")]
pub mod tls;
mod token;
mod tunnel;
mod varint;

pub use crate::codec::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameCodecBuilder};
pub use crate::compression::DEFAULT_COMPRESSION_THRESHOLD;
pub use crate::config::{ConfigError, MIN_MAX_FRAME_LENGTH, TunnelConfig};
pub use crate::error::{CodecError, FrameError};
pub use crate::frame::{BodyForm, Frame, FrameType};
pub use crate::handshake::{
    ClientHandshake, DEFAULT_HANDSHAKE_TIMEOUT, HandshakeError, MAX_APP_ID_LEN, MAX_DEVICE_ID_LEN,
    MAX_HELLO_LIST_LEN, MAX_RESUME_TOKEN_LEN, MAX_SDK_FIELD_LEN, PROTOCOL_VERSION,
    SUPPORTED_VERSIONS, ServerHandshake, check_client_hello, negotiate_version,
};
pub use crate::security::{
    ClientSecurity, SecureStream, SecurityError, ServerSecurity, looks_like_tls,
};
pub use crate::token::new_connection_token;
pub use crate::tunnel::{
    CLOSE_WRITE_TIMEOUT, FramedTunnel, Incoming, accept, accept_until, close, connect,
};

pub use bytes;
pub use proto;
pub use rustls;

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
