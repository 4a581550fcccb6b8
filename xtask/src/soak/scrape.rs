//! What the soak reads from the gateway besides `/proc`: the
//! `pike_runtime_alive_tasks` gauge of its `/metrics`, over one bounded
//! plain HTTP/1.0 request.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The gauge of tokio tasks alive in the gateway.
pub(crate) const TASKS_METRIC: &str = "pike_runtime_alive_tasks";
/// Longest wait for the whole scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of `/metrics` read (the page is a few tens of KiB).
const MAX_PAGE: u64 = 4 << 20;

/// The gateway's tokio tasks alive, from `GET /metrics` at `http`; `None`
/// when the scrape fails or the gauge is missing.
pub(crate) async fn tasks(http: SocketAddr) -> Option<u64> {
    let page = tokio::time::timeout(SCRAPE_TIMEOUT, fetch(http))
        .await
        .ok()?
        .ok()?;
    gauge(&page, TASKS_METRIC)
}

async fn fetch(http: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(http).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
        .await?;
    let mut page = Vec::new();
    stream.take(MAX_PAGE).read_to_end(&mut page).await?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// The value of an unlabelled sample `name` in a Prometheus text page.
pub(crate) fn gauge(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_unlabelled_sample() {
        let page = "HTTP/1.0 200 OK\r\n\r\n# HELP pike_runtime_alive_tasks x\n# TYPE pike_runtime_alive_tasks gauge\npike_runtime_alive_tasks_total 9\npike_runtime_alive_tasks 8123\n";
        assert_eq!(gauge(page, TASKS_METRIC), Some(8123));
        assert_eq!(gauge("pike_runtime_alive_tasks NaN\n", TASKS_METRIC), None);
        assert_eq!(gauge("", TASKS_METRIC), None);
    }
}
