//! `pike bench chaos`: the devices, the publisher and the uplink webhook
//! backend of `cargo xtask chaos`, printing one JSON line per event so the
//! harness can check delivery from the devices' and the backend's own
//! records.
//!
//! - Devices: N real [`PikeClient`]s (one channel each, the real reconnect
//!   and resume), aliases `PREFIX<i>`. Every reliable message handed to
//!   the application prints `{"kind":"rx","alias","seq","payload"}`. Each
//!   device sends its share of `--uplink` messages one after the other,
//!   key and payload `<alias>-<j>`, and prints the outcome
//!   `{"kind":"up","alias","j","ok"}`.
//! - Publisher: `--downlink` reliable pushes through the HTTP API to
//!   aliases drawn with the seed, payload `d<n>`, `--http-connections` in
//!   flight; prints `{"kind":"push","alias","payload","status"}` (status 0:
//!   no answer).
//! - Backend: an HTTP server on `--backend`; every call prints
//!   `{"kind":"call","alias","key","status"}` with the answer it gets:
//!   mostly 200, `--fail-permille` 503, `--slow-permille` answered 200
//!   only after `--slow-ms` (past the gateway's webhook timeout).
//!
//! Devices dial plain TCP; with several `--server` addresses (the gateways
//! of a cluster) device `i` prefers address `i mod len` and falls back to
//! the next ones in turn; `--more-api` spreads the pushes over more
//! gateways' HTTP APIs. The fleet's other dial flags (`--transport`,
//! `--sources`, `--concurrency`) are not used.
//!
//! Lines: `ready` once every device runs, `load_done` once every push
//! and every send has its outcome; the process ends at EOF on stdin
//! (`end`). Every wait is bounded by `--connect-deadline` or the flags.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use pike_api::{ChannelProxy, ClientEvent, ClientOptions, PikeClient};
use pike_channel::{BoxConnector, TunnelConnector};
use proto::tunnel::ClientHello;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};

use super::FleetArgs;
use super::api::{Api, ApiArgs};
use crate::cli::{Common, Failure, token_secret};
use crate::token::{Claims, mint};

/// Most pushes in flight at once (`--http-connections` is capped here).
const MAX_IN_FLIGHT: usize = 256;
/// Time one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most `--more-api` URLs.
const MAX_MORE_API: usize = 16;

/// Arguments of `pike bench chaos`.
#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Reliable downlink messages to push, each to one alias drawn with
    /// the seed.
    #[arg(long, default_value_t = 100_000)]
    downlink: u64,
    /// Uplink messages the devices send in all (spread evenly).
    #[arg(long, default_value_t = 100_000)]
    uplink: u64,
    /// Seconds the load is spread over.
    #[arg(long, default_value_t = 60)]
    load_secs: u64,
    /// Where the uplink webhook backend listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    backend: SocketAddr,
    /// Backend calls answered 503, per mille.
    #[arg(long, default_value_t = 20)]
    fail_permille: u32,
    /// Backend calls answered only after `--slow-ms`, per mille.
    #[arg(long, default_value_t = 2)]
    slow_permille: u32,
    /// How long a slow backend call waits, milliseconds.
    #[arg(long, default_value_t = 6_000)]
    slow_ms: u64,
    /// Seed of the aliases pushed to and of the backend's answers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// More gateways' HTTP APIs (comma-separated, at most 16): push `n`
    /// goes to the `n mod (1 + len)`-th of `--api` and these. A push whose
    /// gateway is down is not accepted and not sent again elsewhere (a
    /// second try could store the message twice).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    more_api: Vec<String>,
}

/// Prints one JSON line on stdout.
fn emit(line: &serde_json::Value) {
    println!("{line}");
}

