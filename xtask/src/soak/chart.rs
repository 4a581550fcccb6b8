//! The soak's chart (SVG): four panels against the minute — gateway RSS,
//! descriptors and tasks, the p99s, delivered % — with the warm-up's end
//! marked.

use std::path::Path;

use plotters::prelude::*;

use super::rule::{Sample, Verdict};
use crate::bench::chart::{COLOURS, Fallible, short};

/// One line: its label and points `(minute, value)`.
type Line = (&'static str, Vec<(f64, f64)>);

/// Writes the chart of `samples` to `path`.
pub(crate) fn soak_chart(
    path: &Path,
    samples: &[Sample],
    verdict: &Verdict,
    minutes: u32,
) -> Result<(), String> {
    draw(path, samples, verdict, minutes).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn points(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .map(|s| (f64::from(s.minute), value(s)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn draw(path: &Path, samples: &[Sample], verdict: &Verdict, minutes: u32) -> Fallible {
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "Soak: {minutes} minutes, one gateway; warm-up ends at minute {}",
            verdict.warmup
        ),
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((2, 2));
    let delivered = |i: usize| {
        move |s: &Sample| {
            if s.delivery[i].expected == 0 {
                f64::NAN
            } else {
                s.delivery[i].pct()
            }
        }
    };
    let specs: [(&str, Vec<Line>); 4] = [
        (
            "gateway RSS (MiB)",
            vec![("RSS", points(samples, |s| s.rss_kib / 1024.0))],
        ),
        (
            "open fds, tokio tasks",
            vec![
                ("fds", points(samples, |s| s.fds)),
                ("tasks", points(samples, |s| s.tasks)),
            ],
        ),
        (
            "p99 latency (ms)",
            vec![
                ("unicast", points(samples, |s| s.unicast_p99_ms)),
                ("room", points(samples, |s| s.room_p99_ms)),
            ],
        ),
        (
            "reliable delivered (%)",
            vec![
                ("unicast", points(samples, delivered(0))),
                ("room", points(samples, delivered(1))),
                ("uplink", points(samples, delivered(2))),
            ],
        ),
    ];
    let x_max = f64::from(minutes.max(1)) + 0.5;
    for (area, (title, lines)) in panels.iter().zip(specs) {
        let values = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            let pad = ((hi - lo) * 0.2).max(hi.abs() * 0.02).max(0.5);
            ((lo - pad).max(0.0), hi + pad)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..x_max, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("minute")
            .x_labels(usize::try_from(minutes.min(12)).unwrap_or(12) + 1)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| {
                if v.abs() >= 1000.0 {
                    short(*v)
                } else {
                    format!("{v:.1}")
                }
            })
            .light_line_style(WHITE)
            .draw()?;
        let warmup_end = f64::from(verdict.warmup) + 0.5;
        chart
            .draw_series(LineSeries::new(
                [(warmup_end, lo), (warmup_end, hi)],
                BLACK.mix(0.5).stroke_width(2),
            ))?
            .label("end of warm-up")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.5)));
        for (i, (label, line)) in lines.into_iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::rule::{self, Delivery};
    use super::*;

    #[test]
    fn renders_to_svg() {
        let samples: Vec<Sample> = (1..=4)
            .map(|minute| Sample {
                minute,
                rss_kib: 10_240.0,
                fds: 100.0,
                tasks: f64::NAN,
                unicast_p99_ms: 2.0,
                room_p99_ms: 3.0,
                delivery: [
                    Delivery {
                        expected: 10,
                        delivered: 10,
                        errors: 0,
                        unsent: 0,
                    },
                    Delivery::default(),
                    Delivery::default(),
                ],
            })
            .collect();
        let verdict = rule::judge(&samples, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soak.svg");
        soak_chart(&path, &samples, &verdict, 4).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("p99 latency") && text.contains("uplink")
        );
    }
}
