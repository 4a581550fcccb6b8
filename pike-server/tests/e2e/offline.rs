//! Reliable push to an alias that is offline: stored, delivered when the
//! alias logs in, and also to a device that logs in for the first time
//! later.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_push_waits_for_the_alias_and_reaches_each_new_device() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");

    for i in 1..=3 {
        let receipt = api.push_alias("chat", "u7", &format!("m{i}")).await;
        assert_eq!(receipt["stored"], 1, "{receipt}");
        assert_eq!(receipt["online"], 0, "nobody is online: {receipt}");
    }
    let presence = api.get("/v1/presence?biz=chat&alias=u7").await;
    assert_eq!(presence.body["online"], false, "{presence:?}");

    let want: Vec<(u64, String)> = (1..=3).map(|i| (i, format!("m{i}"))).collect();
    let credential = token("shop", "chat", "u7");
    let phone_proxy = server.proxy(Wire::Tcp, "shop", "phone");
    let phone = phone_proxy
        .client(ClientOptions::new("chat", "u7", &credential))
        .expect("client");
    start(&phone).await;
    let mut got = Vec::new();
    for _ in 1..=3 {
        let m = next_message(&phone).await;
        got.push((m.seq, text(&m)));
    }
    assert_eq!(got, want, "the phone gets the stored messages in order");

    // A second device of the alias, logging in for the first time after the
    // phone got (and acked) everything, still gets every message.
    let tablet_proxy = server.proxy(Wire::Tls, "shop", "tablet");
    let tablet = tablet_proxy
        .client(ClientOptions::new("chat", "u7", &credential))
        .expect("client");
    start(&tablet).await;
    let mut got = Vec::new();
    for _ in 1..=3 {
        let m = next_message(&tablet).await;
        got.push((m.seq, text(&m)));
    }
    assert_eq!(got, want, "the tablet gets them too");

    // Both are now at the head: the next push is the next message of each.
    api.push_alias("chat", "u7", "m4").await;
    for client in [&phone, &tablet] {
        let m = next_message(client).await;
        assert_eq!((m.seq, text(&m).as_str()), (4, "m4"));
    }
}