/// Runs `pike bench chaos`.
pub(crate) async fn run(common: &Common, args: ChaosArgs) -> Result<(), Failure> {
    let api = Api::new(common, &args.api)?;
    let secret = token_secret(common, args.fleet.token_secret.as_deref())?;
    let servers = &args.fleet.server;
    if servers.is_empty() {
        return Err(Failure::usage("--server is empty"));
    }
    if args.more_api.len() > MAX_MORE_API {
        return Err(Failure::usage(format!(
            "--more-api: at most {MAX_MORE_API} URLs"
        )));
    }
    let backend = Backend {
        rng: std::sync::Mutex::new(fastrand::Rng::with_seed(args.seed ^ 0x5eed)),
        fail_permille: args.fail_permille.min(1000),
        slow_permille: args.slow_permille.min(1000),
        slow: Duration::from_millis(args.slow_ms),
        calls: AtomicU64::new(0),
    };
    let listener = tokio::net::TcpListener::bind(args.backend)
        .await
        .map_err(|e| Failure::failed(format!("backend on {}: {e}", args.backend)))?;
    let app = Router::new().fallback(call).with_state(Arc::new(backend));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let n = args.fleet.connections.max(1);
    let aliases: Vec<String> = (0..n as u64)
        .map(|i| format!("{}{}", args.fleet.alias_prefix, args.fleet.first_alias + i))
        .collect();
    let running = Arc::new(Semaphore::new(0));
    let mut devices = Vec::with_capacity(n);
    for (i, alias) in aliases.iter().enumerate() {
        // Device i prefers gateway i mod len and falls back to the others
        // in turn when it is down.
        let mut endpoints = servers.clone();
        endpoints.rotate_left(i % servers.len());
        let device = Device::start(common, &args.fleet, endpoints, alias, &secret, &running)?;
        devices.push(device);
    }
    let all = u32::try_from(n).map_err(|_| Failure::usage("too many devices"))?;
    tokio::time::timeout(args.fleet.connect_deadline(), running.acquire_many(all))
        .await
        .map_err(|_| Failure::failed("not every device logged in within --connect-deadline"))?
        .map_err(|_| Failure::failed("devices ended"))?
        .forget();
    emit(&json!({"kind": "ready", "devices": n}));

    let load = Duration::from_secs(args.load_secs.max(1));
    let per_device = args.uplink / n as u64;
    let extra = args.uplink % n as u64;
    let mut senders = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let count = per_device + u64::from((i as u64) < extra);
        senders.push(tokio::spawn(send_uplinks(
            Arc::clone(&device.client),
            device.alias.clone(),
            count,
            load,
        )));
    }
    publish(&api, &args, &aliases, load).await;
    for sender in senders {
        let _ = sender.await;
    }
    emit(&json!({"kind": "load_done"}));

    // Devices keep receiving until the harness closes stdin.
    if let Some(closed) = super::idle::watch_stdin() {
        let _ = closed.await;
    }
    emit(&json!({"kind": "end"}));
    drop(devices);
    Ok(())
}

/// One device: a client on its own channel, its events printed.
struct Device {
    alias: String,
    client: Arc<PikeClient>,
    _proxy: ChannelProxy,
}

impl Device {
    fn start(
        common: &Common,
        fleet: &FleetArgs,
        endpoints: Vec<SocketAddr>,
        alias: &str,
        secret: &str,
        running: &Arc<Semaphore>,
    ) -> Result<Self, Failure> {
        let failed = |e: &dyn std::fmt::Display| Failure::failed(e.to_string());
        let device_id = format!("chaos-{alias}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let credential = mint(
            &Claims::new(&common.app, &fleet.biz, alias, now, 86_400)
                .with_device(device_id.clone()),
            secret.as_bytes(),
        );
        let hello = ClientHello {
            app_id: common.app.clone(),
            device_id,
            sdk_name: "pike-bench-chaos".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            ..ClientHello::default()
        };
        let transport = TcpTransport::new(TcpConfig::default()).map_err(|e| failed(&e))?;
        let dialer = Dialer::new(transport, DialerConfig::default()).map_err(|e| failed(&e))?;
        let proxy = ChannelProxy::new(BoxConnector::new(TunnelConnector::new(
            dialer, endpoints, hello,
        )));
        let client = proxy
            .client(ClientOptions::new(&fleet.biz, alias, credential))
            .map_err(|e| failed(&e))?;
        let client = Arc::new(client);
        client.start();
        tokio::spawn(receive(
            Arc::clone(&client),
            alias.to_owned(),
            Arc::clone(running),
        ));
        Ok(Self {
            alias: alias.to_owned(),
            client,
            _proxy: proxy,
        })
    }
}

