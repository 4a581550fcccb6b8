//! Identities bound to credentials, against the real gateway over loopback
//! TCP: a credential's expiry ends its login (`TOKEN_EXPIRED`) unless the
//! client refreshes it in place; device pushes reach only logins whose
//! credential proves the device; connection traces are readable by their
//! own app only.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pike_api::proto::tunnel::{ClientHello, ErrorCode};
use pike_api::server::{
    AuthError, Delivery, FnAuthenticator, Gateway, LoginGrant, LoginRequest, PushHandle,
    PushRequest, Target,
};
use pike_api::tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};
use pike_api::{CredentialProvider, PikeClient, TunnelConnector};
use support::{
    ChannelProxy, ClientConfig, ClientEvent, ClientOptions, ClientState, LIMIT, StopReason, next,
    trace_init, until,
};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Grants `plain` forever; `device:<id>` forever with the device proven
/// when `<id>` is the hello's; `ttl:<ms>:<anything>` for `<ms>` from now.
/// Counts the calls.
fn authenticator(
    calls: Arc<AtomicU64>,
) -> FnAuthenticator<impl Fn(&LoginRequest) -> Result<LoginGrant, AuthError> + Clone> {
    FnAuthenticator(move |request: &LoginRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        let credential = request.credential.as_str();
        if credential == "plain" {
            return Ok(LoginGrant::default());
        }
        if let Some(device) = credential.strip_prefix("device:") {
            return Ok(LoginGrant::default().with_device_verified(device == request.device_id));
        }
        if let Some(rest) = credential.strip_prefix("ttl:")
            && let Some((ms, _)) = rest.split_once(':')
            && let Ok(ms) = ms.parse::<u64>()
        {
            return Ok(LoginGrant::default().with_expiry(unix_ms() + ms));
        }
        Err(AuthError::new(ErrorCode::AuthFailed, "unknown credential"))
    })
}

/// A gateway on loopback with [`authenticator`]; its address, push handle
/// and authenticator call count.
async fn gateway() -> (SocketAddr, PushHandle, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let gateway = Gateway::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .authenticator(authenticator(calls.clone()))
        .bind()
        .await
        .expect("bind");
    let addr = gateway.local_addrs()[0].1;
    let pusher = gateway.push_handle();
    tokio::spawn(gateway.serve());
    (addr, pusher, calls)
}

/// A proxy for `device` of `app`, asking for fresh credentials `margin`
/// before expiry.
fn proxy(addr: SocketAddr, app: &str, device: &str, margin: Duration) -> ChannelProxy {
    let hello = ClientHello {
        app_id: app.into(),
        device_id: device.into(),
        ..ClientHello::default()
    };
    let transport = TcpTransport::new(TcpConfig::default()).expect("tcp");
    let dialer = Dialer::new(transport, DialerConfig::default()).expect("dialer");
    let mut config = ClientConfig::default();
    config.credential_refresh_margin(margin).expect("margin");
    ChannelProxy::builder(TunnelConnector::new(dialer, vec![addr], hello))
        .channel_config(config)
        .build()
}

/// Starts `client` and waits until it runs; returns its connection token.
async fn run(client: &PikeClient) -> String {
    client.start();
    let mut token = String::new();
    loop {
        match next(client).await {
            ClientEvent::Connected { connection_token } => token = connection_token,
            ClientEvent::Running { .. } => return token,
            ClientEvent::OnStop { reason } => panic!("stopped: {reason:?}"),
            _ => {}
        }
    }
}

fn push(biz: &str, target: Target, payload: String, delivery: Delivery) -> PushRequest {
    PushRequest {
        app: "demo".into(),
        biz: biz.into(),
        target,
        payload: Bytes::from(payload),
        delivery,
        priority: 0,
        receipt: false,
    }
}

fn text(payload: &Bytes) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

