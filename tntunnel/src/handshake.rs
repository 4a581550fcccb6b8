//! The versioned tunnel handshake as sans-IO state machines.
//!
//! The client sends a `ClientHello` listing the protocol versions it speaks;
//! the server answers with a `ServerHello` naming the chosen version (the
//! highest one both speak), or with a `Close` carrying an error code. Neither
//! machine does I/O or reads a clock: frames go in through `handle_frame`,
//! come out of `poll_transmit`, and time is passed in as `now`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tntunnel::{ClientHandshake, ServerHandshake};
//! use tntunnel::proto::tunnel::{ClientHello, ServerHello};
//!
//! let now = Instant::now();
//! let mut client = ClientHandshake::new(ClientHello::default(), now, Duration::from_secs(10));
//! let mut server = ServerHandshake::new(now, Duration::from_secs(10));
//!
//! let hello = client.poll_transmit().expect("the hello is sent first");
//! let client_hello = server.handle_frame(hello).expect("valid hello");
//! assert_eq!(client_hello.versions, vec![tntunnel::PROTOCOL_VERSION]);
//!
//! let answer = server.accept(ServerHello { connection_token: "c1".into(), ..Default::default() });
//! let server_hello = client.handle_frame(answer).expect("accepted");
//! assert_eq!(server_hello.version, tntunnel::PROTOCOL_VERSION);
//! assert_eq!(server_hello.connection_token, "c1");
//! ```

use std::io;
use std::time::{Duration, Instant};

use proto::tunnel::{ClientHello, Close, ErrorCode, ReconnectAdvice, ServerHello};

use crate::error::{CodecError, FrameError};
use crate::frame::{Frame, FrameType};

/// The protocol version this crate speaks best.
pub const PROTOCOL_VERSION: u32 = 1;

/// Every protocol version this crate speaks, highest first.
pub const SUPPORTED_VERSIONS: &[u32] = &[PROTOCOL_VERSION];

/// Default time allowed from connection start to a completed handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The I/O beneath failed.
    #[error("i/o error during handshake: {0}")]
    Io(#[from] io::Error),
    /// The connection closed before the handshake finished.
    #[error("connection closed during the handshake")]
    Closed,
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// A valid frame, but not the one the handshake expects now.
    #[error("expected a {expected} frame, got {got}")]
    UnexpectedFrame {
        /// The frame the handshake waits for.
        expected: FrameType,
        /// The frame that came.
        got: FrameType,
    },
    /// The peer speaks TLS where plain text was expected: a TLS client on
    /// a plain port, or a plain client on a TLS port.
    #[error(
        "the peer speaks TLS where plain text was expected (wrong port, or TLS not configured on this side)"
    )]
    PeerSpeaksTls,
    /// The peer speaks HTTP: an HTTP client on a Pike port, or a Pike client
    /// pointed at an HTTP port.
    #[error("the peer speaks HTTP, not the Pike tunnel protocol (wrong port?)")]
    PeerSpeaksHttp,
    /// No protocol version in common.
    #[error("no common protocol version: peer offers {offered:?}, we speak {supported:?}")]
    UnsupportedVersion {
        /// Versions the peer offered (or chose).
        offered: Vec<u32>,
        /// Versions we speak.
        supported: Vec<u32>,
    },
    /// The peer refused the handshake with a close frame.
    #[error("handshake refused by the peer ({code:?}): {message}")]
    Rejected {
        /// The peer's reason code.
        code: ErrorCode,
        /// The peer's explanation.
        message: String,
        /// The close frame's advice on when and where to reconnect (e.g. with
        /// `OVERLOADED`).
        reconnect: Option<ReconnectAdvice>,
    },
}

impl HandshakeError {
    /// The code to send in a close frame for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Frame(e) => e.code(),
            Self::Io(_) | Self::Closed => ErrorCode::Unspecified,
            Self::Timeout => ErrorCode::HandshakeTimeout,
            Self::UnexpectedFrame { .. } | Self::PeerSpeaksTls | Self::PeerSpeaksHttp => {
                ErrorCode::Protocol
            }
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::Rejected { code, .. } => *code,
        }
    }

    /// The close frame that tells the peer about this error.
    pub fn close_frame(&self) -> Frame {
        Frame::close(self.code(), self.to_string())
    }
}

