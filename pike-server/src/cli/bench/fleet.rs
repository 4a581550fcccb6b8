//! The generator's devices: N light client drivers, each logged in as its
//! own alias, opened with bounded concurrency within a deadline, and their
//! event pumps until the run ends.
//!
//! Per device: one `pike_channel` client driver task (the channel machine
//! and its socket) and one task that waits for the login and then pumps the
//! device's events (deliveries to the workload's sink, disconnects and
//! re-logins to the counters). No `PikeClient` or `ChannelProxy` on top:
//! the generator's own cost per device stays small.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pike_channel::proto::tunnel::ClientHello;
use pike_channel::{
    ClientConfig, Delivery, DriverConfig, Event, EventReceiver, LoginParams, TunnelConnector,
    spawn_client,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunnelkit::{Dialer, DialerConfig, TcpConfig, TcpTransport};

use super::report::Progress;
use crate::token::{Claims, mint};

/// Validity of the credentials the generator mints.
const TOKEN_TTL_SECS: u64 = 86_400;

/// What to connect.
#[derive(Debug)]
pub(crate) struct FleetPlan {
    pub(crate) server: SocketAddr,
    pub(crate) app: String,
    pub(crate) biz: String,
    pub(crate) alias_prefix: String,
    pub(crate) first_alias: u64,
    pub(crate) connections: usize,
    pub(crate) token_secret: String,
    pub(crate) sources: Vec<IpAddr>,
    pub(crate) concurrency: usize,
    pub(crate) login_timeout: Duration,
    pub(crate) connect_deadline: Duration,
    /// Plain TCP, or TLS verified against the server's IP address.
    pub(crate) security: tntunnel::ClientSecurity,
}

impl FleetPlan {
    /// The alias of device `index`.
    pub(crate) fn alias(&self, index: usize) -> String {
        format!("{}{}", self.alias_prefix, self.first_alias + index as u64)
    }
}

/// Receives every delivery of every device, with the time it arrived.
pub(crate) type Sink = Arc<dyn Fn(&Delivery, Instant) + Send + Sync>;

/// Live counters of the fleet.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Devices whose first login succeeded.
    pub(crate) connected: AtomicU64,
    /// Devices that failed to connect or log in within their time.
    pub(crate) failed: AtomicU64,
    /// Devices logged in right now.
    pub(crate) online: AtomicU64,
    /// Connections lost after the first login.
    pub(crate) disconnects: AtomicU64,
    /// Logins after a reconnect.
    pub(crate) relogins: AtomicU64,
    /// Deliveries received.
    pub(crate) received: AtomicU64,
}

