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
    ClientConfig, ClientHandle, Delivery, DriverConfig, Event, EventReceiver, LoginParams, StreamId,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dial::Dial;
use super::report::Progress;
use crate::token::{Claims, mint};

/// Validity of the credentials the generator mints.
const TOKEN_TTL_SECS: u64 = 86_400;

/// What to connect.
#[derive(Debug)]
pub(crate) struct FleetPlan {
    /// The gateways, never empty: device `i` dials `servers[i mod len]`
    /// ([`FleetPlan::server`]).
    pub(crate) servers: Vec<SocketAddr>,
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
    /// With `G` > 0 every device binds tag `g<k>` right after its login,
    /// `k` = its alias number / `G` (so several generator processes with
    /// their own alias ranges agree on the groups).
    pub(crate) group_size: u64,
    /// The transports (TCP, TLS or QUIC).
    pub(crate) dial: Dial,
    /// The channel settings of every device (send window, backoff).
    pub(crate) channel: ClientConfig,
}

impl FleetPlan {
    /// The alias of device `index`.
    pub(crate) fn alias(&self, index: usize) -> String {
        format!("{}{}", self.alias_prefix, self.first_alias + index as u64)
    }

    /// The gateway device `index` dials: the servers in turn.
    pub(crate) fn server(&self, index: usize) -> Option<SocketAddr> {
        server_of(&self.servers, index)
    }

    /// The group of device `index` (with a group size).
    pub(crate) fn group(&self, index: usize) -> Option<u64> {
        (self.group_size > 0).then(|| (self.first_alias + index as u64) / self.group_size)
    }
}

/// The server of device `index` among `servers`, in turn (`None` for no
/// servers).
pub(crate) fn server_of(servers: &[SocketAddr], index: usize) -> Option<SocketAddr> {
    servers.get(index.checked_rem(servers.len())?).copied()
}

/// The tag of group `k`.
pub(crate) fn group_tag(k: u64) -> String {
    format!("g{k}")
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
    /// Devices whose login was refused for good after the first login, or
    /// whose channel stopped: they never come back.
    pub(crate) gave_up: AtomicU64,
    /// Uplink messages acked by the backend.
    pub(crate) send_ok: AtomicU64,
    /// Uplink messages that failed for good.
    pub(crate) send_failed: AtomicU64,
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
    /// `tcp`, `tls` or `quic`.
    pub(crate) transport: &'static str,
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
    handles: Vec<(ClientHandle, StreamId)>,
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

    /// The client handle and login stream of every device whose first
    /// login succeeded, in device order (for uplink).
    pub(crate) fn handles(&self) -> &[(ClientHandle, StreamId)] {
        &self.handles
    }

    /// Ends every device (each sends its close frame as its driver stops)
    /// and waits for the pumps, at most `limit`.
    pub(crate) async fn close(mut self, limit: Duration) {
        self.handles.clear();
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
    let n = plan.connections;
    let concurrency = plan.concurrency.max(1);
    let deadline = plan.connect_deadline;
    let sources = plan.sources.len();
    let mut driver = DriverConfig::default();
    // Deliveries are consumed at once; a small queue is plenty.
    driver.event_capacity(64).map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let channel = Arc::new(plan.channel.clone());
    let context = Arc::new(Context {
        plan,
        channel,
        driver,
        counters: counters.clone(),
        sink,
        gate: Semaphore::new(concurrency),
        give_up: CancellationToken::new(),
        stop: stop.clone(),
        first_error: Mutex::new(None),
    });

    let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, Option<Login>)>();
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for index in 0..n {
        tasks.spawn(device(context.clone(), index, done_tx.clone()));
    }
    drop(done_tx);

    let mut ok: Vec<Option<Login>> = (0..n).map(|_| None).collect();
    let mut reported = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let phase_end = started + deadline;
    while reported < n {
        tokio::select! {
            outcome = done.recv() => match outcome {
                Some((index, login)) => {
                    reported += 1;
                    ok[index] = login;
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
        .filter(|(_, ok)| ok.is_some())
        .map(|(i, _)| context.plan.alias(i))
        .collect();
    let handles = ok.into_iter().flatten().collect();
    let report = ConnectReport {
        requested: n,
        connected,
        failed: Counters::get(&counters.failed),
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
        sources,
        concurrency,
        transport: context.plan.dial.name(),
        first_error,
    };
    Ok((
        Fleet {
            tasks,
            stop,
            counters,
            logged_in,
            handles,
        },
        report,
    ))
}

/// A logged-in device: its client handle and login stream.
type Login = (ClientHandle, StreamId);

/// One device: connect and log in (reported on `done`), then pump events
/// until the run ends.
async fn device(
    context: Arc<Context>,
    index: usize,
    done: mpsc::UnboundedSender<(usize, Option<Login>)>,
) {
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
    let spawned = plan
        .server(index)
        .ok_or_else(|| "no server to dial".to_owned())
        .and_then(|server| {
            plan.dial.spawn(
                index,
                server,
                hello,
                context.channel.clone(),
                &context.driver,
            )
        });
    let client = match spawned {
        Ok(client) => client,
        Err(message) => {
            context.fail(message);
            let _ = done.send((index, None));
            return;
        }
    };
    let (stream, mut events) = client.login(LoginParams::new(&plan.biz, &alias, credential));
    client.start();

    let login = async {
        first_login(&mut events).await?;
        match plan.group(index) {
            Some(k) => bind_tag(&client, stream, &mut events, group_tag(k)).await,
            None => Ok(()),
        }
    };
    let login = tokio::select! {
        result = tokio::time::timeout(plan.login_timeout, login) => {
            result.unwrap_or_else(|_| Err(format!("{alias}: no login within {:?}", plan.login_timeout)))
        }
        () = context.give_up.cancelled() => return,
    };
    drop(permit);
    if let Err(message) = login {
        context.fail(message);
        let _ = done.send((index, None));
        return;
    }
    context.counters.connected.fetch_add(1, Ordering::Relaxed);
    context.counters.online.fetch_add(1, Ordering::Relaxed);
    let _ = done.send((index, Some((client.clone(), stream))));
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
            Some(Event::SendSuccess { .. }) => {
                context.counters.send_ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(Event::SendFailure { .. }) => {
                context.counters.send_failed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Event::LoginFailed { .. } | Event::Stopped) => {
                context.counters.gave_up.fetch_add(1, Ordering::Relaxed);
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

/// Binds `tag` to the device's alias and waits for the answer.
async fn bind_tag(
    client: &ClientHandle,
    stream: StreamId,
    events: &mut EventReceiver,
    tag: String,
) -> Result<(), String> {
    let request = client
        .update_tags(stream, vec![tag], Vec::new())
        .map_err(|e| e.to_string())?;
    loop {
        match events.recv().await {
            Some(Event::TagsResult {
                request_id,
                code,
                message,
                ..
            }) if request_id == request => {
                return if code == proto::tunnel::ErrorCode::Unspecified {
                    Ok(())
                } else {
                    Err(format!("tags refused ({code:?}): {message}"))
                };
            }
            Some(Event::Stopped) | None => return Err("the channel stopped".to_owned()),
            Some(_) => {}
        }
    }
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
