//! The ratio table: per metric pike's median, each peer's median and the
//! ratio pike/peer from the same run (with min–max over rounds when there
//! are several).

use super::s1::{S1Result, S1Transport};
use super::servers::Kind;

/// A metric of S1.
struct Metric {
    label: &'static str,
    /// How to read the ratio.
    better: &'static str,
    value: fn(&S1Result) -> f64,
    decimals: usize,
}

const METRICS: [Metric; 6] = [
    Metric {
        label: "user-space RSS per connection (bytes)",
        better: "lower is better",
        value: |r| r.rss_per_conn_bytes,
        decimals: 0,
    },
    Metric {
        label: "connect + login/subscribe rate (/s)",
        better: "higher is better",
        value: |r| r.connect_rate,
        decimals: 0,
    },
    Metric {
        label: "idle CPU (% of one core)",
        better: "lower is better",
        value: |r| r.idle_cpu_pct,
        decimals: 2,
    },
    Metric {
        label: "kernel slab per connection, both ends (bytes)",
        better: "lower is better",
        value: |r| r.slab_per_conn_bytes,
        decimals: 0,
    },
    Metric {
        label: "socket slab per connection, both ends (TCP/UDP, sock_inode, filp; bytes)",
        better: "lower is better",
        value: |r| r.socket_slab_per_conn_bytes,
        decimals: 0,
    },
    Metric {
        label: "connected (of requested)",
        better: "",
        value: |r| r.connected as f64,
        decimals: 0,
    },
];

/// The median of `values` (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// `pike / peer`, when both are meaningful: finite, pike not negative,
/// the peer positive (a machine-wide figure such as the kernel's slab can
/// come out negative when other processes free memory meanwhile).
pub(crate) fn ratio(pike: f64, peer: f64) -> Option<f64> {
    (pike.is_finite() && peer.is_finite() && pike >= 0.0 && peer > f64::EPSILON)
        .then(|| pike / peer)
}

/// Median and range of one metric for one column (a server, or `pike
/// MQTT`) over the rounds.
fn stats(
    results: &[S1Result],
    column: &str,
    value: fn(&S1Result) -> f64,
) -> Option<(f64, f64, f64)> {
    let values: Vec<f64> = results
        .iter()
        .filter(|r| r.server == column)
        .map(value)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&values)?, lo, hi))
}

fn cell(stats: Option<(f64, f64, f64)>, decimals: usize, rounds: usize) -> String {
    match stats {
        None => "–".into(),
        Some((m, lo, hi)) if rounds > 1 => {
            format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
        }
        Some((m, _, _)) => format!("{m:.decimals$}"),
    }
}

/// The Markdown ratio table of S1 over `transport` (its columns:
/// [`S1Transport::column`]).
pub(crate) fn s1_table(
    results: &[S1Result],
    kinds: &[Kind],
    rounds: usize,
    transport: S1Transport,
) -> String {
    let peers: Vec<String> = kinds
        .iter()
        .filter(|k| **k != Kind::Pike)
        .map(|k| transport.column(*k))
        .collect();
    let pike_column = transport.column(Kind::Pike);
    let mut header = vec!["metric".to_owned()];
    header.extend(kinds.iter().map(|k| transport.column(*k)));
    if kinds.contains(&Kind::Pike) {
        header.extend(peers.iter().map(|p| format!("{pike_column}/{p}")));
    }
    let mut rows = vec![header];
    for metric in &METRICS {
        let label = if metric.better.is_empty() {
            metric.label.to_owned()
        } else {
            format!("{} — {}", metric.label, metric.better)
        };
        let mut row = vec![label];
        for kind in kinds {
            row.push(cell(
                stats(results, &transport.column(*kind), metric.value),
                metric.decimals,
                rounds,
            ));
        }
        if kinds.contains(&Kind::Pike) {
            let pike = stats(results, &pike_column, metric.value).map(|s| s.0);
            for peer in &peers {
                let peer = stats(results, peer, metric.value).map(|s| s.0);
                let r = match (pike, peer) {
                    // A count, not a figure of merit: no ratio.
                    _ if metric.better.is_empty() => None,
                    (Some(p), Some(q)) => ratio(p, q),
                    _ => None,
                };
                row.push(r.map_or_else(|| "–".into(), |r| format!("{r:.2}×")));
            }
        }
        rows.push(row);
    }
    render(&rows)
}

