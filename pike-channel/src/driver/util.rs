//! Small helpers shared by the drivers: the clock, lock handling, read-error
//! classification, buffer trimming.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::Sink;
use tntunnel::{CodecError, Frame, FrameError, FramedTunnel};
use tokio::io::{AsyncRead, AsyncWrite};

/// Capacity a trimmed read or write buffer gets back (tokio-util's initial
/// capacity).
const TRIMMED_CAPACITY: usize = 8 * 1024;

/// Locks `mutex`, ignoring poisoning: the state machines stay consistent
/// between calls, so a panic elsewhere leaves nothing half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The time the machines get: tokio's clock (pausable in tests), never
/// going backwards even when read by several tasks.
#[derive(Debug)]
pub(crate) struct Clock {
    last: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            last: tokio::time::Instant::now().into_std(),
        }
    }

    pub(crate) fn now(&mut self) -> Instant {
        let now = tokio::time::Instant::now().into_std().max(self.last);
        self.last = now;
        now
    }
}

/// How a read ended.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The peer went away (end of stream, reset, TLS without close_notify,
    /// end of stream inside a frame): an ordinary disconnect.
    Gone(String),
    /// The peer sent bytes that are not a valid frame: close with its code.
    Protocol(FrameError),
}

impl ReadEnd {
    pub(crate) fn eof() -> Self {
        Self::Gone("connection closed by the peer".to_owned())
    }

    pub(crate) fn from_error(error: CodecError) -> Self {
        match error {
            CodecError::Frame(FrameError::Truncated { buffered }) => Self::Gone(format!(
                "connection closed by the peer inside a frame ({buffered} bytes buffered)"
            )),
            CodecError::Frame(error) => Self::Protocol(error),
            // rustls reports a peer that closes without close_notify as
            // UnexpectedEof: for us it is just a vanished peer.
            CodecError::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                Self::eof()
            }
            other => Self::Gone(other.to_string()),
        }
    }
}

/// Gives back the memory of a read or write buffer that grew for a large
/// frame once it is empty again, so idle connections stay small.
pub(crate) fn trim_buffers<S>(framed: &mut FramedTunnel<S>, max_idle: usize) {
    if framed.read_buffer().is_empty() && framed.read_buffer().capacity() > max_idle {
        *framed.read_buffer_mut() = BytesMut::with_capacity(TRIMMED_CAPACITY);
    }
    if framed.write_buffer().is_empty() && framed.write_buffer().capacity() > max_idle {
        *framed.write_buffer_mut() = BytesMut::with_capacity(TRIMMED_CAPACITY);
    }
}

/// Moves frames from `next` into the framed sink while it has room, then
/// flushes once (coalesced writes). Returns whether a frame was taken and the
/// write error that broke the connection, if any. A frame above the peer's
/// limit can never be sent: it is logged and skipped, the rest still go.
pub(crate) fn pump_transmit<S>(
    framed: &mut FramedTunnel<S>,
    needs_flush: &mut bool,
    max_idle_buffer: usize,
    cx: &mut Context<'_>,
    mut next: impl FnMut() -> Option<Frame>,
) -> (bool, Option<CodecError>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut progress = false;
    loop {
        match Pin::new(&mut *framed).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return (progress, Some(error)),
            Poll::Pending => break,
        }
        let Some(frame) = next() else {
            break;
        };
        progress = true;
        match Pin::new(&mut *framed).start_send(frame) {
            Ok(()) => *needs_flush = true,
            Err(CodecError::Frame(error)) => tracing::warn!(%error, "frame not sent"),
            Err(error) => return (progress, Some(error)),
        }
    }
    if *needs_flush {
        match Pin::new(&mut *framed).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                *needs_flush = false;
                trim_buffers(framed, max_idle_buffer);
            }
            Poll::Ready(Err(error)) => return (progress, Some(error)),
            Poll::Pending => {}
        }
    }
    (progress, None)
}
