//! What `pike bench` prints: progress on stderr (one line rewritten in
//! place on a terminal, a line per update otherwise), JSON lines or a
//! summary table on stdout.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use super::fleet::ConnectReport;

/// Progress lines on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    quiet: bool,
    terminal: bool,
}

impl Progress {
    /// Progress for `pike bench` (`quiet`: nothing).
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows the current state (replacing the previous line on a terminal).
    pub(crate) fn update(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[Kpike bench: {text}")
        } else {
            writeln!(err, "pike bench: {text}")
        };
        let _ = err.flush();
    }

    /// Shows a phase's final line.
    pub(crate) fn done(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            writeln!(err, "\r\x1b[Kpike bench: {text}")
        } else {
            writeln!(err, "pike bench: {text}")
        };
    }
}

/// Prints one JSON line on stdout: `{"kind": kind, ...value}`.
pub(crate) fn json_line<T: Serialize>(kind: &str, value: &T) {
    let mut object = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(other) => {
            let mut object = serde_json::Map::new();
            object.insert("value".into(), other);
            object
        }
        Err(e) => {
            let mut object = serde_json::Map::new();
            object.insert("error".into(), e.to_string().into());
            object
        }
    };
    object.insert("kind".into(), kind.into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::Value::Object(object));
    let _ = out.flush();
}

/// The `connected` line of the rate sweeps (the harness's contract:
/// `connections`, `failed`, `seconds`, `rate_per_sec`, and details).
#[derive(Debug, Serialize)]
pub(crate) struct ConnectedLine {
    /// Connections logged in (and joined, for room members).
    pub(crate) connections: u64,
    pub(crate) failed: u64,
    pub(crate) seconds: f64,
    pub(crate) rate_per_sec: f64,
    pub(crate) requested: usize,
    pub(crate) sources: usize,
    pub(crate) concurrency: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

impl ConnectedLine {
    /// The line of a connect phase.
    pub(crate) fn new(connect: &ConnectReport) -> Self {
        Self {
            connections: connect.connected,
            failed: connect.failed,
            seconds: connect.seconds,
            rate_per_sec: connect.rate,
            requested: connect.requested,
            sources: connect.sources,
            concurrency: connect.concurrency,
            first_error: connect.first_error.clone(),
        }
    }
}

/// A two-column summary table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    /// Adds a row.
    pub(crate) fn row(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.rows.push((name.to_owned(), value.to_string()));
        self
    }

    /// The table as text (Markdown-compatible).
    pub(crate) fn render(&self, title: &str) -> String {
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let value_width = self.rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let mut text = format!("{title}\n\n");
        text.push_str(&format!(
            "| {:<width$} | {:>value_width$} |\n",
            "metric", "value"
        ));
        text.push_str(&format!(
            "|{}|{}:|\n",
            "-".repeat(width + 2),
            "-".repeat(value_width + 1)
        ));
        for (name, value) in &self.rows {
            text.push_str(&format!("| {name:<width$} | {value:>value_width$} |\n"));
        }
        text
    }
}

/// Microseconds as milliseconds with three decimals.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::default();
        table.row("connections", 5000).row("rate", "1234.5/s");
        let text = table.render("idle");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "idle");
        assert_eq!(lines[2], "| metric      |    value |");
        assert_eq!(lines[3], "|-------------|---------:|");
        assert_eq!(lines[4], "| connections |     5000 |");
        assert_eq!(lines[5], "| rate        | 1234.5/s |");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(ms(1_234), "1.234 ms");
        assert_eq!(ms(0), "0.000 ms");
    }
}