#[tokio::test]
async fn an_expired_credential_logs_the_business_out_with_token_expired() {
    let _trace = trace_init();
    let (addr, pusher, _) = gateway().await;
    let proxy = proxy(addr, "demo", "d1", Duration::from_secs(1));
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "ttl:1500:a"))
        .expect("client");
    let order = proxy
        .client(ClientOptions::new("order", "u42", "plain"))
        .expect("client");
    run(&chat).await;
    run(&order).await;
    let started = tokio::time::Instant::now();

    // No provider: the app is told before expiry, then the login ends.
    let (expiring, _) = until(&chat, |e| {
        matches!(e, ClientEvent::CredentialExpiring { .. })
    })
    .await;
    let ClientEvent::CredentialExpiring { expires_at_ms } = expiring else {
        unreachable!()
    };
    assert!(expires_at_ms > unix_ms(), "told before it expires");
    let (stop, _) = until(&chat, |e| matches!(e, ClientEvent::OnStop { .. })).await;
    assert_eq!(
        stop,
        ClientEvent::OnStop {
            reason: StopReason::AuthFailed {
                code: ErrorCode::TokenExpired,
                message: "the login's credential expired; log in again with a fresh one".into(),
            }
        }
    );
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(chat.state(), ClientState::Stopped);
    // The gateway dropped the alias binding of that login only.
    let wait = tokio::time::timeout(LIMIT, async {
        while !pusher.presence("demo", "chat", "u42").is_empty() {
            tokio::task::yield_now().await;
        }
    });
    wait.await.expect("the expired login leaves the presence");
    assert_eq!(pusher.presence("demo", "order", "u42").len(), 1);
    let receipt = pusher
        .push(push(
            "order",
            Target::Alias("u42".into()),
            "still here".into(),
            Delivery::Transient,
        ))
        .await
        .expect("push");
    assert_eq!(receipt.online, 1);
    let (received, _) = until(&order, |e| matches!(e, ClientEvent::OnReceive(_))).await;
    let ClientEvent::OnReceive(message) = received else {
        unreachable!()
    };
    assert_eq!(text(&message.payload), "still here");
}

#[tokio::test]
async fn a_client_with_a_credential_provider_stays_logged_in_and_loses_nothing() {
    let _trace = trace_init();
    let (addr, pusher, calls) = gateway().await;
    let proxy = proxy(addr, "demo", "d1", Duration::from_secs(2));
    let asked = Arc::new(AtomicU64::new(0));
    let provider = {
        let asked = asked.clone();
        CredentialProvider::new(move |request| {
            let n = asked.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                assert_eq!(
                    (request.biz.as_str(), request.alias.as_str()),
                    ("chat", "u42")
                );
                assert!(request.expires_at_ms > 0);
                Some(format!("ttl:4000:fresh-{n}"))
            }
        })
    };
    let chat = proxy
        .client(ClientOptions::new("chat", "u42", "ttl:4000:first").credential_provider(provider))
        .expect("client");
    run(&chat).await;

    // Push all along while the credential is refreshed twice.
    let pushing = {
        let pusher = pusher.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                sent += 1;
                let request = push(
                    "chat",
                    Target::Alias("u42".into()),
                    format!("m{sent}"),
                    Delivery::Reliable { ttl: None },
                );
                pusher.push(request).await.expect("push");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut refreshed = Vec::new();
    let mut received = Vec::new();
    let mut connections = 0;
    while refreshed.len() < 2 {
        match next(&chat).await {
            ClientEvent::CredentialRefreshed { expires_at_ms } => refreshed.push(expires_at_ms),
            ClientEvent::OnReceive(message) => received.push(message.seq),
            ClientEvent::Connected { .. } => connections += 1,
            other @ (ClientEvent::OnStop { .. }
            | ClientEvent::CredentialExpiring { .. }
            | ClientEvent::CredentialRefreshFailed { .. }) => panic!("{other:?}"),
            _ => {}
        }
    }
    pushing.abort();
    let _ = pushing.await;
    // Everything stored so far arrives, once and in order.
    let stored = pusher
        .push(push(
            "chat",
            Target::Alias("u42".into()),
            "last".into(),
            Delivery::Reliable { ttl: None },
        ))
        .await
        .expect("push");
    assert_eq!(stored.stored, 1);
    loop {
        match next(&chat).await {
            ClientEvent::OnReceive(message) => {
                let last = text(&message.payload) == "last";
                received.push(message.seq);
                if last {
                    break;
                }
            }
            other @ ClientEvent::OnStop { .. } => panic!("{other:?}"),
            _ => {}
        }
    }
    let expected: Vec<u64> = (1..=received.len() as u64).collect();
    assert_eq!(received, expected, "each message once, in order");
    assert!(
        received.len() >= 20,
        "pushed for a while: {}",
        received.len()
    );
    assert_eq!(connections, 0, "refreshed in place, no reconnect");
    assert!(refreshed[0] < refreshed[1]);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one login, two refreshes");
    assert_eq!(chat.state(), ClientState::Running);
    assert_eq!(pusher.presence("demo", "chat", "u42").len(), 1);
}

