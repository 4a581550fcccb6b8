//! A chat client on `PikeClient`: log in, receive, send with the backend's
//! confirmation, and move the business to a connection of its own while it
//! runs. Self-contained: it starts a small gateway on 127.0.0.1 first.
//!
//! ```sh
//! cargo run -p pike-api --example chat_client
//! ```
//!
//! Two businesses of one app, `chat` and `feed`, share one connection (the
//! default); `chat` is then switched to an independent channel and keeps
//! receiving and sending, nothing lost or repeated.

use std::sync::Arc;
use std::time::Duration;

use pike_api::proto::tunnel::{ClientHello, ErrorCode};
use pike_api::server::{
    AuthError, BoxFuture, Delivery, FnAuthenticator, Gateway, LoginGrant, LoginRequest, PushHandle,
    PushRequest, Target, UplinkError, UplinkHandler, UplinkRequest,
};
use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
use pike_api::{
    ChannelProxy, ClientEvent, ClientOptions, ClientState, Mode, PikeClient, TunnelConnector,
};
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The chat backend behind the gateway: takes every message (the client's
/// send resolves only after this answered).
struct ChatBackend(mpsc::UnboundedSender<String>);

impl UplinkHandler for ChatBackend {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("chat-backend-1".into())
    }
    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        let text = String::from_utf8_lossy(&request.payload).into_owned();
        let _ = self.0.send(text);
        Box::pin(async { Ok(()) })
    }
}

/// The next event of `client` that `pick` maps to a value (others are
/// printed and skipped); fails after 10 s.
async fn wait_for<T>(
    client: &PikeClient,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> Result<T, Error> {
    let wait = async {
        while let Some(event) = client.next_event().await {
            if let Some(value) = pick(&event) {
                return Ok(value);
            }
            println!("  [{}] {event:?}", client.biz());
        }
        Err("the client's events ended".into())
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await?
}

/// Pushes `text` to chat:u42 as a reliable message, then waits until the
/// chat client delivers it; returns its sequence number.
async fn receive_push(pusher: &PushHandle, chat: &PikeClient, text: &str) -> Result<u64, Error> {
    let delivery = Delivery::Reliable { ttl: None };
    let (app, biz, target) = ("demo".into(), "chat".into(), Target::Alias("u42".into()));
    let payload = text.to_owned().into();
    let request = PushRequest {
        app,
        biz,
        target,
        payload,
        delivery,
        priority: 0,
        receipt: false,
    };
    pusher.push(request).await?;
    let message = wait_for(chat, |e| match e {
        ClientEvent::OnReceive(m) => Some(m.clone()),
        _ => None,
    })
    .await?;
    println!("chat received #{}: {:?}", message.seq, message.payload);
    Ok(message.seq)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The gateway: one credential per alias, the chat backend above.
    let (backend, mut confirmed) = mpsc::unbounded_channel();
    let auth = FnAuthenticator(|req: &LoginRequest| {
        let known = req.credential == format!("token-{}", req.alias);
        known
            .then(LoginGrant::default)
            .ok_or_else(|| AuthError::new(ErrorCode::AuthFailed, "bad token"))
    });
    // Takeover is on (the default): when the switch logs chat in on a
    // connection of its own, the shared connection's chat login ends
    // (`REPLACED`) and its other businesses go on.
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse()?)
        .authenticator(auth)
        .uplink(Arc::new(ChatBackend(backend)))
        .bind()
        .await?;
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());

    // The app: one proxy (one connection), one client per business.
    let tcp = TcpTransport::new(TcpConfig::default())?;
    let dialer = Dialer::new(tcp, DialerConfig::default())?;
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "phone-1".into(),
        ..Default::default()
    };
    let proxy = ChannelProxy::new(TunnelConnector::new(dialer, vec![addr], hello));
    let chat = proxy.client(ClientOptions::new("chat", "u42", "token-u42"))?;
    let feed = proxy.client(ClientOptions::new("feed", "u42", "token-u42"))?;
    for client in [&chat, &feed] {
        client.start();
        let route = wait_for(client, |e| match e {
            ClientEvent::Running { route_id } => Some(route_id.clone()),
            _ => None,
        })
        .await?;
        println!("{} running, uplink route {route}", client.biz());
    }
    assert_eq!(proxy.channels(), 1, "both businesses share one connection");

    // Receive, then send: `send` resolves once the backend accepted.
    assert_eq!(receive_push(&pusher, &chat, "welcome!").await?, 1);
    let receipt = chat.send("hi everyone").await?;
    let got = confirmed.recv().await;
    println!("chat sent {}, the backend got {got:?}", receipt.key);

    // Switch chat to its own connection while it runs: it logs in there,
    // resuming after the last message it got, then leaves the shared one.
    proxy.set_mode("chat", Mode::Independent);
    let token = wait_for(&chat, |e| match e {
        ClientEvent::Connected { connection_token } => Some(connection_token.clone()),
        _ => None,
    })
    .await?;
    println!("chat switched to its own connection {token}");
    assert_eq!(receive_push(&pusher, &chat, "still here?").await?, 2);
    chat.send("yes, on my own channel").await?;
    println!(
        "chat sent again, the backend got {:?}",
        confirmed.recv().await
    );
    assert_eq!(proxy.channels(), 2, "feed keeps the shared connection");
    assert_eq!(feed.state(), ClientState::Running);
    assert_eq!(chat.mode(), Mode::Independent);
    Ok(())
}
