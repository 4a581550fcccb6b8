//! `pike bench storm` (S8): N TLS devices with the real client driver and
//! its reconnect backoff; the harness kills the gateway and restarts it on
//! the same ports; how long until the devices are logged in again.
//!
//! After the connect phase it prints `connected`; then it samples the
//! number of logged-in devices every [`SAMPLE`] and prints `down` once at
//! least 99 % of them lost their connection, then `recovered` once 99 %
//! and then 100 % are logged in again (or the deadline passed), with the
//! curve of logged-in devices since `down` and the backoff the driver used.
//! The whole run after `connected` is bounded by `--deadline`.

use std::time::Duration;

use clap::Args;
use pike_channel::ClientConfig;
use serde::Serialize;
use tokio::time::Instant;

use super::FleetArgs;
use super::fleet::{self, ConnectReport, Counters};
use super::idle::plan;
use super::report::{Progress, json_line};
use super::uplink_steps::connected_line;
use crate::cli::device::Transport;
use crate::cli::{Common, Failure};

/// How often the logged-in count is sampled.
const SAMPLE: Duration = Duration::from_millis(100);

/// The client driver's defaults (pike-channel `ClientConfig::default()`,
/// docs/channel.md "Reconnect delay"); a test checks them against the
/// driver.
const DEFAULT_SPREAD_MS: u64 = 10_000;
const DEFAULT_STABLE_SECS: u64 = 30;
const BACKOFF_BASE_MS: u64 = 1_000;
const BACKOFF_MAX_MS: u64 = 60_000;
const BACKOFF_JITTER: f64 = 0.5;
const DEFAULT_CRASH_WINDOW_RETRIES: u8 = 3;

/// Arguments of `pike bench storm`.
#[derive(Debug, Args)]
pub(crate) struct StormArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Bound of everything after `connected` (waiting for the outage and
    /// for the recovery), seconds.
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// Spread of the first reconnect after losing a stable connection
    /// (uniform in [0, spread]), milliseconds (default: the driver's,
    /// 10 000).
    #[arg(long)]
    spread_ms: Option<u64>,
    /// A connection up this long counts as stable (its loss reconnects
    /// after the spread; a shorter one follows the Fibonacci backoff),
    /// seconds (default: the driver's, 30). Kill the gateway later than
    /// this after `connected`.
    #[arg(long)]
    stable_secs: Option<u64>,
    /// Dials failing in a row after the outage that are retried in the
    /// window the gateway's hello advised before the Fibonacci backoff
    /// (default: the driver's, 3; 0 gives the backoff at once).
    #[arg(long)]
    crash_window_retries: Option<u8>,
}

