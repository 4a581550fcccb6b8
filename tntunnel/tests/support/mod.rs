//! What tntunnel's network tests share: every wait on the network is bounded.

use std::future::Future;
use std::time::Duration;

/// Upper bound for every wait on the network; reaching it fails the test instead of hanging.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub(crate) async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
