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

/// Longest `app_id` a server accepts in a client hello, bytes.
pub const MAX_APP_ID_LEN: usize = 64;
/// Longest `device_id` a server accepts in a client hello, bytes.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest `sdk_name` and `sdk_version` a server accepts in a client hello,
/// bytes each.
pub const MAX_SDK_FIELD_LEN: usize = 64;
/// Longest `resume_token` a server accepts in a client hello, bytes.
pub const MAX_RESUME_TOKEN_LEN: usize = 256;
/// Most entries a server accepts in a client hello's `versions` and
/// `compressions` lists, each.
pub const MAX_HELLO_LIST_LEN: usize = 16;

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
    /// A client hello field is longer than the server accepts, or holds a
    /// control character (see [`check_client_hello`]).
    #[error("invalid client hello: {field} {problem}")]
    InvalidHello {
        /// The field, e.g. `device_id`.
        field: &'static str,
        /// What is wrong with it, with the limit.
        problem: String,
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
            Self::InvalidHello { .. } => ErrorCode::InvalidArgument,
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
    ///
    /// The hello's fields are checked against the documented limits
    /// ([`check_client_hello`]) before it is handed out: a longer field is
    /// [`HandshakeError::InvalidHello`] (`INVALID_ARGUMENT`).
    pub fn handle_frame(&mut self, frame: Frame) -> Result<ClientHello, HandshakeError> {
        if frame.ty != FrameType::CLIENT_HELLO {
            self.done = true;
            return Err(HandshakeError::UnexpectedFrame {
                expected: FrameType::CLIENT_HELLO,
                got: frame.ty,
            });
        }
        let hello: ClientHello = frame.decode().inspect_err(|_| self.done = true)?;
        check_client_hello(&hello).inspect_err(|_| self.done = true)?;
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

/// Checks a client hello against the limits a server enforces: `app_id` at
/// most [`MAX_APP_ID_LEN`] bytes, `device_id` at most
/// [`MAX_DEVICE_ID_LEN`], `sdk_name` and `sdk_version` at most
/// [`MAX_SDK_FIELD_LEN`], none of them with a control character;
/// `resume_token` at most [`MAX_RESUME_TOKEN_LEN`] bytes; `versions` and
/// `compressions` at most [`MAX_HELLO_LIST_LEN`] entries.
/// [`ServerHandshake::handle_frame`] runs it on every hello.
pub fn check_client_hello(hello: &ClientHello) -> Result<(), HandshakeError> {
    let text = [
        ("app_id", hello.app_id.as_str(), MAX_APP_ID_LEN),
        ("device_id", hello.device_id.as_str(), MAX_DEVICE_ID_LEN),
        ("sdk_name", hello.sdk_name.as_str(), MAX_SDK_FIELD_LEN),
        ("sdk_version", hello.sdk_version.as_str(), MAX_SDK_FIELD_LEN),
    ];
    for (field, value, max) in text {
        if value.len() > max {
            return Err(HandshakeError::InvalidHello {
                field,
                problem: format!("has {} bytes, more than the limit of {max}", value.len()),
            });
        }
        if value.chars().any(char::is_control) {
            return Err(HandshakeError::InvalidHello {
                field,
                problem: "holds a control character".to_owned(),
            });
        }
    }
    if hello.resume_token.len() > MAX_RESUME_TOKEN_LEN {
        return Err(HandshakeError::InvalidHello {
            field: "resume_token",
            problem: format!(
                "has {} bytes, more than the limit of {MAX_RESUME_TOKEN_LEN}",
                hello.resume_token.len()
            ),
        });
    }
    let lists = [
        ("versions", hello.versions.len()),
        ("compressions", hello.compressions.len()),
    ];
    for (field, len) in lists {
        if len > MAX_HELLO_LIST_LEN {
            return Err(HandshakeError::InvalidHello {
                field,
                problem: format!("has {len} entries, more than the limit of {MAX_HELLO_LIST_LEN}"),
            });
        }
    }
    Ok(())
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
    fn hello_fields_over_their_limits_are_invalid_argument() {
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(&str, ClientHello)> = vec![
            (
                "app_id",
                ClientHello {
                    app_id: long(MAX_APP_ID_LEN + 1),
                    ..Default::default()
                },
            ),
            (
                "device_id",
                ClientHello {
                    device_id: long(MAX_DEVICE_ID_LEN + 1),
                    ..Default::default()
                },
            ),
            (
                "device_id",
                ClientHello {
                    device_id: "d\r\nX-Injected: 1".into(),
                    ..Default::default()
                },
            ),
            (
                "sdk_name",
                ClientHello {
                    sdk_name: long(MAX_SDK_FIELD_LEN + 1),
                    ..Default::default()
                },
            ),
            (
                "sdk_version",
                ClientHello {
                    sdk_version: long(MAX_SDK_FIELD_LEN + 1),
                    ..Default::default()
                },
            ),
            (
                "resume_token",
                ClientHello {
                    resume_token: vec![0; MAX_RESUME_TOKEN_LEN + 1].into(),
                    ..Default::default()
                },
            ),
            (
                "versions",
                ClientHello {
                    versions: vec![1; MAX_HELLO_LIST_LEN + 1],
                    ..Default::default()
                },
            ),
            (
                "compressions",
                ClientHello {
                    versions: vec![1],
                    compressions: vec![0; MAX_HELLO_LIST_LEN + 1],
                    ..Default::default()
                },
            ),
        ];
        for (field, mut hello) in cases {
            if hello.versions.is_empty() {
                hello.versions = vec![PROTOCOL_VERSION];
            }
            let mut server = ServerHandshake::new(origin(), DEFAULT_HANDSHAKE_TIMEOUT);
            let err = server
                .handle_frame(Frame::from_message(FrameType::CLIENT_HELLO, &hello))
                .unwrap_err();
            assert!(
                matches!(&err, HandshakeError::InvalidHello { field: f, .. } if *f == field),
                "{field}: {err:?}"
            );
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
            assert!(err.to_string().contains(field), "{err}");
            assert_eq!(server.poll_timeout(), None, "the handshake is over");
        }
        // At the limits: accepted.
        let hello = ClientHello {
            versions: vec![PROTOCOL_VERSION; MAX_HELLO_LIST_LEN],
            app_id: long(MAX_APP_ID_LEN),
            device_id: long(MAX_DEVICE_ID_LEN),
            sdk_name: long(MAX_SDK_FIELD_LEN),
            sdk_version: long(MAX_SDK_FIELD_LEN),
            resume_token: vec![7; MAX_RESUME_TOKEN_LEN].into(),
            compressions: vec![0; MAX_HELLO_LIST_LEN],
            ..Default::default()
        };
        let mut server = ServerHandshake::new(origin(), DEFAULT_HANDSHAKE_TIMEOUT);
        let got = server
            .handle_frame(Frame::from_message(FrameType::CLIENT_HELLO, &hello))
            .unwrap();
        assert_eq!(got, hello);
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
