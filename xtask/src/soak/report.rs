//! The soak's minutes as the harness saw them (gateway samples plus each
//! generator's step line of that minute), the per-minute Markdown table,
//! the verdict's text and the JSON.

use serde_json::{Map, Value};

use super::rule::{self, Delivery, Sample, Verdict};
use crate::bench::report::render;

/// One minute: the gateway's figures at its end and the generators' step
/// lines of it (by workload: `unicast`, `room`, `uplink`, `churn`).
#[derive(Clone, Debug)]
pub(crate) struct Minute {
    pub(crate) minute: u32,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
    pub(crate) threads: u64,
    pub(crate) tasks: Option<u64>,
    /// Gateway CPU over the minute, % of one core.
    pub(crate) cpu_pct: f64,
    /// Size of the store's files (not judged: it grows with retained
    /// records by design).
    pub(crate) store_bytes: u64,
    pub(crate) steps: Map<String, Value>,
}

/// Gives each minute its step lines: a generator's `k`-th step is minute
/// `k` (one 60-second step per minute); extra lines are dropped.
pub(crate) fn attach(minutes: &mut [Minute], lines: &[(&'static str, Value)]) {
    let mut seen: Map<String, Value> = Map::new();
    for (workload, line) in lines {
        let counter = seen.entry(*workload).or_insert(Value::from(0));
        let index = counter.as_u64().unwrap_or(0);
        *counter = Value::from(index + 1);
        if let Some(minute) = usize::try_from(index).ok().and_then(|i| minutes.get_mut(i)) {
            minute.steps.insert((*workload).to_owned(), line.clone());
        }
    }
}

impl Minute {
    fn step(&self, workload: &str) -> Option<&Value> {
        self.steps.get(workload)
    }

    fn number(&self, workload: &str, key: &str) -> f64 {
        self.step(workload)
            .and_then(|s| s[key].as_f64())
            .unwrap_or(f64::NAN)
    }

    /// A stream's p99: NaN when its step is missing or delivered nothing
    /// (the histogram is empty then, not zero).
    fn p99(&self, workload: &str) -> f64 {
        if self.number(workload, "delivered") > 0.0 {
            self.number(workload, "p99_ms")
        } else {
            f64::NAN
        }
    }

    fn delivery(&self, workload: &str) -> Delivery {
        let Some(step) = self.step(workload) else {
            return Delivery::default();
        };
        let count = |key: &str| step[key].as_u64().unwrap_or(0);
        Delivery {
            expected: count("expected"),
            delivered: count("delivered"),
            errors: count("send_errors"),
            unsent: count("unsent"),
        }
    }

    /// What the rule judges.
    pub(crate) fn sample(&self) -> Sample {
        Sample {
            minute: self.minute,
            rss_kib: self.rss_kib as f64,
            fds: self.fds as f64,
            tasks: self.tasks.map_or(f64::NAN, |t| t as f64),
            unicast_p99_ms: self.p99("unicast"),
            room_p99_ms: self.p99("room"),
            delivery: rule::STREAMS.map(|stream| self.delivery(stream)),
        }
    }

    /// The progress line printed at the minute's end.
    pub(crate) fn progress(&self) -> String {
        format!(
            "minute {}: RSS {:.1} MiB, {} fds, {} tasks, {} threads, CPU {:.1} %, store {:.1} MiB",
            self.minute,
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.tasks.map_or_else(|| "?".to_owned(), |t| t.to_string()),
            self.threads,
            self.cpu_pct,
            self.store_bytes as f64 / 1_048_576.0
        )
    }

    /// A minute as [`to_json`](Self::to_json) wrote it.
    pub(crate) fn from_json(value: &Value) -> Result<Self, String> {
        let number = |key: &str| {
            value[key]
                .as_u64()
                .ok_or_else(|| format!("a sample has no `{key}`: {value}"))
        };
        Ok(Self {
            minute: u32::try_from(number("minute")?).map_err(|e| e.to_string())?,
            rss_kib: number("rss_kib")?,
            fds: number("fds")?,
            threads: number("threads")?,
            tasks: value["tasks"].as_u64(),
            cpu_pct: value["cpu_pct"].as_f64().unwrap_or(f64::NAN),
            store_bytes: number("store_bytes")?,
            steps: value["steps"].as_object().cloned().unwrap_or_default(),
        })
    }

    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "minute": self.minute,
            "rss_kib": self.rss_kib,
            "fds": self.fds,
            "threads": self.threads,
            "tasks": self.tasks,
            "cpu_pct": self.cpu_pct,
            "store_bytes": self.store_bytes,
            "steps": self.steps,
        })
    }
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "–".to_owned()
    }
}

