//! Race a list of endpoints with a [`Dialer`] and accept behind a connection
//! limit with an [`Acceptor`], over plain TCP on loopback.
//!
//! ```sh
//! cargo run -p tunnelkit --example race_and_limit
//! ```
//!
//! The endpoint list starts with an address nobody listens on: the dialer
//! moves on at once (a refused attempt starts the next one without waiting
//! for the stagger) and connects to the second. The acceptor admits two
//! connections; the third is handed over as [`Incoming::OverLimit`] before
//! any handshake work, told so and closed. Then the server shuts down
//! gracefully and waits for its connections to drain.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tunnelkit::{
    Acceptor, AcceptorConfig, Dialer, DialerConfig, Incoming, Listener as _, TcpConfig,
    TcpListener, TcpTransport,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // The server: an echo behind a limit of two connections.
    let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    let live = listener.local_addr()?;
    // An address that refuses: bind another port, then let it go.
    let dead = TcpListener::bind("127.0.0.1:0".parse()?)?.local_addr()?;
    let mut config = AcceptorConfig::default();
    config.max_connections(Some(2));
    let mut acceptor = Acceptor::new(listener, &config)?;
    let server = acceptor.handle();
    let accept_loop = tokio::spawn(async move {
        // `accept` fails once the handle shuts the acceptor down.
        while let Ok(incoming) = acceptor.accept().await {
            match incoming {
                Incoming::Accepted(mut conn) => {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = conn.read(&mut buf).await {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        // Dropping `conn` frees its slot.
                    });
                }
                Incoming::OverLimit(mut conn) => {
                    // Cheap refusal: no slot is held while we say why.
                    let _ = conn.write_all(b"overloaded").await;
                    let _ = conn.shutdown().await;
                }
                _ => {}
            }
        }
    });

    // The client: race the list, preferring the first endpoint.
    let mut dial_config = DialerConfig::default();
    dial_config.stagger(Duration::from_millis(250));
    let dialer = Dialer::new(TcpTransport::new(TcpConfig::default())?, dial_config)?;
    let endpoints: [SocketAddr; 2] = [dead, live];

    let mut admitted = Vec::new();
    for i in 0..2 {
        let mut dialed = dialer.dial(&endpoints).await?;
        assert_eq!(
            (dialed.index, dialed.peer),
            (1, live),
            "the dead endpoint lost the race"
        );
        let ping = format!("ping {i}");
        dialed.conn.write_all(ping.as_bytes()).await?;
        let mut echo = vec![0u8; ping.len()];
        dialed.conn.read_exact(&mut echo).await?;
        assert_eq!(echo, ping.as_bytes());
        println!(
            "connection {i}: won by endpoint #{} ({}), echoed {ping:?}",
            dialed.index, dialed.peer
        );
        admitted.push(dialed);
    }

    // A third connection is over the limit: the server says so and closes.
    let mut third = dialer.dial(&endpoints).await?;
    let mut told = Vec::new();
    third.conn.read_to_end(&mut told).await?;
    assert_eq!(told, b"overloaded");
    println!(
        "connection 2: refused with {:?}",
        String::from_utf8_lossy(&told)
    );
    assert_eq!(server.open_connections(), 2);
    assert_eq!(server.limits().over_limit_total(), 1);

    // Graceful shutdown: stop accepting, then wait until the two admitted
    // connections are gone (the clients close them here).
    server.shutdown();
    drop(admitted);
    tokio::time::timeout(Duration::from_secs(10), server.wait_drained()).await?;
    accept_loop.await?;
    println!("drained: {} open connections", server.open_connections());
    Ok(())
}
