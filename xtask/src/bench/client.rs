//! The peers' load generator: N idle, subscribed MQTT 3.1.1 or NATS core
//! connections from one process, run by the harness as
//! `xtask bench-client ...` (pinned to its own CPU).
//!
//! Like `pike bench idle`, it dials from source addresses `127.0.X.1 ..=
//! 127.0.X.K` with `IP_BIND_ADDRESS_NO_PORT`, at most `--concurrency`
//! handshakes in flight, each bounded by `--login-timeout`, the whole phase
//! by `--connect-deadline`; it prints the same JSON lines (`connected`
//! after the connect phase, `report` at the end) and holds the connections
//! for `--hold` seconds or until standard input closes.
//!
//! A connection counts once its subscription is confirmed: MQTT CONNECT →
//! CONNACK (accepted), SUBSCRIBE → SUBACK (granted); NATS INFO, CONNECT +
//! SUB + PING → PONG (the server handled the SUB before answering).
//! While idle it answers NATS PINGs and sends an MQTT PINGREQ every
//! keep-alive period (60 s).
//!
//! With `--pike-app A --pike-biz B --token-secret S` (pike mode, MQTT only)
//! the devices log in to pike-server's MQTT listener: client id and alias
//! `b<id>`, user name the app, password a Pike credential minted with the
//! secret, subscribed to `pike/<biz>/down` ([`pike_mqtt`]).
//!
//! With `--tls --ca FILE` (and `--server-name NAME`, default the server's
//! IP) the connections are TLS: from the first byte for MQTT; after the
//! plain-text INFO for NATS (the server's default TLS upgrade).
//!
//! The other workloads (`fanout`, `unicast`, `group`, `uplink`) live in
//! `bench/gen/`; the handshakes are shared with them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::r#gen::pike_mqtt::{self, PikeLogin, PikeLoginArgs};
use super::r#gen::tls::MaybeTls;
use super::r#gen::{conn, mqtt, nats, tls};
use super::wire;

/// MQTT keep-alive and the client's ping period, seconds.
const KEEP_ALIVE_SECS: u16 = mqtt::KEEP_ALIVE_SECS;

/// The protocol to speak.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Proto {
    Mqtt,
    Nats,
}

impl Proto {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "mqtt" => Some(Self::Mqtt),
            "nats" => Some(Self::Nats),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Nats => "nats",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct ClientOptions {
    pub(crate) proto: Proto,
    pub(crate) server: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) first: u64,
    pub(crate) source_net: [u8; 3],
    pub(crate) sources: u8,
    pub(crate) concurrency: usize,
    pub(crate) login_timeout: Duration,
    pub(crate) connect_deadline: Duration,
    pub(crate) hold: Duration,
    pub(crate) stdin_stop: bool,
    /// TLS, trusting this CA file.
    pub(crate) tls: bool,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
    /// Pike mode: the devices log in to pike-server's MQTT listener.
    pub(crate) pike: Option<PikeLogin>,
}

