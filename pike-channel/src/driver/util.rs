//! Small helpers shared by the drivers: the clock, lock handling, read-error
//! classification, buffer trimming.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::BytesMut;
use tntunnel::{CodecError, FrameError, FramedTunnel};

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
