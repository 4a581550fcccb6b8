//! Tables of the sweep workloads (S2–S7): a summary per contender (the
//! best sustained rate, memory, CPU per million deliveries) and the figures
//! at every rate, each cell the median over rounds with the min–max range,
//! and the ratio of the first contender (pike) to each other one, from the
//! same run.

use super::report::{median, ratio, render};
use super::sweep::{Step, Sweep};

/// Median, min and max of `values` (finite ones only).
pub(crate) fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&finite)?, lo, hi))
}

fn cell(stats: Option<(f64, f64, f64)>, decimals: usize) -> String {
    match stats {
        None => "–".into(),
        Some((m, lo, hi)) if (hi - lo).abs() > f64::EPSILON => {
            format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
        }
        Some((m, _, _)) => format!("{m:.decimals$}"),
    }
}

/// The rounds that ran for `label`.
fn rounds_of(steps: &[Step], label: &str) -> Vec<usize> {
    let mut rounds: Vec<usize> = steps
        .iter()
        .filter(|s| s.label == label)
        .map(|s| s.round)
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
    rounds
}

/// The best sustained deliveries/s of `label` in each round (0 when no
/// step was sustained).
pub(crate) fn max_sustained(steps: &[Step], label: &str) -> Vec<f64> {
    rounds_of(steps, label)
        .into_iter()
        .map(|round| {
            steps
                .iter()
                .filter(|s| s.label == label && s.round == round && s.sustained())
                .map(|s| s.f("delivered_per_sec"))
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Per round, the largest of `value` over `label`'s steps.
fn per_round_max(steps: &[Step], label: &str, value: fn(&Step) -> f64) -> Vec<f64> {
    rounds_of(steps, label)
        .into_iter()
        .map(|round| {
            steps
                .iter()
                .filter(|s| s.label == label && s.round == round)
                .map(value)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

/// The values of `value` at the fixed rate `rate` for `label`, one per
/// round (search probes left out).
pub(crate) fn at_rate(steps: &[Step], label: &str, rate: u64, value: fn(&Step) -> f64) -> Vec<f64> {
    steps
        .iter()
        .filter(|s| s.label == label && s.rate == rate && !s.probe)
        .map(value)
        .collect()
}

/// The highest fixed rate at which every contender sustained in every
/// round: where their p99s compare at the same load.
pub(crate) fn common_rate(sweep: &Sweep, steps: &[Step], labels: &[String]) -> Option<u64> {
    sweep.rates.iter().copied().rev().find(|&rate| {
        labels.iter().all(|label| {
            let at: Vec<&Step> = steps
                .iter()
                .filter(|s| &s.label == label && s.rate == rate && !s.probe)
                .collect();
            !at.is_empty() && at.iter().all(|s| s.sustained())
        })
    })
}

/// One row: a label, a cell per contender, then first/other ratios.
fn row(
    name: String,
    labels: &[String],
    per_label: &dyn Fn(&str) -> Vec<f64>,
    decimals: usize,
    ratios: bool,
) -> Vec<String> {
    let mut row = vec![name];
    let stats: Vec<Option<(f64, f64, f64)>> =
        labels.iter().map(|l| spread(&per_label(l))).collect();
    row.extend(stats.iter().map(|s| cell(*s, decimals)));
    if let Some((first, others)) = stats.split_first() {
        for other in others {
            let r = match (first, other) {
                (Some(a), Some(b)) if ratios => ratio(a.0, b.0),
                _ => None,
            };
            row.push(r.map_or_else(|| "–".into(), |r| format!("{r:.2}×")));
        }
    }
    row
}

fn header(first: &str, labels: &[String]) -> Vec<String> {
    let mut header = vec![first.to_owned()];
    header.extend(labels.iter().cloned());
    if let Some((base, others)) = labels.split_first() {
        header.extend(others.iter().map(|o| format!("{base}/{o}")));
    }
    header
}

/// The summary table of a sweep.
pub(crate) fn summary_table(sweep: &Sweep, steps: &[Step], labels: &[String]) -> String {
    let mut rows = vec![header("metric", labels)];
    let searched = steps.iter().any(|s| s.probe);
    rows.push(row(
        format!(
            "max sustained deliveries/s (≥ 99.9 % delivered, p99 ≤ 250 ms{}) — higher is better",
            if searched {
                "; searched to within 10 %"
            } else {
                "; at the fixed rates"
            }
        ),
        labels,
        &|l| max_sustained(steps, l),
        0,
        true,
    ));
    if let Some(rate) = common_rate(sweep, steps, labels) {
        rows.push(row(
            format!(
                "p99 ms at {rate}/s (offered {}/s; the highest fixed rate all sustained) — lower is better",
                rate * sweep.fanout
            ),
            labels,
            &|l| at_rate(steps, l, rate, Step::p99_ms),
            1,
            true,
        ));
    }
    rows.push(row(
        "most deliveries/s at any rate — higher is better".into(),
        labels,
        &|l| per_round_max(steps, l, |s| s.f("delivered_per_sec")),
        0,
        true,
    ));
    rows.push(row(
        "generator ceiling: deliveries per generator CPU-second (busiest step)".into(),
        labels,
        &|l| per_round_max(steps, l, Step::generator_ceiling),
        0,
        false,
    ));
    rows.push(row(
        "server peak RSS, MiB — lower is better".into(),
        labels,
        &|l| per_round_max(steps, l, |s| s.server_hwm_kib as f64 / 1024.0),
        0,
        true,
    ));
    render(&rows)
}

/// The table of figures at every rate.
pub(crate) fn rates_table(sweep: &Sweep, steps: &[Step], labels: &[String]) -> String {
    type Metric = (&'static str, fn(&Step) -> f64, usize);
    let metrics: [Metric; 8] = [
        ("delivered/s", |s| s.f("delivered_per_sec"), 0),
        ("delivered %", |s| s.delivered_pct(), 2),
        ("p50 ms", |s| s.latency("p50_ms"), 1),
        ("p99 ms", |s| s.p99_ms(), 1),
        ("p99.9 ms", |s| s.latency("p999_ms"), 1),
        (
            "server CPU-s per 1 M deliveries",
            |s| s.cpu_per_million(),
            2,
        ),
        ("server RSS MiB", |s| s.server_rss_kib as f64 / 1024.0, 0),
        ("generator CPU %", Step::generator_cpu_pct, 0),
    ];
    let mut rows = vec![header("rate · metric", labels)];
    for rate in &sweep.rates {
        let offered = rate * sweep.fanout;
        for (name, value, decimals) in &metrics {
            rows.push(row(
                format!("{rate}/s (offered {offered}/s) · {name}"),
                labels,
                &|l| at_rate(steps, l, *rate, *value),
                *decimals,
                true,
            ));
        }
    }
    render(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(label: &str, round: usize, rate: u64, per_sec: f64, pct: f64, p99: f64) -> Step {
        Step {
            label: label.into(),
            round,
            rate,
            line: json!({"delivered_per_sec": per_sec, "delivered_pct": pct, "p99_ms": p99, "delivered": per_sec * 6.0}),
            server_cpu_secs: 1.5,
            server_rss_kib: 10_240,
            server_hwm_kib: 20_480,
            drain_secs: 1,
            probe: false,
        }
    }

    fn sweep_of(rates: Vec<u64>) -> Sweep {
        Sweep {
            id: "S2",
            title: "t",
            workload: "fanout",
            args: vec![],
            connections: 10,
            rates,
            warmup: 1,
            step: 1,
            drain: 1,
            fanout: 10,
            search_ceiling: None,
        }
    }

    #[test]
    fn probes_raise_the_max_but_stay_out_of_the_fixed_rates() {
        let mut probe = step("pike", 1, 100, 1_800.0, 100.0, 40.0);
        probe.probe = true;
        probe.rate = 180;
        let mut same_rate_probe = step("pike", 1, 10, 1.0, 50.0, 900.0);
        same_rate_probe.probe = true;
        let steps = vec![
            step("pike", 1, 10, 100.0, 100.0, 5.0),
            step("pike", 1, 100, 1000.0, 100.0, 50.0),
            probe,
            same_rate_probe,
            step("nats", 1, 10, 100.0, 100.0, 10.0),
            step("nats", 1, 100, 900.0, 99.0, 50.0),
        ];
        assert_eq!(max_sustained(&steps, "pike"), vec![1800.0]);
        assert_eq!(at_rate(&steps, "pike", 10, |s| s.p99_ms()), vec![5.0]);
        let sweep = sweep_of(vec![10, 100]);
        let labels = vec!["pike".to_owned(), "nats".to_owned()];
        assert_eq!(common_rate(&sweep, &steps, &labels), Some(10));
        let table = summary_table(&sweep, &steps, &labels);
        assert!(table.contains("searched to within 10 %"), "{table}");
        let p99 = table
            .lines()
            .find(|l| l.contains("p99 ms at 10/s"))
            .unwrap();
        assert!(p99.contains("0.50×"), "{table}");
    }

    #[test]
    fn sustained_needs_both_delivery_and_latency() {
        assert!(step("a", 1, 1, 10.0, 99.95, 249.0).sustained());
        assert!(!step("a", 1, 1, 10.0, 99.8, 10.0).sustained());
        assert!(!step("a", 1, 1, 10.0, 100.0, 251.0).sustained());
    }

    #[test]
    fn max_sustained_per_round() {
        let steps = vec![
            step("pike", 1, 10, 100.0, 100.0, 5.0),
            step("pike", 1, 100, 1000.0, 100.0, 50.0),
            step("pike", 1, 1000, 9000.0, 95.0, 900.0),
            step("pike", 2, 10, 100.0, 100.0, 5.0),
            step("pike", 2, 100, 1000.0, 99.0, 50.0),
            step("nats", 1, 10, 100.0, 90.0, 5.0),
        ];
        assert_eq!(max_sustained(&steps, "pike"), vec![1000.0, 100.0]);
        assert_eq!(max_sustained(&steps, "nats"), vec![0.0]);
        let labels = vec!["pike".to_owned(), "nats".to_owned()];
        let table = summary_table(&sweep_of(vec![10, 100, 1000]), &steps, &labels);
        assert!(table.contains("550 (100–1000)"), "{table}");
        // nats sustained nothing: no ratio against 0.
        assert!(
            table.lines().nth(2).unwrap().trim_end().ends_with("– |"),
            "{table}"
        );
    }

    #[test]
    fn nothing_delivered_has_no_latency() {
        let mut none = step("mosquitto", 1, 10, 0.0, 0.0, 0.0);
        none.line["delivered"] = json!(0);
        assert!(none.p99_ms().is_nan() && !none.sustained());
        let back = Step::from_json(&none.to_json(), 2).unwrap();
        assert_eq!(
            (back.label.as_str(), back.round, back.rate, back.drain_secs),
            ("mosquitto", 1, 10, 2)
        );
        assert_eq!(back.server_hwm_kib, 20_480);
    }

    #[test]
    fn rate_rows_carry_ratios() {
        let steps = vec![
            step("pike", 1, 10, 200.0, 100.0, 5.0),
            step("nats", 1, 10, 100.0, 100.0, 10.0),
        ];
        let sweep = sweep_of(vec![10]);
        let labels = vec!["pike".to_owned(), "nats".to_owned()];
        let table = rates_table(&sweep, &steps, &labels);
        let delivered = table.lines().find(|l| l.contains("· delivered/s")).unwrap();
        assert!(
            delivered.contains("2.00×") && delivered.contains("offered 100/s"),
            "{table}"
        );
        let p99 = table.lines().find(|l| l.contains("· p99 ms")).unwrap();
        assert!(p99.contains("0.50×"), "{table}");
        let cpu = table.lines().find(|l| l.contains("CPU-s")).unwrap();
        // 1.5 s for 1,200 (pike) and 600 (nats) deliveries.
        assert!(
            cpu.contains("1250.00") && cpu.contains("2500.00"),
            "{table}"
        );
    }
}