impl Counters {
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The connect phase, as reported.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ConnectReport {
    pub(crate) requested: usize,
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    pub(crate) seconds: f64,
    /// Devices connected and logged in per second.
    pub(crate) rate: f64,
    pub(crate) sources: usize,
    pub(crate) concurrency: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

/// The connected devices; dropping it (or [`close`](Self::close)) ends
/// every device.
#[derive(Debug)]
pub(crate) struct Fleet {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    counters: Arc<Counters>,
    logged_in: Vec<String>,
}

impl Fleet {
    /// The counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The aliases whose first login succeeded, in device order.
    pub(crate) fn aliases(&self) -> &[String] {
        &self.logged_in
    }

    /// Ends every device (each sends its close frame as its driver stops)
    /// and waits for the pumps, at most `limit`.
    pub(crate) async fn close(mut self, limit: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(limit, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the devices share.
struct Context {
    plan: FleetPlan,
    transport: TcpTransport,
    channel: Arc<ClientConfig>,
    driver: DriverConfig,
    counters: Arc<Counters>,
    sink: Option<Sink>,
    gate: Semaphore,
    /// Ends the connect phase: devices not logged in yet give up.
    give_up: CancellationToken,
    /// Ends the run.
    stop: CancellationToken,
    first_error: Mutex<Option<String>>,
}

impl Context {
    /// Counts a device that did not make it.
    fn fail(&self, message: String) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.note(message);
    }

    /// Keeps the first error message.
    fn note(&self, message: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(message);
        }
    }
}

/// Connects the fleet: every device dials, runs the tunnel handshake and
/// logs in, at most `plan.concurrency` at once; a device gets
/// `plan.login_timeout`, the whole phase `plan.connect_deadline`.
pub(crate) async fn connect(
    plan: FleetPlan,
    sink: Option<Sink>,
    progress: &Progress,
) -> Result<(Fleet, ConnectReport), String> {
    let mut tcp = TcpConfig::default();
    tcp.connect_timeout(Some(plan.login_timeout))
        .source_ips(plan.sources.iter().copied());
    let transport = TcpTransport::new(tcp).map_err(|e| e.to_string())?;
    let n = plan.connections;
    let concurrency = plan.concurrency.max(1);
    let deadline = plan.connect_deadline;
    let sources = plan.sources.len();
    let mut driver = DriverConfig::default();
    // Deliveries are consumed at once; a small queue is plenty.
    driver.event_capacity(64).map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let context = Arc::new(Context {
        plan,
        transport,
        channel: Arc::new(ClientConfig::default()),
        driver,
        counters: counters.clone(),
        sink,
        gate: Semaphore::new(concurrency),
        give_up: CancellationToken::new(),
        stop: stop.clone(),
        first_error: Mutex::new(None),
    });

    let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, bool)>();
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for index in 0..n {
        tasks.spawn(device(context.clone(), index, done_tx.clone()));
    }
    drop(done_tx);

    let mut ok = vec![false; n];
    let mut reported = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let phase_end = started + deadline;
    while reported < n {
        tokio::select! {
            outcome = done.recv() => match outcome {
                Some((index, success)) => {
                    reported += 1;
                    ok[index] = success;
                }
                None => break,
            },
            _ = tick.tick() => progress.update(&format!(
                "connecting: {}/{n} logged in, {} failed, {:.0} s",
                Counters::get(&counters.connected),
                Counters::get(&counters.failed),
                started.elapsed().as_secs_f64(),
            )),
            () = tokio::time::sleep_until(phase_end) => {
                context.give_up.cancel();
                let missing = n - reported;
                counters.failed.fetch_add(missing as u64, Ordering::Relaxed);
                context.note(format!(
                    "{missing} devices not logged in within the connect deadline ({deadline:?})"
                ));
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let connected = Counters::get(&counters.connected);
    progress.done(&format!(
        "connected: {connected}/{n} logged in in {seconds:.2} s ({:.0}/s), {} failed",
        connected as f64 / seconds.max(1e-9),
        Counters::get(&counters.failed)
    ));
    let first_error = context
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let logged_in = ok
        .iter()
        .enumerate()
        .filter(|(_, ok)| **ok)
        .map(|(i, _)| context.plan.alias(i))
        .collect();
    let report = ConnectReport {
        requested: n,
        connected,
        failed: Counters::get(&counters.failed),
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
        sources,
        concurrency,
        first_error,
    };
    Ok((
        Fleet {
            tasks,
            stop,
            counters,
            logged_in,
        },
        report,
    ))
}

/// One device: connect and log in (reported on `done`), then pump events
/// until the run ends.
async fn device(context: Arc<Context>, index: usize, done: mpsc::UnboundedSender<(usize, bool)>) {
    let plan = &context.plan;
    let alias = plan.alias(index);
    let permit = tokio::select! {
        permit = context.gate.acquire() => match permit {
            Ok(permit) => permit,
            Err(_) => return,
        },
        () = context.give_up.cancelled() => return,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let credential = mint(
        &Claims::new(&plan.app, &plan.biz, &alias, now, TOKEN_TTL_SECS),
        plan.token_secret.as_bytes(),
    );
    let hello = ClientHello {
        app_id: plan.app.clone(),
        device_id: format!("bench-{alias}"),
        sdk_name: "pike-bench".into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
        ..ClientHello::default()
    };
    let dialer = match Dialer::new(context.transport.clone(), DialerConfig::default()) {
        Ok(dialer) => dialer,
        Err(e) => {
            context.fail(e.to_string());
            let _ = done.send((index, false));
            return;
        }
    };
    let connector = TunnelConnector::new(dialer, vec![plan.server], hello)
        .security(plan.security.clone(), plan.server.ip().to_string());
    let client = spawn_client(context.channel.clone(), connector, &context.driver);
    let (_stream, mut events) = client.login(LoginParams::new(&plan.biz, &alias, credential));
    client.start();

    let login = tokio::select! {
        result = tokio::time::timeout(plan.login_timeout, first_login(&mut events)) => {
            result.unwrap_or_else(|_| Err(format!("{alias}: no login within {:?}", plan.login_timeout)))
        }
        () = context.give_up.cancelled() => return,
    };
    drop(permit);
    if let Err(message) = login {
        context.fail(message);
        let _ = done.send((index, false));
        return;
    }
    context.counters.connected.fetch_add(1, Ordering::Relaxed);
    context.counters.online.fetch_add(1, Ordering::Relaxed);
    let _ = done.send((index, true));
    drop(done);

    let mut online = true;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = context.stop.cancelled() => break,
        };
        match event {
            Some(Event::Received(delivery)) => {
                context.counters.received.fetch_add(1, Ordering::Relaxed);
                if let Some(sink) = &context.sink {
                    sink(&delivery, Instant::now());
                }
            }
            Some(Event::Disconnected { .. }) if online => {
                online = false;
                context.counters.online.fetch_sub(1, Ordering::Relaxed);
                context.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            Some(Event::LoginOk { .. }) if !online => {
                online = true;
                context.counters.online.fetch_add(1, Ordering::Relaxed);
                context.counters.relogins.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
            None => break,
        }
    }
    if online {
        context.counters.online.fetch_sub(1, Ordering::Relaxed);
    }
    // Dropping the last handle stops the driver: close frame, then the
    // socket.
    drop(client);
}

/// Waits for the first `LoginOk`; a refusal or the end of the channel is an
/// error.
async fn first_login(events: &mut EventReceiver) -> Result<(), String> {
    let mut last_problem = None;
    loop {
        match events.recv().await {
            Some(Event::LoginOk { .. }) => return Ok(()),
            Some(Event::LoginFailed { code, message, .. }) => {
                return Err(format!("login refused ({code:?}): {message}"));
            }
            Some(Event::Disconnected { reason }) => {
                last_problem = Some(format!("disconnected: {reason:?}"));
            }
            Some(Event::Reconnecting { attempt, .. }) => {
                if attempt >= 3 {
                    return Err(last_problem
                        .unwrap_or_else(|| format!("cannot connect ({attempt} attempts)")));
                }
            }
            Some(Event::LoginRetry { code, message, .. }) => {
                last_problem = Some(format!("login retried ({code:?}): {message}"));
            }
            Some(Event::Stopped) | None => {
                return Err(last_problem.unwrap_or_else(|| "the channel stopped".to_owned()));
            }
            Some(_) => {}
        }
    }
}