/// Renders rows as a Markdown table with aligned columns.
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let cells: Vec<String> = (0..columns)
            .map(|c| {
                let text = row.get(c).map_or("", String::as_str);
                let pad = widths[c] - text.chars().count();
                if c == 0 {
                    format!(" {text}{} ", " ".repeat(pad))
                } else {
                    format!(" {}{text} ", " ".repeat(pad))
                }
            })
            .collect();
        format!("|{}|\n", cells.join("|"))
    };
    let mut out = String::new();
    if let Some((header, body)) = rows.split_first() {
        out.push_str(&line(header));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, w)| {
                if c == 0 {
                    "-".repeat(w + 2)
                } else {
                    format!("{}:", "-".repeat(w + 1))
                }
            })
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in body {
            out.push_str(&line(row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(server: Kind, rss: f64, rate: f64) -> S1Result {
        S1Result {
            server: server.name().into(),
            connected: 5000,
            rss_per_conn_bytes: rss,
            connect_rate: rate,
            ..S1Result::default()
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(2000.0, 1000.0), Some(2.0));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(-5.0, 1.0), None);
        assert_eq!(ratio(5.0, -1.0), None);
        assert_eq!(ratio(0.0, 2.0), Some(0.0));
    }

    #[test]
    fn table_has_ratio_columns() {
        let results = vec![
            result(Kind::Pike, 3000.0, 8000.0),
            result(Kind::Mosquitto, 1000.0, 4000.0),
            result(Kind::Nats, 30_000.0, 3000.0),
        ];
        let table = s1_table(&results, &Kind::ALL, 1, S1Transport::Tcp);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("pike/mosquitto") && lines[0].contains("pike/nats"));
        let rss = lines
            .iter()
            .find(|l| l.contains("RSS per connection"))
            .unwrap();
        assert!(rss.contains(" 3000 ") && rss.contains(" 3.00× ") && rss.contains(" 0.10× "));
        let rate = lines.iter().find(|l| l.contains("rate")).unwrap();
        assert!(rate.contains(" 2.00× ") && rate.contains(" 2.67× "));
        // Every line has the same width.
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    #[test]
    fn rounds_show_the_range() {
        let results = vec![
            result(Kind::Pike, 3000.0, 1.0),
            result(Kind::Pike, 2000.0, 1.0),
            result(Kind::Pike, 4000.0, 1.0),
        ];
        let table = s1_table(&results, &[Kind::Pike], 3, S1Transport::Tcp);
        assert!(table.contains("3000 (2000–4000)"), "{table}");
    }

    /// MQTT devices: pike's column is `pike MQTT`, its results found by
    /// that name, the ratio against mosquitto named after it.
    #[test]
    fn mqtt_devices_table() {
        let mut pike = result(Kind::Pike, 6000.0, 5000.0);
        pike.server = S1Transport::Mqtt.column(Kind::Pike);
        let results = vec![pike, result(Kind::Mosquitto, 2000.0, 10_000.0)];
        let table = s1_table(
            &results,
            &[Kind::Pike, Kind::Mosquitto],
            1,
            S1Transport::Mqtt,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("| pike MQTT ") && lines[0].contains("pike MQTT/mosquitto"));
        let rss = lines
            .iter()
            .find(|l| l.contains("RSS per connection"))
            .unwrap();
        assert!(rss.contains(" 6000 ") && rss.contains(" 3.00× "), "{table}");
        let rate = lines.iter().find(|l| l.contains("rate")).unwrap();
        assert!(rate.contains(" 0.50× "), "{table}");
    }
}