impl ClientOptions {
    /// Parses `bench-client` arguments (all `--name value`, plus the
    /// `--stdin-stop` and `--tls` switches).
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            proto: Proto::Mqtt,
            server: SocketAddr::from(([127, 0, 0, 1], 1883)),
            connections: 1000,
            first: 0,
            source_net: [127, 0, 1],
            sources: 32,
            concurrency: 256,
            login_timeout: Duration::from_secs(30),
            connect_deadline: Duration::from_secs(300),
            hold: Duration::from_secs(10),
            stdin_stop: false,
            tls: false,
            ca: None,
            server_name: None,
            pike: None,
        };
        let mut pike = PikeLoginArgs::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--stdin-stop" {
                options.stdin_stop = true;
                continue;
            }
            if flag == "--tls" {
                options.tls = true;
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?;
            let bad = |what: &str| format!("bad value for `{flag}`: {value:?} ({what})");
            let secs = |v: &str| v.parse::<u64>().map(Duration::from_secs);
            if pike.take(flag, value) {
                continue;
            }
            match flag.as_str() {
                "--proto" => {
                    options.proto = Proto::parse(value).ok_or_else(|| bad("mqtt or nats"))?
                }
                "--server" => options.server = value.parse().map_err(|_| bad("ip:port"))?,
                "--connections" => options.connections = value.parse().map_err(|_| bad("count"))?,
                "--first" => options.first = value.parse().map_err(|_| bad("number"))?,
                "--source-net" => {
                    options.source_net = parse_source_net(value).ok_or_else(|| bad("127.x.y"))?
                }
                "--sources" => options.sources = value.parse().map_err(|_| bad("0..=255"))?,
                "--concurrency" => options.concurrency = value.parse().map_err(|_| bad("count"))?,
                "--login-timeout" => {
                    options.login_timeout = secs(value).map_err(|_| bad("seconds"))?
                }
                "--connect-deadline" => {
                    options.connect_deadline = secs(value).map_err(|_| bad("seconds"))?
                }
                "--hold" => options.hold = secs(value).map_err(|_| bad("seconds"))?,
                "--ca" => options.ca = Some(PathBuf::from(value)),
                "--server-name" => options.server_name = Some(value.clone()),
                other => return Err(format!("unknown option `{other}` for `bench-client`")),
            }
        }
        if options.tls && options.ca.is_none() {
            return Err("`--tls` needs `--ca FILE`".into());
        }
        options.pike = pike.finish()?;
        if options.pike.is_some() && options.proto != Proto::Mqtt {
            return Err("pike mode (`--pike-app` ...) is MQTT only".into());
        }
        Ok(options)
    }

    fn source_ips(&self) -> Vec<IpAddr> {
        let [a, b, c] = self.source_net;
        (1..=self.sources)
            .map(|d| IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            .collect()
    }
}

/// `127.x.y` → `[127, x, y]` (loopback only).
pub(crate) fn parse_source_net(net: &str) -> Option<[u8; 3]> {
    let octets: Vec<u8> = net
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    match octets.as_slice() {
        [127, b, c] => Some([127, *b, *c]),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    online: AtomicU64,
    disconnects: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Runs the generator (in its own process); prints JSON lines on stdout,
/// progress on stderr.
pub(crate) async fn run(options: ClientOptions) -> Result<(), String> {
    let tls = match (&options.ca, options.tls) {
        (Some(ca), true) => Some(Tls {
            connector: tls::connector(ca)?,
            name: tls::server_name(options.server_name.as_deref(), options.server)?,
        }),
        _ => None,
    };
    let n = options.connections;
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let (done_tx, mut done) = mpsc::unbounded_channel::<Result<(), String>>();
    let sources = options.source_ips();
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        tasks.spawn(connection(
            options.clone(),
            tls.clone(),
            options.first + i as u64,
            source,
            gate.clone(),
            counters.clone(),
            done_tx.clone(),
            stop_rx.clone(),
            give_up_rx.clone(),
        ));
    }
    drop(done_tx);

    let mut reported = 0;
    let mut first_error: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let phase_end = started + options.connect_deadline;
    while reported < n {
        tokio::select! {
            outcome = done.recv() => match outcome {
                Some(result) => {
                    reported += 1;
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
                None => break,
            },
            _ = tick.tick() => eprintln!(
                "bench-client {}: {}/{n} subscribed, {} failed",
                options.proto.name(),
                get(&counters.connected),
                get(&counters.failed)
            ),
            () = tokio::time::sleep_until(phase_end) => {
                let _ = give_up_tx.send(true);
                let missing = (n - reported) as u64;
                counters.failed.fetch_add(missing, Ordering::Relaxed);
                first_error.get_or_insert_with(|| {
                    format!("{missing} connections not subscribed within the connect deadline")
                });
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let connected = get(&counters.connected);
    let connect = serde_json::json!({
        "requested": n,
        "connected": connected,
        "failed": get(&counters.failed),
        "seconds": seconds,
        "rate": connected as f64 / seconds.max(1e-9),
        "sources": sources.len(),
        "concurrency": options.concurrency,
        "tls": options.tls,
        "first_error": first_error,
        // The workloads' field names.
        "connections": connected,
        "rate_per_sec": connected as f64 / seconds.max(1e-9),
    });
    json_line("connected", &connect);

    let hold_started = Instant::now();
    let stdin_closed = options.stdin_stop.then(watch_stdin).flatten();
    tokio::select! {
        () = tokio::time::sleep(options.hold) => {}
        _ = async {
            match stdin_closed {
                Some(rx) => rx.await,
                None => std::future::pending().await,
            }
        } => {}
    }
    let report = serde_json::json!({
        "workload": "idle",
        "proto": options.proto.name(),
        "connect": connect,
        "hold": {
            "seconds": hold_started.elapsed().as_secs_f64(),
            "online_at_end": get(&counters.online),
            "disconnects": get(&counters.disconnects),
        },
    });
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    json_line("report", &report);
    Ok(())
}

fn json_line(kind: &str, value: &serde_json::Value) {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.insert("kind".into(), kind.into());
    }
    println!("{value}");
}

/// Resolves when standard input reaches end of file (a detached thread
/// reads it, so it never holds the process at exit).
fn watch_stdin() -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tx.send(());
        })
        .ok()?;
    Some(rx)
}

/// The TLS client of `--tls`.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
}

