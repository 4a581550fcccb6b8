//! The open-loop rate sweep shared by `fanout`, `unicast` and `group`: one
//! step per rate, each a warm-up, a measured window and a drain.
//!
//! Message `k` of a step at `rate` is due at `t0 + k / rate` whatever
//! happened to the messages before it; its payload carries that
//! *scheduled* time and the step number ([`SweepStamp`]), so time spent
//! waiting for a free publisher connection counts as latency (no
//! coordinated omission). Messages scheduled in the first `--warmup`
//! seconds are sent but not counted; the `--step` seconds after them are
//! the measured window (`step_begin` is printed when it starts); then the
//! publisher stops and the receivers get `--drain` seconds for what is in
//! flight before the `step` line.
//!
//! A message that cannot get a publisher connection before its deadline
//! is not sent and counted: `unsent` for a window message (deadline: the
//! window's end), `warmup_unsent` for a warm-up one (deadline: the
//! window's start, so a backlog never spills into the window).

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::board::Board;
use super::cpu::process_cpu_secs;
use super::http_pool::{Answer, HttpPool};
use super::report::{Progress, json_line};
use super::schedule::Schedule;
use super::stamp::MAX_STEP;
use crate::cli::Failure;

/// Longest wait for one publish request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the drain the step waits for unanswered requests.
const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// Delay from a step's set-up to its first message.
const LEAD_IN: Duration = Duration::from_millis(20);

/// The sweep's flags.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// The open-loop rates, one step each, in order (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "rate")]
    rates: Vec<u64>,
    /// One rate: the same as `--rates R`.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds published before each measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 6)]
    step: u64,
    /// Seconds each step waits for what is in flight after its window.
    #[arg(long, default_value_t = 2)]
    drain: u64,
    /// Payload bytes (at least the 30-byte stamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Start the first step at this wall-clock time (Unix milliseconds)
    /// instead of right after the connect phase, so several generator
    /// processes measure the same windows; at once when it has passed, at
    /// most [`MAX_START_WAIT`] ahead.
    #[arg(long)]
    start_at: Option<u64>,
}

/// Longest wait for `--start-at`.
pub(crate) const MAX_START_WAIT: Duration = Duration::from_secs(600);

/// The sweep to run.
#[derive(Clone, Debug)]
pub(crate) struct SweepPlan {
    pub(crate) rates: Vec<u64>,
    pub(crate) warmup: Duration,
    pub(crate) step: Duration,
    pub(crate) drain: Duration,
    pub(crate) size: usize,
    /// `--start-at`: Unix milliseconds of the first step.
    pub(crate) start_at: Option<u64>,
}

impl SweepPlan {
    /// The plan of the flags (`--rates 1000` when no rate is given).
    pub(crate) fn new(args: &SweepArgs) -> Result<Self, Failure> {
        let rates = match args.rate {
            Some(rate) => vec![rate],
            None if args.rates.is_empty() => vec![1000],
            None => args.rates.clone(),
        };
        if rates.contains(&0) {
            return Err(Failure::usage("every rate must be at least 1"));
        }
        if rates.len() > MAX_STEP as usize {
            return Err(Failure::usage(format!("at most {MAX_STEP} rates")));
        }
        if args.step == 0 {
            return Err(Failure::usage("--step must be at least 1 second"));
        }
        Ok(Self {
            rates,
            warmup: Duration::from_secs(args.warmup),
            step: Duration::from_secs(args.step),
            drain: Duration::from_secs(args.drain),
            size: args.size,
            start_at: args.start_at,
        })
    }

