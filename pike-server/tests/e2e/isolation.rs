//! App isolation: two apps with the same business and alias names share a
//! gateway without seeing each other's messages, connections or traces, and
//! a credential of one app does not open the other.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_do_not_see_each_other() {
    let server = Server::start(config(vec![
        app("alpha", vec![biz("chat")]),
        app("beta", vec![biz("chat")]),
    ]))
    .await;
    let (alpha_api, beta_api) = (server.api("alpha"), server.api("beta"));

    // The same biz and alias names in both apps.
    let alpha_proxy = server.proxy(Wire::Tcp, "alpha", "device-a");
    let alpha = alpha_proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("alpha", "chat", "u1"),
        ))
        .expect("client");
    let alpha_started = start(&alpha).await;
    let beta_proxy = server.proxy(Wire::Tcp, "beta", "device-b");
    let beta = beta_proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("beta", "chat", "u1"),
        ))
        .expect("client");
    let beta_started = start(&beta).await;

    // App A's push reaches A's client only.
    let receipt = alpha_api.push_alias("chat", "u1", "for alpha").await;
    assert_eq!(
        (receipt["stored"].as_u64(), receipt["online"].as_u64()),
        (Some(1), Some(1))
    );
    let message = next_message(&alpha).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "for alpha"));
    // B's push reaches B's client, as B's first message: nothing of A's came
    // before it.
    let receipt = beta_api.push_alias("chat", "u1", "for beta").await;
    assert_eq!(
        (receipt["stored"].as_u64(), receipt["online"].as_u64()),
        (Some(1), Some(1))
    );
    let message = next_message(&beta).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "for beta"));
    // And B's push did not reach A: A's next message is A's next push.
    alpha_api.push_alias("chat", "u1", "alpha again").await;
    let message = next_message(&alpha).await;
    assert_eq!((message.seq, text(&message).as_str()), (2, "alpha again"));

    // B's key cannot see A's connection trace; A's can.
    let hidden = beta_api
        .trace(alpha_started.connection_token())
        .await
        .expect_err("another app's trace");
    assert_eq!(hidden.status, 404, "{hidden:?}");
    assert_eq!(hidden.body["error"]["code"], "not_found", "{hidden:?}");
    let trace = alpha_api
        .trace(alpha_started.connection_token())
        .await
        .expect("own trace");
    assert!(trace.iter().any(|(s, _)| s == "alias-bind"), "{trace:?}");
    // Presence and connection lists are per app too.
    for (api, own) in [(&alpha_api, &alpha_started), (&beta_api, &beta_started)] {
        let presence = api.get("/v1/presence?biz=chat&alias=u1").await;
        let tokens: Vec<&str> = presence.body["connections"]
            .as_array()
            .expect("connections")
            .iter()
            .map(|c| c["token"].as_str().expect("token"))
            .collect();
        assert_eq!(tokens, vec![own.connection_token()], "{presence:?}");
        let list = api.get("/v1/connections").await;
        assert_eq!(list.body["total"], 1, "{list:?}");
    }

    // A credential of app A presented by a client of app B is refused.
    let intruder_proxy = server.proxy(Wire::Tcp, "beta", "device-c");
    let intruder = intruder_proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("alpha", "chat", "u1"),
        ))
        .expect("client");
    let (code, message) = refused(&intruder).await;
    assert_eq!(code, ErrorCode::AuthFailed, "{message}");
}
