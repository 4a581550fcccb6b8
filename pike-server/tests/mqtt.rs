//! MQTT access (`docs/mqtt.md`) against a real gateway started by
//! `pike_server::run` on loopback, with pushes made through the HTTP API and
//! a webhook backend: rumqttc's client for the happy path, and a packet-level
//! client (rumqttc's codec over a TCP socket) where a test needs exact
//! control of PUBACKs, flags and reason codes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use pike_server::config::Config;
use pike_server::token::{Claims, mint};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

const KEY: &str = "pk_mqtt_0123456789abcdef";
const SECRET: &str = "mqtt-secret-0123456789abcdef";
/// Longest wait for anything (a bound, not a sleep).
const PATIENCE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// One uplink request the webhook received: (idempotency key, body).
type Hook = (String, Bytes);

struct Gateway {
    mqtt: SocketAddr,
    mqtts: SocketAddr,
    http: String,
    hooks: mpsc::UnboundedReceiver<Hook>,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn webhook(State(tx): State<mpsc::UnboundedSender<Hook>>, headers: HeaderMap, body: Bytes) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = tx.send((key, body));
}

impl Gateway {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (tx, hooks) = mpsc::unbounded_channel();
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/pike/uplink", axum::routing::post(webhook))
            .with_state(tx);
        tokio::spawn(async move { axum::serve(backend, router).await });

        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
data_dir = "{data}"
[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:0"
[mqtt]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
[[apps]]
id = "demo"
api_key = "{KEY}"
token_secret = "{SECRET}"
[[apps.biz]]
id = "iot"
uplink_webhooks = ["http://{backend_addr}/pike/uplink"]
"#,
            data = dir.path().display()
        );
        let config = Config::parse(&text, std::path::Path::new("mqtt.toml")).unwrap();
        let (started_tx, started_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let on_started = move |s: &pike_server::Started| {
                let _ = started_tx.send(s.listening.clone());
            };
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            pike_server::run(config, None, on_started, shutdown)
                .await
                .unwrap();
        });
        let listening = within("the gateway starts", started_rx).await.unwrap();
        let addr = |name: &str| {
            listening
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .unwrap_or_else(|| panic!("no {name} listener in {listening:?}"))
        };
        Self {
            mqtt: addr("mqtt"),
            mqtts: addr("mqtts"),
            http: format!("http://{}", addr("http")),
            hooks,
            client: reqwest::Client::new(),
            _stop: stop,
            _dir: dir,
        }
    }

    /// The TLS certificate the gateway generated into its data dir.
    fn certificate(&self) -> std::path::PathBuf {
        self._dir.path().join("tls/cert.pem")
    }

    /// Pushes `payload` to iot:`alias` through the HTTP API.
    async fn push(&self, alias: &str, payload: &str, reliable: bool) {
        let body = json!({"biz": "iot", "alias": alias, "payload": payload, "reliable": reliable});
        self.post_push(body).await;
    }

    /// Pushes `payload` reliably to the iot aliases bound to `tag`.
    async fn push_tag(&self, tag: &str, payload: &str) {
        let body = json!({"biz": "iot", "tag": tag, "payload": payload, "reliable": true});
        self.post_push(body).await;
    }

    async fn post_push(&self, body: serde_json::Value) {
        let response = within(
            "push",
            self.client
                .post(format!("{}/v1/push", self.http))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send(),
        )
        .await
        .unwrap();
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }

    async fn next_hook(&mut self) -> Hook {
        within("a webhook call", self.hooks.recv()).await.unwrap()
    }
}

fn credential(alias: &str, device: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims::new("demo", "iot", alias, now, 600);
    let claims = match device {
        Some(d) => claims.with_device(d),
        None => claims,
    };
    mint(&claims, SECRET.as_bytes())
}

