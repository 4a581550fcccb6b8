//! Async handshake over any byte stream: [`connect`] for clients, [`accept`]
//! for servers. Both return a [`Framed`] stream of [`Frame`]s, configured
//! with what the handshake agreed (compression, the peer's frame limit).

use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use proto::tunnel::{ClientHello, Compression, ErrorCode, ServerHello};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::{Encoder, Framed, FramedParts};

use crate::codec::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};
use crate::config::TunnelConfig;
use crate::frame::{Frame, FrameType};
use crate::handshake::{ClientHandshake, HandshakeError, ServerHandshake};

/// A framed tunnel over the byte stream `S`.
pub type FramedTunnel<S> = Framed<S, FrameCodec>;

/// The answer a plain-port listener gives to an HTTP request.
const HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 53\r\n\r\nthis port speaks the Pike tunnel protocol, not HTTP\r\n";

/// Runs the client side of the handshake over `io`.
///
/// Sends `hello` (its version, compression and frame-limit fields are filled
/// from `config` when empty) and waits for the server's answer. A close from
/// the server is [`HandshakeError::Rejected`] with the server's code.
pub async fn connect<S>(
    io: S,
    mut hello: ClientHello,
    config: &TunnelConfig,
) -> Result<(FramedTunnel<S>, ServerHello), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if hello.compressions.is_empty() {
        hello.compressions = config
            .get_compressions()
            .iter()
            .map(|c| *c as i32)
            .collect();
    }
    if hello.max_frame_length == 0 {
        hello.max_frame_length = u32::try_from(config.get_max_frame_length()).unwrap_or(u32::MAX);
    }
    let start = Instant::now();
    let mut handshake =
        ClientHandshake::new(hello, start.into_std(), config.get_handshake_timeout());
    let deadline = start + config.get_handshake_timeout();
    let exchange = async {
        let mut io = io;
        let mut codec = config.codec();
        let mut out = BytesMut::new();
        while let Some(frame) = handshake.poll_transmit() {
            codec.encode(frame, &mut out)?;
        }
        io.write_all(&out).await?;
        io.flush().await?;
        let buf = read_first(&mut io, Side::Client).await?;
        let mut framed = framed_with(io, codec, buf);
        let frame = framed.next().await.ok_or(HandshakeError::Closed)??;
        Ok::<_, HandshakeError>((framed, handshake.handle_frame(frame)?))
    };
    let (mut framed, server_hello) = timeout_at(deadline, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    let codec = framed.codec_mut();
    codec.set_compression(
        Compression::try_from(server_hello.compression).unwrap_or(Compression::None),
    );
    codec.set_peer_max_frame_length(peer_limit(server_hello.max_frame_length));
    Ok((framed, server_hello))
}

/// Longest wait for writing a close frame once the handshake failed (its
/// deadline may have passed already): a peer that reads nothing cannot hold
/// the connection longer.
pub const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the server side of the handshake up to the client's hello, within
/// the configured handshake timeout (see [`accept_until`]).
pub async fn accept<S>(io: S, config: &TunnelConfig) -> Result<Incoming<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_until(io, config, Instant::now() + config.get_handshake_timeout()).await
}

/// Runs the server side of the handshake up to the client's hello, which
/// must be complete by `deadline` (the caller may have spent part of the
/// handshake timeout already, e.g. on TLS).
///
/// Refuses, with a clear error, a peer that speaks TLS on a plain port or
/// HTTP (which gets an HTTP 400 answer); answers a bad first frame with a close
/// frame carrying the error code. A peer whose hello is not complete at the
/// deadline gets a `HANDSHAKE_TIMEOUT` close frame, the same whether it sent
/// nothing or part of a hello ([`HandshakeError::Timeout`]); writing it takes
/// at most [`CLOSE_WRITE_TIMEOUT`] more. The caller then decides with
/// [`Incoming::accept`] or [`Incoming::reject`].
pub async fn accept_until<S>(
    io: S,
    config: &TunnelConfig,
    deadline: Instant,
) -> Result<Incoming<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut handshake =
        ServerHandshake::new(start.into_std(), deadline.saturating_duration_since(start));
    let mut io = io;
    let first = timeout_at(deadline, read_first(&mut io, Side::Server)).await;
    let buf = match first {
        Ok(result) => result?,
        Err(_) => {
            // Nothing (or not even one byte of a frame) arrived: closed
            // like a partial hello.
            let mut framed = framed_with(io, config.codec(), BytesMut::new());
            let e = HandshakeError::Timeout;
            let _ = timeout(
                CLOSE_WRITE_TIMEOUT,
                close(&mut framed, e.code(), e.to_string()),
            )
            .await;
            return Err(e);
        }
    };
    let mut framed = framed_with(io, config.codec(), buf);
    let first = timeout_at(deadline, framed.next()).await;
    let result = match first {
        Err(_) => Err(HandshakeError::Timeout),
        Ok(None) => Err(HandshakeError::Closed),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(Some(Ok(frame))) => handshake.handle_frame(frame),
    };
    match result {
        Ok(hello) => Ok(Incoming {
            framed,
            handshake,
            hello,
            compressions: config.get_compressions().to_vec(),
            max_frame_length: config.get_max_frame_length(),
        }),
        Err(e) => {
            if !matches!(e, HandshakeError::Io(_) | HandshakeError::Closed) {
                // Best effort: the peer may already be gone.
                let _ = timeout(
                    CLOSE_WRITE_TIMEOUT,
                    close(&mut framed, e.code(), e.to_string()),
                )
                .await;
            }
            Err(e)
        }
    }
}

