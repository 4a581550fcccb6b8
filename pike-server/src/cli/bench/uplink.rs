//! `pike bench uplink` (S5): N logged-in devices send uplink messages at an
//! open-loop total rate, swept over `--rates`; this process is also the
//! business backend (the webhook [`sink`](super::sink)), so latency is
//! scheduled time → arrival at the backend.
//!
//! Message `k` of a step goes to device `k mod N` and is due at
//! `t0 + k / rate`; its payload carries that scheduled time. It is handed
//! to the device's channel, which keeps at most `--window` messages in
//! flight (sent, not acked by the backend) and queues the rest; time spent
//! queued counts as latency. A message the sender could not hand over
//! within [`SLOT_DEADLINE`] of its due time is counted as unsent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pike_channel::{ClientHandle, StreamId};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FleetArgs;
use super::fleet::{self, ConnectReport, Counters};
use super::idle::{connect_rows, plan};
use super::latency::Stamp;
use super::report::{Progress, Table, json_line};
use super::schedule::Schedule;
use super::sink::{self, SinkState};
use super::uplink_steps::{StepLine, SweepArgs, connected_line, cpu_secs, cpu_since};
use crate::cli::{Common, Failure};

/// Latest a message may be handed to its channel after its due time;
/// later, it is counted as unsent (the sender fell behind).
const SLOT_DEADLINE: Duration = Duration::from_secs(1);

/// Arguments of `pike bench uplink`.
#[derive(Debug, Args)]
pub(crate) struct UplinkArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    sweep: SweepArgs,
    /// Uplink messages in flight per device (the channel's send window;
    /// default: the channel's default, 16; 1 is the naive one-at-a-time
    /// scheme).
    #[arg(long)]
    window: Option<u32>,
    /// Address of the webhook sink this process runs (the gateway's biz
    /// `uplink_webhooks` must point at it).
    #[arg(long, default_value = "127.0.0.1:9390")]
    sink: SocketAddr,
    /// Time the sink takes to answer each message, milliseconds.
    #[arg(long, default_value_t = 5)]
    sink_delay_ms: u64,
}

#[derive(Debug, Serialize)]
struct UplinkReport {
    workload: &'static str,
    devices: usize,
    send_window: u32,
    sink: SocketAddr,
    sink_delay_ms: u64,
    /// Every message the sink received (warm-up and drain included; a
    /// batch counts its messages).
    sink_requests: u64,
    sink_unstamped: u64,
    /// Uplink acks and definitive failures the devices saw.
    acked: u64,
    failed: u64,
    connect: ConnectReport,
    steps: Vec<StepLine>,
}

