//! A custom gateway in one file, built on `pike-api`: its own `tower::Service`
//! authenticator, its own uplink handler (a bot that answers), the embedded
//! durable store (redb, from this crate), and pushes from its own code.
//! A client on loopback shows the round trip, then the example exits.
//!
//! ```sh
//! cargo run -p pike-server --example custom_gateway
//! ```

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pike_api::proto::tunnel::{ClientHello, ErrorCode};
use pike_api::server::{
    AuthError, BoxFuture, Delivery, Gateway, LoginGrant, LoginRequest, PushHandle, PushRequest,
    Target, UplinkError, UplinkHandler, UplinkRequest,
};
use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
use pike_api::{ChannelProxy, ClientEvent, ClientOptions, PikeClient, StopReason, TunnelConnector};
use pike_server::store::{RedbStore, StoreConfig};
use tokio::sync::mpsc;
use tower::Service;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The authenticator: a token table (a real one would ask a user service;
/// any `tower::Service`, wrapped in tower layers as needed, fits here).
#[derive(Clone)]
struct TokenTable(Arc<HashMap<String, String>>);

impl Service<LoginRequest> for TokenTable {
    type Response = LoginGrant;
    type Error = AuthError;
    type Future = Ready<Result<LoginGrant, AuthError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AuthError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LoginRequest) -> Self::Future {
        let known = self.0.get(&request.alias) == Some(&request.credential);
        let refused = || AuthError::new(ErrorCode::AuthFailed, "unknown token");
        ready(known.then(LoginGrant::default).ok_or_else(refused))
    }
}

/// The uplink handler: every message goes to the bot task, which answers
/// with a push. Accepting resolves the client's `send`.
struct Bot(mpsc::UnboundedSender<UplinkRequest>);

impl UplinkHandler for Bot {
    fn route(&self, _app: &str, _biz: &str, _saved: &str, _avoid: Option<&str>) -> Option<String> {
        Some("bot-1".into())
    }
    fn deliver(&self, request: UplinkRequest) -> BoxFuture<'_, Result<(), UplinkError>> {
        let code = ErrorCode::BackendUnavailable;
        let gone = |_| UplinkError {
            code,
            message: "bot gone".into(),
            route_failed: true,
        };
        Box::pin(ready(self.0.send(request).map_err(gone)))
    }
}

/// A reliable push of `text` to `alias` of the chat business, kept 1 hour.
async fn push(pusher: &PushHandle, alias: &str, text: String) -> Result<(), Error> {
    let (app, biz, target) = ("demo".into(), "chat".into(), Target::Alias(alias.into()));
    let ttl = Some(Duration::from_secs(3600));
    let delivery = Delivery::Reliable { ttl };
    let request = PushRequest {
        app,
        biz,
        target,
        payload: text.into(),
        delivery,
        priority: 0,
        receipt: false,
    };
    let receipt = pusher.push(request).await?;
    println!("gateway: pushed to {alias}, {} online", receipt.online);
    Ok(())
}

/// The next event of `client`, at most 10 s away.
async fn next(client: &PikeClient) -> Result<ClientEvent, Error> {
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await?;
    event.ok_or_else(|| "the client's events ended".into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let data = tempfile::tempdir()?;
    let store = RedbStore::open(data.path().join("pike.redb"), StoreConfig::default())?;
    let tokens = HashMap::from([("u42".to_owned(), "token-u42".to_owned())]);
    let (to_bot, mut bot_inbox) = mpsc::unbounded_channel();
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse()?)
        .apps(["demo".to_owned()])
        .authenticator(TokenTable(Arc::new(tokens)))
        .uplink(Arc::new(Bot(to_bot)))
        .store(Arc::new(store))
        .bind()
        .await?;
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());

    // The bot answers each uplink message with a push to its sender.
    let bot_pusher = pusher.clone();
    tokio::spawn(async move {
        while let Some(message) = bot_inbox.recv().await {
            let said = String::from_utf8_lossy(&message.payload);
            let reply = format!("bot: you said {said:?}");
            let _ = push(&bot_pusher, &message.alias, reply).await;
        }
    });

    // Pushed before anyone listens: stored, delivered at login.
    push(&pusher, "u42", "welcome back".into()).await?;

    let tcp = TcpTransport::new(TcpConfig::default())?;
    let dialer = Dialer::new(tcp, DialerConfig::default())?;
    let hello = ClientHello {
        app_id: "demo".into(),
        device_id: "d1".into(),
        ..Default::default()
    };
    let proxy = ChannelProxy::new(TunnelConnector::new(dialer, vec![addr], hello));
    let intruder = proxy.client(ClientOptions::new("chat", "u7", "guessed"))?;
    let chat = proxy.client(ClientOptions::new("chat", "u42", "token-u42"))?;
    intruder.start();
    chat.start();

    let mut received = Vec::new();
    while received.len() < 2 {
        match next(&chat).await? {
            ClientEvent::Running { .. } => chat.send("hello bot").await.map(|_| ())?,
            ClientEvent::OnReceive(m) => received.push(m.payload),
            ClientEvent::OnStop { reason } => return Err(format!("stopped: {reason:?}").into()),
            _ => {}
        }
    }
    println!("client u42 received {received:?}");
    assert_eq!(received, ["welcome back", "bot: you said \"hello bot\""]);

    let refused = loop {
        if let ClientEvent::OnStop { reason } = next(&intruder).await? {
            break reason;
        }
    };
    println!("client u7 refused: {refused:?}");
    let code = ErrorCode::AuthFailed;
    assert!(matches!(refused, StopReason::AuthFailed { code: c, .. } if c == code));
    Ok(())
}