    /// Waits until `--start-at` (at once without one or when it has
    /// passed).
    pub(crate) async fn wait_for_start(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let delay = start_delay(now, self.start_at);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// How long to wait from `now` (since the Unix epoch) until `start_at`
/// (Unix milliseconds): zero without one or when it has passed, at most
/// [`MAX_START_WAIT`].
pub(crate) fn start_delay(now: Duration, start_at: Option<u64>) -> Duration {
    start_at.map_or(Duration::ZERO, |at| {
        Duration::from_millis(at)
            .saturating_sub(now)
            .min(MAX_START_WAIT)
    })
}

/// When the parts of one step are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// The step, 1-based.
    pub(crate) step: u32,
    /// The measured window: `[start, end)`.
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// The end of the drain.
    pub(crate) drain_end: Instant,
}

/// One message to publish.
#[derive(Debug)]
pub(crate) struct Message {
    /// The whole HTTP request.
    pub(crate) request: Vec<u8>,
    /// Deliveries it should make when accepted (1 for a unicast push, the
    /// group's logged-in members for a group push; fan-out counts members
    /// at the end of the step instead).
    pub(crate) weight: u64,
}

/// The publisher's side of one step's window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Tally {
    /// Window messages the gateway took (2xx; shed room messages included).
    pub(crate) sent: u64,
    /// Sum of the weights of the messages sent.
    #[serde(skip)]
    pub(crate) weight: u64,
    /// Window messages not sent before the window's end.
    pub(crate) unsent: u64,
    /// Window messages refused, failed or unanswered.
    pub(crate) send_errors: u64,
    /// Droppable room messages shed by the room's rate caps.
    pub(crate) shed: u64,
    /// Pushes that found no connection online.
    pub(crate) not_online: u64,
    /// Connections whose queue was full (transient pushes).
    pub(crate) queue_dropped: u64,
    /// Warm-up messages not sent before the window's start.
    pub(crate) warmup_unsent: u64,
    /// Largest delay between a window message's due and actual send, ms.
    pub(crate) max_send_lag_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

impl Tally {
    /// Counts the answer to one window message.
    fn answer(&mut self, weight: u64, answer: Result<Answer, String>) {
        match answer {
            Ok(Answer::Accepted { online, dropped }) => {
                self.sent += 1;
                self.weight += weight;
                self.queue_dropped += dropped;
                if online == Some(0) {
                    self.not_online += 1;
                }
            }
            Ok(Answer::Shed) => {
                self.sent += 1;
                self.weight += weight;
                self.shed += 1;
            }
            Ok(Answer::Refused(message)) | Err(message) => {
                self.send_errors += 1;
                self.first_error.get_or_insert(message);
            }
        }
    }
}

/// What a workload adds to the sweep.
pub(crate) trait Workload {
    /// The request publishing message `k` of the current step, with its
    /// stamped `payload`.
    fn message(&self, k: u64, payload: &str) -> Message;

    /// The measured window of `window.step` starts (called right before its
    /// first message).
    fn window_starts(&self, window: &Window);

    /// The step is over: the deliveries expected of what `tally` says was
    /// sent, and the workload's extra fields of the `step` line.
    async fn step_done(&self, window: &Window, tally: &Tally) -> (u64, Map<String, Value>);
}

/// The `step` line.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StepLine {
    pub(crate) rate: u64,
    pub(crate) seconds: f64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_pct: f64,
    pub(crate) delivered_per_sec: f64,
    pub(crate) offered_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    /// CPU seconds of this process from the window's start to the drain's
    /// end.
    pub(crate) gen_cpu_secs: f64,
    #[serde(flatten)]
    pub(crate) tally: Tally,
    #[serde(flatten)]
    pub(crate) extras: Map<String, Value>,
}

/// The outcome of one message's request.
type Outcome = (bool, u64, Result<Answer, String>);

/// Runs every step of `plan`; prints `step_begin` and `step` lines with
/// `json`.
pub(crate) async fn run<W: Workload>(
    plan: &SweepPlan,
    board: &Board,
    pool: &mut HttpPool,
    workload: &W,
    progress: &Progress,
    json: bool,
) -> Vec<StepLine> {
    let mut lines = Vec::with_capacity(plan.rates.len());
    plan.wait_for_start().await;
    for (index, &rate) in plan.rates.iter().enumerate() {
        let step = u32::try_from(index + 1).unwrap_or(MAX_STEP);
        let line = run_step(plan, step, rate, board, pool, workload, progress, json).await;
        report_step(&line, &format!("rate {rate}"), progress, json);
        lines.push(line);
    }
    lines
}

