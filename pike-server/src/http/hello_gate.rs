//! The per-app half of the Origin check of `GET /v1/ws`.
//!
//! At the upgrade the app of a connection is not known yet (it is in the
//! client hello, the first frame); the handler lets a page's `Origin` in
//! when at least one app allows it. When not every app does, the
//! connection goes through a [`HelloGate`]: it reads the client hello
//! before the gateway does, and lets the connection on only when the
//! hello's app is one of those that allow the origin. Otherwise the client
//! gets a `CLOSE FORBIDDEN` frame and the gateway a read error, so the
//! connection ends before its handshake completes.
//!
//! The gate keeps at most [`MAX_HELLO_BYTES`] bytes; once the hello passed
//! it hands the bytes it read to the gateway and stays out of the way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tntunnel::proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::{Frame, FrameCodec, FrameType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

/// Largest client hello frame the gate reads, bytes (a hello's fields are
/// bounded to well under 1 KiB; `tntunnel::handshake`).
pub(crate) const MAX_HELLO_BYTES: usize = 16 * 1024;

/// A device connection whose client hello must name one of `apps`.
pub(crate) struct HelloGate<S> {
    io: S,
    /// The apps that allow the connection's origin.
    apps: Arc<[String]>,
    /// The origin, for the refusal's message.
    origin: String,
    state: State,
}

enum State {
    /// Reading the hello: the bytes so far.
    Reading(BytesMut),
    /// The hello passed: bytes read and not yet handed on.
    Passing(Bytes),
    /// Everything read was handed on.
    Open,
    /// Refused: the close frame left to write, then the error.
    Refusing(Bytes, String),
    /// Refused and told.
    Refused(String),
}

impl<S> HelloGate<S> {
    /// A gate letting on hellos of `apps`, which allow `origin`.
    pub(crate) fn new(io: S, apps: Arc<[String]>, origin: String) -> Self {
        Self {
            io,
            apps,
            origin,
            state: State::Reading(BytesMut::new()),
        }
    }

    /// What to do with the bytes read so far: `None` while the hello is
    /// incomplete.
    fn judge(&self, read: &BytesMut) -> Option<Result<(), String>> {
        let mut codec = FrameCodec::builder()
            .max_frame_length(MAX_HELLO_BYTES)
            .build();
        let mut probe = read.clone();
        let frame = match codec.decode(&mut probe) {
            Ok(None) => return None,
            Ok(Some(frame)) => frame,
            Err(e) => return Some(Err(format!("not a client hello: {e}"))),
        };
        if frame.ty != FrameType::CLIENT_HELLO {
            return Some(Err("the first frame is not a client hello".into()));
        }
        let hello: ClientHello = match frame.decode() {
            Ok(hello) => hello,
            Err(e) => return Some(Err(format!("malformed client hello: {e}"))),
        };
        if self.apps.contains(&hello.app_id) {
            Some(Ok(()))
        } else {
            Some(Err(format!(
                "the origin {:?} is not in the allowed_origins of app {:?}",
                self.origin, hello.app_id
            )))
        }
    }
}