fn pct(d: &Delivery) -> String {
    let unsent = if d.unsent > 0 {
        format!(", {} unsent", d.unsent)
    } else {
        String::new()
    };
    if d.expected == 0 {
        "–".to_owned()
    } else if d.whole() {
        format!("100 % ({}{unsent})", d.delivered)
    } else {
        format!(
            "**{:.3} %** ({}/{}, {} errors{unsent})",
            d.pct(),
            d.delivered,
            d.expected,
            d.errors
        )
    }
}

/// The per-minute Markdown table.
pub(crate) fn table(minutes: &[Minute]) -> String {
    let mut rows = vec![
        [
            "min",
            "RSS MiB",
            "fds",
            "tasks",
            "CPU %",
            "store MiB",
            "unicast p99 ms",
            "room p99 ms",
            "uplink p99 ms",
            "unicast delivered",
            "room delivered",
            "uplink delivered",
            "reconnects",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for m in minutes {
        let s = m.sample();
        let reconnects = m
            .step("churn")
            .and_then(|c| c["reconnects"].as_u64())
            .map_or_else(|| "–".to_owned(), |r| r.to_string());
        rows.push(vec![
            m.minute.to_string(),
            format!("{:.1}", m.rss_kib as f64 / 1024.0),
            m.fds.to_string(),
            m.tasks.map_or_else(|| "–".to_owned(), |t| t.to_string()),
            format!("{:.1}", m.cpu_pct),
            format!("{:.1}", m.store_bytes as f64 / 1_048_576.0),
            ms(s.unicast_p99_ms),
            ms(s.room_p99_ms),
            ms(m.p99("uplink")),
            pct(&s.delivery[0]),
            pct(&s.delivery[1]),
            pct(&s.delivery[2]),
            reconnects,
        ]);
    }
    render(&rows)
}

/// The measured rates and gateway CPU over the whole run.
pub(crate) fn rates_line(minutes: &[Minute], asked: u32) -> String {
    let mean = |f: &dyn Fn(&Minute) -> f64| {
        let values: Vec<f64> = minutes.iter().map(f).filter(|v| v.is_finite()).collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let max_cpu = minutes.iter().map(|m| m.cpu_pct).fold(0.0, f64::max);
    format!(
        "Measured over {} of {asked} minutes: gateway CPU {:.1} % of one core on average (most {:.1} %); \
         delivered per second (published seconds only): unicast {:.0}, room {:.0}, uplink {:.0}; \
         churn {:.0} reconnects per minute.\n",
        minutes.len(),
        mean(&|m| m.cpu_pct),
        max_cpu,
        mean(&|m| m.number("unicast", "delivered_per_sec")),
        mean(&|m| m.number("room", "delivered_per_sec")),
        mean(&|m| m.number("uplink", "delivered_per_sec")),
        mean(&|m| m.number("churn", "reconnects")),
    )
}

/// The verdict as text: the rule's figures per series, then the losses.
pub(crate) fn verdict(verdict: &Verdict) -> String {
    let mut rows = vec![
        [
            "series",
            "baseline",
            "end",
            "growth",
            "trend (95 % interval)",
            "judged by",
            "result",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for g in &verdict.growth {
        let trend = g.trend.as_ref().map_or_else(
            || "–".to_owned(),
            |t| {
                let (pct, low, high) = t.pct();
                format!("{pct:+.1} % ({low:+.1} to {high:+.1} %)")
            },
        );
        rows.push(vec![
            g.series.name().to_owned(),
            format!("{:.1}", g.baseline),
            format!("{:.1}", g.end),
            if g.pct().is_finite() {
                format!("{:+.2} %", g.pct())
            } else {
                "unmeasured".to_owned()
            },
            trend,
            if g.series.by_trend() {
                "trend's lower bound"
            } else {
                "windows"
            }
            .to_owned(),
            if g.pass { "ok" } else { "**GREW**" }.to_owned(),
        ]);
    }
    let list = |m: &[u32]| {
        m.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let mut text = format!(
        "\nVerdict (warm-up: minutes 1–{}; baseline: median of minutes {}; end: median of minutes {}; \
         RSS, fds and tasks fail when the end is above the baseline by more than 5 %; a p99 fails \
         when the lower bound of its Theil–Sen trend's 95 % interval grows it by more than 5 % \
         and 1 ms over the minutes after the warm-up; any series fails when a minute of a \
         reliable stream delivers under 100 % or has a refused message):\n\n{}",
        verdict.warmup,
        list(&verdict.baseline_minutes),
        list(&verdict.end_minutes),
        render(&rows)
    );
    if verdict.losses.is_empty() {
        text.push_str("\nEvery minute of every reliable stream delivered 100 %.\n");
    } else {
        text.push_str("\nNot whole (minute, stream):");
        for (minute, stream) in &verdict.losses {
            text.push_str(&format!(" ({minute}, {stream})"));
        }
        text.push('\n');
    }
    text.push_str(if verdict.pass() {
        "\n**PASS**\n"
    } else {
        "\n**FAIL**\n"
    });
    text
}

pub(crate) fn verdict_json(verdict: &Verdict) -> Value {
    let finite = |v: f64| {
        if v.is_finite() {
            Value::from(v)
        } else {
            Value::Null
        }
    };
    serde_json::json!({
        "warmup_minutes": verdict.warmup,
        "baseline_minutes": verdict.baseline_minutes,
        "end_minutes": verdict.end_minutes,
        "growth_limit_pct": rule::GROWTH_LIMIT * 100.0,
        "growth": verdict.growth.iter().map(|g| serde_json::json!({
            "series": g.series.name(),
            "baseline": finite(g.baseline),
            "end": finite(g.end),
            "growth_pct": finite(g.pct()),
            "judged_by": if g.series.by_trend() { "trend" } else { "windows" },
            "trend_pct": g.trend.as_ref().map(|t| finite(t.pct().0)),
            "trend_low_pct": g.trend.as_ref().map(|t| finite(t.pct().1)),
            "trend_high_pct": g.trend.as_ref().map(|t| finite(t.pct().2)),
            "floor": g.series.floor(),
            "pass": g.pass,
        })).collect::<Vec<_>>(),
        "losses": verdict.losses.iter().map(|(m, s)| serde_json::json!({"minute": m, "stream": s})).collect::<Vec<_>>(),
        "pass": verdict.pass(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(n: u32) -> Minute {
        Minute {
            minute: n,
            rss_kib: 2048,
            fds: 10,
            threads: 3,
            tasks: Some(20),
            cpu_pct: 12.5,
            store_bytes: 1 << 20,
            steps: Map::new(),
        }
    }

    #[test]
    fn a_minute_reads_back_from_its_json() {
        let mut m = minute(7);
        m.steps.insert(
            "room".into(),
            serde_json::json!({"kind": "step", "expected": 10, "delivered": 10, "p99_ms": 2.5}),
        );
        let back = Minute::from_json(&m.to_json()).expect("reads back");
        assert_eq!(back.to_json(), m.to_json());
        assert!((back.sample().room_p99_ms - 2.5).abs() < 1e-9);
        assert!(Minute::from_json(&serde_json::json!({"minute": 1})).is_err());
    }

    #[test]
    fn steps_go_to_their_minutes_and_feed_the_sample() {
        let mut minutes = vec![minute(1), minute(2)];
        let step = |delivered: u64| serde_json::json!({"kind": "step", "expected": 100, "delivered": delivered, "p99_ms": 3.5, "unsent": 0, "send_errors": 0});
        let lines = vec![
            ("unicast", step(100)),
            ("room", step(100)),
            ("unicast", step(99)),
            ("unicast", step(100)),
        ];
        attach(&mut minutes, &lines);
        let first = minutes[0].sample();
        assert_eq!(first.unicast_p99_ms, 3.5);
        assert!(first.delivery[0].whole() && first.delivery[1].whole());
        assert_eq!(first.delivery[2], Delivery::default());
        let second = minutes[1].sample();
        assert_eq!(second.delivery[0].delivered, 99);
        assert!(second.room_p99_ms.is_nan());
        let text = table(&minutes);
        assert!(text.contains("100 % (100)") && text.contains("**99.000 %**"));
        assert_eq!(text.lines().count(), 4);
    }
}