pub(crate) async fn run(common: &Common, args: UplinkArgs) -> Result<(), Failure> {
    args.sweep.validate().map_err(Failure::usage)?;
    let mut plan = plan(common, &args.fleet)?;
    if let Some(window) = args.window {
        plan.channel
            .send_window(window)
            .map_err(|e| Failure::usage(format!("--window: {e}")))?;
    }
    let send_window = plan.channel.get_send_window();
    let progress = Progress::new(args.fleet.quiet);
    let epoch = Instant::now();
    let sink = SinkState::new(epoch, Duration::from_millis(args.sink_delay_ms))
        .map_err(Failure::failed)?;
    let stop_sink = CancellationToken::new();
    let (sink_addr, sink_task) = sink::serve(args.sink, sink.clone(), stop_sink.clone())
        .await
        .map_err(Failure::failed)?;
    progress.done(&format!(
        "webhook sink on http://{sink_addr}/ (answers after {} ms)",
        args.sink_delay_ms
    ));

    let (fleet, connect) = fleet::connect(plan, None, &progress)
        .await
        .map_err(Failure::failed)?;
    if args.fleet.json {
        connected_line(&connect);
    }
    let handles = fleet.handles().to_vec();
    if handles.is_empty() {
        return Err(Failure::failed(format!(
            "no device logged in: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }

    let mut steps = Vec::with_capacity(args.sweep.rates.len());
    let mut next_seq = 0u64;
    for &rate in &args.sweep.rates {
        let step = Step {
            handles: &handles,
            sink: &sink,
            counters: fleet.counters(),
            sweep: &args.sweep,
            rate,
            json: args.fleet.json,
            progress: &progress,
        };
        let line = step.run(epoch, &mut next_seq).await;
        progress.done(&format!(
            "rate {rate}/s: delivered {}/{} ({:.2} %), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, unsent {}, errors {}",
            line.delivered,
            line.expected,
            line.delivered_pct,
            line.p50_ms,
            line.p99_ms,
            line.max_ms,
            line.unsent,
            line.send_errors
        ));
        if args.fleet.json {
            json_line("step", &line);
        }
        steps.push(line);
    }

    let counters = fleet.counters();
    let report = UplinkReport {
        workload: "uplink",
        devices: handles.len(),
        send_window,
        sink: sink_addr,
        sink_delay_ms: args.sink_delay_ms,
        sink_requests: sink.requests(),
        sink_unstamped: sink.unstamped(),
        acked: Counters::get(&counters.send_ok),
        failed: Counters::get(&counters.send_failed),
        connect,
        steps,
    };
    drop(handles);
    fleet.close(Duration::from_secs(2)).await;
    stop_sink.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), sink_task).await;
    if args.fleet.json {
        json_line("report", &report);
    } else {
        print!("{}", table(&report).render("pike bench uplink"));
    }
    Ok(())
}

/// One rate of the sweep.
struct Step<'a> {
    handles: &'a [(ClientHandle, StreamId)],
    sink: &'a Arc<SinkState>,
    counters: &'a Counters,
    sweep: &'a SweepArgs,
    rate: u64,
    json: bool,
    progress: &'a Progress,
}

impl Step<'_> {
    /// Warm-up, measured window, drain; returns the step's line.
    /// `next_seq` numbers the messages across steps.
    async fn run(&self, epoch: Instant, next_seq: &mut u64) -> StepLine {
        let (warmup, window, drain) =
            (self.sweep.warmup(), self.sweep.window(), self.sweep.drain());
        let t0 = Instant::now() + Duration::from_millis(10);
        let window_start = t0 + warmup;
        let window_end = window_start + window;
        self.sink.begin(window_start, window_end);
        let schedule = Schedule::new(self.rate, warmup + window);
        let mut line = StepLine {
            rate: self.rate,
            seconds: window.as_secs_f64(),
            ..StepLine::default()
        };
        let mut measuring = None;
        let mut next_progress = t0 + Duration::from_secs(1);
        for k in 0..schedule.total() {
            let due = t0 + schedule.offset(k);
            let in_window = due >= window_start;
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if in_window && measuring.is_none() {
                measuring = Some(self.begin_window());
            }
            let now = Instant::now();
            if now > due + SLOT_DEADLINE {
                line.unsent += u64::from(in_window);
                continue;
            }
            let Some((client, stream)) = self.handles.get((k % self.handles.len() as u64) as usize)
            else {
                continue;
            };
            let stamp = Stamp {
                seq: *next_seq + k,
                scheduled_us: u64::try_from(due.duration_since(epoch).as_micros())
                    .unwrap_or(u64::MAX),
            };
            match client.send(*stream, stamp.encode(self.sweep.size), None) {
                Ok(_) => line.sent += u64::from(in_window),
                Err(_) => line.send_errors += u64::from(in_window),
            }
            if now >= next_progress {
                next_progress = now + Duration::from_secs(1);
                self.progress.update(&format!(
                    "rate {}/s: {k}/{} handed over, {} acked",
                    self.rate,
                    schedule.total(),
                    Counters::get(&self.counters.send_ok)
                ));
            }
        }
        *next_seq += schedule.total();
        let (cpu_start, failed_before) = measuring.unwrap_or_else(|| self.begin_window());
        tokio::time::sleep_until(window_end + drain).await;
        let summary = self.sink.summary();
        let ms = |us: u64| us as f64 / 1000.0;
        line.delivered = summary.delivered;
        line.p50_ms = ms(summary.p50_us);
        line.p99_ms = ms(summary.p99_us);
        line.p999_ms = ms(summary.p999_us);
        line.max_ms = ms(summary.max_us);
        line.send_errors += Counters::get(&self.counters.send_failed).saturating_sub(failed_before);
        line.gen_cpu_secs = cpu_since(cpu_start);
        line.derive();
        line
    }

    /// The measured window starts (its first message is due): prints
    /// `step_begin`; returns the CPU time and failure count then.
    fn begin_window(&self) -> (f64, u64) {
        if self.json {
            json_line("step_begin", &serde_json::json!({ "rate": self.rate }));
        }
        (cpu_secs(), Counters::get(&self.counters.send_failed))
    }
}

fn table(report: &UplinkReport) -> Table {
    let mut table = Table::default();
    connect_rows(&mut table, &report.connect);
    table
        .row("send window", report.send_window)
        .row("sink delay", format!("{} ms", report.sink_delay_ms));
    for step in &report.steps {
        table.row(
            &format!("{}/s", step.rate),
            format!(
                "{}/{} ({:.2} %), p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, unsent {}, errors {}",
                step.delivered,
                step.expected,
                step.delivered_pct,
                step.p50_ms,
                step.p99_ms,
                step.p999_ms,
                step.max_ms,
                step.unsent,
                step.send_errors
            ),
        );
    }
    table
}