/// A packet-level MQTT client.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn open(addr: SocketAddr) -> Self {
        Self {
            stream: within("dial", TcpStream::connect(addr)).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn write(&mut self, out: BytesMut) {
        within("write", self.stream.write_all(&out)).await.unwrap();
    }

    async fn send4(&mut self, packet: v4::Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.write(out).await;
    }

    async fn send5(&mut self, packet: v5::Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, None).unwrap();
        self.write(out).await;
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        within("a packet", self.stream.read_buf(&mut self.buf))
            .await
            .unwrap_or(0)
            > 0
    }

    async fn recv4(&mut self) -> v4::Packet {
        loop {
            match v4::Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    assert!(self.fill().await, "closed while waiting for a packet");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn recv5(&mut self) -> v5::Packet {
        loop {
            match v5::Packet::read(&mut self.buf, None) {
                Ok(p) => return p,
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                    assert!(self.fill().await, "closed while waiting for a packet");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Waits for the server to close the connection.
    async fn closed(&mut self) {
        while self.fill().await {}
    }

    async fn connect4(
        addr: SocketAddr,
        id: &str,
        password: &str,
        clean: bool,
    ) -> (Self, v4::ConnAck) {
        let mut raw = Self::open(addr).await;
        let mut c = v4::Connect::new(id);
        c.keep_alive = 60;
        c.clean_session = clean;
        c.set_login("demo", password);
        raw.send4(v4::Packet::Connect(c)).await;
        match raw.recv4().await {
            v4::Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn connect5(
        addr: SocketAddr,
        id: &str,
        password: &str,
        clean: bool,
    ) -> (Self, v5::ConnAck) {
        let mut raw = Self::open(addr).await;
        let properties = v5::ConnectProperties {
            session_expiry_interval: Some(3600),
            ..v5::ConnectProperties::new()
        };
        let c = v5::Connect {
            keep_alive: 60,
            client_id: id.into(),
            clean_start: clean,
            properties: Some(properties),
        };
        raw.send5(v5::Packet::Connect(
            c,
            None,
            Some(v5::Login::new("demo", password)),
        ))
        .await;
        match raw.recv5().await {
            v5::Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe4(&mut self, filter: &str, qos: rumqttc::mqttbytes::QoS) -> v4::SubAck {
        self.send4(v4::Packet::Subscribe(v4::Subscribe::new(filter, qos)))
            .await;
        match self.recv4().await {
            v4::Packet::SubAck(ack) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn subscribe5(&mut self, filter: &str) -> v5::SubAck {
        let q = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
        self.send5(v5::Packet::Subscribe(v5::Subscribe::new(
            v5::Filter::new(filter, q),
            None,
        )))
        .await;
        match self.recv5().await {
            v5::Packet::SubAck(ack) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn publish4(&mut self) -> v4::Publish {
        match self.recv4().await {
            v4::Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn rumqttc_subscribes_and_receives_reliable_and_transient_pushes() {
    let gateway = Gateway::start().await;
    let mut options =
        rumqttc::MqttOptions::new("bike-1", gateway.mqtt.ip().to_string(), gateway.mqtt.port());
    options.set_credentials("demo", credential("bike-1", None));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe("pike/iot/down", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut pushed = false;
    let mut received = Vec::new();
    while received.len() < 2 {
        let event = within("an MQTT event", events.poll()).await.unwrap();
        match event {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, v4::ConnectReturnCode::Success);
            }
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) if !pushed => {
                assert_eq!(
                    ack.return_codes,
                    vec![v4::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]
                );
                pushed = true;
                gateway.push("bike-1", "unlock", true).await;
                gateway.push("bike-1", "blink", false).await;
            }
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                assert_eq!(p.topic, "pike/iot/down");
                received.push((p.payload.clone(), p.qos));
            }
            _ => {}
        }
    }
    assert_eq!(
        received,
        vec![
            (Bytes::from_static(b"unlock"), rumqttc::QoS::AtLeastOnce),
            (Bytes::from_static(b"blink"), rumqttc::QoS::AtMostOnce),
        ]
    );
}

#[tokio::test]
async fn a_persistent_session_resumes_with_what_was_missed_exactly_once_and_dup_on_redelivery() {
    let gateway = Gateway::start().await;
    let token = credential("lock-9", None);
    let qos1 = rumqttc::mqttbytes::QoS::AtLeastOnce;

    let (mut raw, ack) = Raw::connect4(gateway.mqtt, "lock-9", &token, false).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
    assert!(!ack.session_present, "a new session");
    raw.subscribe4("pike/iot/down", qos1).await;
    gateway.push("lock-9", "m1", true).await;
    let m1 = raw.publish4().await;
    assert_eq!((&m1.payload[..], m1.dup), (&b"m1"[..], false));
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(m1.pkid)))
        .await;
    // m2 is received but not acknowledged before the connection drops.
    gateway.push("lock-9", "m2", true).await;
    let m2 = raw.publish4().await;
    assert_eq!(&m2.payload[..], b"m2");
    drop(raw);

    // Pushed while the device is away.
    gateway.push("lock-9", "m3", true).await;

    let (mut raw, ack) = Raw::connect4(gateway.mqtt, "lock-9", &token, false).await;
    assert!(ack.session_present, "the session resumes");
    // No SUBSCRIBE: the session's subscription is active at once. m1 was
    // acknowledged and never comes again; m2 comes again with DUP; m3 once.
    let again = raw.publish4().await;
    assert_eq!((&again.payload[..], again.dup), (&b"m2"[..], true));
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(again.pkid)))
        .await;
    let m3 = raw.publish4().await;
    assert_eq!((&m3.payload[..], m3.dup), (&b"m3"[..], false));
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(m3.pkid)))
        .await;
    gateway.push("lock-9", "m4", true).await;
    let m4 = raw.publish4().await;
    assert_eq!(&m4.payload[..], b"m4", "nothing in between");
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(m4.pkid)))
        .await;
    raw.send4(v4::Packet::Disconnect).await;
    raw.closed().await;

    // A clean session discards the session and what the device missed.
    gateway.push("lock-9", "m5", true).await;
    let (mut raw, ack) = Raw::connect4(gateway.mqtt, "lock-9", &token, true).await;
    assert!(!ack.session_present);
    raw.subscribe4("pike/iot/down", qos1).await;
    gateway.push("lock-9", "m6", true).await;
    let m6 = raw.publish4().await;
    assert_eq!(&m6.payload[..], b"m6", "m5 was skipped");
}

#[tokio::test]
async fn uplink_is_acked_after_the_backend_and_deduplicated_by_the_envelope_id() {
    let mut gateway = Gateway::start().await;
    let token = credential("meter-3", None);
    let (mut raw, ack) = Raw::connect5(gateway.mqtt, "meter-3", &token, true).await;
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
    let props = ack.properties.unwrap();
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(props.retain_available, Some(0));

    let publish = |pkid: u16, payload: &'static [u8]| {
        let mut p = v5::Publish::new(
            "pike/iot/up",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            payload,
            None,
        );
        p.pkid = pkid;
        v5::Packet::Publish(p)
    };
    raw.send5(publish(1, b"pike-id:r-1\n{\"kwh\":7}")).await;
    let (key, body) = gateway.next_hook().await;
    assert_eq!((key.as_str(), &body[..]), ("r-1", &b"{\"kwh\":7}"[..]));
    match raw.recv5().await {
        v5::Packet::PubAck(a) => {
            assert_eq!((a.pkid, a.reason), (1, v5::PubAckReason::Success));
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // The same message again (packet ids are reused): acked, not delivered
    // again; the next message is the next webhook call.
    raw.send5(publish(1, b"pike-id:r-1\n{\"kwh\":7}")).await;
    match raw.recv5().await {
        v5::Packet::PubAck(a) => assert_eq!(a.reason, v5::PubAckReason::Success),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    raw.send5(publish(2, b"pike-id:r-2\nnext")).await;
    let (key, body) = gateway.next_hook().await;
    assert_eq!((key.as_str(), &body[..]), ("r-2", &b"next"[..]));

    // Another topic is not authorized; QoS 2 ends the connection.
    let mut p = v5::Publish::new(
        "pike/other/up",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        "x",
        None,
    );
    p.pkid = 3;
    raw.send5(v5::Packet::Publish(p)).await;
    loop {
        match raw.recv5().await {
            v5::Packet::PubAck(a) if a.pkid == 3 => {
                assert_eq!(a.reason, v5::PubAckReason::NotAuthorized);
                break;
            }
            v5::Packet::PubAck(_) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let mut p = v5::Publish::new(
        "pike/iot/up",
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
        "x",
        None,
    );
    p.pkid = 4;
    raw.send5(v5::Packet::Publish(p)).await;
    match raw.recv5().await {
        v5::Packet::Disconnect(d) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::QoSNotSupported);
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    raw.closed().await;

    // Retain is refused the same way.
    let (mut raw, _) = Raw::connect5(gateway.mqtt, "meter-3", &token, true).await;
    let mut p = v5::Publish::new(
        "pike/iot/up",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        "x",
        None,
    );
    p.retain = true;
    raw.send5(v5::Packet::Publish(p)).await;
    match raw.recv5().await {
        v5::Packet::Disconnect(d) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::RetainNotSupported);
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_credentials_and_subscriptions_get_the_spec_reason_codes() {
    let gateway = Gateway::start().await;
    let good = credential("cab-1", None);
    let forged = mint(
        &Claims::new("demo", "iot", "cab-1", 1_700_000_000, 600_000_000),
        b"not the app's secret",
    );
    let other_device = credential("cab-1", Some("cab-2"));

    let (_, ack) = Raw::connect4(gateway.mqtt, "cab-1", &forged, true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::BadUserNamePassword);
    let (_, ack) = Raw::connect4(gateway.mqtt, "cab-1", "garbage", true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::BadUserNamePassword);
    let (_, ack) = Raw::connect4(gateway.mqtt, "cab-1", &other_device, true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::NotAuthorized);
    let (_, ack) = Raw::connect5(gateway.mqtt, "cab-1", &forged, true).await;
    assert_eq!(ack.code, v5::ConnectReturnCode::BadUserNamePassword);
    let (_, ack) = Raw::connect5(gateway.mqtt, "cab-1", &other_device, true).await;
    assert_eq!(ack.code, v5::ConnectReturnCode::NotAuthorized);

    // 3.1.1: every refused filter is 0x80; QoS 2 is granted as 1.
    let (mut raw, ack) = Raw::connect4(gateway.mqtt, "cab-1", &good, true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
    let ack = raw
        .subscribe4("pike/+/down", rumqttc::mqttbytes::QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_codes, vec![v4::SubscribeReasonCode::Failure]);
    let ack = raw
        .subscribe4("pike/iot/down", rumqttc::mqttbytes::QoS::ExactlyOnce)
        .await;
    assert_eq!(
        ack.return_codes,
        vec![v4::SubscribeReasonCode::Success(
            rumqttc::mqttbytes::QoS::AtLeastOnce
        )]
    );
    drop(raw);

    // 5.0: wildcards 0xA2, shared 0x9E, other topics 0x87.
    let (mut raw, _) = Raw::connect5(gateway.mqtt, "cab-1", &good, true).await;
    let q = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    let filters = [
        "pike/iot/#",
        "$share/g/pike/iot/down",
        "pike/chat/down",
        "pike/iot/down",
    ]
    .map(|f| v5::Filter::new(f, q));
    raw.send5(v5::Packet::Subscribe(v5::Subscribe::new_many(
        filters, None,
    )))
    .await;
    match raw.recv5().await {
        v5::Packet::SubAck(ack) => assert_eq!(
            ack.return_codes,
            vec![
                v5::SubscribeReasonCode::WildcardSubscriptionsNotSupported,
                v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
                v5::SubscribeReasonCode::NotAuthorized,
                v5::SubscribeReasonCode::Success(q),
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tls_listener_serves_mqtt_with_the_gateways_certificate() {
    let gateway = Gateway::start().await;
    let trust = tntunnel::tls::TlsClientConfig::with_ca_pem_file(gateway.certificate())
        .await
        .unwrap();
    let mut config = (*trust.rustls_config()).clone();
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = within("dial", TcpStream::connect(gateway.mqtts))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = within("TLS", connector.connect(name, tcp)).await.unwrap();
    let mut c = v4::Connect::new("tls-1");
    c.set_login("demo", credential("tls-1", None));
    let mut out = BytesMut::new();
    v4::Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
    within("write", tls.write_all(&out)).await.unwrap();
    let mut buf = BytesMut::new();
    let ack = loop {
        match v4::Packet::read(&mut buf, 1024) {
            Ok(v4::Packet::ConnAck(ack)) => break ack,
            Ok(other) => panic!("expected CONNACK, got {other:?}"),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                let n = within("CONNACK", tls.read_buf(&mut buf)).await.unwrap();
                assert!(n > 0, "closed before CONNACK");
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
}

/// The next PUBLISH rumqttc hands over (topic, payload), acknowledging the
/// other events on the way.
async fn next_publish(events: &mut rumqttc::EventLoop) -> (String, Bytes) {
    loop {
        let event = within("a PUBLISH", events.poll()).await.unwrap();
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
            return (p.topic, p.payload);
        }
    }
}

/// Polls rumqttc until `done` accepts an incoming packet; a PUBLISH on the
/// way fails the test.
async fn until_packet(events: &mut rumqttc::EventLoop, done: impl Fn(&rumqttc::Packet) -> bool) {
    loop {
        let event = within("a packet", events.poll()).await.unwrap();
        if let rumqttc::Event::Incoming(packet) = event {
            assert!(
                !matches!(packet, rumqttc::Packet::Publish(_)),
                "unexpected {packet:?}"
            );
            if done(&packet) {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_tag_topic_binds_the_tag_once_and_unsubscribe_unbinds_it() {
    let gateway = Gateway::start().await;
    let mut options =
        rumqttc::MqttOptions::new("bike-8", gateway.mqtt.ip().to_string(), gateway.mqtt.port());
    options.set_credentials("demo", credential("bike-8", None));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    let qos1 = rumqttc::QoS::AtLeastOnce;
    // Subscribed both to the downlink topic and to the tag.
    client.subscribe("pike/iot/down", qos1).await.unwrap();
    client
        .subscribe("pike/iot/tag/fleet-a", qos1)
        .await
        .unwrap();
    for _ in 0..2 {
        until_packet(&mut events, |p| match p {
            rumqttc::Packet::SubAck(ack) => {
                assert_eq!(
                    ack.return_codes,
                    vec![v4::SubscribeReasonCode::Success(qos1)]
                );
                true
            }
            _ => false,
        })
        .await;
    }

    // A push to the tag arrives once, on the downlink topic (the gateway's
    // DOWNLINK does not say how a push was addressed); the untagged marker
    // pushed after it comes next, so there was no second copy.
    gateway.push_tag("fleet-a", "t1").await;
    gateway.push("bike-8", "m1", true).await;
    let down = String::from("pike/iot/down");
    assert_eq!(
        next_publish(&mut events).await,
        (down.clone(), Bytes::from_static(b"t1"))
    );
    assert_eq!(
        next_publish(&mut events).await,
        (down.clone(), Bytes::from_static(b"m1"))
    );

    // UNSUBSCRIBE unbinds the tag: its next push reaches nobody, and the
    // marker pushed after it is the next message.
    client.unsubscribe("pike/iot/tag/fleet-a").await.unwrap();
    until_packet(&mut events, |p| matches!(p, rumqttc::Packet::UnsubAck(_))).await;
    gateway.push_tag("fleet-a", "t2").await;
    gateway.push("bike-8", "m2", true).await;
    assert_eq!(
        next_publish(&mut events).await,
        (down, Bytes::from_static(b"m2"))
    );
}

#[tokio::test]
async fn a_tag_subscription_survives_in_a_persistent_session() {
    let gateway = Gateway::start().await;
    let token = credential("lamp-4", None);
    let qos1 = rumqttc::mqttbytes::QoS::AtLeastOnce;

    // Only the tag is subscribed: it alone makes the login's messages flow.
    let (mut raw, _) = Raw::connect4(gateway.mqtt, "lamp-4", &token, false).await;
    let ack = raw.subscribe4("pike/iot/tag/night", qos1).await;
    assert_eq!(
        ack.return_codes,
        vec![v4::SubscribeReasonCode::Success(qos1)]
    );
    gateway.push_tag("night", "n1").await;
    let n1 = raw.publish4().await;
    assert_eq!(
        (n1.topic.as_str(), &n1.payload[..]),
        ("pike/iot/down", &b"n1"[..])
    );
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(n1.pkid)))
        .await;
    raw.send4(v4::Packet::Disconnect).await;
    raw.closed().await;

    // Pushed to the tag while the device is away.
    gateway.push_tag("night", "n2").await;

    let (mut raw, ack) = Raw::connect4(gateway.mqtt, "lamp-4", &token, false).await;
    assert!(ack.session_present);
    // No SUBSCRIBE: the session's tag subscription is active at once.
    let n2 = raw.publish4().await;
    assert_eq!((&n2.payload[..], n2.dup), (&b"n2"[..], false));
    raw.send4(v4::Packet::PubAck(v4::PubAck::new(n2.pkid)))
        .await;
}

#[tokio::test]
async fn bad_tags_and_too_many_tags_get_the_spec_reason_codes() {
    let gateway = Gateway::start().await;
    let token = credential("crate-2", None);
    let bad = format!(
        "pike/iot/tag/{}",
        "t".repeat(pike_channel::limits::MAX_TAG_LEN + 1)
    );
    let qos1 = rumqttc::mqttbytes::QoS::AtLeastOnce;

    // 3.1.1: 0x80 for a tag over the bound and for one tag too many.
    let (mut raw, _) = Raw::connect4(gateway.mqtt, "crate-2", &token, true).await;
    let ack = raw.subscribe4(&bad, qos1).await;
    assert_eq!(ack.return_codes, vec![v4::SubscribeReasonCode::Failure]);
    for i in 0..pike_server::mqtt::MAX_TAG_SUBSCRIPTIONS {
        let ack = raw.subscribe4(&format!("pike/iot/tag/g{i}"), qos1).await;
        assert_eq!(
            ack.return_codes,
            vec![v4::SubscribeReasonCode::Success(qos1)],
            "tag {i}"
        );
    }
    let ack = raw.subscribe4("pike/iot/tag/one-more", qos1).await;
    assert_eq!(ack.return_codes, vec![v4::SubscribeReasonCode::Failure]);
    // Subscribing again to a held tag is not one more.
    let ack = raw.subscribe4("pike/iot/tag/g0", qos1).await;
    assert_eq!(
        ack.return_codes,
        vec![v4::SubscribeReasonCode::Success(qos1)]
    );
    raw.send4(v4::Packet::Disconnect).await;
    raw.closed().await;

    // 5.0: 0x8F Topic Filter Invalid, 0x97 Quota exceeded.
    let (mut raw, _) = Raw::connect5(gateway.mqtt, "crate-2", &token, true).await;
    let ack = raw.subscribe5(&bad).await;
    assert_eq!(
        ack.return_codes,
        vec![v5::SubscribeReasonCode::TopicFilterInvalid]
    );
    let ack = raw.subscribe5("pike/iot/tag/a\u{1}b").await;
    assert_eq!(
        ack.return_codes,
        vec![v5::SubscribeReasonCode::TopicFilterInvalid]
    );
    let q = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    for i in 0..pike_server::mqtt::MAX_TAG_SUBSCRIPTIONS {
        let ack = raw.subscribe5(&format!("pike/iot/tag/g{i}")).await;
        assert_eq!(
            ack.return_codes,
            vec![v5::SubscribeReasonCode::Success(q)],
            "tag {i}"
        );
    }
    let ack = raw.subscribe5("pike/iot/tag/one-more").await;
    assert_eq!(
        ack.return_codes,
        vec![v5::SubscribeReasonCode::QuotaExceeded]
    );
    // UNSUBSCRIBE: a held tag Success, a tag the session did not hold 0x11
    // (unbound all the same), a bad one 0x8F.
    raw.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        pkid: 7,
        filters: vec![
            "pike/iot/tag/g0".to_owned(),
            "pike/iot/tag/never".to_owned(),
            bad.clone(),
        ],
        properties: None,
    }))
    .await;
    match raw.recv5().await {
        v5::Packet::UnsubAck(ack) => assert_eq!(
            ack.reasons,
            vec![
                v5::UnsubAckReason::Success,
                v5::UnsubAckReason::NoSubscriptionExisted,
                v5::UnsubAckReason::TopicFilterInvalid,
            ]
        ),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    // Room again for one tag.
    let ack = raw.subscribe5("pike/iot/tag/one-more").await;
    assert_eq!(ack.return_codes, vec![v5::SubscribeReasonCode::Success(q)]);
}
