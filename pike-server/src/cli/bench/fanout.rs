//! `pike bench fanout`: N lean members join one live room (push mode) and
//! one publisher publishes into it through the HTTP API at each rate of
//! the sweep (S2); `--churn P` makes P % of the members reconnect and
//! rejoin every second (S6), `--slow P` makes P % stop reading right after
//! joining (S7).
//!
//! Expected deliveries of a step: messages sent in its window × the
//! healthy members, i.e. members joined when the window starts, not slow,
//! and not due to churn before the drain ends (see [`ChurnPlan`]); only
//! those members record deliveries and latencies for the step. A healthy
//! member the gateway disconnects is still counted (its losses show).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunnelkit::{TcpConfig, TcpTransport};

use super::FleetArgs;
use super::api::{Api, ApiArgs};
use super::board::Board;
use super::churn::ChurnPlan;
use super::fleet::{ConnectReport, FleetPlan};
use super::http_pool::RequestTemplate;
use super::idle::plan;
use super::report::{ConnectedLine, Progress, Table, json_line, ms};
use super::room_member::{Framed, Incoming, PING_EVERY, RoomLogin, incoming, ping, pong};
use super::sweep::{self, Message, StepLine, SweepArgs, SweepPlan, Tally, Window, Workload};
use crate::cli::{Common, Failure};

/// Members due to churn this long before a window are left out of its
/// step too (their rejoin may still be under way).
const CHURN_MARGIN: Duration = Duration::from_secs(1);
/// Wait between reconnect attempts after a failure or a lost connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Arguments of `pike bench fanout`.
#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    sweep: SweepArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// The room (letters, digits and `-._~:`).
    #[arg(long, default_value = "hall")]
    room: String,
    /// Publish reliable room messages instead of droppable ones.
    #[arg(long)]
    reliable: bool,
    /// Percent of the members that disconnect and rejoin every second.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Percent of the members that stop reading right after joining.
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
}

/// One member, as the sweep sees it.
#[derive(Debug, Default)]
struct Slot {
    /// The step this member is left out of (0: none).
    excluded_step: AtomicU32,
    /// Joined right now.
    joined: AtomicBool,
    /// Stops reading after joining.
    slow: bool,
    /// Disconnect and rejoin now.
    churn: Notify,
}

/// Members' events since the current window started.
#[derive(Debug)]
struct StepCounters {
    reconnects: u64,
    reconnect_failed: u64,
    /// Connections of healthy members the gateway closed.
    lost: u64,
    /// Churn events skipped because the member was not joined.
    churn_skipped: u64,
    /// Reconnect times (drop to join result), microseconds.
    reconnect_us: Histogram<u64>,
}

/// What the members share.
struct Members {
    login: RoomLogin,
    plan: FleetPlan,
    board: Arc<Board>,
    slots: Vec<Slot>,
    counters: Mutex<StepCounters>,
    /// Messages received by every member, any step.
    received: AtomicU64,
    /// Messages members missed (shed by the room for them).
    missed: AtomicU64,
    malformed: AtomicU64,
    stop: CancellationToken,
}