impl From<CodecError> for HandshakeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Frame(e) => Self::Frame(e),
            CodecError::Io(e) => Self::Io(e),
        }
    }
}

/// The client side of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    hello: Option<ClientHello>,
    offered: Vec<u32>,
    deadline: Instant,
    done: bool,
}

impl ClientHandshake {
    /// Starts a handshake that sends `hello`. An empty version list is
    /// filled with [`SUPPORTED_VERSIONS`].
    pub fn new(mut hello: ClientHello, now: Instant, timeout: Duration) -> Self {
        if hello.versions.is_empty() {
            hello.versions = SUPPORTED_VERSIONS.to_vec();
        }
        Self {
            offered: hello.versions.clone(),
            hello: Some(hello),
            deadline: now + timeout,
            done: false,
        }
    }

    /// The next frame to send (the hello, once).
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.hello
            .take()
            .map(|hello| Frame::from_message(FrameType::CLIENT_HELLO, &hello))
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// Fails the handshake once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if !self.done && now >= self.deadline {
            self.done = true;
            return Err(HandshakeError::Timeout);
        }
        Ok(())
    }

    /// Takes the server's answer: its hello, or a close.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<ServerHello, HandshakeError> {
        self.done = true;
        match frame.ty {
            FrameType::SERVER_HELLO => {
                let hello: ServerHello = frame.decode()?;
                if !self.offered.contains(&hello.version) {
                    return Err(HandshakeError::UnsupportedVersion {
                        offered: vec![hello.version],
                        supported: self.offered.clone(),
                    });
                }
                Ok(hello)
            }
            FrameType::CLOSE => Err(rejected(&frame)),
            got => Err(HandshakeError::UnexpectedFrame {
                expected: FrameType::SERVER_HELLO,
                got,
            }),
        }
    }
}

/// The server side of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    deadline: Instant,
    version: Option<u32>,
    done: bool,
}

impl ServerHandshake {
    /// Starts waiting for a client hello until `now + timeout`.
    pub fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            deadline: now + timeout,
            version: None,
            done: false,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// Fails the handshake once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if !self.done && now >= self.deadline {
            self.done = true;
            return Err(HandshakeError::Timeout);
        }
        Ok(())
    }

    /// Takes the client's first frame. On success the caller decides with
    /// [`accept`](Self::accept) or [`reject`](Self::reject); on error it sends
    /// [`HandshakeError::close_frame`] and closes.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<ClientHello, HandshakeError> {
        if frame.ty != FrameType::CLIENT_HELLO {
            self.done = true;
            return Err(HandshakeError::UnexpectedFrame {
                expected: FrameType::CLIENT_HELLO,
                got: frame.ty,
            });
        }
        let hello: ClientHello = frame.decode().inspect_err(|_| self.done = true)?;
        let Some(version) = negotiate_version(&hello.versions) else {
            self.done = true;
            return Err(HandshakeError::UnsupportedVersion {
                offered: hello.versions,
                supported: SUPPORTED_VERSIONS.to_vec(),
            });
        };
        self.version = Some(version);
        Ok(hello)
    }

    /// Accepts the client: `hello` with the negotiated version filled in.
    pub fn accept(&mut self, mut hello: ServerHello) -> Frame {
        self.done = true;
        hello.version = self.version.unwrap_or(PROTOCOL_VERSION);
        Frame::from_message(FrameType::SERVER_HELLO, &hello)
    }

    /// Refuses the client with a code and a reason.
    pub fn reject(&mut self, code: ErrorCode, message: impl Into<String>) -> Frame {
        self.done = true;
        Frame::close(code, message)
    }
}

/// The highest version in `offered` that this crate speaks.
pub fn negotiate_version(offered: &[u32]) -> Option<u32> {
    offered
        .iter()
        .copied()
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .max()
}

