//! `pike bench unicast`: N logged-in aliases, pushes to them through the
//! HTTP API at a fixed open-loop rate, push→receive latency.
//!
//! The gateway is another process, so pushes go through its HTTP API over
//! a few keep-alive connections (at most `--http-connections` requests in
//! flight). Message `k` goes to alias `k mod N` and is due at
//! `start + k / rate`; its payload carries that scheduled time, so time
//! spent waiting for a free connection counts as latency.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::FleetArgs;
use super::fleet::{self, ConnectReport, Counters, Sink};
use super::idle::{connect_rows, plan};
use super::latency::{LatencyRecorder, LatencySummary, Stamp};
use super::report::{Progress, Table, json_line, ms};
use super::schedule::Schedule;
use crate::cli::{Common, Failure};
use crate::data_dir::DataDir;

/// Arguments of `pike bench unicast`.
#[derive(Debug, Args)]
pub(crate) struct UnicastArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Pushes per second (open loop: the schedule does not wait for the
    /// gateway).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of pushing.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Payload size, bytes (at least the stamp, about 20 bytes).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The HTTP API.
    #[arg(long, env = "PIKE_API", default_value = "http://127.0.0.1:9380")]
    api: String,
    /// The app's API key (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Keep-alive HTTP connections, i.e. push requests in flight at most.
    #[arg(long, default_value_t = 32)]
    http_connections: usize,
    /// Reliable pushes (stored, acked) instead of transient (at most once).
    #[arg(long)]
    reliable: bool,
    /// Seconds to wait for the last deliveries after the last push.
    #[arg(long, default_value_t = 5)]
    drain: u64,
}