/// Prints every reliable message the client hands over; counts the first
/// `Running` into `running`.
async fn receive(client: Arc<PikeClient>, alias: String, running: Arc<Semaphore>) {
    let mut counted = false;
    while let Some(event) = client.next_event().await {
        match event {
            ClientEvent::Running { .. } if !counted => {
                counted = true;
                running.add_permits(1);
            }
            ClientEvent::OnReceive(message) if !message.is_transient() => {
                let payload = String::from_utf8_lossy(&message.payload);
                emit(
                    &json!({"kind": "rx", "alias": alias, "seq": message.seq, "payload": payload}),
                );
            }
            ClientEvent::Gap { expected, got } => {
                emit(&json!({"kind": "gap", "alias": alias, "expected": expected, "got": got}));
            }
            ClientEvent::OnStop { reason } => {
                emit(&json!({"kind": "stopped", "alias": alias, "reason": format!("{reason:?}")}));
            }
            _ => {}
        }
    }
}

/// Sends `count` uplinks one after the other, spread over `load`.
async fn send_uplinks(client: Arc<PikeClient>, alias: String, count: u64, load: Duration) {
    let start = Instant::now();
    // Devices start at different offsets so the sends interleave.
    let offset = Duration::from_millis(fastrand::u64(..1000));
    for j in 0..count {
        let due = start + offset + load.mul_f64(j as f64 / count.max(1) as f64);
        tokio::time::sleep_until(due).await;
        let key = format!("{alias}-{j}");
        let outcome = client.send_with_key(key.clone().into_bytes(), key).await;
        let error = outcome.as_ref().err().map(ToString::to_string);
        emit(&json!({"kind": "up", "alias": alias, "j": j, "ok": outcome.is_ok(), "error": error}));
    }
}

/// Pushes `--downlink` reliable messages at an even rate over `load`.
async fn publish(api: &Api, args: &ChaosArgs, aliases: &[String], load: Duration) {
    let Ok(http) = reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() else {
        emit(&json!({"kind": "error", "message": "no HTTP client"}));
        return;
    };
    let urls: Vec<String> = std::iter::once(api.url.as_str())
        .chain(args.more_api.iter().map(|u| u.trim_end_matches('/')))
        .map(|base| format!("{base}/v1/push"))
        .collect();
    let in_flight = Arc::new(Semaphore::new(api.connections().clamp(1, MAX_IN_FLIGHT)));
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.downlink {
        let due = start + load.mul_f64(n as f64 / args.downlink.max(1) as f64);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let alias = aliases[rng.usize(..aliases.len())].clone();
        let payload = format!("d{n}");
        let body =
            json!({"biz": args.fleet.biz, "alias": alias, "payload": payload, "reliable": true});
        let request = http
            .post(&urls[n as usize % urls.len()])
            .bearer_auth(api.key())
            .header("content-type", "application/json")
            .body(body.to_string());
        tasks.spawn(async move {
            let status = match request.send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            drop(permit);
            emit(&json!({"kind": "push", "alias": alias, "payload": payload, "status": status}));
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// The uplink webhook backend's answers.
struct Backend {
    rng: std::sync::Mutex<fastrand::Rng>,
    fail_permille: u32,
    slow_permille: u32,
    slow: Duration,
    /// Calls so far (the `order` of the `call` lines).
    calls: AtomicU64,
}

async fn call(State(backend): State<Arc<Backend>>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let draw = backend.rng.lock().map_or(1000, |mut rng| rng.u32(..1000));
    let (status, wait) = if draw < backend.fail_permille {
        (StatusCode::SERVICE_UNAVAILABLE, None)
    } else if draw < backend.fail_permille + backend.slow_permille {
        (StatusCode::OK, Some(backend.slow))
    } else {
        (StatusCode::OK, None)
    };
    let order = backend.calls.fetch_add(1, Ordering::Relaxed);
    emit(&json!({
        "kind": "call",
        "order": order,
        "alias": header("pike-alias"),
        "key": header("idempotency-key"),
        "status": status.as_u16(),
        "slow": wait.is_some(),
    }));
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
    status
}
