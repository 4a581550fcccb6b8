//! A framed echo over TLS 1.3 with a pinned self-signed certificate, on
//! loopback: tunnelkit carries the bytes, tntunnel adds TLS, the versioned
//! hello handshake and frames (with LZ4 for large bodies).
//!
//! ```sh
//! cargo run -p tntunnel --example tls_echo
//! ```
//!
//! The server makes a development certificate (as the zero-config gateway
//! does in its data directory) and prints its SHA-256 fingerprint; the
//! client trusts exactly that fingerprint. A second client pinning another
//! fingerprint is refused during the TLS handshake.

use futures_util::{SinkExt as _, StreamExt as _};
use tntunnel::proto::tunnel::{ClientHello, ServerHello};
use tntunnel::tls::{Fingerprint, TlsClientConfig, TlsServerConfig};
use tntunnel::{ClientSecurity, Frame, FrameType, ServerSecurity, TunnelConfig};
use tokio::io::AsyncWriteExt as _;
use tunnelkit::{Listener as _, TcpConfig, TcpListener, TcpTransport, Transport as _};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // A self-signed ECDSA P-256 certificate for 127.0.0.1, kept in a
    // directory (a temporary one here) so that restarts keep the pin.
    let dir = tempfile::tempdir()?;
    let (server_tls, fingerprint) =
        TlsServerConfig::self_signed_in(dir.path(), ["127.0.0.1"]).await?;
    println!("server certificate sha256 {fingerprint}");

    let mut listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let security = ServerSecurity::Tls(server_tls);
    let server = tokio::spawn(async move {
        let config = TunnelConfig::default();
        for _ in 0..2 {
            let (tcp, peer) = listener.accept().await?;
            // TLS first; a client that does not trust us fails here.
            let tls = match security.secure(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    println!("server: TLS with {peer} failed: {e}");
                    continue;
                }
            };
            // Then the hello exchange, then frames.
            let incoming = tntunnel::accept(tls, &config).await?;
            println!("server: hello from app {:?}", incoming.hello().app_id);
            let token = tntunnel::new_connection_token().ok_or("no randomness")?;
            let mut framed = incoming
                .accept(ServerHello {
                    connection_token: token,
                    ..Default::default()
                })
                .await?;
            while let Some(frame) = framed.next().await {
                framed.send(frame?).await?; // echo every frame as it came
            }
            println!("server: {peer} closed");
        }
        Ok::<_, Error>(())
    });

    // The client pins the fingerprint the server printed.
    let pinned = ClientSecurity::Tls(TlsClientConfig::pinned([fingerprint])?);
    let tcp = TcpTransport::new(TcpConfig::default())?
        .connect(addr)
        .await?;
    let tls = pinned.secure(tcp, "127.0.0.1").await?;
    assert!(tls.is_tls());
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "d1".into(),
        ..Default::default()
    };
    let (mut framed, server_hello) =
        tntunnel::connect(tls, hello, &TunnelConfig::default()).await?;
    println!(
        "client: connected, token {}, protocol v{}",
        server_hello.connection_token, server_hello.version
    );

    // Application frames carry opaque bodies (types 0x10..=0x3F); a large
    // one is compressed on the wire and arrives as it was sent.
    let small = Frame::new(FrameType::app(0x10), &b"hello over TLS 1.3"[..]);
    let large = Frame::new(FrameType::app(0x11), vec![b'x'; 64 * 1024]);
    for frame in [small, large] {
        let (ty, body) = (frame.ty, frame.body.clone());
        framed.send(frame).await?;
        let echo = framed.next().await.ok_or("the server closed")??;
        assert_eq!((echo.ty, &echo.body), (ty, &body));
        println!(
            "client: {} byte(s) of type {:?} echoed",
            echo.body.len(),
            echo.ty
        );
    }
    // Close cleanly: TLS close_notify, then FIN; the server's stream ends.
    framed.get_mut().shutdown().await?;

    // A client pinning another certificate never gets past TLS.
    let wrong = ClientSecurity::Tls(TlsClientConfig::pinned([Fingerprint::from([0u8; 32])])?);
    let tcp = TcpTransport::new(TcpConfig::default())?
        .connect(addr)
        .await?;
    let refused = wrong.secure(tcp, "127.0.0.1").await;
    assert!(refused.is_err());
    println!(
        "client with a wrong pin: {}",
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    );

    server.await??;
    Ok(())
}
