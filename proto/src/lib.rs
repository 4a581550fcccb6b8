//! Protobuf messages of the Pike protocol.
//!
//! Three protobuf packages, each a module:
//!
//! - [`tunnel`] (`pike.tunnel.v1`): the tunnel layer (`tntunnel`): the
//!   versioned handshake, connection close, and [`tunnel::ErrorCode`], the
//!   error and close codes shared by every layer.
//! - [`channel`] (`pike.channel.v1`): the Pike channel layer (`pike-channel`):
//!   per-business login over a shared connection, tags, reliable and
//!   transient downlink with cumulative acks, ordered uplink with acks, live
//!   rooms, heartbeats and server control.
//! - [`api`] (`pike.api.v1`): a business backend's push connection to the
//!   gateway (`GET /v1/push/ws`): batches of pushes and their results, the
//!   binary counterpart of the HTTP API's `POST /v1/push/batch`.
//!
//! This crate holds only the message types. Each message is the protobuf body
//! of one frame; the frame type constants are defined by `tntunnel` (control
//! frames) and `pike-channel` (application frames), and `docs/protocol.md`
//! has the byte layout of a frame. The frame type of each message:
//!
//! | Type | Message | Direction |
//! |------|---------|-----------|
//! | `0x01` | [`tunnel::ClientHello`] | client → server |
//! | `0x02` | [`tunnel::ServerHello`] | server → client |
//! | `0x03` | [`tunnel::Close`] | either |
//! | `0x10` | [`channel::Login`] | client → server |
//! | `0x11` | [`channel::LoginResult`] | server → client |
//! | `0x12` | [`channel::Logout`] | client → server |
//! | `0x13` | [`channel::Tags`] | client → server |
//! | `0x14` | [`channel::TagsResult`] | server → client |
//! | `0x18` | [`channel::Downlink`] | server → client |
//! | `0x19` | [`channel::DownlinkAck`] | client → server |
//! | `0x1A` | [`channel::Uplink`] | client → server |
//! | `0x1B` | [`channel::UplinkAck`] | server → client |
//! | `0x20` | [`channel::RoomJoin`] | client → server |
//! | `0x21` | [`channel::RoomJoinResult`] | server → client |
//! | `0x22` | [`channel::RoomLeave`] | client → server |
//! | `0x23` | [`channel::RoomPull`] | client → server |
//! | `0x24` | [`channel::RoomBatch`] | server → client |
//! | `0x28` | [`channel::Ping`] | either |
//! | `0x29` | [`channel::Pong`] | either |
//! | `0x2A` | [`channel::GoAway`] | server → client |
//! | `0x2B` | [`channel::Error`] | server → client |
//!
//! # Conventions of the generated code
//!
//! - `bytes` fields are [`bytes::Bytes`]: decoding from a `Bytes` buffer
//!   slices payloads out of it without copying.
//! - Enum fields are `i32` on the wire and in the struct (prost's default), so
//!   unknown values survive a round trip. Each such field has an accessor of
//!   the same name that maps unknown values to the enum's default (for
//!   example [`channel::LoginResult::code`]); use `TryFrom<i32>` (for example
//!   [`tunnel::ErrorCode::try_from`]) to reject them instead.
//! - [`FILE_DESCRIPTOR_SET`] is the encoded `google.protobuf.FileDescriptorSet`
//!   of every package, for reflection.
//!
//! # Example
//!
//! ```
//! use proto::prost::Message;
//! use proto::{channel, tunnel};
//!
//! let login = channel::Login {
//!     stream: 1,
//!     biz: "chat".to_owned(),
//!     alias: "u42".to_owned(),
//!     credential: "signed-credential".to_owned(),
//!     ..Default::default()
//! };
//! let encoded = login.encode_to_vec();
//! let decoded = channel::Login::decode(encoded.as_slice())?;
//! assert_eq!(decoded, login);
//!
//! let result = channel::LoginResult {
//!     stream: 1,
//!     code: tunnel::ErrorCode::TokenExpired.into(),
//!     ..Default::default()
//! };
//! assert_eq!(result.code(), tunnel::ErrorCode::TokenExpired);
//! # Ok::<(), proto::prost::DecodeError>(())
//! ```
//!
//! # Regenerating
//!
//! The schema lives in `proto/proto/pike/**/*.proto`. The generated code in
//! `proto/src/gen/` is committed and never edited by hand: after changing a
//! `.proto` file run `cargo xtask codegen` (no `protoc` needed) and commit
//! the result; `cargo xtask codegen --check` fails when it is stale. A new
//! protobuf package also needs a module below.
//!
//! # Features
//!
//! No cargo features. The package is published as `pike-proto` (the name
//! `proto` is taken on crates.io); the library keeps the name `proto`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

