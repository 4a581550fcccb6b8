//! The MQTT accept loops (plain and TLS): a bounded number of connections,
//! each served by its translator task.

use std::sync::Arc;
use std::time::Duration;

use tntunnel::tls::{ServerTlsStream, rustls};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::translate::{Shared, serve};

/// Pause after a failed accept (e.g. out of file descriptors) before the
/// next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts on `listener` until the node shuts down; `tls` wraps each
/// connection first (tntunnel's server TLS stream, which holds no buffer
/// while the connection is idle). At most `permits` connections are served at once;
/// more are closed at accept.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "mqtt: connection limit reached, closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        // The permit goes with the connection: `serve` hands it to the
        // translation's own task.
        tokio::spawn(async move {
            match tls {
                None => serve(stream, peer, shared, permit).await,
                Some(config) => {
                    let deadline = shared.config.connect_timeout();
                    let accept = ServerTlsStream::accept(config, stream);
                    match tokio::time::timeout(deadline, accept).await {
                        Ok(Ok(stream)) => serve(stream, peer, shared, permit).await,
                        _ => tracing::debug!(%peer, "mqtt: TLS handshake failed"),
                    }
                }
            }
        });
    }
}