/// Dials and handshakes (TLS first when asked; for NATS after its INFO).
async fn establish(
    options: &ClientOptions,
    tls: Option<&Tls>,
    id: u64,
    source: Option<IpAddr>,
) -> Result<(MaybeTls, Vec<u8>), String> {
    let tcp = dial(options.server, source).await?;
    let mut buf = Vec::with_capacity(256);
    let Some(tls) = tls else {
        let mut stream = MaybeTls::Plain(tcp);
        match options.proto {
            Proto::Mqtt => mqtt_handshake(&mut stream, &mut buf, id, options.pike.as_ref()).await?,
            Proto::Nats => nats_handshake(&mut stream, &mut buf, id).await?,
        }
        return Ok((stream, buf));
    };
    let mut tcp = tcp;
    if options.proto == Proto::Nats {
        nats::read_info(&mut tcp, &mut buf).await?;
        if !buf.is_empty() {
            return Err("unexpected bytes after INFO before the TLS handshake".into());
        }
    }
    let session = tls
        .connector
        .connect(tls.name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let mut stream = MaybeTls::Tls(Box::new(session));
    match options.proto {
        Proto::Mqtt => mqtt_handshake(&mut stream, &mut buf, id, options.pike.as_ref()).await?,
        Proto::Nats => {
            nats::connect(
                &mut stream,
                &mut buf,
                &format!("b{id}"),
                Some(&format!("d.{id}")),
            )
            .await?;
        }
    }
    Ok((stream, buf))
}

/// One connection: handshake (reported on `done`), then idle until `stop`.
#[allow(clippy::too_many_arguments)]
async fn connection(
    options: ClientOptions,
    tls: Option<Tls>,
    id: u64,
    source: Option<IpAddr>,
    gate: Arc<Semaphore>,
    counters: Arc<Counters>,
    done: mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
    mut give_up: watch::Receiver<bool>,
) {
    let permit = tokio::select! {
        permit = gate.acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return,
        },
        () = stopped(&mut give_up) => return,
    };
    let attempt = establish(&options, tls.as_ref(), id, source);
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(options.login_timeout, attempt) => {
            outcome.unwrap_or_else(|_| Err(format!("no subscription within {:?}", options.login_timeout)))
        }
        () = stopped(&mut give_up) => return,
    };
    drop(permit);
    let (mut stream, mut buf) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            let _ = done.send(Err(e));
            return;
        }
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    counters.online.fetch_add(1, Ordering::Relaxed);
    let _ = done.send(Ok(()));
    drop(done);
    buf.shrink_to(64);

    let mut chunk = [0u8; 512];
    let ping_every = Duration::from_secs(u64::from(KEEP_ALIVE_SECS));
    let mut next_ping = Instant::now() + ping_every;
    let lost = loop {
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if idle_input(options.proto, &mut stream, &mut buf).await.is_err() {
                        break true;
                    }
                }
            },
            () = tokio::time::sleep_until(next_ping), if options.proto == Proto::Mqtt => {
                next_ping = Instant::now() + ping_every;
                if stream.write_all(&wire::MQTT_PINGREQ).await.is_err() {
                    break true;
                }
            }
            () = stopped(&mut stop) => break false,
        }
    };
    counters.online.fetch_sub(1, Ordering::Relaxed);
    if lost {
        counters.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Handles what an idle connection received: answers NATS PINGs, ignores
/// the rest; an error ends the connection.
async fn idle_input<S: AsyncWrite + Unpin>(
    proto: Proto,
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    match proto {
        Proto::Mqtt => {
            while wire::mqtt_take(buf)
                .map_err(|_| "malformed MQTT".to_owned())?
                .is_some()
            {}
        }
        Proto::Nats => {
            while let Some(op) = wire::nats_take(buf).map_err(|e| e.0)? {
                if op == wire::NatsOp::Ping {
                    stream
                        .write_all(wire::NATS_PONG)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// Dials `server` from `source` (port chosen at connect time).
async fn dial(server: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    conn::dial(server, source, None).await
}

/// MQTT: CONNECT as `b<id>`, SUBSCRIBE `d/<id>`; in pike mode CONNECT
/// as `b<id>` with alias `b<id>`'s credential, SUBSCRIBE `pike/<biz>/down`.
async fn mqtt_handshake<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    id: u64,
    pike: Option<&PikeLogin>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = format!("b{id}");
    match pike {
        None => mqtt::handshake(stream, buf, &name, Some(&format!("d/{id}"))).await,
        Some(login) => {
            let (user, password) = login.credentials(&name, pike_mqtt::unix_now());
            let topic = login.down_topic();
            mqtt::handshake_as(
                stream,
                buf,
                &name,
                Some((&user, &password)),
                Some(&topic),
                0,
            )
            .await
        }
    }
}

/// NATS: INFO, CONNECT as `b<id>`, SUB `d.<id>`, PING → PONG.
async fn nats_handshake<S>(stream: &mut S, buf: &mut Vec<u8>, id: u64) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    nats::handshake(stream, buf, &format!("b{id}"), Some(&format!("d.{id}"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_options() {
        let o = ClientOptions::parse(&args(&[
            "--proto",
            "nats",
            "--server",
            "127.0.0.1:4222",
            "--connections",
            "500",
            "--first",
            "1000",
            "--source-net",
            "127.0.9",
            "--sources",
            "4",
            "--hold",
            "3",
            "--stdin-stop",
        ]))
        .unwrap();
        assert_eq!(o.proto, Proto::Nats);
        assert_eq!(o.server, "127.0.0.1:4222".parse().unwrap());
        assert_eq!((o.connections, o.first), (500, 1000));
        assert_eq!(o.hold, Duration::from_secs(3));
        assert!(o.stdin_stop);
        assert_eq!(
            o.source_ips(),
            (1..=4)
                .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 9, d)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn refuses_bad_options() {
        assert!(ClientOptions::parse(&args(&["--proto", "amqp"])).is_err());
        assert!(ClientOptions::parse(&args(&["--source-net", "10.0.0"])).is_err());
        assert!(ClientOptions::parse(&args(&["--hold"])).is_err());
        assert!(ClientOptions::parse(&args(&["--what", "1"])).is_err());
    }

    #[test]
    fn tls_needs_a_ca() {
        assert!(ClientOptions::parse(&args(&["--tls"])).is_err());
        let o = ClientOptions::parse(&args(&[
            "--tls",
            "--ca",
            "/tmp/ca.pem",
            "--server-name",
            "localhost",
        ]))
        .unwrap();
        assert!(o.tls);
        assert_eq!(o.ca, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(o.server_name.as_deref(), Some("localhost"));
        assert!(!ClientOptions::parse(&[]).unwrap().tls);
    }

    #[test]
    fn pike_mode_is_mqtt_only() {
        let pike = [
            "--pike-app",
            "bench",
            "--pike-biz",
            "bench",
            "--token-secret",
            "s",
        ];
        let o = ClientOptions::parse(&args(&pike)).unwrap();
        assert_eq!(
            o.pike.map(|p| p.down_topic()).as_deref(),
            Some("pike/bench/down")
        );
        let mut nats = args(&pike);
        nats.extend(args(&["--proto", "nats"]));
        assert!(ClientOptions::parse(&nats).is_err());
        assert!(ClientOptions::parse(&args(&["--token-secret", "s"])).is_err());
        assert!(ClientOptions::parse(&[]).unwrap().pike.is_none());
    }

    /// Pike mode against a scripted server: CONNECT carries the app and a
    /// credential for alias `b7`, then SUBSCRIBE `pike/bench/down`.
    #[tokio::test]
    async fn pike_mode_handshake_sends_credentials() {
        let login = PikeLogin {
            app: "bench".into(),
            biz: "bench".into(),
            token_secret: "s".into(),
        };
        let (mut client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut packets = Vec::new();
            while packets.len() < 2 {
                let n = server.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
                while let Some(p) = wire::mqtt_take(&mut got).unwrap() {
                    packets.push(p);
                }
            }
            server
                .write_all(&[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0])
                .await
                .unwrap();
            packets
        });
        let mut buf = Vec::new();
        mqtt_handshake(&mut client, &mut buf, 7, Some(&login))
            .await
            .unwrap();
        let packets = task.await.unwrap();
        let connect = &packets[0].body;
        assert_eq!(connect[7], 0xC2, "user name + password + clean session");
        // The payload: client id, user name, password (length-prefixed).
        let mut at = 10;
        let mut strings = Vec::new();
        while at + 2 <= connect.len() {
            let len = usize::from(u16::from_be_bytes([connect[at], connect[at + 1]]));
            strings.push(String::from_utf8(connect[at + 2..at + 2 + len].to_vec()).unwrap());
            at += 2 + len;
        }
        assert_eq!(at, connect.len());
        assert_eq!(strings.len(), 3);
        assert_eq!((strings[0].as_str(), strings[1].as_str()), ("b7", "bench"));
        let claims = strings[2].split('.').nth(1).unwrap();
        assert_eq!(
            strings[2],
            pike_mqtt::mint(&String::from_utf8(decode_base64url(claims)).unwrap(), b"s"),
            "a JWT signed with the secret"
        );
        assert!(
            String::from_utf8(decode_base64url(claims))
                .unwrap()
                .contains(r#""sub":"b7""#)
        );
        assert_eq!(
            packets[1].body,
            wire::mqtt_subscribe(1, "pike/bench/down", 0)[2..].to_vec()
        );
    }

    /// Base64url without padding, decoded (for the test above).
    fn decode_base64url(text: &str) -> Vec<u8> {
        let value = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'-' => 62,
                _ => 63,
            }
        };
        let (mut bits, mut n, mut out) = (0u32, 0u32, Vec::new());
        for c in text.bytes() {
            bits = bits << 6 | value(c);
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    #[test]
    fn source_nets_are_loopback() {
        assert_eq!(parse_source_net("127.0.1"), Some([127, 0, 1]));
        assert_eq!(parse_source_net("127.0.1.1"), None);
        assert_eq!(parse_source_net("192.168.0"), None);
    }

    /// The adapters against scripted servers on loopback: MQTT (CONNACK,
    /// SUBACK) and NATS (INFO, PONG), then a clean hold and stop.
    #[tokio::test]
    async fn handshakes_against_scripted_servers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 256];
            let mut read = 0;
            // CONNECT (16 bytes for id "b7") + SUBSCRIBE (10 bytes).
            while read < 26 {
                read += s.read(&mut got[read..]).await.unwrap();
            }
            assert_eq!(
                &got[..16],
                wire::mqtt_connect("b7", KEEP_ALIVE_SECS).as_slice()
            );
            assert_eq!(&got[16..26], wire::mqtt_subscribe(1, "d/7", 0).as_slice());
            s.write_all(&[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0])
                .await
                .unwrap();
        });
        let mut stream = dial(addr, None).await.unwrap();
        let mut buf = Vec::new();
        mqtt_handshake(&mut stream, &mut buf, 7, None)
            .await
            .unwrap();
        server.await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"INFO {\"server_id\":\"t\"}\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 512];
            while !got.ends_with(b"PING\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8(got).unwrap();
            assert!(text.starts_with("CONNECT {"));
            assert!(text.contains("\r\nSUB d.7 1\r\nPING\r\n"));
            s.write_all(b"PONG\r\n").await.unwrap();
        });
        let mut stream = dial(addr, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))))
            .await
            .unwrap();
        let mut buf = Vec::new();
        nats_handshake(&mut stream, &mut buf, 7).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refused_mqtt_connect_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 64];
            let _ = s.read(&mut got).await.unwrap();
            s.write_all(&[0x20, 2, 0, 5]).await.unwrap();
        });
        let mut stream = dial(addr, None).await.unwrap();
        let mut buf = Vec::new();
        let err = mqtt_handshake(&mut stream, &mut buf, 1, None)
            .await
            .unwrap_err();
        assert!(err.contains("return code 5"), "{err}");
        server.await.unwrap();
    }
}
