//! Workload S8, reconnect storm: N TLS clients logged in to pike, the
//! gateway killed (SIGKILL) and started again on the same ports; how long
//! until 99 % (and 100 %) are logged in again, against the raw TLS
//! handshake ceiling of the same gateway measured in the same run (N
//! divided by handshakes/s is the fastest any client fleet could come
//! back). Clients that gave up must be 0.

use std::time::Duration;

use serde_json::Value;

use super::load::{self, Load};
use super::servers::{Binaries, Kind, Server, ServerSpec, TlsFiles};

/// Seconds after which the clients count their connection as stable
/// (the driver's default is 30 s; shortened so the run stays short).
const STABLE_SECS: u64 = 5;

/// One client policy S8 runs against the same gateway build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct S8Variant {
    /// Column of the table.
    pub(crate) label: &'static str,
    /// `pike bench storm --crash-window-retries` (`None`: the driver's
    /// default).
    pub(crate) crash_window_retries: Option<u8>,
}

/// The variants of every round: the client driver as shipped, and with
/// failed dials after the outage going straight to the Fibonacci backoff
/// (the driver before crash-window retries), measured in the same run.
pub(crate) const VARIANTS: [S8Variant; 2] = [
    S8Variant {
        label: "pike",
        crash_window_retries: None,
    },
    S8Variant {
        label: "pike, backoff at once",
        crash_window_retries: Some(0),
    },
];

/// The `--baseline` gateway (the build before a change) with the shipped
/// client driver.
pub(crate) const BASELINE: S8Variant = S8Variant {
    label: "pike (baseline)",
    crash_window_retries: None,
};

/// Settings of S8.
#[derive(Clone, Debug)]
pub(crate) struct S8Settings {
    pub(crate) clients: usize,
    /// Seconds of the TLS handshake ceiling measurement.
    pub(crate) ceiling_secs: u64,
    /// Longest wait for the storm to settle, seconds.
    pub(crate) deadline: u64,
}

/// One S8 round.
#[derive(Clone, Debug, Default)]
pub(crate) struct S8Result {
    pub(crate) label: String,
    pub(crate) round: usize,
    pub(crate) clients: usize,
    pub(crate) connected: u64,
    pub(crate) handshakes_per_sec: f64,
    /// `clients / handshakes_per_sec`.
    pub(crate) ideal_secs: f64,
    pub(crate) seconds_to_99: f64,
    pub(crate) seconds_to_100: Option<f64>,
    pub(crate) gave_up: u64,
    pub(crate) curve: Vec<(f64, f64)>,
    pub(crate) recovered: Value,
}

impl S8Result {
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "label": self.label,
            "round": self.round,
            "clients": self.clients,
            "connected": self.connected,
            "tls_handshakes_per_sec": self.handshakes_per_sec,
            "ideal_secs": self.ideal_secs,
            "seconds_to_99": self.seconds_to_99,
            "seconds_to_100": self.seconds_to_100,
            "gave_up": self.gave_up,
            "recovered": self.recovered,
        })
    }
}