#[tokio::test]
async fn device_pushes_reach_only_logins_that_proved_the_device() {
    let _trace = trace_init();
    let (addr, pusher, _) = gateway().await;
    let margin = Duration::from_secs(60);
    // The real d1 proves its id; an impostor claims d1 in its hello.
    let real_proxy = proxy(addr, "demo", "d1", margin);
    let real = real_proxy
        .client(ClientOptions::new("chat", "u1", "device:d1"))
        .expect("client");
    let impostor_proxy = proxy(addr, "demo", "d1", margin);
    let impostor = impostor_proxy
        .client(ClientOptions::new("chat", "u2", "plain"))
        .expect("client");
    let liar_proxy = proxy(addr, "demo", "d1", margin);
    let liar = liar_proxy
        .client(ClientOptions::new("chat", "u3", "device:d9"))
        .expect("client");
    run(&real).await;
    run(&impostor).await;
    run(&liar).await;

    let receipt = pusher
        .push(push(
            "chat",
            Target::Device("d1".into()),
            "for d1".into(),
            Delivery::Transient,
        ))
        .await
        .expect("push");
    assert_eq!(receipt.online, 1, "only the proven login counts");
    let (got, _) = until(&real, |e| matches!(e, ClientEvent::OnReceive(_))).await;
    let ClientEvent::OnReceive(message) = got else {
        unreachable!()
    };
    assert_eq!(text(&message.payload), "for d1");

    // The others get their alias pushes; the device push came before and
    // would have arrived first.
    for (client, alias) in [(&impostor, "u2"), (&liar, "u3")] {
        pusher
            .push(push(
                "chat",
                Target::Alias(alias.into()),
                format!("for {alias}"),
                Delivery::Transient,
            ))
            .await
            .expect("push");
        let (got, _) = until(client, |e| matches!(e, ClientEvent::OnReceive(_))).await;
        let ClientEvent::OnReceive(message) = got else {
            unreachable!()
        };
        assert_eq!(text(&message.payload), format!("for {alias}"));
    }
    let verified: Vec<bool> = pusher
        .connections("demo", 10)
        .iter()
        .flat_map(|c| c.logins.iter().map(|l| l.device_verified))
        .collect();
    assert_eq!(verified.iter().filter(|v| **v).count(), 1, "{verified:?}");
}

/// Waits until the gateway has no connection left.
async fn all_closed(pusher: &PushHandle) {
    tokio::time::timeout(LIMIT, async {
        while pusher.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("connections closed");
}

#[tokio::test]
async fn a_trace_is_readable_by_its_own_app_only_whole_app_id_compared() {
    let _trace = trace_init();
    let (addr, pusher, _) = gateway().await;
    let margin = Duration::from_secs(60);
    let mut tokens = Vec::new();
    for app in ["demo", "demo2", "demo x"] {
        let proxy = proxy(addr, app, "d1", margin);
        let client = proxy
            .client(ClientOptions::new("chat", "u1", "plain"))
            .expect("client");
        let token = run(&client).await;
        assert!(pusher.trace(app, &token).is_some(), "{app} reads its own");
        tokens.push((app, token, proxy, client));
    }
    let check = |tokens: &[(&str, String)]| {
        for (owner, token) in tokens {
            for reader in ["demo", "demo2", "demo x"] {
                assert_eq!(
                    pusher.trace(reader, token).is_some(),
                    reader == *owner,
                    "{reader} reading a trace of {owner}"
                );
            }
        }
    };
    let owned: Vec<(&str, String)> = tokens.iter().map(|(a, t, _, _)| (*a, t.clone())).collect();
    check(&owned);
    // Closed connections keep their owner.
    drop(tokens);
    all_closed(&pusher).await;
    check(&owned);
}

#[tokio::test]
async fn a_long_closed_trace_stays_readable_by_its_app() {
    let _trace = trace_init();
    let (addr, pusher, _) = gateway().await;
    let proxy = proxy(addr, "demo", "d1", Duration::from_secs(60));
    let client = proxy
        .client(ClientOptions::new("chat", "u1", "plain"))
        .expect("client");
    let token = run(&client).await;
    // More events than a trace keeps: the hello leaves the ring.
    let count = pike_api::server::TRACE_EVENTS + 10;
    for i in 0..count {
        pusher
            .push(push(
                "chat",
                Target::Alias("u1".into()),
                format!("t{i}"),
                Delivery::Transient,
            ))
            .await
            .expect("push");
        let (got, _) = until(&client, |e| matches!(e, ClientEvent::OnReceive(_))).await;
        assert!(matches!(got, ClientEvent::OnReceive(_)));
    }
    drop(client);
    drop(proxy);
    all_closed(&pusher).await;
    let events = pusher.trace("demo", &token).expect("its app reads it");
    assert_eq!(events.len(), pike_api::server::TRACE_EVENTS);
    assert!(
        events.iter().all(|e| e.signal != "hello"),
        "the hello is gone"
    );
    assert!(pusher.trace("other", &token).is_none());
}
