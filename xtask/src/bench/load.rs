//! A load-generator process of workloads S2–S8: `pike bench <workload>` for
//! pike, `xtask bench-client <workload> --proto mqtt|nats` for the peers
//! (and, in pike mode, for pike with MQTT devices),
//! both speaking the same flags and JSON lines (`connected`, then
//! `step_begin`/`step` per rate, `report`), pinned to CPU 1 and killed when
//! dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::servers::{self, Binaries, Kind, Server};

/// A running generator.
pub(crate) struct Load {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// The program and the leading arguments that select `workload` for
/// `kind` (the common flags follow).
pub(crate) fn command_for(kind: Kind, bins: &Binaries, server: &Server, workload: &str) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg("1");
    match kind {
        Kind::Pike => {
            command
                .arg(&bins.pike)
                .args(["--app", servers::PIKE_APP, "bench", workload])
                .args(["--json", "--quiet"]);
            if workload != "tls-handshakes" {
                // Every workload but the bare handshakes logs devices in.
                command
                    .args(["--biz", servers::PIKE_BIZ])
                    .args(["--token-secret", servers::PIKE_TOKEN_SECRET]);
            }
            if needs_api(workload)
                && let Some(api) = server.api_url()
            {
                command
                    .arg("--api")
                    .arg(api)
                    .args(["--api-key", servers::PIKE_API_KEY]);
            }
        }
        Kind::Mosquitto | Kind::Nats => {
            let proto = kind.client_proto().unwrap_or("mqtt");
            command
                .arg(&bins.xtask)
                .args(["bench-client", workload, "--proto", proto]);
        }
    }
    command
}

/// The generator of pike with MQTT devices: `xtask bench-client <workload>
/// --proto mqtt` in pike mode (the app, business and token secret of the
/// run's pike-server; the HTTP API and its key for the publisher); the
/// caller adds `--server` with the gateway's MQTT listener.
pub(crate) fn pike_mqtt_command(
    bins: &Binaries,
    server: &Server,
    workload: &str,
) -> Result<Command, String> {
    let api = server.http_addr.ok_or("pike has no HTTP API")?;
    let mut command = Command::new("taskset");
    command
        .arg("-c")
        .arg("1")
        .arg(&bins.xtask)
        .args(["bench-client", workload, "--proto", "mqtt"])
        .args(["--pike-app", servers::PIKE_APP])
        .args(["--pike-biz", servers::PIKE_BIZ])
        .args(["--token-secret", servers::PIKE_TOKEN_SECRET])
        .arg("--api")
        .arg(api.to_string())
        .args(["--api-key", servers::PIKE_API_KEY]);
    Ok(command)
}

/// Workloads whose pike publisher goes through the HTTP API.
fn needs_api(workload: &str) -> bool {
    matches!(workload, "fanout" | "unicast" | "group" | "chaos")
}

impl Load {
    /// Starts `command` (from [`command_for`], with its flags added).
    pub(crate) fn spawn(command: Command, dir: &Path) -> Result<Self, String> {
        Self::spawn_with(command, dir, Stdio::null())
    }

    /// [`Load::spawn`] with a pipe to the generator's stdin (for
    /// `--stdin-stop`: dropping it stops the generator).
    pub(crate) fn spawn_holding(
        command: Command,
        dir: &Path,
    ) -> Result<(Self, ChildStdin), String> {
        let mut load = Self::spawn_with(command, dir, Stdio::piped())?;
        let stdin = load.child.stdin.take().ok_or("generator without stdin")?;
        Ok((load, stdin))
    }

    fn spawn_with(mut command: Command, dir: &Path, stdin: Stdio) -> Result<Self, String> {
        let mut child = command
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the generator: {e}"))?;
        let stdout = child.stdout.take().ok_or("generator without stdout")?;
        if let Some(stderr) = child.stderr.take() {
            // Keep the last lines of stderr for error messages; drain the
            // rest so the generator never blocks on a full pipe.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("error") {
                        eprintln!("xtask bench:   generator: {line}");
                    }
                }
            });
        }
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next JSON line (any kind), or `None` at the end of output.
    pub(crate) async fn next(&mut self, limit: Duration) -> Result<Option<Value>, String> {
        let found = tokio::time::timeout(limit, async {
            loop {
                match self.lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Ok(value) = serde_json::from_str::<Value>(&line)
                            && value.get("kind").is_some()
                        {
                            return Some(value);
                        }
                    }
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await;
        found.map_err(|_| format!("no line from the generator within {limit:?}"))
    }

    /// The next line of kind `kind` (earlier lines of other kinds are
    /// skipped).
    pub(crate) async fn expect(&mut self, kind: &str, limit: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(value) if value["kind"] == kind => return Ok(value),
                Some(_) => {}
                None => return Err(self.ended(kind).await),
            }
        }
    }

    /// The error for a generator that ended without `kind`.
    pub(crate) async fn ended(&mut self, kind: &str) -> String {
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        match status {
            Ok(Ok(status)) => format!("the generator ended ({status}) without a `{kind}` line"),
            _ => format!("the generator closed its output without a `{kind}` line"),
        }
    }

    /// Waits for the process to exit (10 s), else kills it.
    pub(crate) async fn finish(&mut self) {
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}
