//! The harness's charts (SVG, with plotters): per sweep workload the
//! delivered rate and the p99 latency against the offered rate, one line
//! per contender (medians over rounds); bars for S1; the recovery curve for
//! S8.

use std::path::Path;

use plotters::prelude::*;

use super::sweep::{Step, Sweep};
use super::sweep_report::{at_rate, spread};

/// Line colours, one per contender in order.
pub(crate) const COLOURS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

pub(crate) type Fallible = Result<(), Box<dyn std::error::Error>>;

/// The median of `value` at every rate where `label` has one.
fn series(sweep: &Sweep, steps: &[Step], label: &str, value: fn(&Step) -> f64) -> Vec<(f64, f64)> {
    sweep
        .rates
        .iter()
        .filter_map(|&rate| {
            let (m, _, _) = spread(&at_rate(steps, label, rate, value))?;
            (m > 0.0).then_some(((rate * sweep.fanout) as f64, m))
        })
        .collect()
}

/// Bounds of a log axis holding `values` (a decade of margin).
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() && hi.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (1.0, 10.0)
    }
}

/// Writes the chart of a sweep to `path`.
pub(crate) fn sweep_chart(
    path: &Path,
    sweep: &Sweep,
    steps: &[Step],
    labels: &[String],
) -> Result<(), String> {
    draw_sweep(path, sweep, steps, labels).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw_sweep(path: &Path, sweep: &Sweep, steps: &[Step], labels: &[String]) -> Fallible {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("{} {}", sweep.id, sweep.title), ("sans-serif", 18))?;
    let (left, right) = root.split_horizontally(500);
    let delivered: Vec<Vec<(f64, f64)>> = labels
        .iter()
        .map(|l| series(sweep, steps, l, |s| s.f("delivered_per_sec")))
        .collect();
    let p99: Vec<Vec<(f64, f64)>> = labels
        .iter()
        .map(|l| series(sweep, steps, l, Step::p99_ms))
        .collect();
    let x = log_bounds(sweep.rates.iter().map(|r| (r * sweep.fanout) as f64));
    panel(&left, "delivered/s", x, &delivered, labels, true)?;
    panel(&right, "p99 latency, ms", x, &p99, labels, false)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    y_desc: &str,
    x: (f64, f64),
    lines: &[Vec<(f64, f64)>],
    labels: &[String],
    diagonal: bool,
) -> Fallible {
    let mut y = log_bounds(lines.iter().flatten().map(|p| p.1));
    if diagonal {
        y = (y.0.min(x.0), y.1.max(x.1));
    }
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x.0..x.1).log_scale(), (y.0..y.1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries/s")
        .y_desc(y_desc)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    if diagonal {
        chart
            .draw_series(LineSeries::new(
                [(x.0, x.0), (x.1, x.1)],
                BLACK.mix(0.25).stroke_width(1),
            ))?
            .label("offered")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.25)));
    }
    for (i, (points, label)) in lines.iter().zip(labels).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// 1200 → "1.2k", 3400000 → "3.4M".
pub(crate) fn short(v: f64) -> String {
    let trim = |x: f64, unit: &str| {
        let text = format!("{x:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}{unit}")
    };
    let a = v.abs();
    if a >= 1e6 {
        trim(v / 1e6, "M")
    } else if a >= 1e3 {
        trim(v / 1e3, "k")
    } else if a >= 1.0 {
        format!("{v:.0}")
    } else {
        trim(v, "")
    }
}

/// Bars: one per (label, value), with the value written above it.
pub(crate) fn bar_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    bars: &[(String, f64)],
) -> Result<(), String> {
    draw_bars(path, title, y_desc, bars).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw_bars(path: &Path, title: &str, y_desc: &str, bars: &[(String, f64)]) -> Fallible {
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0) * 1.15;
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    for (i, (label, value)) in bars.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let x0 = i as f64 + 0.2;
        let x1 = i as f64 + 0.8;
        chart.draw_series([Rectangle::new([(x0, 0.0), (x1, *value)], colour.filled())])?;
        chart.draw_series([Text::new(
            short(*value),
            (x0, *value + top * 0.02),
            ("sans-serif", 14),
        )])?;
        chart.draw_series([Text::new(
            label.clone(),
            (x0, top * 0.97),
            ("sans-serif", 14),
        )])?;
    }
    root.present()?;
    Ok(())
}

/// A recovery curve: connections logged in against seconds since the
/// restart, with a vertical mark at `ideal` seconds.
pub(crate) fn curve_chart(
    path: &Path,
    title: &str,
    curve: &[(f64, f64)],
    total: f64,
    ideal: Option<f64>,
) -> Result<(), String> {
    draw_curve(path, title, curve, total, ideal)
        .map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw_curve(
    path: &Path,
    title: &str,
    curve: &[(f64, f64)],
    total: f64,
    ideal: Option<f64>,
) -> Fallible {
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = curve.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..total * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the gateway came back")
        .y_desc("clients logged in")
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            curve.iter().copied(),
            COLOURS[0].stroke_width(2),
        ))?
        .label("pike clients")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], COLOURS[0].stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            [(0.0, total * 0.99), (x_max, total * 0.99)],
            BLACK.mix(0.3),
        ))?
        .label("99 %")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.3)));
    if let Some(ideal) = ideal {
        chart
            .draw_series(LineSeries::new(
                [(ideal, 0.0), (ideal, total)],
                COLOURS[1].stroke_width(2),
            ))?
            .label("TLS handshake ceiling")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], COLOURS[1].stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short(1200.0), "1.2k");
        assert_eq!(short(3_400_000.0), "3.4M");
        assert_eq!(short(18_000.0), "18k");
        assert_eq!(short(250.0), "250");
        assert_eq!(short(1_250_000.0), "1.25M");
        assert_eq!(short(0.5), "0.5");
    }

    #[test]
    fn charts_render_to_svg() {
        let dir = tempfile::tempdir().unwrap();
        let bars = dir.path().join("bars.svg");
        bar_chart(
            &bars,
            "S1",
            "bytes",
            &[("pike".into(), 10_000.0), ("nats".into(), 20_000.0)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&bars).unwrap();
        assert!(text.starts_with("<svg") && text.contains("pike") && text.contains("20k"));
        let curve = dir.path().join("curve.svg");
        curve_chart(
            &curve,
            "S8",
            &[(0.0, 0.0), (1.0, 500.0), (2.0, 1000.0)],
            1000.0,
            Some(0.5),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&curve)
                .unwrap()
                .contains("TLS handshake ceiling")
        );
    }
}
