//! Identities are bound to credentials: a credential minted for a device
//! (`POST /v1/tokens` with `device`) logs in only on that device and alone
//! receives the pushes addressed to it (a device id claimed in a hello
//! proves nothing); an app may require such credentials; a trace is
//! readable by its own app only; a config giving two apps one API key is
//! refused at start, naming both.

use std::process::Command;

use serde_json::json;

use crate::support::*;

/// A credential minted through the HTTP API.
async fn minted(api: &Api, body: serde_json::Value) -> String {
    let answer = api.post("/v1/tokens", &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_pushes_reach_only_the_device_whose_credential_names_it() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let api = server.api("shop");
    let bound = minted(
        &api,
        json!({"biz": "chat", "alias": "u1", "device": "phone-1"}),
    )
    .await;

    // The real phone-1, and an impostor claiming its id with a valid
    // credential of its own alias.
    let real_proxy = server.proxy(Wire::Tcp, "shop", "phone-1");
    let real = real_proxy
        .client(ClientOptions::new("chat", "u1", bound.clone()))
        .expect("client");
    start(&real).await;
    let impostor_proxy = server.proxy(Wire::Tcp, "shop", "phone-1");
    let impostor = impostor_proxy
        .client(ClientOptions::new(
            "chat",
            "u2",
            token("shop", "chat", "u2"),
        ))
        .expect("client");
    start(&impostor).await;

    // The bound credential is refused on another device.
    let thief_proxy = server.proxy(Wire::Tcp, "shop", "phone-2");
    let thief = thief_proxy
        .client(ClientOptions::new("chat", "u1", bound))
        .expect("client");
    let (code, message) = refused(&thief).await;
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    assert!(message.contains("device"), "{message}");

    let receipt = api
        .push(json!({"biz": "chat", "device": "phone-1", "payload": "ping", "reliable": false}))
        .await;
    assert_eq!(receipt["online"], 1, "{receipt}");
    assert_eq!(text(&next_message(&real).await), "ping");
    // The impostor's alias push comes after the device push on the same
    // gateway: had it been given the device push, that would come first.
    let receipt = api
        .push(json!({"biz": "chat", "alias": "u2", "payload": "for u2", "reliable": false}))
        .await;
    assert_eq!(receipt["online"], 1, "{receipt}");
    assert_eq!(text(&next_message(&impostor).await), "for u2");

    // An empty device is a client error, not a credential for any device.
    let answer = api
        .post(
            "/v1/tokens",
            &json!({"biz": "chat", "alias": "u1", "device": ""}),
        )
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_may_require_device_bound_credentials() {
    let mut strict = app("bank", vec![biz("chat")]);
    strict.require_device_claim = true;
    let server = Server::start(config(vec![strict])).await;
    let api = server.api("bank");
    let proxy = server.proxy(Wire::Tcp, "bank", "phone-1");
    let unbound = proxy
        .client(ClientOptions::new(
            "chat",
            "u1",
            token("bank", "chat", "u1"),
        ))
        .expect("client");
    let (code, message) = refused(&unbound).await;
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    let bound = minted(
        &api,
        json!({"biz": "chat", "alias": "u1", "device": "phone-1"}),
    )
    .await;
    let client = proxy
        .client(ClientOptions::new("chat", "u1", bound))
        .expect("client");
    start(&client).await;
    assert_eq!(client.state(), ClientState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_readable_by_its_own_app_only() {
    let server = Server::start(config(vec![
        app("demo", vec![biz("chat")]),
        app("demo2", vec![biz("chat")]),
    ]))
    .await;
    let mut connections = Vec::new();
    for name in ["demo", "demo2"] {
        let proxy = server.proxy(Wire::Tcp, name, "d1");
        let client = proxy
            .client(ClientOptions::new("chat", "u1", token(name, "chat", "u1")))
            .expect("client");
        let started = start(&client).await;
        connections.push((name, started.connection_token().to_owned(), proxy, client));
    }
    let tokens: Vec<(&str, String)> = connections
        .iter()
        .map(|(name, token, _, _)| (*name, token.clone()))
        .collect();
    let check = || async {
        for (owner, token) in &tokens {
            for reader in ["demo", "demo2"] {
                let trace = server.api(reader).trace(token).await;
                match trace {
                    Ok(_) => assert_eq!(reader, *owner, "{reader} read {owner}'s trace"),
                    Err(answer) => {
                        assert_ne!(reader, *owner, "{answer:?}");
                        assert_eq!(answer.status, 404, "{answer:?}");
                    }
                }
            }
        }
    };
    check().await;
    // Closed connections keep their owner.
    for (_, _, _, client) in &connections {
        client.stop();
    }
    drop(connections);
    for (owner, token) in &tokens {
        let api = server.api(owner);
        poll_until("the connection closed", || {
            let api = api.clone();
            async move {
                let trace = api.trace(token).await.expect("its own trace");
                trace.iter().any(|(signal, _)| signal == "close")
            }
        })
        .await;
    }
    check().await;
}

#[test]
fn a_config_giving_two_apps_one_api_key_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pike.toml");
    let config = format!(
        r#"data_dir = {data:?}
[[apps]]
id = "shop"
api_key = "pk_shared_0123456789abcdef"
token_secret = "secret-shop-0123456789abcdef"
[[apps]]
id = "news"
api_key = "pk_shared_0123456789abcdef"
token_secret = "secret-news-0123456789abcdef"
"#,
        data = dir.path().join("data")
    );
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_pike-server"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run pike-server");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"shop\"") && stderr.contains("\"news\"") && stderr.contains("api_key"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was started");
}

/// Reads `pipe` line by line on a thread, forwarding the lines.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pike_listen_mints_a_credential_for_its_device_and_gets_its_pushes() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let mut listen = Command::new(env!("CARGO_BIN_EXE_pike"))
        .args(["--app", "shop", "--data-dir"])
        .arg(server.data_dir())
        .args([
            "listen", "--alias", "chat:u1", "--device", "phone-7", "--count", "1",
        ])
        .arg("--server")
        .arg(server.addrs().tcp.to_string())
        .arg("--token-secret")
        .arg(token_secret("shop"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pike listen");
    let stdout = lines_of(listen.stdout.take().expect("stdout"));
    let stderr = lines_of(listen.stderr.take().expect("stderr"));
    let logged_in = tokio::task::spawn_blocking(move || {
        loop {
            match stderr.recv_timeout(LIMIT) {
                Ok(line) if line.contains("logged in as chat:u1") => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("no login line: {e}")),
            }
        }
    })
    .await
    .expect("reader");
    if let Err(e) = logged_in {
        let _ = listen.kill();
        panic!("{e}");
    }
    let receipt = server
        .api("shop")
        .push(
            json!({"biz": "chat", "device": "phone-7", "payload": "to the cli", "reliable": false}),
        )
        .await;
    assert_eq!(receipt["online"], 1, "{receipt}");
    let line = tokio::task::spawn_blocking(move || stdout.recv_timeout(LIMIT))
        .await
        .expect("reader");
    let _ = listen.kill();
    let line = line.expect("a JSON line");
    let printed: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(printed["payload"], "to the cli", "{line}");
    assert_eq!(printed["transient"], true, "{line}");
    let _ = listen.wait();
}