impl Members {
    fn counters(&self) -> std::sync::MutexGuard<'_, StepCounters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a member's connection ended.
enum End {
    /// The run is over.
    Stopped,
    /// Churned on purpose.
    Churned,
    /// The connection failed or the gateway closed it.
    Lost,
}

pub(crate) async fn run(common: &Common, args: FanoutArgs) -> Result<(), Failure> {
    check_percent("--churn", args.churn)?;
    check_percent("--slow", args.slow)?;
    check_room(&args.room)?;
    let sweep_plan = SweepPlan::new(&args.sweep)?;
    let fleet_plan = plan(common, &args.fleet)?;
    let api = Api::new(common, &args.api)?;
    let progress = Progress::new(args.fleet.quiet);
    let json = args.fleet.json;

    let mut tcp = TcpConfig::default();
    tcp.connect_timeout(Some(fleet_plan.login_timeout))
        .source_ips(fleet_plan.sources.iter().copied());
    let transport = TcpTransport::new(tcp).map_err(|e| Failure::failed(e.to_string()))?;
    let n = fleet_plan.connections;
    let slow = spread(n, args.slow);
    let board = Arc::new(Board::new(Instant::now()).map_err(|e| Failure::failed(e.to_string()))?);
    let members = Arc::new(Members {
        login: RoomLogin {
            transport,
            servers: fleet_plan.servers.clone(),
            app: fleet_plan.app.clone(),
            biz: fleet_plan.biz.clone(),
            room: args.room.clone(),
            token_secret: fleet_plan.token_secret.clone(),
            timeout: fleet_plan.login_timeout,
        },
        slots: (0..n)
            .map(|i| Slot {
                slow: slow.binary_search(&i).is_ok(),
                ..Slot::default()
            })
            .collect(),
        plan: fleet_plan,
        board: board.clone(),
        counters: Mutex::new(StepCounters::new()?),
        received: AtomicU64::new(0),
        missed: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    // The members end with the run, whatever happens.
    let _stop = members.stop.clone().drop_guard();

    let (mut tasks, connect) = connect(&members, &progress).await;
    if json {
        json_line("connected", &ConnectedLine::new(&connect));
    }
    if connect.connected == 0 {
        return Err(Failure::failed(format!(
            "no member joined: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }

    let healthy_order: Vec<usize> = (0..n)
        .filter(|&i| {
            let slot = &members.slots[i];
            !slot.slow && slot.joined.load(Ordering::Relaxed)
        })
        .collect();
    let churn = ChurnPlan::new(Instant::now(), args.churn, n, healthy_order);
    if let Some(plan) = &churn {
        tasks.spawn(churn_loop(members.clone(), plan.clone()));
    }
    let slow_members = members
        .slots
        .iter()
        .filter(|s| s.slow && s.joined.load(Ordering::Relaxed))
        .count() as u64;
    let metrics = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| Failure::failed(format!("HTTP client: {e}")))?;
    let metrics_url = format!("{}/metrics", api.url);
    let slow_closed_at_start = slow_consumer_closed(&metrics, &metrics_url).await;

    let workload = Fanout {
        members: members.clone(),
        template: api.template(&format!("/v1/rooms/{}/publish", args.room)),
        class: if args.reliable {
            "reliable"
        } else {
            "droppable"
        },
        churn,
        healthy: AtomicU64::new(0),
        excluded: AtomicU64::new(0),
        missed_at_start: AtomicU64::new(0),
        slow_members,
        metrics,
        metrics_url,
        slow_closed_at_start,
    };
    let mut pool = api.pool();
    let steps = sweep::run(&sweep_plan, &board, &mut pool, &workload, &progress, json).await;

    members.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    let report = FanoutReport {
        workload: "fanout",
        room: args.room,
        class: workload.class,
        churn_percent: args.churn,
        churn_per_sec: workload.churn.as_ref().map_or(0.0, ChurnPlan::per_sec),
        slow_percent: args.slow,
        slow_members,
        http_connections: api.connections(),
        payload_bytes: sweep_plan.size,
        received_total: members.received.load(Ordering::Relaxed),
        malformed_batches: members.malformed.load(Ordering::Relaxed),
        connect,
        steps,
    };
    if json {
        json_line("report", &report);
    } else {
        print!("{}", table(&report).render("pike bench fanout"));
    }
    Ok(())
}

/// The `report` line.
#[derive(Debug, Serialize)]
struct FanoutReport {
    workload: &'static str,
    room: String,
    class: &'static str,
    churn_percent: f64,
    churn_per_sec: f64,
    slow_percent: f64,
    slow_members: u64,
    http_connections: usize,
    payload_bytes: usize,
    received_total: u64,
    malformed_batches: u64,
    connect: ConnectReport,
    steps: Vec<StepLine>,
}

fn table(report: &FanoutReport) -> Table {
    let mut table = Table::default();
    super::idle::connect_rows(&mut table, &report.connect);
    table
        .row(
            "room / class",
            format!("{} / {}", report.room, report.class),
        )
        .row(
            "churn",
            format!(
                "{} %/s ({:.1}/s)",
                report.churn_percent, report.churn_per_sec
            ),
        )
        .row("slow members", report.slow_members);
    for step in &report.steps {
        step_rows(&mut table, step);
    }
    table
}

/// A step's rows of a summary table.
pub(super) fn step_rows(table: &mut Table, step: &StepLine) {
    table.row(
        &format!("rate {}", step.rate),
        format!(
            "{}/{} delivered ({:.2} %), {:.0}/s, p50 {}, p99 {}, max {}, unsent {}, errors {}",
            step.delivered,
            step.expected,
            step.delivered_pct,
            step.delivered_per_sec,
            ms((step.p50_ms * 1000.0) as u64),
            ms((step.p99_ms * 1000.0) as u64),
            ms((step.max_ms * 1000.0) as u64),
            step.tally.unsent,
            step.tally.send_errors
        ),
    );
}

/// The fan-out workload's side of the sweep.
struct Fanout {
    members: Arc<Members>,
    template: RequestTemplate,
    class: &'static str,
    churn: Option<ChurnPlan>,
    /// Healthy members of the current step.
    healthy: AtomicU64,
    /// Members left out of the current step (churn, not joined).
    excluded: AtomicU64,
    missed_at_start: AtomicU64,
    slow_members: u64,
    metrics: reqwest::Client,
    metrics_url: String,
    slow_closed_at_start: Option<u64>,
}

impl Workload for Fanout {
    fn message(&self, _k: u64, payload: &str) -> Message {
        Message {
            request: self.template.with_body(&format!(
                r#"{{"payload":"{payload}","class":"{}"}}"#,
                self.class
            )),
            weight: 1,
        }
    }

    fn window_starts(&self, window: &Window) {
        let slots = &self.members.slots;
        if let Some(plan) = &self.churn {
            let from = window
                .start
                .checked_sub(CHURN_MARGIN)
                .unwrap_or(window.start);
            for m in plan.members_between(from, window.drain_end) {
                slots[m].excluded_step.store(window.step, Ordering::Relaxed);
            }
        }
        let (mut healthy, mut excluded) = (0, 0);
        for slot in slots.iter().filter(|s| !s.slow) {
            if !slot.joined.load(Ordering::Relaxed) {
                slot.excluded_step.store(window.step, Ordering::Relaxed);
            }
            if slot.excluded_step.load(Ordering::Relaxed) == window.step {
                excluded += 1;
            } else {
                healthy += 1;
            }
        }
        self.healthy.store(healthy, Ordering::Relaxed);
        self.excluded.store(excluded, Ordering::Relaxed);
        self.missed_at_start.store(
            self.members.missed.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.members.counters().reset();
    }

    async fn step_done(&self, _window: &Window, tally: &Tally) -> (u64, Map<String, Value>) {
        let healthy = self.healthy.load(Ordering::Relaxed);
        let mut extras = Map::new();
        extras.insert("members_healthy".into(), healthy.into());
        extras.insert(
            "members_excluded".into(),
            self.excluded.load(Ordering::Relaxed).into(),
        );
        extras.insert(
            "missed".into(),
            (self.members.missed.load(Ordering::Relaxed)
                - self.missed_at_start.load(Ordering::Relaxed))
            .into(),
        );
        {
            let counters = self.members.counters();
            extras.insert("lost".into(), counters.lost.into());
            if self.churn.is_some() {
                let ms = |q: f64| counters.reconnect_us.value_at_quantile(q) as f64 / 1000.0;
                extras.insert("reconnects".into(), counters.reconnects.into());
                extras.insert("reconnect_failed".into(), counters.reconnect_failed.into());
                extras.insert("reconnect_p50_ms".into(), json!(ms(0.5)));
                extras.insert("reconnect_p99_ms".into(), json!(ms(0.99)));
                extras.insert("churn_skipped".into(), counters.churn_skipped.into());
            }
        }
        if self.slow_members > 0 {
            let now = slow_consumer_closed(&self.metrics, &self.metrics_url).await;
            let closed = match (self.slow_closed_at_start, now) {
                (Some(a), Some(b)) => json!(b.saturating_sub(a)),
                _ => Value::Null,
            };
            extras.insert("slow_members".into(), self.slow_members.into());
            extras.insert("slow_disconnected".into(), closed);
        }
        (tally.sent * healthy, extras)
    }
}

impl StepCounters {
    fn new() -> Result<Self, Failure> {
        Ok(Self {
            reconnects: 0,
            reconnect_failed: 0,
            lost: 0,
            churn_skipped: 0,
            reconnect_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                .map_err(|e| Failure::failed(e.to_string()))?,
        })
    }

    fn reset(&mut self) {
        self.reconnects = 0;
        self.reconnect_failed = 0;
        self.lost = 0;
        self.churn_skipped = 0;
        self.reconnect_us.reset();
    }
}

/// Joins every member, at most `concurrency` at once, within the connect
/// deadline; returns the member tasks (they run until the run stops).
async fn connect(members: &Arc<Members>, progress: &Progress) -> (JoinSet<()>, ConnectReport) {
    let plan = &members.plan;
    let n = plan.connections;
    let concurrency = plan.concurrency.max(1);
    let gate = Arc::new(Semaphore::new(concurrency));
    let give_up = CancellationToken::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<Result<(), String>>();
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for index in 0..n {
        tasks.spawn(member(
            members.clone(),
            index,
            gate.clone(),
            give_up.clone(),
            done_tx.clone(),
        ));
    }
    drop(done_tx);
    let (mut connected, mut failed, mut first_error) = (0u64, 0u64, None);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let phase_end = started + plan.connect_deadline;
    while connected + failed < n as u64 {
        tokio::select! {
            outcome = done.recv() => match outcome {
                Some(Ok(())) => connected += 1,
                Some(Err(message)) => {
                    failed += 1;
                    first_error.get_or_insert(message);
                }
                None => break,
            },
            _ = tick.tick() => progress.update(&format!(
                "joining: {connected}/{n} members, {failed} failed, {:.0} s",
                started.elapsed().as_secs_f64()
            )),
            () = tokio::time::sleep_until(phase_end) => {
                give_up.cancel();
                let missing = n as u64 - connected - failed;
                failed += missing;
                first_error.get_or_insert_with(|| format!(
                    "{missing} members not joined within the connect deadline ({:?})",
                    plan.connect_deadline
                ));
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.done(&format!(
        "joined: {connected}/{n} members in {seconds:.2} s ({:.0}/s), {failed} failed",
        connected as f64 / seconds.max(1e-9)
    ));
    let report = ConnectReport {
        requested: n,
        connected,
        failed,
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
        sources: plan.sources.len(),
        concurrency,
        first_error,
        transport: "tcp",
    };
    (tasks, report)
}

/// One member: joins (reported on `done`), then reads (or, slow, holds)
/// until the run stops; rejoins after a churn or a lost connection.
async fn member(
    members: Arc<Members>,
    index: usize,
    gate: Arc<Semaphore>,
    give_up: CancellationToken,
    done: mpsc::UnboundedSender<Result<(), String>>,
) {
    let alias = members.plan.alias(index);
    let slot = &members.slots[index];
    let first = {
        let Ok(_permit) = (tokio::select! {
            permit = gate.acquire() => permit,
            () = give_up.cancelled() => return,
        }) else {
            return;
        };
        tokio::select! {
            result = members.login.join(index, &alias) => result,
            () = give_up.cancelled() => return,
        }
    };
    let mut framed = match first {
        Ok((framed, _tail)) => framed,
        Err(message) => {
            let _ = done.send(Err(format!("{alias}: {message}")));
            return;
        }
    };
    slot.joined.store(true, Ordering::Relaxed);
    let _ = done.send(Ok(()));
    drop(done);
    if slot.slow {
        hold(&members, index, framed).await;
        slot.joined.store(false, Ordering::Relaxed);
        return;
    }
    loop {
        let end = read(&members, index, &mut framed).await;
        slot.joined.store(false, Ordering::Relaxed);
        let lost_at = Instant::now();
        drop(framed);
        match end {
            End::Stopped => return,
            End::Churned => {}
            End::Lost => {
                members.counters().lost += 1;
                if pause(&members.stop).await {
                    return;
                }
            }
        }
        framed = loop {
            let result = tokio::select! {
                result = members.login.join(index, &alias) => result,
                () = members.stop.cancelled() => return,
            };
            match result {
                Ok((framed, _tail)) => {
                    let us = u64::try_from(lost_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let mut counters = members.counters();
                    counters.reconnects += 1;
                    counters.reconnect_us.saturating_record(us.max(1));
                    break framed;
                }
                Err(_) => {
                    members.counters().reconnect_failed += 1;
                    if pause(&members.stop).await {
                        return;
                    }
                }
            }
        };
        slot.joined.store(true, Ordering::Relaxed);
    }
}

/// Waits [`RECONNECT_PAUSE`]; `true` when the run stopped meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(RECONNECT_PAUSE) => false,
        () = stop.cancelled() => true,
    }
}

/// A member's own pings, the first at a time spread by its index.
fn ping_timer(index: usize) -> tokio::time::Interval {
    let spread = PING_EVERY.mul_f64((index % 1000) as f64 / 1000.0);
    let mut timer = tokio::time::interval_at(Instant::now() + PING_EVERY + spread, PING_EVERY);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Reads room batches until the run stops, a churn, or the connection
/// ends.
async fn read(members: &Members, index: usize, framed: &mut Framed) -> End {
    let slot = &members.slots[index];
    let mut stamps = Vec::with_capacity(128);
    let mut pings = ping_timer(index);
    let mut nonce = 0u64;
    loop {
        let frame = tokio::select! {
            () = members.stop.cancelled() => return End::Stopped,
            () = slot.churn.notified() => return End::Churned,
            _ = pings.tick() => {
                nonce += 1;
                if framed.send(ping(nonce)).await.is_err() {
                    return End::Lost;
                }
                continue;
            }
            frame = framed.next() => frame,
        };
        let Some(Ok(frame)) = frame else {
            return if members.stop.is_cancelled() {
                End::Stopped
            } else {
                End::Lost
            };
        };
        match incoming(&frame, &mut stamps) {
            Incoming::Batch(scanned) => {
                members
                    .received
                    .fetch_add(scanned.messages, Ordering::Relaxed);
                if scanned.missed > 0 {
                    members.missed.fetch_add(scanned.missed, Ordering::Relaxed);
                }
                if !stamps.is_empty() {
                    let now = members.board.ns_at(Instant::now());
                    let excluded = slot.excluded_step.load(Ordering::Relaxed);
                    members.board.record_unless(now, &stamps, excluded);
                    stamps.clear();
                }
            }
            Incoming::Ping(nonce) => {
                if framed.send(pong(nonce)).await.is_err() {
                    return End::Lost;
                }
            }
            Incoming::Malformed => {
                members.malformed.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Other => {}
        }
    }
}

/// A slow member: never reads again, pings on its own (so the gateway's
/// idle timer does not close it: only its slow-consumer rule may) until
/// the run stops.
async fn hold(members: &Members, index: usize, mut framed: Framed) {
    let mut pings = ping_timer(index);
    let mut nonce = 0u64;
    let mut writable = true;
    loop {
        tokio::select! {
            () = members.stop.cancelled() => return,
            _ = pings.tick(), if writable => {
                nonce += 1;
                // A write error means the gateway closed it: keep the
                // socket (never read) until the run stops.
                writable = framed.send(ping(nonce)).await.is_ok();
            }
        }
    }
}

/// Churns members on schedule until the run stops.
async fn churn_loop(members: Arc<Members>, plan: ChurnPlan) {
    for j in 0.. {
        let (at, m) = plan.event(j);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = members.stop.cancelled() => return,
        }
        let slot = &members.slots[m];
        if slot.joined.load(Ordering::Relaxed) {
            slot.churn.notify_one();
        } else {
            members.counters().churn_skipped += 1;
        }
    }
}

/// `percent` of `n` members, spread evenly over the indices (sorted).
fn spread(n: usize, percent: f64) -> Vec<usize> {
    let count = ((n as f64 * percent / 100.0).round() as usize).min(n);
    (0..count).map(|i| i * n / count).collect()
}

/// The gateway's `pike_slow_consumer_closed_total` (`None` when the
/// metrics cannot be read).
async fn slow_consumer_closed(client: &reqwest::Client, url: &str) -> Option<u64> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    Some(counter_total(&text, "pike_slow_consumer_closed_total"))
}

/// The sum of a Prometheus counter over its label sets (0 when absent).
fn counter_total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labels) = rest.strip_prefix('{') {
                labels.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .sum()
}

/// A percent flag must be in `[0, 100]`.
fn check_percent(flag: &str, value: f64) -> Result<(), Failure> {
    if (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "{flag} must be a percent in [0, 100], got {value}"
        )))
    }
}

/// The room name goes into the URL as is: only unreserved characters.
fn check_room(room: &str) -> Result<(), Failure> {
    let ok = !room.is_empty()
        && room.len() <= 128
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--room must be 1 to 128 of A-Z a-z 0-9 - . _ ~ :, got {room:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_members_are_spread() {
        assert_eq!(spread(100, 5.0), vec![0, 20, 40, 60, 80]);
        assert_eq!(spread(10, 0.0), Vec::<usize>::new());
        assert_eq!(spread(3, 100.0), vec![0, 1, 2]);
        assert_eq!(spread(9000, 1.0).len(), 90);
        // Sorted, distinct, in range.
        let s = spread(997, 13.0);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(s.iter().all(|&i| i < 997));
    }

    #[test]
    fn counters_are_summed_over_labels() {
        let text = "# HELP pike_slow_consumer_closed_total x\n\
                    # TYPE pike_slow_consumer_closed_total counter\n\
                    pike_slow_consumer_closed_total 3\n\
                    pike_slow_consumer_closed_total{app=\"b\"} 4\n\
                    pike_slow_consumer_closed_total_other 100\n\
                    other 9\n";
        assert_eq!(counter_total(text, "pike_slow_consumer_closed_total"), 7);
        assert_eq!(counter_total("", "pike_slow_consumer_closed_total"), 0);
    }

    #[test]
    fn flags_are_checked() {
        assert!(check_percent("--slow", 1.5).is_ok());
        assert!(check_percent("--slow", -1.0).is_err());
        assert!(check_percent("--slow", 101.0).is_err());
        assert!(check_percent("--slow", f64::NAN).is_err());
        assert!(check_room("hall").is_ok());
        assert!(check_room("live:42").is_ok());
        assert!(check_room("a b").is_err());
        assert!(check_room("a/b").is_err());
        assert!(check_room("").is_err());
    }
}
