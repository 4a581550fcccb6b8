//! The Markdown section of the `cluster` workload: the held connections
//! and their memory, each workload's steps on both systems, and the
//! ratios cluster / single node per delivery.

use std::fmt::Write as _;

use super::cluster_plan::ClusterSettings;
use super::cluster_run::{StepSum, SystemResult};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".to_owned()
    }
}

/// A NATS figure, or a dash for a system without NATS.
fn nats_num(r: &SystemResult, v: f64, digits: usize) -> String {
    if r.held.nats_rss_kib.is_empty() {
        "–".to_owned()
    } else {
        num(v, digits)
    }
}

/// The whole section.
pub(crate) fn section(settings: &ClusterSettings, results: &[SystemResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Cluster: {} connections over {} gateways on 3 NATS JetStream nodes, against one node\n",
        settings.connections, settings.gateways
    );
    let _ = writeln!(
        out,
        "Servers pinned to CPU 0 (every gateway with one worker thread, every NATS node GOMAXPROCS=1), \
         generators to CPU 1. Steps: {} s warm-up, {} s window, {} s drain. The single node holds one \
         gateway's share of the idle set plus all workload devices.\n",
        settings.warmup, settings.step, settings.drain
    );
    out.push_str(&held_table(results));
    for name in ["unicast transient", "unicast reliable", "room fan-out"] {
        out.push_str(&phase_table(name, results));
    }
    out.push_str(&ratio_table(results));
    out
}

fn held_table(results: &[SystemResult]) -> String {
    let mut out = String::from(
        "### Connections held\n\n\
         | System | Idle set held | Failed | Connect s | Connects/s | CPU-µs per login, gateways / NATS | Gateway RSS MiB (each) | NATS RSS MiB (each) | Gateway B/conn | NATS B/conn | Kernel slab B/conn | Idle CPU % gateways / NATS |\n\
         |---|---:|---:|---:|---:|---|---|---|---:|---:|---:|---|\n",
    );
    for r in results {
        let h = &r.held;
        let each = |rss: &[(u64, u64)]| {
            if rss.is_empty() {
                "–".to_owned()
            } else {
                rss.iter()
                    .map(|(_, after)| num(mib(*after), 0))
                    .collect::<Vec<_>>()
                    .join(" / ")
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} / {} |",
            r.label,
            h.connected,
            h.failed,
            num(h.connect_seconds, 1),
            num(h.connect_rate(), 0),
            num(h.gateway_login_us(), 0),
            nats_num(r, h.nats_login_us(), 0),
            each(&h.gateway_rss_kib),
            each(&h.nats_rss_kib),
            num(h.gateway_bytes_per_conn(), 0),
            nats_num(r, h.nats_bytes_per_conn(), 0),
            num(h.slab_bytes_per_conn(), 0),
            num(h.gateway_idle_cpu_pct, 1),
            nats_num(r, h.nats_idle_cpu_pct, 1),
        );
    }
    out
}

fn phase_table(name: &str, results: &[SystemResult]) -> String {
    let mut out = format!(
        "\n### {name}\n\n\
         | System | Rate/s | Delivered/s | Delivered % of sent | Unsent + errors | p50 ms | p99 ms | Gateway CPU-µs/delivery | NATS CPU-µs/delivery | Total | Generator CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut placements = String::new();
    for r in results {
        let Some(phase) = r.phase(name) else {
            continue;
        };
        let _ = writeln!(placements, "- {}: {}", r.label, phase.placement);
        for s in &phase.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                s.rate,
                num(s.delivered_per_sec, 0),
                num(s.delivered_pct(), 2),
                s.unsent + s.send_errors,
                num(s.p50_ms, 1),
                num(s.p99_ms, 1),
                num(s.gateway_us(), 1),
                nats_num(r, s.nats_us(), 1),
                num(s.total_us(), 1),
                num(s.gen_cpu_secs, 2),
            );
        }
    }
    out.push('\n');
    out.push_str(&placements);
    out
}

/// Cluster / single per delivery, step by step (same rates).
fn ratio_table(results: &[SystemResult]) -> String {
    let (Some(cluster), Some(single)) = (results.first(), results.get(1)) else {
        return String::new();
    };
    let mut out = String::from(
        "\n### Cluster / single node, same run\n\n\
         | Workload | Rate/s | CPU-µs per delivery, cluster (gateways + NATS) | single node | ratio | Delivered/s ratio |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for name in ["unicast transient", "unicast reliable", "room fan-out"] {
        let (Some(c), Some(s)) = (cluster.phase(name), single.phase(name)) else {
            continue;
        };
        for (a, b) in c.steps.iter().zip(&s.steps) {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                a.rate,
                num(a.total_us(), 1),
                num(b.total_us(), 1),
                num(ratio(a.total_us(), b.total_us()), 2),
                num(ratio(a.delivered_per_sec, b.delivered_per_sec), 2),
            );
        }
    }
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// One step's figures for a progress line.
pub(crate) fn step_line(s: &StepSum) -> String {
    format!(
        "rate {}: {:.0}/s delivered ({} %), p99 {} ms, {} + {} CPU-µs/delivery",
        s.rate,
        s.delivered_per_sec,
        num(s.delivered_pct(), 2),
        num(s.p99_ms, 1),
        num(s.gateway_us(), 1),
        num(s.nats_us(), 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_and_missing_ones_show_a_dash() {
        assert_eq!(num(1.234, 1), "1.2");
        assert_eq!(num(f64::NAN, 1), "–");
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert_eq!(section_for_nothing(), 0);
    }

    fn section_for_nothing() -> usize {
        let settings = ClusterSettings::new(true, None, false, 20_000).unwrap();
        let text = section(&settings, &[]);
        assert!(text.contains("## Cluster: 2000 connections over 6 gateways"));
        text.matches("| cluster").count()
    }
}