/// `message` as the bytes of a `CLOSE FORBIDDEN` frame.
fn close_frame(message: &str) -> Bytes {
    let mut out = BytesMut::new();
    // A close frame of a short message always encodes; without it the
    // client just sees the connection end.
    let _ = FrameCodec::new().encode(Frame::close(ErrorCode::Forbidden, message), &mut out);
    out.freeze()
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HelloGate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Open => return Pin::new(&mut this.io).poll_read(cx, buf),
                State::Passing(bytes) => {
                    if bytes.is_empty() {
                        this.state = State::Open;
                        continue;
                    }
                    let n = buf.remaining().min(bytes.len());
                    buf.put_slice(&bytes[..n]);
                    bytes.advance(n);
                    return Poll::Ready(Ok(()));
                }
                State::Refused(why) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        why.clone(),
                    )));
                }
                State::Refusing(close, why) => {
                    while !close.is_empty() {
                        match ready!(Pin::new(&mut this.io).poll_write(cx, close)) {
                            Ok(0) | Err(_) => close.clear(),
                            Ok(n) => close.advance(n),
                        }
                    }
                    // The refusal is told at best effort: a flush that
                    // fails changes nothing.
                    let _ = ready!(Pin::new(&mut this.io).poll_flush(cx));
                    this.state = State::Refused(std::mem::take(why));
                }
                State::Reading(read) => {
                    let mut read = std::mem::take(read);
                    if let Some(verdict) = this.judge(&read) {
                        this.state = match verdict {
                            Ok(()) => State::Passing(read.freeze()),
                            Err(why) => {
                                tracing::debug!(reason = %why, "device WebSocket refused at its hello");
                                metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "origin")
                                    .increment(1);
                                State::Refusing(close_frame(&why), why)
                            }
                        };
                        continue;
                    }
                    if read.len() > MAX_HELLO_BYTES + 16 {
                        this.state = State::Refused("the client hello is too long".into());
                        continue;
                    }
                    let mut chunk = [0u8; 1024];
                    let mut chunk = ReadBuf::new(&mut chunk);
                    let polled = Pin::new(&mut this.io).poll_read(cx, &mut chunk);
                    read.extend_from_slice(chunk.filled());
                    let ended = chunk.filled().is_empty();
                    this.state = State::Reading(read);
                    match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        // The peer left before its hello: the end.
                        Poll::Ready(Ok(())) if ended => return Poll::Ready(Ok(())),
                        Poll::Ready(Ok(())) => {}
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HelloGate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tntunnel::proto::tunnel::Close;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn hello_bytes(app: &str) -> Vec<u8> {
        let hello = ClientHello {
            app_id: app.into(),
            device_id: "d1".into(),
            ..ClientHello::default()
        };
        let mut out = BytesMut::new();
        FrameCodec::new()
            .encode(
                Frame::from_message(FrameType::CLIENT_HELLO, &hello),
                &mut out,
            )
            .expect("encode");
        out.to_vec()
    }

    fn shop_gate(io: tokio::io::DuplexStream) -> HelloGate<tokio::io::DuplexStream> {
        HelloGate::new(
            io,
            Arc::from(vec!["shop".to_owned()]),
            "https://shop.example".into(),
        )
    }

    #[tokio::test]
    async fn a_hello_of_an_allowed_app_passes_byte_for_byte_even_split() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut gate = shop_gate(near);
        let mut sent = hello_bytes("shop");
        sent.extend_from_slice(b"after");
        // In two pieces, as a client may send it.
        far.write_all(&sent[..3]).await.expect("write");
        let writer = tokio::spawn(async move {
            far.write_all(&sent[3..]).await.expect("write");
            far
        });
        let mut got = vec![0u8; hello_bytes("shop").len() + 5];
        gate.read_exact(&mut got).await.expect("read through");
        let mut expected = hello_bytes("shop");
        expected.extend_from_slice(b"after");
        assert_eq!(got, expected);
        drop(writer.await.expect("writer"));
    }

    #[tokio::test]
    async fn a_hello_of_another_app_is_closed_forbidden() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut gate = shop_gate(near);
        far.write_all(&hello_bytes("news")).await.expect("write");
        let mut buf = [0u8; 16];
        let err = gate.read(&mut buf).await.expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("\"news\""), "{err}");
        // The client was told why, in a close frame.
        let mut told = BytesMut::new();
        let mut codec = FrameCodec::new();
        let frame = loop {
            if let Some(frame) = codec.decode(&mut told).expect("frame") {
                break frame;
            }
            assert_ne!(far.read_buf(&mut told).await.expect("read the close"), 0);
        };
        assert_eq!(frame.ty, FrameType::CLOSE);
        let close: Close = frame.decode().expect("close");
        assert_eq!(close.code, ErrorCode::Forbidden as i32);
        assert!(
            close.message.contains("allowed_origins"),
            "{}",
            close.message
        );
        // Reads stay refused.
        assert!(gate.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn an_endless_or_foreign_first_frame_is_refused() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut gate = shop_gate(near);
        // A header announcing a body larger than a hello may be.
        far.write_all(&[FrameType::CLIENT_HELLO.code(), 0xff, 0xff, 0x7f])
            .await
            .expect("write");
        let mut buf = [0u8; 16];
        assert!(gate.read(&mut buf).await.is_err());

        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut gate = shop_gate(near);
        let mut ping = BytesMut::new();
        FrameCodec::new()
            .encode(
                Frame::new(FrameType::app(0x10), Bytes::from_static(b"x")),
                &mut ping,
            )
            .expect("encode");
        far.write_all(&ping).await.expect("write");
        assert!(gate.read(&mut buf).await.is_err());

        // A peer that leaves before its hello ends the stream.
        let (near, far) = tokio::io::duplex(64);
        let mut gate = shop_gate(near);
        drop(far);
        assert_eq!(gate.read(&mut buf).await.expect("eof"), 0);
    }
}