/// Sends a close frame with `code` and `message`, then shuts the stream down.
pub async fn close<S>(
    framed: &mut FramedTunnel<S>,
    code: ErrorCode,
    message: impl Into<String>,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    framed.send(Frame::close(code, message)).await?;
    framed.get_mut().shutdown().await?;
    Ok(())
}

/// A client whose hello arrived and awaits the server's decision.
#[derive(Debug)]
pub struct Incoming<S> {
    framed: FramedTunnel<S>,
    handshake: ServerHandshake,
    hello: ClientHello,
    compressions: Vec<Compression>,
    max_frame_length: usize,
}

impl<S> Incoming<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The client's hello.
    pub fn hello(&self) -> &ClientHello {
        &self.hello
    }

    /// Accepts the client with `hello`, whose version, compression and frame
    /// limit are filled in here. Returns the framed tunnel ready for
    /// application frames.
    pub async fn accept(
        mut self,
        mut hello: ServerHello,
    ) -> Result<FramedTunnel<S>, HandshakeError> {
        let offered = &self.hello.compressions;
        let chosen = self
            .compressions
            .iter()
            .copied()
            .find(|c| *c != Compression::None && offered.contains(&(*c as i32)))
            .unwrap_or(Compression::None);
        hello.compression = chosen as i32;
        hello.max_frame_length = u32::try_from(self.max_frame_length).unwrap_or(u32::MAX);
        let frame = self.handshake.accept(hello);
        self.framed.send(frame).await?;
        let codec = self.framed.codec_mut();
        codec.set_compression(chosen);
        codec.set_peer_max_frame_length(peer_limit(self.hello.max_frame_length));
        Ok(self.framed)
    }

    /// Refuses the client: sends a close with `code` and `message`, then
    /// shuts the stream down.
    pub async fn reject(
        mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), HandshakeError> {
        let frame = self.handshake.reject(code, message);
        self.framed.send(frame).await?;
        self.framed.get_mut().shutdown().await?;
        Ok(())
    }
}

/// The peer's advertised limit; 0 means the protocol default.
fn peer_limit(advertised: u32) -> usize {
    match advertised {
        0 => DEFAULT_MAX_FRAME_LENGTH,
        n => n as usize,
    }
}

/// Which end of the handshake is reading.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Side {
    Client,
    Server,
}

/// Reads the peer's first bytes and refuses, with a clear error, a peer that
/// speaks TLS where plain text is expected or HTTP where Pike is expected
/// (a wrong port, or a missing TLS setting). Anything else is left for the
/// frame decoder to judge.
async fn read_first<S>(io: &mut S, side: Side) -> Result<BytesMut, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(64);
    if io.read_buf(&mut buf).await? == 0 {
        return Err(HandshakeError::Closed);
    }
    let first = buf[0];
    let expected: &[FrameType] = match side {
        Side::Server => &[FrameType::CLIENT_HELLO],
        Side::Client => &[FrameType::SERVER_HELLO, FrameType::CLOSE],
    };
    if expected.iter().any(|t| t.code() == first) {
        return Ok(buf);
    }
    // TLS records (handshake 0x16, alert 0x15) start with the type and the
    // major version 0x03; HTTP starts with an upper-case method or "HTTP".
    // Wait for just enough bytes to tell; plain garbage is not waited on.
    let wanted = match first {
        0x15 | 0x16 => 2,
        b'A'..=b'Z' => 4,
        _ => return Ok(buf),
    };
    while buf.len() < wanted {
        if io.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    if matches!(first, 0x15 | 0x16) && buf.get(1) == Some(&0x03) {
        return Err(HandshakeError::PeerSpeaksTls);
    }
    match side {
        Side::Server => {
            const METHODS: [&[u8]; 9] = [
                b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ",
            ];
            if METHODS.iter().any(|m| buf.starts_with(m)) {
                io.write_all(HTTP_REFUSAL).await?;
                io.shutdown().await?;
                return Err(HandshakeError::PeerSpeaksHttp);
            }
        }
        Side::Client => {
            if buf.starts_with(b"HTTP") {
                return Err(HandshakeError::PeerSpeaksHttp);
            }
        }
    }
    Ok(buf)
}

/// Wraps `io` in a framed codec whose read buffer already holds `buf`.
fn framed_with<S>(io: S, codec: FrameCodec, buf: BytesMut) -> FramedTunnel<S>
where
    S: AsyncRead + AsyncWrite,
{
    let mut parts = FramedParts::new::<Frame>(io, codec);
    parts.read_buf = buf;
    Framed::from_parts(parts)
}