/// The reconnect policy in effect, as reported.
#[derive(Clone, Debug, Serialize)]
struct Backoff {
    /// First reconnect after losing a stable connection: uniform in
    /// `[0, spread]` (unless the server advised a range).
    first_reconnect_spread_ms: u64,
    /// A connection that lived this long counts as stable.
    stable_period_secs: u64,
    /// Failed dials after the outage retried in the advised window.
    crash_window_retries: u8,
    /// Later reconnects: `base · F(n)` (1, 1, 2, 3, 5, ... s), jittered,
    /// capped.
    fibonacci_base_ms: u64,
    fibonacci_max_ms: u64,
    jitter: f64,
    /// The driver never stops retrying.
    retry_limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Recovered {
    seconds_to_99: Option<f64>,
    seconds_to_100: Option<f64>,
    gave_up: u64,
    /// Devices logged in when the run ended.
    logged_in: u64,
    clients: u64,
    curve: Vec<(f64, u64)>,
    backoff: Backoff,
}

#[derive(Debug, Serialize)]
struct StormReport {
    workload: &'static str,
    clients: u64,
    transport: &'static str,
    down_at_secs: Option<f64>,
    seconds_to_99: Option<f64>,
    seconds_to_100: Option<f64>,
    gave_up: u64,
    disconnects: u64,
    relogins: u64,
    backoff: Backoff,
    connect: ConnectReport,
}

pub(crate) async fn run(common: &Common, mut args: StormArgs) -> Result<(), Failure> {
    args.fleet.dial.transport.get_or_insert(Transport::Tls);
    let mut plan = plan(common, &args.fleet)?;
    let backoff = configure(
        &mut plan.channel,
        args.spread_ms,
        args.stable_secs,
        args.crash_window_retries,
    )?;
    let progress = Progress::new(args.fleet.quiet);
    let (fleet, connect) = fleet::connect(plan, None, &progress)
        .await
        .map_err(Failure::failed)?;
    if args.fleet.json {
        connected_line(&connect);
    }
    let clients = connect.connected;
    if clients == 0 {
        return Err(Failure::failed(format!(
            "no client logged in: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }
    let counters = fleet.counters();
    let online = || Counters::get(&counters.online);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.deadline.max(1));
    progress.done(&format!(
        "{clients} clients logged in; waiting for the gateway to go down (stable after {} s)",
        backoff.stable_period_secs
    ));

    // Phase 1: wait for the outage.
    let mut down_at = None;
    let mut tick = 0u32;
    while Instant::now() < deadline {
        tick += 1;
        tokio::time::sleep_until((start + SAMPLE * tick).min(deadline)).await;
        tick = tick.max(ticks_since(start));
        if lost_enough(clients, online()) {
            let at = start.elapsed().as_secs_f64();
            down_at = Some(at);
            if args.fleet.json {
                json_line("down", &serde_json::json!({ "at_secs": round(at) }));
            }
            progress.done(&format!("down at {at:.1} s: {} logged in", online()));
            break;
        }
        if tick.is_multiple_of(10) {
            progress.update(&format!("waiting for the outage: {} logged in", online()));
        }
    }

    // Phase 2: the recovery curve.
    let mut recovery = Recovery::new(clients);
    if down_at.is_some() {
        let down = Instant::now();
        let mut tick = 0u32;
        recovery.observe(0.0, online());
        while Instant::now() < deadline && recovery.seconds_to_100.is_none() {
            tick += 1;
            tokio::time::sleep_until((down + SAMPLE * tick).min(deadline)).await;
            tick = tick.max(ticks_since(down));
            let now = online();
            recovery.observe(down.elapsed().as_secs_f64(), now);
            if tick.is_multiple_of(10) {
                progress.update(&format!("recovering: {now}/{clients} logged in"));
            }
        }
        let recovered = Recovered {
            seconds_to_99: recovery.seconds_to_99,
            seconds_to_100: recovery.seconds_to_100,
            gave_up: Counters::get(&counters.gave_up),
            logged_in: online(),
            clients,
            curve: recovery.curve.clone(),
            backoff: backoff.clone(),
        };
        progress.done(&format!(
            "recovered: 99 % after {}, 100 % after {}, {} gave up",
            seconds(recovered.seconds_to_99),
            seconds(recovered.seconds_to_100),
            recovered.gave_up
        ));
        if args.fleet.json {
            json_line("recovered", &recovered);
        }
    }

    let report = StormReport {
        workload: "storm",
        clients,
        transport: connect.transport,
        down_at_secs: down_at.map(round),
        seconds_to_99: recovery.seconds_to_99,
        seconds_to_100: recovery.seconds_to_100,
        gave_up: Counters::get(&counters.gave_up),
        disconnects: Counters::get(&counters.disconnects),
        relogins: Counters::get(&counters.relogins),
        backoff,
        connect,
    };
    fleet.close(Duration::from_secs(2)).await;
    if args.fleet.json {
        json_line("report", &report);
    }
    if report.down_at_secs.is_none() {
        return Err(Failure::failed(format!(
            "the clients never lost their connections within --deadline {} s",
            args.deadline
        )));
    }
    Ok(())
}

/// Applies the spread, stable-period and crash-window overrides; returns
/// the policy in effect.
fn configure(
    channel: &mut ClientConfig,
    spread_ms: Option<u64>,
    stable_secs: Option<u64>,
    crash_window_retries: Option<u8>,
) -> Result<Backoff, Failure> {
    if let Some(n) = crash_window_retries {
        channel
            .crash_window_retries(n)
            .map_err(|e| Failure::usage(format!("--crash-window-retries: {e}")))?;
    }
    if let Some(ms) = spread_ms {
        channel
            .reconnect_spread(Duration::from_millis(ms))
            .map_err(|e| Failure::usage(format!("--spread-ms: {e}")))?;
    }
    if let Some(secs) = stable_secs {
        channel
            .stable_period(Duration::from_secs(secs))
            .map_err(|e| Failure::usage(format!("--stable-secs: {e}")))?;
    }
    Ok(Backoff {
        first_reconnect_spread_ms: spread_ms.unwrap_or(DEFAULT_SPREAD_MS),
        stable_period_secs: stable_secs.unwrap_or(DEFAULT_STABLE_SECS),
        crash_window_retries: crash_window_retries.unwrap_or(DEFAULT_CRASH_WINDOW_RETRIES),
        fibonacci_base_ms: BACKOFF_BASE_MS,
        fibonacci_max_ms: BACKOFF_MAX_MS,
        jitter: BACKOFF_JITTER,
        retry_limit: None,
    })
}

/// Whole samples elapsed since `start` (a late wake-up skips the missed
/// samples instead of taking them all at once).
fn ticks_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis() / SAMPLE.as_millis()).unwrap_or(u32::MAX)
}

/// At least 99 % of `clients` are not logged in.
fn lost_enough(clients: u64, online: u64) -> bool {
    clients.saturating_sub(online) * 100 >= clients * 99
}

/// The recovery after the outage: the curve and the two thresholds.
#[derive(Debug)]
struct Recovery {
    clients: u64,
    curve: Vec<(f64, u64)>,
    seconds_to_99: Option<f64>,
    seconds_to_100: Option<f64>,
}

impl Recovery {
    fn new(clients: u64) -> Self {
        Self {
            clients,
            curve: Vec::new(),
            seconds_to_99: None,
            seconds_to_100: None,
        }
    }

    /// A sample: `online` devices logged in `t` seconds after the outage.
    fn observe(&mut self, t: f64, online: u64) {
        let t = round(t);
        self.curve.push((t, online));
        if self.seconds_to_99.is_none() && online * 100 >= self.clients * 99 {
            self.seconds_to_99 = Some(t);
        }
        if self.seconds_to_100.is_none() && online >= self.clients {
            self.seconds_to_100 = Some(t);
        }
    }
}

/// Seconds to a tenth of a millisecond.
fn round(t: f64) -> f64 {
    (t * 10_000.0).round() / 10_000.0
}

fn seconds(t: Option<f64>) -> String {
    t.map_or_else(|| "never".to_owned(), |t| format!("{t:.1} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_means_99_percent_lost() {
        assert!(!lost_enough(1000, 11));
        assert!(lost_enough(1000, 10));
        assert!(lost_enough(1000, 0));
        // Small fleets: 1 of 50 still online is 98 % lost.
        assert!(!lost_enough(50, 1));
        assert!(lost_enough(50, 0));
    }

    #[test]
    fn recovery_thresholds_are_the_first_crossings() {
        let mut r = Recovery::new(200);
        for (t, online) in [(0.0, 0), (0.1, 50), (0.2, 197), (0.3, 198), (0.4, 199)] {
            r.observe(t, online);
        }
        assert_eq!(r.seconds_to_99, Some(0.3));
        assert_eq!(r.seconds_to_100, None);
        // A dip does not move the first crossing.
        r.observe(0.5, 150);
        r.observe(0.6, 200);
        assert_eq!(r.seconds_to_99, Some(0.3));
        assert_eq!(r.seconds_to_100, Some(0.6));
        assert_eq!(r.curve.len(), 7);
        assert_eq!(r.curve[2], (0.2, 197));
    }

    #[test]
    fn reported_backoff_matches_the_driver_defaults() {
        // The driver keeps its settings private; its Debug output shows
        // them. If the driver's defaults change, this fails and the
        // constants above must follow.
        let debug = format!("{:?}", ClientConfig::default());
        assert!(debug.contains("reconnect_spread: 10s"), "{debug}");
        assert!(debug.contains("stable_period: 30s"), "{debug}");
        assert!(debug.contains("unit: 1s, cap: 60s, jitter: 0.5"), "{debug}");
        assert!(debug.contains("crash_window_retries: 3,"), "{debug}");
        let mut channel = ClientConfig::default();
        let b = configure(&mut channel, Some(2_000), Some(5), Some(0)).unwrap();
        assert_eq!(b.first_reconnect_spread_ms, 2_000);
        assert_eq!(b.stable_period_secs, 5);
        assert_eq!(b.crash_window_retries, 0);
        let debug = format!("{channel:?}");
        assert!(debug.contains("reconnect_spread: 2s"), "{debug}");
        assert!(debug.contains("crash_window_retries: 0,"), "{debug}");
        assert!(configure(&mut channel, Some(601_000), None, None).is_err());
        assert!(configure(&mut channel, None, None, Some(11)).is_err());
    }
}