/// Shows a finished step on the progress line and, with `json`, prints its
/// `step` line (`what` names the step).
pub(crate) fn report_step(line: &StepLine, what: &str, progress: &Progress, json: bool) {
    progress.done(&format!(
        "{what}: sent {} (unsent {}, errors {}), delivered {}/{} ({:.2} %), {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, generator CPU {:.2} s",
        line.tally.sent,
        line.tally.unsent,
        line.tally.send_errors,
        line.delivered,
        line.expected,
        line.delivered_pct,
        line.delivered_per_sec,
        line.p50_ms,
        line.p99_ms,
        line.gen_cpu_secs
    ));
    if json {
        json_line("step", line);
    }
}

/// The schedule of one step: message `k` is due at `t0 + whole.offset(k)`;
/// messages `[0, first)` are the warm-up, `[first, total)` the window.
pub(crate) struct StepSchedule {
    pub(crate) whole: Schedule,
    pub(crate) first: u64,
    pub(crate) total: u64,
    pub(crate) t0: Instant,
    pub(crate) window: Window,
}

impl StepSchedule {
    /// The schedule of step `step` at `rate`, starting now (after the
    /// lead-in); the board counts deliveries for its window from here on.
    pub(crate) fn begin(plan: &SweepPlan, step: u32, rate: u64, board: &Board) -> Self {
        let warmup = Schedule::new(rate, plan.warmup);
        let whole = Schedule::new(rate, plan.warmup + plan.step);
        let first = if plan.warmup.is_zero() {
            0
        } else {
            warmup.total()
        };
        let total = whole.total();
        let t0 = Instant::now() + LEAD_IN;
        let window = Window {
            step,
            start: t0 + plan.warmup,
            end: t0 + whole.span(),
            drain_end: t0 + whole.span() + plan.drain,
        };
        board.begin(step, window.start, window.end);
        Self {
            whole,
            first,
            total,
            t0,
            window,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_step<W: Workload>(
    plan: &SweepPlan,
    step: u32,
    rate: u64,
    board: &Board,
    pool: &mut HttpPool,
    workload: &W,
    progress: &Progress,
    json: bool,
) -> StepLine {
    let StepSchedule {
        whole,
        first,
        total,
        t0,
        window,
    } = StepSchedule::begin(plan, step, rate, board);

    let mut tally = Tally::default();
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let mut cpu_at_start = None;
    let mut next_progress = t0 + Duration::from_secs(1);
    let mut max_lag = Duration::ZERO;
    for k in 0..total {
        let in_window = k >= first;
        if k == first {
            tokio::time::sleep_until(window.start).await;
            workload.window_starts(&window);
            cpu_at_start = process_cpu_secs();
            if json {
                json_line("step_begin", &serde_json::json!({ "rate": rate }));
            }
        }
        let due = t0 + whole.offset(k);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let deadline = if in_window { window.end } else { window.start };
        let Some(mut lease) = pool.acquire(deadline).await else {
            if in_window {
                tally.unsent += total - k;
                break;
            }
            tally.warmup_unsent += 1;
            continue;
        };
        let now = Instant::now();
        if in_window {
            max_lag = max_lag.max(now.saturating_duration_since(due));
        }
        let payload = board.stamp(step, due).encode(plan.size);
        let message = workload.message(k, &payload);
        inflight.spawn(async move {
            let answer = lease.round_trip(&message.request, REQUEST_TIMEOUT).await;
            (in_window, message.weight, answer)
        });
        while let Some(done) = inflight.try_join_next() {
            count(&mut tally, done);
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
    if cpu_at_start.is_none() {
        // Every message was a warm-up one (cannot happen with a window of
        // at least one second), or the loop ended early.
        tokio::time::sleep_until(window.start).await;
        workload.window_starts(&window);
        cpu_at_start = process_cpu_secs();
        if json {
            json_line("step_begin", &serde_json::json!({ "rate": rate }));
        }
    }
    tokio::time::sleep_until(window.drain_end).await;
    let _ = tokio::time::timeout_at(window.drain_end + ANSWER_GRACE, async {
        while let Some(done) = inflight.join_next().await {
            count(&mut tally, done);
        }
    })
    .await;
    // Still unanswered: errors (their connections are dropped with them).
    inflight.abort_all();
    while let Some(done) = inflight.join_next().await {
        count(&mut tally, done);
    }
    tally.max_send_lag_ms = max_lag.as_secs_f64() * 1000.0;
    step_line(plan, rate, board, workload, &window, tally, cpu_at_start).await
}

/// The `step` line of a finished step: deliveries from the board, what was
/// expected (and the extras) from the workload, the generator's CPU since
/// `cpu_at_start`.
pub(crate) async fn step_line<W: Workload>(
    plan: &SweepPlan,
    rate: u64,
    board: &Board,
    workload: &W,
    window: &Window,
    tally: Tally,
    cpu_at_start: Option<f64>,
) -> StepLine {
    let cpu_at_end = process_cpu_secs();
    let deliveries = board.deliveries();
    let (expected, extras) = workload.step_done(window, &tally).await;
    let seconds = plan.step.as_secs_f64();
    StepLine {
        rate,
        seconds,
        expected,
        delivered: deliveries.delivered,
        delivered_pct: percent(deliveries.delivered, expected),
        delivered_per_sec: deliveries.delivered as f64 / seconds,
        offered_per_sec: expected as f64 / seconds,
        p50_ms: deliveries.p50_ms,
        p99_ms: deliveries.p99_ms,
        p999_ms: deliveries.p999_ms,
        max_ms: deliveries.max_ms,
        gen_cpu_secs: match (cpu_at_start, cpu_at_end) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        },
        tally,
        extras,
    }
}

/// Counts one finished request (a panicked one is a send error).
fn count(tally: &mut Tally, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok((true, weight, answer)) => tally.answer(weight, answer),
        Ok((false, _, _)) => {}
        Err(_) => tally.send_errors += 1,
    }
}

/// `part` of `whole`, percent (0 for an empty whole).
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A JSON string literal of `text` (quotes and escapes included).
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_tallied() {
        let mut tally = Tally::default();
        tally.answer(
            3,
            Ok(Answer::Accepted {
                online: Some(3),
                dropped: 0,
            }),
        );
        tally.answer(
            2,
            Ok(Answer::Accepted {
                online: Some(0),
                dropped: 0,
            }),
        );
        tally.answer(
            1,
            Ok(Answer::Accepted {
                online: None,
                dropped: 2,
            }),
        );
        tally.answer(1, Ok(Answer::Shed));
        tally.answer(1, Ok(Answer::Refused("503: full".into())));
        tally.answer(1, Err("timeout".into()));
        assert_eq!(tally.sent, 4);
        assert_eq!(tally.weight, 7);
        assert_eq!(tally.shed, 1);
        assert_eq!(tally.not_online, 1);
        assert_eq!(tally.queue_dropped, 2);
        assert_eq!(tally.send_errors, 2);
        assert_eq!(tally.first_error.as_deref(), Some("503: full"));
    }

    #[test]
    fn warm_up_answers_do_not_count() {
        let mut tally = Tally::default();
        count(&mut tally, Ok((false, 5, Err("x".into()))));
        count(
            &mut tally,
            Ok((
                false,
                5,
                Ok(Answer::Accepted {
                    online: None,
                    dropped: 0,
                }),
            )),
        );
        assert_eq!(tally, Tally::default());
    }

    #[test]
    fn plans_from_flags() {
        let args = |rates: Vec<u64>, rate: Option<u64>| SweepArgs {
            rates,
            rate,
            warmup: 2,
            step: 6,
            drain: 2,
            size: 64,
            start_at: None,
        };
        assert_eq!(
            SweepPlan::new(&args(vec![], None)).unwrap().rates,
            vec![1000]
        );
        assert_eq!(
            SweepPlan::new(&args(vec![], Some(7))).unwrap().rates,
            vec![7]
        );
        assert_eq!(
            SweepPlan::new(&args(vec![10, 100], None)).unwrap().rates,
            vec![10, 100]
        );
        assert!(SweepPlan::new(&args(vec![10, 0], None)).is_err());
        let mut zero_step = args(vec![1], None);
        zero_step.step = 0;
        assert!(SweepPlan::new(&zero_step).is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(json_string("a\"b"), "\"a\\\"b\"");
    }

    /// A workload that publishes nothing anywhere (no connection answers):
    /// every window message ends as a send error or unsent, and the step
    /// still ends on time with its lines.
    struct Nowhere;

    impl Workload for Nowhere {
        fn message(&self, _k: u64, payload: &str) -> Message {
            Message {
                request: payload.as_bytes().to_vec(),
                weight: 1,
            }
        }
        fn window_starts(&self, _window: &Window) {}
        async fn step_done(&self, _window: &Window, tally: &Tally) -> (u64, Map<String, Value>) {
            (tally.weight, Map::new())
        }
    }

    #[tokio::test]
    async fn a_step_accounts_for_every_window_message() {
        // A port nobody listens on: connects fail at once.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut pool = HttpPool::new(addr, 2);
        // Sub-second parts keep the test short: 10 warm-up and 20 window
        // messages at 100/s.
        let plan = SweepPlan {
            rates: vec![100],
            warmup: Duration::from_millis(100),
            step: Duration::from_millis(200),
            drain: Duration::from_millis(50),
            size: 32,
            start_at: None,
        };
        let board = Board::new(Instant::now()).unwrap();
        let lines = run(
            &plan,
            &board,
            &mut pool,
            &Nowhere,
            &Progress::new(true),
            false,
        )
        .await;
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line.rate, 100);
        // 20 window messages: each either failed or was never sent.
        assert_eq!(line.tally.sent, 0);
        assert_eq!(line.tally.send_errors + line.tally.unsent, 20, "{line:?}");
        assert_eq!(line.expected, 0);
        assert_eq!(line.delivered, 0);
        assert_eq!(board.step(), 1);
    }

    #[test]
    fn start_at_waits_until_then_and_no_longer_than_the_bound() {
        let now = Duration::from_millis(1_000_000);
        assert_eq!(start_delay(now, None), Duration::ZERO);
        assert_eq!(start_delay(now, Some(999_000)), Duration::ZERO);
        assert_eq!(start_delay(now, Some(1_000_000)), Duration::ZERO);
        assert_eq!(
            start_delay(now, Some(1_002_500)),
            Duration::from_millis(2_500)
        );
        assert_eq!(start_delay(now, Some(u64::MAX)), MAX_START_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_step_starts_at_start_at() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let at = u64::try_from((now + Duration::from_secs(30)).as_millis()).unwrap();
        let plan = SweepPlan::new(&SweepArgs {
            rates: vec![10],
            rate: None,
            warmup: 0,
            step: 1,
            drain: 0,
            size: 32,
            start_at: Some(at),
        })
        .unwrap();
        let before = Instant::now();
        plan.wait_for_start().await;
        let waited = before.elapsed();
        // Paused time: the sleep is exactly the delay computed above, give
        // or take the wall-clock time between the two readings.
        assert!(waited >= Duration::from_secs(29), "{waited:?}");
        assert!(waited <= Duration::from_secs(30), "{waited:?}");
    }
}
