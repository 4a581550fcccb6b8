//! Tags: aliases bind tags with `PikeClient::update_tags`; a push to a tag
//! reaches exactly the aliases bound to it, and unbinding takes an alias
//! out.

use serde_json::json;

use crate::support::*;

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_push_reaches_exactly_the_bound_aliases() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");

    let mut clients = Vec::new();
    for alias in ["u1", "u2", "u3"] {
        let proxy = server.proxy(Wire::Tcp, "shop", &format!("dev-{alias}"));
        let client = proxy
            .client(ClientOptions::new(
                "chat",
                alias,
                token("shop", "chat", alias),
            ))
            .expect("client");
        start(&client).await;
        clients.push((proxy, client));
    }
    let [(_, u1), (_, u2), (_, u3)] = &clients[..] else {
        unreachable!()
    };
    let tags = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();

    let bound = within("u1 binds", u1.update_tags(tags(&["vip"]), vec![])).await;
    assert_eq!(bound.expect("tags"), tags(&["vip"]));
    let bound = within("u2 binds", u2.update_tags(tags(&["vip", "beta"]), vec![])).await;
    assert_eq!(sorted(bound.expect("tags")), tags(&["beta", "vip"]));
    let bound = within("u3 binds", u3.update_tags(tags(&["beta"]), vec![])).await;
    assert_eq!(bound.expect("tags"), tags(&["beta"]));

    let receipt = api
        .push(json!({"biz": "chat", "tag": "vip", "payload": "for vip"}))
        .await;
    assert_eq!(receipt["stored"], 2, "u1 and u2: {receipt}");
    assert_eq!(receipt["online"], 2, "{receipt}");
    for client in [u1, u2] {
        let message = next_message(client).await;
        assert_eq!((message.seq, text(&message).as_str()), (1, "for vip"));
    }
    // u3 got nothing: its first message is the one pushed to it directly.
    api.push_alias("chat", "u3", "just u3").await;
    let message = next_message(u3).await;
    assert_eq!((message.seq, text(&message).as_str()), (1, "just u3"));

    // u1 leaves the tag: the next tag push reaches u2 only.
    let bound = within("u1 unbinds", u1.update_tags(vec![], tags(&["vip"]))).await;
    assert_eq!(bound.expect("tags"), Vec::<String>::new());
    let receipt = api
        .push(json!({"biz": "chat", "tag": "vip", "payload": "vip again"}))
        .await;
    assert_eq!(receipt["stored"], 1, "u2 only: {receipt}");
    let message = next_message(u2).await;
    assert_eq!((message.seq, text(&message).as_str()), (2, "vip again"));
    api.push_alias("chat", "u1", "just u1").await;
    let message = next_message(u1).await;
    assert_eq!((message.seq, text(&message).as_str()), (2, "just u1"));

    // A tag nobody bound reaches nobody.
    let receipt = api
        .push(json!({"biz": "chat", "tag": "nobody", "payload": "void"}))
        .await;
    assert_eq!(
        (receipt["stored"].as_u64(), receipt["online"].as_u64()),
        (Some(0), Some(0))
    );
}
