//! Small pieces of the connection task's I/O loop.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tntunnel::FramedTunnel;

use super::Work;
use crate::server::store::BoxFuture;

/// The next finished piece of background work (pending while none runs).
pub(super) async fn next_work(
    work: &mut Option<FuturesUnordered<BoxFuture<'static, Work>>>,
) -> Option<Work> {
    match work {
        Some(set) if !set.is_empty() => set.next().await,
        _ => std::future::pending().await,
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
