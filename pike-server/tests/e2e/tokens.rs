//! Client credentials: expired, forged and wrongly scoped tokens are refused
//! with the right code (the client stops with `AuthFailed`); a valid token,
//! also one just past its expiry within the 30 s leeway, is accepted.

use pike_server::token::{Claims, LEEWAY_SECS, mint};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_and_misscoped_tokens_are_refused() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let secret = token_secret("shop");
    let now = unix_secs();

    let cases = [
        (
            "expired an hour ago",
            mint(
                &Claims::new("shop", "chat", "u1", now - 7_200, 3_600),
                secret.as_bytes(),
            ),
            ErrorCode::TokenExpired,
        ),
        (
            "expired just beyond the leeway",
            mint(
                &Claims::new("shop", "chat", "u1", now - 600, 600 - LEEWAY_SECS - 5),
                secret.as_bytes(),
            ),
            ErrorCode::TokenExpired,
        ),
        (
            "signed with a wrong secret",
            mint(
                &Claims::new("shop", "chat", "u1", now, 3_600),
                b"not-the-app-secret-0123456789",
            ),
            ErrorCode::AuthFailed,
        ),
        (
            "tampered claims",
            {
                // A valid token of u2 whose payload is swapped for u1's.
                let good = token("shop", "chat", "u2");
                let other = token("shop", "chat", "u1");
                let parts: Vec<&str> = good.split('.').collect();
                let payload = other.split('.').nth(1).expect("payload");
                format!("{}.{payload}.{}", parts[0], parts[2])
            },
            ErrorCode::AuthFailed,
        ),
        (
            "a token for another alias",
            token("shop", "chat", "u2"),
            ErrorCode::Forbidden,
        ),
        (
            "a token for another biz",
            token("shop", "news", "u1"),
            ErrorCode::Forbidden,
        ),
    ];
    for (case, credential, want) in cases {
        let client = proxy
            .client(ClientOptions::new("chat", "u1", credential))
            .expect("client");
        let (code, message) = refused(&client).await;
        assert_eq!(code, want, "{case}: {message}");
    }

    // The refusals are about the credentials: valid ones log in, including
    // one that expired a few seconds ago (within the leeway).
    for credential in [
        token("shop", "chat", "u1"),
        mint(
            &Claims::new("shop", "chat", "u1", now - 600, 590),
            secret.as_bytes(),
        ),
    ] {
        let client = proxy
            .client(ClientOptions::new("chat", "u1", credential))
            .expect("client");
        start(&client).await;
        assert_eq!(client.state(), ClientState::Running);
    }
    let metrics = server.api("shop").metrics().await;
    assert_eq!(
        metrics.value("pike_logins_total", &[("result", "refused")]),
        6.0
    );
    assert_eq!(metrics.value("pike_logins_total", &[("result", "ok")]), 2.0);
}