// The generated code needs no lint exceptions today: every protobuf item is
// documented, so `missing_docs` also checks the schema. Allow a lint here only
// when a schema change makes prost emit code that triggers it.
/// The generated packages, laid out by protobuf package name so that prost's
/// cross-package paths (`super::super::tunnel::v1::ErrorCode`) resolve.
///
/// Prefer the short paths [`tunnel`], [`channel`] and [`api`].
#[rustfmt::skip]
pub mod pike {
    /// Protobuf packages `pike.tunnel.*`.
    pub mod tunnel {
        /// Protobuf package `pike.tunnel.v1`: the tunnel handshake and close.
        pub mod v1 {
            include!("gen/pike.tunnel.v1.rs");
        }
    }

    /// Protobuf packages `pike.channel.*`.
    pub mod channel {
        /// Protobuf package `pike.channel.v1`: the Pike channel messages.
        pub mod v1 {
            include!("gen/pike.channel.v1.rs");
        }
    }

    /// Protobuf packages `pike.api.*`.
    pub mod api {
        /// Protobuf package `pike.api.v1`: a backend's push connection.
        pub mod v1 {
            include!("gen/pike.api.v1.rs");
        }
    }
}

pub use pike::api::v1 as api;

pub use pike::channel::v1 as channel;
pub use pike::tunnel::v1 as tunnel;
pub use {bytes, prost};

/// The encoded `google.protobuf.FileDescriptorSet` of every generated package
/// (with source info, so comments are included), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/descriptor.bin");

#[cfg(test)]
mod tests;

impl tunnel::ErrorCode {
    /// Whether connecting again can help after the server closed a
    /// connection (or refused a handshake) with this code.
    ///
    /// `false` for the codes that say the client itself is refused and
    /// will be refused again, however often it reconnects: an unknown app
    /// (`UNKNOWN_APP`), no common protocol version (`UNSUPPORTED_VERSION`),
    /// a bad or expired credential (`AUTH_FAILED`, `TOKEN_EXPIRED`), or a
    /// hello field the server does not accept (`INVALID_ARGUMENT`), or the
    /// same device logged in elsewhere (`REPLACED`: reconnecting would take
    /// the login back from the newer connection, which would do the same,
    /// in turn). A client stops on them and reports the server's reason;
    /// the app may start it again (`REPLACED` is final for the connection,
    /// not for the device). Every other
    /// code (network trouble, timeouts, draining, overload, internal
    /// errors) is worth a reconnect with backoff; so is `FORBIDDEN` in a
    /// close: it is how the gateway kicks a session (`POST /v1/disconnect`),
    /// after which the client reconnects and logs in again if its
    /// credential still allows (a login refused with `FORBIDDEN` is final
    /// for that login, see `docs/channel.md`). The same table is in
    /// `docs/protocol.md` ("Error codes").
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            Self::UnsupportedVersion
                | Self::UnknownApp
                | Self::AuthFailed
                | Self::TokenExpired
                | Self::InvalidArgument
                | Self::Replaced
        )
    }
}

/// The README's examples, compiled (and, where they need no network, run)
/// as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