/// Runs one S8 round.
pub(crate) async fn measure(
    bins: &Binaries,
    tls: &TlsFiles,
    settings: &S8Settings,
    variant: S8Variant,
    round: usize,
) -> Result<S8Result, String> {
    let dir = tempfile::Builder::new()
        .prefix("pike-bench-s8-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let spec = ServerSpec {
        kind: Kind::Pike,
        tls: Some(tls.clone()),
        quic: false,
        webhook: None,
        uplink_batch_max: 1,
        receipt_webhook: None,
        retention: None,
        mqtt: false,
    };
    let mut server = Server::start_spec(&spec, bins, 0).await?;
    let tls_addr = server
        .tls_addr
        .ok_or("pike started without its TLS listener")?;

    // The ceiling: bare TLS handshakes against the same listener.
    let mut command = load::command_for(Kind::Pike, bins, &server, "tls-handshakes");
    command
        .arg("--server")
        .arg(tls_addr.to_string())
        .arg("--pin")
        .arg(&tls.fingerprint)
        .arg("--duration")
        .arg(settings.ceiling_secs.to_string())
        .args(["--concurrency", "64"]);
    let mut ceiling = Load::spawn(command, dir.path())?;
    let report = ceiling
        .expect("report", Duration::from_secs(settings.ceiling_secs + 60))
        .await?;
    ceiling.finish().await;
    let per_sec = report["per_sec"].as_f64().unwrap_or(0.0);

    // The storm.
    let mut command = load::command_for(Kind::Pike, bins, &server, "storm");
    command
        .arg("--server")
        .arg(tls_addr.to_string())
        .arg("--pin")
        .arg(&tls.fingerprint)
        .arg("--clients")
        .arg(settings.clients.to_string())
        .args(["--source-net", "127.0.30", "--sources", "32"])
        .arg("--deadline")
        .arg(settings.deadline.to_string())
        .arg("--stable-secs")
        .arg(STABLE_SECS.to_string());
    if let Some(n) = variant.crash_window_retries {
        command.arg("--crash-window-retries").arg(n.to_string());
    }
    let mut storm = Load::spawn(command, dir.path())?;
    let connected = storm
        .expect("connected", Duration::from_secs(settings.deadline + 60))
        .await?;
    eprintln!(
        "xtask bench:   {} TLS clients logged in ({:.0}/s); killing the gateway",
        connected["connections"].as_u64().unwrap_or(0),
        connected["rate_per_sec"].as_f64().unwrap_or(0.0)
    );
    // Let every connection count as stable (its driver then spreads its
    // first reconnect, as after a long-lived connection) before the kill.
    tokio::time::sleep(Duration::from_secs(STABLE_SECS + 1)).await;
    server.kill().await;
    storm
        .expect("down", Duration::from_secs(settings.deadline + 30))
        .await?;
    let restarting = tokio::time::Instant::now();
    server.restart(bins).await?;
    let restart_secs = restarting.elapsed().as_secs_f64();
    eprintln!("xtask bench:   the gateway accepts again after {restart_secs:.3} s");
    let recovered = storm
        .expect("recovered", Duration::from_secs(settings.deadline + 60))
        .await?;
    storm.finish().await;
    server.stop().await;
    let curve = recovered["curve"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(S8Result {
        label: variant.label.to_owned(),
        round,
        clients: settings.clients,
        connected: connected["connections"].as_u64().unwrap_or(0),
        handshakes_per_sec: per_sec,
        ideal_secs: if per_sec > 0.0 {
            settings.clients as f64 / per_sec
        } else {
            f64::NAN
        },
        seconds_to_99: recovered["seconds_to_99"].as_f64().unwrap_or(f64::NAN),
        seconds_to_100: recovered["seconds_to_100"].as_f64(),
        gave_up: recovered["gave_up"].as_u64().unwrap_or(0),
        curve,
        recovered,
    })
}

/// The S8 table: the median over rounds (min–max), a column per variant.
pub(crate) fn table(results: &[S8Result]) -> String {
    use super::report::render;
    use super::sweep_report::spread;
    let cell = |values: Vec<f64>, decimals: usize| {
        spread(&values).map_or_else(
            || "–".to_owned(),
            |(m, lo, hi)| {
                if (hi - lo).abs() > f64::EPSILON {
                    format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
                } else {
                    format!("{m:.decimals$}")
                }
            },
        )
    };
    let mut labels: Vec<&str> = Vec::new();
    for r in results {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    type Metric = (&'static str, usize, fn(&S8Result) -> f64);
    let metrics: [Metric; 8] = [
        ("TLS clients", 0, |r| r.clients as f64),
        (
            "raw TLS handshakes/s of the gateway (the ceiling)",
            0,
            |r| r.handshakes_per_sec,
        ),
        ("ideal recovery: clients / ceiling, s", 2, |r| r.ideal_secs),
        ("seconds until 99 % logged in again", 2, |r| r.seconds_to_99),
        ("seconds until 100 %", 2, |r| {
            r.seconds_to_100.unwrap_or(f64::NAN)
        }),
        ("99 % time / ideal (1.00 = at the ceiling)", 2, |r| {
            r.seconds_to_99 / r.ideal_secs
        }),
        ("100 % time / ideal", 2, |r| {
            r.seconds_to_100.unwrap_or(f64::NAN) / r.ideal_secs
        }),
        ("clients that gave up (must be 0)", 0, |r| r.gave_up as f64),
    ];
    let mut header = vec!["metric".to_owned()];
    header.extend(labels.iter().map(|l| (*l).to_owned()));
    let mut rows = vec![header];
    for (name, decimals, value) in metrics {
        let mut row = vec![name.to_owned()];
        for label in &labels {
            row.push(cell(
                results
                    .iter()
                    .filter(|r| r.label == *label)
                    .map(value)
                    .collect(),
                decimals,
            ));
        }
        rows.push(row);
    }
    render(&rows)
}