/// The push side, as reported.
#[derive(Clone, Debug, Default, Serialize)]
struct PushReport {
    /// Offered rate, pushes per second.
    rate: u64,
    reliable: bool,
    payload_bytes: usize,
    http_connections: usize,
    scheduled: u64,
    /// Answered 200 with the alias online.
    accepted: u64,
    /// Answered 200, but the alias had no connection online.
    not_online: u64,
    /// Answered 200, but the connection's queue was full (dropped).
    dropped: u64,
    http_errors: u64,
    /// Not sent: the run's time bound passed first.
    unsent: u64,
    /// Largest delay between a push's scheduled and actual send.
    max_send_lag_ms: f64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct DeliveryReport {
    delivered: u64,
    /// Delivered over accepted, percent.
    delivered_pct: f64,
    /// Deliveries per second, from the start of the schedule to the last
    /// delivery.
    delivered_per_sec: f64,
    unstamped: u64,
    latency: LatencySummary,
}

#[derive(Debug, Serialize)]
struct UnicastReport {
    workload: &'static str,
    connect: ConnectReport,
    push: PushReport,
    delivery: DeliveryReport,
}

/// The outcome of one push request.
enum Outcome {
    Accepted,
    NotOnline,
    Dropped,
    Error(String),
}

pub(crate) async fn run(common: &Common, args: UnicastArgs) -> Result<(), Failure> {
    let plan = plan(common, &args.fleet)?;
    let api_key = api_key(common, args.api_key.as_deref())?;
    let progress = Progress::new(args.fleet.quiet);
    let epoch = Instant::now();
    let recorder = Arc::new(Mutex::new(
        LatencyRecorder::new(epoch).map_err(|e| Failure::failed(e.to_string()))?,
    ));
    let sink: Sink = {
        let recorder = recorder.clone();
        Arc::new(move |delivery, at| {
            recorder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(&delivery.payload, at);
        })
    };
    let (fleet, connect) = fleet::connect(plan, Some(sink), &progress)
        .await
        .map_err(Failure::failed)?;
    if args.fleet.json {
        json_line("connected", &connect);
    }
    let aliases = fleet.aliases().to_vec();
    if aliases.is_empty() {
        return Err(Failure::failed(format!(
            "no device logged in: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.http_connections.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::failed(format!("HTTP client: {e}")))?;
    let url = format!("{}/v1/push", args.api.trim_end_matches('/'));
    let schedule = Schedule::new(args.rate, Duration::from_secs(args.duration.max(1)));
    let gate = Arc::new(Semaphore::new(args.http_connections.max(1)));
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let mut push = PushReport {
        rate: schedule.rate(),
        reliable: args.reliable,
        payload_bytes: args.size,
        http_connections: args.http_connections.max(1),
        scheduled: schedule.total(),
        ..PushReport::default()
    };
    let tally = |push: &mut PushReport, outcome: Outcome| match outcome {
        Outcome::Accepted => push.accepted += 1,
        Outcome::NotOnline => push.not_online += 1,
        Outcome::Dropped => push.dropped += 1,
        Outcome::Error(message) => {
            push.http_errors += 1;
            push.first_error.get_or_insert(message);
        }
    };

    // Bounded in time: whatever is not sent by twice the schedule's span
    // plus 10 s is counted as unsent.
    let run_start = Instant::now();
    let give_up = run_start + schedule.span() * 2 + Duration::from_secs(10);
    let mut next_progress = run_start + Duration::from_secs(1);
    let mut max_lag = Duration::ZERO;
    for k in 0..schedule.total() {
        let due = run_start + schedule.offset(k);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let permit = tokio::select! {
            permit = gate.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = tokio::time::sleep_until(give_up) => {
                push.unsent = schedule.total() - k;
                break;
            }
        };
        let now = Instant::now();
        max_lag = max_lag.max(now.saturating_duration_since(due));
        let stamp = Stamp {
            seq: k,
            scheduled_us: u64::try_from(due.duration_since(epoch).as_micros()).unwrap_or(u64::MAX),
        };
        let alias = &aliases[(k % aliases.len() as u64) as usize];
        let body = serde_json::json!({
            "biz": args.fleet.biz,
            "alias": alias,
            "payload": stamp.encode(args.size),
            "reliable": args.reliable,
        })
        .to_string();
        let request = http
            .post(&url)
            .bearer_auth(&api_key)
            .header("content-type", "application/json")
            .body(body);
        inflight.spawn(async move {
            let outcome = push_once(request).await;
            drop(permit);
            outcome
        });
        while let Some(done) = inflight.try_join_next() {
            if let Ok(outcome) = done {
                tally(&mut push, outcome);
            }
        }
        if now >= next_progress {
            next_progress = now + Duration::from_secs(1);
            progress.update(&format!(
                "pushing: {k}/{} sent, {} delivered, {:.0} s",
                schedule.total(),
                Counters::get(&fleet.counters().received),
                now.duration_since(run_start).as_secs_f64()
            ));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(done) = inflight.join_next().await {
            if let Ok(outcome) = done {
                tally(&mut push, outcome);
            }
        }
    })
    .await;
    push.http_errors += inflight.len() as u64;
    inflight.abort_all();
    push.seconds = run_start.elapsed().as_secs_f64();
    push.max_send_lag_ms = max_lag.as_secs_f64() * 1000.0;

    // Drain: wait for the deliveries of the accepted pushes, bounded.
    let drain_end = Instant::now() + Duration::from_secs(args.drain);
    let expected = push.accepted;
    while Instant::now() < drain_end {
        let received = recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .received();
        if received >= expected {
            break;
        }
        progress.update(&format!("draining: {received}/{expected} delivered"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.close(Duration::from_secs(2)).await;

    let delivery = {
        let recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
        let delivered = recorder.received();
        let span = recorder.last_at().map_or(0.0, |last| {
            last.saturating_duration_since(run_start).as_secs_f64()
        });
        DeliveryReport {
            delivered,
            delivered_pct: if expected == 0 {
                0.0
            } else {
                delivered as f64 * 100.0 / expected as f64
            },
            delivered_per_sec: if span > 0.0 {
                delivered as f64 / span
            } else {
                0.0
            },
            unstamped: recorder.unstamped(),
            latency: recorder.summary(),
        }
    };
    progress.done(&format!(
        "delivered {}/{} ({:.2} %), p99 {}",
        delivery.delivered,
        expected,
        delivery.delivered_pct,
        ms(delivery.latency.p99_us)
    ));
    let report = UnicastReport {
        workload: "unicast",
        connect,
        push,
        delivery,
    };
    if args.fleet.json {
        json_line("report", &report);
    } else {
        print!("{}", table(&report).render("pike bench unicast"));
    }
    Ok(())
}

fn table(report: &UnicastReport) -> Table {
    let mut table = Table::default();
    connect_rows(&mut table, &report.connect);
    let (p, d, l) = (&report.push, &report.delivery, &report.delivery.latency);
    table
        .row(
            "offered rate",
            format!(
                "{}/s ({})",
                p.rate,
                if p.reliable { "reliable" } else { "transient" }
            ),
        )
        .row("pushes scheduled", p.scheduled)
        .row("accepted (alias online)", p.accepted)
        .row(
            "not online / dropped",
            format!("{} / {}", p.not_online, p.dropped),
        )
        .row(
            "HTTP errors / unsent",
            format!("{} / {}", p.http_errors, p.unsent),
        )
        .row("max send lag", format!("{:.1} ms", p.max_send_lag_ms))
        .row(
            "delivered",
            format!("{} ({:.2} %)", d.delivered, d.delivered_pct),
        )
        .row("delivered/s", format!("{:.0}", d.delivered_per_sec))
        .row("latency p50", ms(l.p50_us))
        .row("latency p90", ms(l.p90_us))
        .row("latency p99", ms(l.p99_us))
        .row("latency p99.9", ms(l.p999_us))
        .row("latency max", ms(l.max_us));
    if let Some(error) = &p.first_error {
        table.row("first HTTP error", error);
    }
    table
}

/// Sends one push and reads the answer (so the connection is kept alive).
async fn push_once(request: reqwest::RequestBuilder) -> Outcome {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    if !status.is_success() {
        return Outcome::Error(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if answer["dropped"].as_u64().unwrap_or(0) > 0 {
        Outcome::Dropped
    } else if answer["online"].as_u64().unwrap_or(1) == 0 {
        Outcome::NotOnline
    } else {
        Outcome::Accepted
    }
}

/// The API key: the flag or environment, else the dev app's.
fn api_key(common: &Common, explicit: Option<&str>) -> Result<String, Failure> {
    if let Some(key) = explicit {
        return Ok(key.to_owned());
    }
    match DataDir::existing(&common.data_dir).read_dev_app() {
        Ok(Some(dev)) if dev.app == common.app => Ok(dev.api_key),
        Ok(_) => Err(Failure::usage(format!(
            "no API key for app {:?}: pass --api-key (or PIKE_API_KEY), or run next to a zero-config gateway's {}",
            common.app,
            common.data_dir.display()
        ))),
        Err(e) => Err(Failure::failed(e.to_string())),
    }
}
