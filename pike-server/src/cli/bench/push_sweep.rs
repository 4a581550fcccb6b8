//! The rate sweeps that push through `POST /v1/push` to logged-in devices
//! (`unicast` and `group`): the fleet logs in (binding group tags for
//! `group`), every delivery goes to the [`Board`], and message `k` goes to
//! target `k mod targets` (an alias, or a group's tag), transient unless
//! `--reliable`.
//!
//! With `--batch N` above 1 the publisher sends through
//! `POST /v1/push/batch` instead: at each wake-up it takes the messages
//! already due (at most N, never mixing warm-up and window messages), each
//! still stamped with its own scheduled time, and sends them as one
//! request (still open loop: the schedule never waits for answers). A
//! message counts as sent when its batch was answered 200 with a receipt
//! for its item; a failed item, a refused or unanswered batch counts as a
//! send error per message. The `step` lines are the same as without
//! batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proto::api;
use proto::prost::Message as _;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::api::Api;
use super::board::Board;
use super::cpu::process_cpu_secs;
use super::fleet::{self, ConnectReport, FleetPlan, Sink, group_tag};
use super::http_pool::{Answer, HttpPool, RequestTemplate};
use super::push_socket::{SocketLease, SocketPublisher};
use super::receipt_sink::ReceiptCounts;
use super::report::{ConnectedLine, Progress, Table, json_line};
use super::stamp::MAX_STEP;
use super::sweep::{
    self, Message, StepLine, StepSchedule, SweepPlan, Tally, Window, Workload, json_string,
};
use crate::cli::Failure;

/// Longest wait for one batch request (as for one push).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the drain a step waits for unanswered batches.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Where the pushes go.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Addressing {
    /// Each message to one alias, round robin over the logged-in aliases.
    Alias,
    /// Each message to one group's tag, round robin over the groups with a
    /// logged-in device.
    Group,
}

/// One push target: the JSON target field and the deliveries it makes.
#[derive(Clone, Debug, Eq, PartialEq)]
struct Target {
    /// `"alias":"u1"` or `"tag":"g0"`.
    field: String,
    /// The same, for the push connection.
    proto: api::push::Target,
    /// Logged-in devices it reaches.
    devices: u64,
}

