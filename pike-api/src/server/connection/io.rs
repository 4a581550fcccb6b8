//! Small pieces of the connection task's I/O loop.

use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tntunnel::FramedTunnel;

use super::Work;
use crate::server::store::BoxFuture;

/// The next finished piece of background work (pending while none runs).
/// A poll function rather than an async fn: the connection's future holds
/// no state for it.
pub(super) fn poll_next_work(
    work: &mut Option<Box<FuturesUnordered<BoxFuture<'static, Work>>>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Work>> {
    match work {
        Some(set) if !set.is_empty() => set.poll_next_unpin(cx),
        _ => Poll::Pending,
    }
}

/// Gives back empty codec buffers: tokio-util's `Framed` starts with 8 KiB
/// per direction, and a buffer keeps the capacity of the largest frame it
/// held, which an idle connection would hold for its whole life. An
/// unallocated buffer grows again for the next frame (the codec reserves
/// what a frame needs).
pub(crate) fn release_idle_buffers<S>(framed: &mut FramedTunnel<S>) {
    if framed.read_buffer().is_empty() && framed.read_buffer().capacity() != 0 {
        *framed.read_buffer_mut() = bytes::BytesMut::new();
    }
    if framed.write_buffer().is_empty() && framed.write_buffer().capacity() != 0 {
        *framed.write_buffer_mut() = bytes::BytesMut::new();
    }
}