/// The error a close frame received during the handshake stands for.
fn rejected(frame: &Frame) -> HandshakeError {
    match frame.decode::<Close>() {
        Ok(close) => HandshakeError::Rejected {
            code: ErrorCode::try_from(close.code).unwrap_or(ErrorCode::Protocol),
            message: close.message,
            reconnect: close.reconnect,
        },
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock's origin; later instants are offsets from it.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn pair() -> (ClientHandshake, ServerHandshake, Instant) {
        let now = origin();
        let hello = ClientHello {
            app_id: "demo".into(),
            device_id: "d1".into(),
            ..Default::default()
        };
        (
            ClientHandshake::new(hello, now, DEFAULT_HANDSHAKE_TIMEOUT),
            ServerHandshake::new(now, DEFAULT_HANDSHAKE_TIMEOUT),
            now,
        )
    }

    #[test]
    fn negotiates_highest_common_version() {
        assert_eq!(negotiate_version(&[7, 1, 3]), Some(1));
        assert_eq!(negotiate_version(&[2, 3]), None);
        assert_eq!(negotiate_version(&[]), None);
    }

    #[test]
    fn hello_is_sent_once() {
        let (mut client, _, _) = pair();
        assert!(client.poll_transmit().is_some());
        assert!(client.poll_transmit().is_none());
    }

    #[test]
    fn unsupported_version_is_refused_with_its_code() {
        let now = origin();
        let mut client = ClientHandshake::new(
            ClientHello {
                versions: vec![99],
                ..Default::default()
            },
            now,
            DEFAULT_HANDSHAKE_TIMEOUT,
        );
        let mut server = ServerHandshake::new(now, DEFAULT_HANDSHAKE_TIMEOUT);
        let err = server
            .handle_frame(client.poll_transmit().unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, HandshakeError::UnsupportedVersion { offered, .. } if offered == &[99])
        );
        match client.handle_frame(err.close_frame()).unwrap_err() {
            HandshakeError::Rejected { code, message, .. } => {
                assert_eq!(code, ErrorCode::UnsupportedVersion);
                assert!(message.contains("99"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn server_choosing_a_version_not_offered_is_an_error() {
        let (mut client, _, _) = pair();
        client.poll_transmit();
        let answer = Frame::from_message(
            FrameType::SERVER_HELLO,
            &ServerHello {
                version: 42,
                ..Default::default()
            },
        );
        assert!(matches!(
            client.handle_frame(answer),
            Err(HandshakeError::UnsupportedVersion { offered, .. }) if offered == [42]
        ));
    }

    #[test]
    fn wrong_first_frame_is_unexpected() {
        let (_, mut server, _) = pair();
        let err = server
            .handle_frame(Frame::new(FrameType::app(0x18), vec![1, 2, 3]))
            .unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::UnexpectedFrame { expected: FrameType::CLIENT_HELLO, got } if got == FrameType::app(0x18)
        ));
        assert_eq!(err.code(), ErrorCode::Protocol);
    }

    #[test]
    fn garbage_hello_body_is_malformed() {
        let (_, mut server, _) = pair();
        let err = server
            .handle_frame(Frame::new(FrameType::CLIENT_HELLO, vec![0xff, 0xff, 0xff]))
            .unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Frame(FrameError::MalformedBody { .. })
        ));
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
    }

    #[test]
    fn deadline_is_data() {
        let (mut client, mut server, now) = pair();
        assert_eq!(client.poll_timeout(), Some(now + DEFAULT_HANDSHAKE_TIMEOUT));
        assert!(server.handle_timeout(now + Duration::from_secs(9)).is_ok());
        assert!(matches!(
            server.handle_timeout(now + DEFAULT_HANDSHAKE_TIMEOUT),
            Err(HandshakeError::Timeout)
        ));
        assert_eq!(server.poll_timeout(), None);
        let hello = client.poll_transmit().unwrap();
        let mut server = ServerHandshake::new(now, DEFAULT_HANDSHAKE_TIMEOUT);
        server.handle_frame(hello).unwrap();
        client
            .handle_frame(server.accept(ServerHello::default()))
            .unwrap();
        assert_eq!(client.poll_timeout(), None);
        assert!(
            client
                .handle_timeout(now + Duration::from_secs(3600))
                .is_ok()
        );
    }
}