/// The targets of `aliases` (the logged-in ones, in device order): one
/// per alias, or one per group of `group_size` alias numbers (aliases are
/// `prefix<number>`).
fn targets(
    aliases: &[String],
    addressing: Addressing,
    prefix: &str,
    group_size: u64,
) -> Vec<Target> {
    match addressing {
        Addressing::Alias => aliases
            .iter()
            .map(|alias| Target {
                field: format!(r#""alias":{}"#, json_string(alias)),
                proto: api::push::Target::Alias(alias.clone()),
                devices: 1,
            })
            .collect(),
        Addressing::Group => {
            let mut groups = BTreeMap::<u64, u64>::new();
            for alias in aliases {
                let number = alias
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(number) = number
                    && group_size > 0
                {
                    *groups.entry(number / group_size).or_default() += 1;
                }
            }
            groups
                .into_iter()
                .map(|(k, devices)| Target {
                    field: format!(r#""tag":{}"#, json_string(&group_tag(k))),
                    proto: api::push::Target::Tag(group_tag(k)),
                    devices,
                })
                .collect()
        }
    }
}

/// The push workload's side of the sweep.
struct Pushes {
    template: RequestTemplate,
    /// `{"biz":…,"reliable":…,` shared by every body.
    prefix: String,
    targets: Vec<Target>,
    /// The business and delivery, for the push connection.
    biz: String,
    reliable: bool,
}

impl Pushes {
    /// The target of message `k`.
    fn target(&self, k: u64) -> Option<&Target> {
        let index = usize::try_from(k % self.targets.len().max(1) as u64).unwrap_or(0);
        self.targets.get(index)
    }

    /// The protobuf push of message `k` with its stamped `payload`, and the
    /// deliveries it should make.
    fn push_proto(&self, k: u64, payload: &str) -> Option<(api::Push, u64)> {
        let target = self.target(k)?;
        let push = api::Push {
            biz: self.biz.clone(),
            target: Some(target.proto.clone()),
            payload: payload.as_bytes().to_vec().into(),
            transient: !self.reliable,
            ..api::Push::default()
        };
        Some((push, target.devices))
    }

    /// Appends the push body of message `k` with its stamped `payload` to
    /// `body`; returns the deliveries it should make.
    fn push_body(&self, k: u64, payload: &str, body: &mut String) -> u64 {
        let Some(target) = self.target(k) else {
            return 0;
        };
        body.push_str(&self.prefix);
        body.push_str(&target.field);
        body.push_str(r#","payload":""#);
        body.push_str(payload);
        body.push_str(r#""}"#);
        target.devices
    }
}

impl Workload for Pushes {
    fn message(&self, k: u64, payload: &str) -> Message {
        let mut body = String::with_capacity(self.prefix.len() + payload.len() + 32);
        let weight = self.push_body(k, payload, &mut body);
        Message {
            request: self.template.with_body(&body),
            weight,
        }
    }

    fn window_starts(&self, _window: &Window) {}

    async fn step_done(&self, _window: &Window, tally: &Tally) -> (u64, Map<String, Value>) {
        (tally.weight, Map::new())
    }
}

/// The `report` line.
#[derive(Debug, Serialize)]
struct PushReport {
    workload: &'static str,
    reliable: bool,
    targets: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_size: Option<u64>,
    http_connections: usize,
    /// Pushes per request (1: `POST /v1/push`; more: `POST /v1/push/batch`).
    batch: usize,
    /// Batches went over the push connection (`GET /v1/push/ws`).
    push_socket: bool,
    /// Every push asked for receipts.
    receipt: bool,
    /// Receipts the receipt sink got (`--receipt-sink`), warm-up and
    /// drain included.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts_received: Option<u64>,
    /// Webhook requests that carried them.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt_requests: Option<u64>,
    payload_bytes: usize,
    connect: ConnectReport,
    disconnects: u64,
    relogins: u64,
    steps: Vec<StepLine>,
}

/// `{"biz":…,"reliable":…,` (and `"receipt":true,`) that starts every
/// push body.
fn body_prefix(biz: &str, reliable: bool, receipt: bool) -> String {
    format!(
        r#"{{"biz":{},"reliable":{reliable},{}"#,
        json_string(biz),
        if receipt { r#""receipt":true,"# } else { "" }
    )
}

/// What a push sweep needs besides the fleet.
pub(crate) struct PushSweep<'a> {
    pub(crate) workload: &'static str,
    pub(crate) addressing: Addressing,
    pub(crate) reliable: bool,
    /// Pushes per request: 1 for `POST /v1/push`, more for
    /// `POST /v1/push/batch` requests of at most this many.
    pub(crate) batch: usize,
    /// Batches over one push connection (`GET /v1/push/ws`, up to the
    /// API's connection count in flight) instead of HTTP requests.
    pub(crate) push_socket: bool,
    /// Every push asks for receipts (`"receipt": true`).
    pub(crate) receipt: bool,
    /// The receipt webhook sink this process serves, if any.
    pub(crate) receipts: Option<&'a ReceiptCounts>,
    pub(crate) api: &'a Api,
    pub(crate) sweep: &'a SweepPlan,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

/// Connects the fleet, runs the sweep, prints the report.
pub(crate) async fn run(plan: FleetPlan, push: PushSweep<'_>) -> Result<(), Failure> {
    let progress = Progress::new(push.quiet);
    let board = Arc::new(Board::new(Instant::now()).map_err(|e| Failure::failed(e.to_string()))?);
    let sink: Sink = {
        let board = board.clone();
        Arc::new(move |delivery, at| {
            board.record_payload(&delivery.payload, at);
        })
    };
    let group_size = plan.group_size;
    let prefix = plan.alias_prefix.clone();
    let biz = plan.biz.clone();
    let prefix_body = body_prefix(&plan.biz, push.reliable, push.receipt);
    let (fleet, connect) = fleet::connect(plan, Some(sink), &progress)
        .await
        .map_err(Failure::failed)?;
    if push.json {
        json_line("connected", &ConnectedLine::new(&connect));
    }
    let targets = targets(fleet.aliases(), push.addressing, &prefix, group_size);
    if targets.is_empty() {
        return Err(Failure::failed(format!(
            "no device logged in: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }
    let workload = Pushes {
        template: push.api.template("/v1/push"),
        prefix: prefix_body,
        targets,
        biz,
        reliable: push.reliable,
    };
    let mut pool = push.api.pool();
    let steps = if push.batch > 1 || push.push_socket {
        let mut publisher = if push.push_socket {
            Publisher::Socket(
                SocketPublisher::connect(
                    push.api.addr(),
                    push.api.host(),
                    push.api.key(),
                    push.api.connections(),
                )
                .await
                .map_err(Failure::failed)?,
            )
        } else {
            Publisher::Http(pool)
        };
        let batches = Batches {
            workload: &workload,
            template: push.api.template("/v1/push/batch"),
            size: push.batch,
        };
        run_batched(
            push.sweep,
            &board,
            &mut publisher,
            &batches,
            &progress,
            push.json,
        )
        .await
    } else {
        sweep::run(
            push.sweep, &board, &mut pool, &workload, &progress, push.json,
        )
        .await
    };
    let counters = fleet.counters();
    let (disconnects, relogins) = (
        fleet::Counters::get(&counters.disconnects),
        fleet::Counters::get(&counters.relogins),
    );
    fleet.close(Duration::from_secs(2)).await;
    let report = PushReport {
        workload: push.workload,
        reliable: push.reliable,
        targets: workload.targets.len(),
        group_size: (group_size > 0).then_some(group_size),
        http_connections: push.api.connections(),
        batch: push.batch.max(1),
        push_socket: push.push_socket,
        receipt: push.receipt,
        receipts_received: push.receipts.map(ReceiptCounts::receipts),
        receipt_requests: push.receipts.map(ReceiptCounts::requests),
        payload_bytes: push.sweep.size,
        connect,
        disconnects,
        relogins,
        steps,
    };
    if push.json {
        json_line("report", &report);
    } else {
        let mut table = Table::default();
        super::idle::connect_rows(&mut table, &report.connect);
        table.row("targets", report.targets).row(
            "disconnects / re-logins",
            format!("{disconnects} / {relogins}"),
        );
        for step in &report.steps {
            super::fanout::step_rows(&mut table, step);
        }
        print!("{}", table.render(&format!("pike bench {}", push.workload)));
    }
    Ok(())
}

/// How the batched sweep publishes.
struct Batches<'a> {
    workload: &'a Pushes,
    /// `POST /v1/push/batch`.
    template: RequestTemplate,
    /// Most pushes per request.
    size: usize,
}

impl Batches<'_> {
    /// The batch request of messages `[from, to)` with their stamped
    /// payloads (`payload(k)`), and the weight of each.
    fn request(
        &self,
        from: u64,
        to: u64,
        mut payload: impl FnMut(u64) -> String,
    ) -> (Vec<u8>, Vec<u64>) {
        let count = usize::try_from(to.saturating_sub(from)).unwrap_or(0);
        let mut body = String::with_capacity(16 + count * (self.workload.prefix.len() + 128));
        let mut weights = Vec::with_capacity(count);
        body.push_str(r#"{"pushes":["#);
        for k in from..to {
            if k > from {
                body.push(',');
            }
            weights.push(self.workload.push_body(k, &payload(k), &mut body));
        }
        body.push_str("]}");
        (self.template.with_body(&body), weights)
    }
}

impl Batches<'_> {
    /// The encoded `PushBatch` of messages `[from, to)` (as
    /// [`request`](Self::request)), for the push connection.
    fn proto(
        &self,
        from: u64,
        to: u64,
        mut payload: impl FnMut(u64) -> String,
    ) -> (Vec<u8>, Vec<u64>) {
        let count = usize::try_from(to.saturating_sub(from)).unwrap_or(0);
        let mut pushes = Vec::with_capacity(count);
        let mut weights = Vec::with_capacity(count);
        for k in from..to {
            if let Some((push, weight)) = self.workload.push_proto(k, &payload(k)) {
                pushes.push(push);
                weights.push(weight);
            }
        }
        let batch = api::PushBatch { id: from, pushes };
        (batch.encode_to_vec(), weights)
    }
}

/// Where the batches go: HTTP requests, or the push connection.
enum Publisher {
    Http(HttpPool),
    Socket(SocketPublisher),
}

/// One batch's way to the gateway.
enum Lease {
    Http(super::http_pool::Lease),
    Socket(SocketLease),
}

impl Publisher {
    async fn acquire(&mut self, deadline: Instant) -> Option<Lease> {
        match self {
            Self::Http(pool) => pool.acquire(deadline).await.map(Lease::Http),
            Self::Socket(socket) => socket.acquire(deadline).await.map(Lease::Socket),
        }
    }

    fn lent(&mut self) -> usize {
        match self {
            Self::Http(pool) => pool.lent(),
            Self::Socket(socket) => socket.lent(),
        }
    }

    /// The request of messages `[from, to)` in this publisher's format.
    fn request(
        &self,
        batches: &Batches<'_>,
        from: u64,
        to: u64,
        payload: impl FnMut(u64) -> String,
    ) -> (Vec<u8>, Vec<u64>) {
        match self {
            Self::Http(_) => batches.request(from, to, payload),
            Self::Socket(_) => batches.proto(from, to, payload),
        }
    }
}

impl Lease {
    async fn round_trip_batch(
        &mut self,
        request: Vec<u8>,
        items: usize,
        limit: Duration,
    ) -> Result<Vec<Answer>, String> {
        match self {
            Self::Http(lease) => lease.round_trip_batch(&request, items, limit).await,
            Self::Socket(lease) => lease.round_trip_batch(request, items, limit).await,
        }
    }
}

/// The outcome of one batch request: whether its messages are window
/// ones, their weights, and the answer.
type BatchOutcome = (bool, Vec<u64>, Result<Vec<Answer>, String>);

/// [`sweep::run`] with batch requests: one step per rate, the same
/// `step_begin` and `step` lines.
async fn run_batched(
    plan: &SweepPlan,
    board: &Board,
    pool: &mut Publisher,
    batches: &Batches<'_>,
    progress: &Progress,
    json: bool,
) -> Vec<StepLine> {
    let mut lines = Vec::with_capacity(plan.rates.len());
    plan.wait_for_start().await;
    for (index, &rate) in plan.rates.iter().enumerate() {
        let step = u32::try_from(index + 1).unwrap_or(MAX_STEP);
        let line = run_batched_step(plan, step, rate, board, pool, batches, progress, json).await;
        let what = format!("rate {rate} (batches of up to {})", batches.size);
        sweep::report_step(&line, &what, progress, json);
        lines.push(line);
    }
    lines
}

/// One step of the batched sweep: the schedule of [`sweep::run`], but the
/// messages due at each wake-up go out together.
#[allow(clippy::too_many_arguments)]
async fn run_batched_step(
    plan: &SweepPlan,
    step: u32,
    rate: u64,
    board: &Board,
    pool: &mut Publisher,
    batches: &Batches<'_>,
    progress: &Progress,
    json: bool,
) -> StepLine {
    let workload = batches.workload;
    let size = batches.size.max(1) as u64;
    let StepSchedule {
        whole,
        first,
        total,
        t0,
        window,
    } = StepSchedule::begin(plan, step, rate, board);

    let mut tally = Tally::default();
    let mut inflight: JoinSet<BatchOutcome> = JoinSet::new();
    // Window messages of each batch in flight, for one that never ends.
    let mut sizes = HashMap::<tokio::task::Id, u64>::new();
    let mut window_started = false;
    let mut cpu_at_start = None;
    let mut next_progress = t0 + Duration::from_secs(1);
    let mut max_lag = Duration::ZERO;
    let mut k = 0;
    while k < total {
        let in_window = k >= first;
        if k == first {
            tokio::time::sleep_until(window.start).await;
            workload.window_starts(&window);
            window_started = true;
            cpu_at_start = process_cpu_secs();
            if json {
                json_line("step_begin", &serde_json::json!({ "rate": rate }));
            }
        }
        let due = t0 + whole.offset(k);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        // The messages due by now, at most a batch, all warm-up or all
        // window.
        let now = Instant::now();
        let limit = if in_window { total } else { first };
        let mut end = k + 1;
        while end < limit && end - k < size && t0 + whole.offset(end) <= now {
            end += 1;
        }
        let deadline = if in_window { window.end } else { window.start };
        let Some(mut lease) = pool.acquire(deadline).await else {
            if in_window {
                tally.unsent += total - k;
                break;
            }
            tally.warmup_unsent += end - k;
            k = end;
            continue;
        };
        let now = Instant::now();
        if in_window {
            max_lag = max_lag.max(now.saturating_duration_since(due));
        }
        let (request, weights) = pool.request(batches, k, end, |m| {
            board.stamp(step, t0 + whole.offset(m)).encode(plan.size)
        });
        let items = weights.len();
        let handle = inflight.spawn(async move {
            let answer = lease
                .round_trip_batch(request, items, REQUEST_TIMEOUT)
                .await;
            (in_window, weights, answer)
        });
        if in_window {
            sizes.insert(handle.id(), end - k);
        }
        k = end;
        while let Some(done) = inflight.try_join_next_with_id() {
            count(&mut tally, &mut sizes, done);
        }
        if now >= next_progress {
            next_progress = now + Duration::from_secs(1);
            let d = board.deliveries();
            progress.update(&format!(
                "rate {}: {k}/{total} published, {} counted deliveries, {} requests in flight",
                whole.rate(),
                d.delivered,
                pool.lent()
            ));
        }
    }
    if !window_started {
        // The loop ended before the window (cannot happen with a window of
        // at least one second).
        tokio::time::sleep_until(window.start).await;
        workload.window_starts(&window);
        cpu_at_start = process_cpu_secs();
        if json {
            json_line("step_begin", &serde_json::json!({ "rate": rate }));
        }
    }
    tokio::time::sleep_until(window.drain_end).await;
    let _ = tokio::time::timeout_at(window.drain_end + ANSWER_GRACE, async {
        while let Some(done) = inflight.join_next_with_id().await {
            count(&mut tally, &mut sizes, done);
        }
    })
    .await;
    // Still unanswered: errors (their connections are dropped with them).
    inflight.abort_all();
    while let Some(done) = inflight.join_next_with_id().await {
        count(&mut tally, &mut sizes, done);
    }
    tally.max_send_lag_ms = max_lag.as_secs_f64() * 1000.0;
    sweep::step_line(plan, rate, board, workload, &window, tally, cpu_at_start).await
}

/// Counts one finished batch request: each window message by its item's
/// answer; every window message of a refused, failed, unanswered or
/// panicked batch is a send error.
fn count(
    tally: &mut Tally,
    sizes: &mut HashMap<tokio::task::Id, u64>,
    done: Result<(tokio::task::Id, BatchOutcome), tokio::task::JoinError>,
) {
    match done {
        Ok((id, (in_window, weights, answer))) => {
            sizes.remove(&id);
            if !in_window {
                return;
            }
            match answer {
                Ok(answers) => {
                    for (weight, answer) in weights.into_iter().zip(answers) {
                        count_answer(tally, weight, answer);
                    }
                }
                Err(message) => {
                    tally.send_errors += weights.len() as u64;
                    tally.first_error.get_or_insert(message);
                }
            }
        }
        Err(e) => {
            if let Some(n) = sizes.remove(&e.id()) {
                tally.send_errors += n;
            }
        }
    }
}

/// Counts the answer to one window message of a batch (as the sweep counts
/// one push).
fn count_answer(tally: &mut Tally, weight: u64, answer: Answer) {
    match answer {
        Answer::Accepted { online, dropped } => {
            tally.sent += 1;
            tally.weight += weight;
            tally.queue_dropped += dropped;
            if online == Some(0) {
                tally.not_online += 1;
            }
        }
        Answer::Shed => {
            tally.sent += 1;
            tally.weight += weight;
            tally.shed += 1;
        }
        Answer::Refused(message) => {
            tally.send_errors += 1;
            tally.first_error.get_or_insert(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(numbers: &[u64]) -> Vec<String> {
        numbers.iter().map(|n| format!("u{n}")).collect()
    }

    #[test]
    fn one_target_per_alias() {
        let t = targets(&aliases(&[3, 4]), Addressing::Alias, "u", 0);
        assert_eq!(
            t,
            vec![
                Target {
                    field: r#""alias":"u3""#.into(),
                    proto: api::push::Target::Alias("u3".into()),
                    devices: 1
                },
                Target {
                    field: r#""alias":"u4""#.into(),
                    proto: api::push::Target::Alias("u4".into()),
                    devices: 1
                },
            ]
        );
    }

    #[test]
    fn groups_count_their_logged_in_devices() {
        // Groups of 100: u0..u99 → g0, u100.. → g1; u150 did not log in.
        let mut numbers: Vec<u64> = (0..200).filter(|&n| n != 150).collect();
        numbers.push(1_000);
        let t = targets(&aliases(&numbers), Addressing::Group, "u", 100);
        assert_eq!(
            t,
            vec![
                Target {
                    field: r#""tag":"g0""#.into(),
                    proto: api::push::Target::Tag("g0".into()),
                    devices: 100
                },
                Target {
                    field: r#""tag":"g1""#.into(),
                    proto: api::push::Target::Tag("g1".into()),
                    devices: 99
                },
                Target {
                    field: r#""tag":"g10""#.into(),
                    proto: api::push::Target::Tag("g10".into()),
                    devices: 1
                },
            ]
        );
        // Foreign aliases are left out.
        assert!(targets(&["x1".to_owned()], Addressing::Group, "u", 100).is_empty());
    }

    #[test]
    fn bodies_are_json_with_weights() {
        let pushes = Pushes {
            template: RequestTemplate::post_json("h", "/v1/push", "k"),
            prefix: r#"{"biz":"bench","reliable":false,"#.into(),
            targets: targets(&aliases(&[0, 1, 100]), Addressing::Group, "u", 100),
            biz: "bench".into(),
            reliable: false,
        };
        let m = pushes.message(3, "0001");
        let text = String::from_utf8(m.request).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let value: Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["tag"], "g1");
        assert_eq!(value["biz"], "bench");
        assert_eq!(value["reliable"], false);
        assert_eq!(value["payload"], "0001");
        assert_eq!(m.weight, 1);
        assert_eq!(pushes.message(0, "x").weight, 2);
    }

    #[test]
    fn receipt_pushes_ask_for_receipts_and_others_say_nothing() {
        for (receipt, expected) in [(true, Value::Bool(true)), (false, Value::Null)] {
            let pushes = Pushes {
                template: RequestTemplate::post_json("h", "/v1/push", "k"),
                prefix: body_prefix("bench", true, receipt),
                targets: targets(&aliases(&[0]), Addressing::Alias, "u", 0),
                biz: "bench".into(),
                reliable: true,
            };
            let text = String::from_utf8(pushes.message(0, "p").request).unwrap();
            let body = text.split("\r\n\r\n").nth(1).unwrap();
            let value: Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["receipt"], expected, "{body}");
            assert_eq!(value["reliable"], true, "{body}");
            assert_eq!(value["alias"], "u0", "{body}");
        }
    }

    #[test]
    fn batch_bodies_hold_one_push_per_message() {
        let pushes = Pushes {
            template: RequestTemplate::post_json("h", "/v1/push", "k"),
            prefix: r#"{"biz":"bench","reliable":false,"#.into(),
            targets: targets(&aliases(&[0, 1]), Addressing::Alias, "u", 0),
            biz: "bench".into(),
            reliable: false,
        };
        let batches = Batches {
            workload: &pushes,
            template: RequestTemplate::post_json("h", "/v1/push/batch", "k"),
            size: 100,
        };
        let (request, weights) = batches.request(3, 6, |k| format!("p{k}"));
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("POST /v1/push/batch "));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let value: Value = serde_json::from_str(body).unwrap();
        let items = value["pushes"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["alias"], "u1");
        assert_eq!(items[0]["payload"], "p3");
        assert_eq!(items[1]["alias"], "u0");
        assert_eq!(items[2]["payload"], "p5");
        assert_eq!(items[2]["reliable"], false);
        assert_eq!(weights, vec![1, 1, 1]);
        // The same batch for the push connection.
        let (bytes, weights) = batches.proto(3, 6, |k| format!("p{k}"));
        let batch = api::PushBatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(batch.id, 3);
        assert_eq!(batch.pushes.len(), 3);
        assert_eq!(
            batch.pushes[0].target,
            Some(api::push::Target::Alias("u1".into()))
        );
        assert_eq!(&batch.pushes[2].payload[..], b"p5");
        assert!(batch.pushes.iter().all(|p| p.transient && p.biz == "bench"));
        assert_eq!(weights, vec![1, 1, 1]);
    }

    #[test]
    fn batch_answers_count_per_message() {
        let mut tally = Tally::default();
        let mut sizes = HashMap::new();
        let id = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(async {}).id() });
        let accepted = Answer::Accepted {
            online: Some(1),
            dropped: 0,
        };
        count(
            &mut tally,
            &mut sizes,
            Ok((
                id,
                (
                    true,
                    vec![1, 1],
                    Ok(vec![accepted.clone(), Answer::Refused("x: y".into())]),
                ),
            )),
        );
        count(
            &mut tally,
            &mut sizes,
            Ok((id, (true, vec![1, 1, 1], Err("503: down".into())))),
        );
        count(
            &mut tally,
            &mut sizes,
            Ok((id, (false, vec![1], Ok(vec![accepted])))),
        );
        assert_eq!(tally.sent, 1);
        assert_eq!(tally.weight, 1);
        assert_eq!(tally.send_errors, 4);
        assert_eq!(tally.first_error.as_deref(), Some("x: y"));
    }
}
