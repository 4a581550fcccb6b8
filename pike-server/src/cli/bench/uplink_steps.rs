//! The uplink sweep's steps (S5): per rate a warm-up,
//! a measured window and a drain; the `connected` and `step` JSON lines;
//! the generator's own CPU time.
//!
//! A message belongs to a step's measurement when its *scheduled* time
//! falls inside the step's window: warm-up messages, and late messages of
//! an earlier step, are scheduled before it and are not counted.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::fleet::ConnectReport;
use super::report::json_line;

/// The sweep options every rate-sweeping workload shares.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Total rates of the sweep, messages per second, in order.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub(crate) rates: Vec<u64>,
    /// Seconds sent at a rate before its measured window.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// The measured window, seconds.
    #[arg(long, default_value_t = 6)]
    pub(crate) step: u64,
    /// Seconds to wait for in-flight messages after the window (nothing is
    /// sent meanwhile).
    #[arg(long, default_value_t = 2)]
    pub(crate) drain: u64,
    /// Payload size, bytes (at least the stamp, about 20 bytes).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
}

impl SweepArgs {
    /// Checks the rates.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.rates.is_empty() || self.rates.contains(&0) {
            return Err("--rates needs positive rates, e.g. --rates 1000,5000".to_owned());
        }
        if self.step == 0 {
            return Err("--step must be at least 1 second".to_owned());
        }
        Ok(())
    }

    /// The warm-up.
    pub(crate) fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup)
    }

    /// The measured window.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_secs(self.step.max(1))
    }

    /// The drain.
    pub(crate) fn drain(&self) -> Duration {
        Duration::from_secs(self.drain)
    }
}

/// The `connected` line of the contract, with the fleet's details.
pub(crate) fn connected_line(connect: &ConnectReport) {
    let mut line = serde_json::to_value(connect).unwrap_or_default();
    if let Some(object) = line.as_object_mut() {
        object.insert("connections".into(), connect.connected.into());
        object.insert("rate_per_sec".into(), connect.rate.into());
    }
    json_line("connected", &line);
}

/// One measured step, as the contract's `step` line.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct StepLine {
    pub(crate) rate: u64,
    pub(crate) seconds: f64,
    /// Messages handed to the channel in the window.
    pub(crate) sent: u64,
    /// Deliveries expected (= `sent`).
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_pct: f64,
    pub(crate) delivered_per_sec: f64,
    pub(crate) offered_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    /// Window messages not sent before their slot's deadline.
    pub(crate) unsent: u64,
    /// Window messages the channel refused, or that failed for good.
    pub(crate) send_errors: u64,
    /// This process's CPU time during window + drain.
    pub(crate) gen_cpu_secs: f64,
}

impl StepLine {
    /// Fills the derived ratios from `sent`, `delivered` and `seconds`.
    pub(crate) fn derive(&mut self) {
        self.expected = self.sent;
        self.delivered_pct = if self.expected == 0 {
            0.0
        } else {
            self.delivered as f64 * 100.0 / self.expected as f64
        };
        let seconds = self.seconds.max(1e-9);
        self.delivered_per_sec = self.delivered as f64 / seconds;
        self.offered_per_sec = self.expected as f64 / seconds;
    }
}

/// CPU time (user + system) this process has used so far, seconds; 0 where
/// `/proc/self/stat` cannot be read.
pub(crate) fn cpu_secs() -> f64 {
    super::cpu::process_cpu_secs().unwrap_or(0.0)
}

/// CPU seconds rounded to the clock tick (differences of float sums
/// otherwise print as 0.31999999999999995).
pub(crate) fn cpu_since(start: f64) -> f64 {
    ((cpu_secs() - start) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ratios() {
        let mut step = StepLine {
            rate: 100,
            seconds: 4.0,
            sent: 400,
            delivered: 300,
            ..StepLine::default()
        };
        step.derive();
        assert_eq!(step.expected, 400);
        assert!((step.delivered_pct - 75.0).abs() < 1e-9);
        assert!((step.delivered_per_sec - 75.0).abs() < 1e-9);
        assert!((step.offered_per_sec - 100.0).abs() < 1e-9);
        let mut empty = StepLine::default();
        empty.derive();
        assert_eq!(empty.delivered_pct, 0.0);
    }

    #[test]
    fn rates_must_be_positive() {
        let mut args = SweepArgs {
            rates: vec![50, 200],
            warmup: 2,
            step: 6,
            drain: 2,
            size: 64,
        };
        assert!(args.validate().is_ok());
        args.rates = vec![50, 0];
        assert!(args.validate().is_err());
        args.rates.clear();
        assert!(args.validate().is_err());
    }
}
