//! The `pike` command-line tool: a device (`listen`, `send`, `room`) and a
//! business backend (`push`, `token`) for people and scripts. Its defaults
//! match the zero-config gateway: run from the gateway's directory, it
//! finds the dev credentials in `./pike-data`. Every default can be
//! overridden by a flag or an environment variable.
//!
//! Exit statuses (also in `pike --help`): 0 done; 1 the gateway, a backend
//! or the HTTP API refused or failed the operation; 2 usage (bad arguments,
//! no credentials found); 3 the gateway or the HTTP API could not be reached
//! or did not answer in time (trying again may help); 4 to 10 the gateway
//! refused the device for good, one status per class of non-retryable
//! close code (see the `refusal` module); 11 `push --receipt` waited
//! `--receipt-timeout` and devices are still pending.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::data_dir::DataDir;

mod bench;
mod device;
mod listen;
mod push;
mod refusal;
mod room;
mod routes;
mod send;
mod token;
mod try_commands;
mod ws_connector;

pub use try_commands::{Invocation, try_commands};

/// What `pike --help` says about exit statuses (4 to 10: the classes of
/// [`refusal::CLASSES`], checked by a test).
const EXIT_STATUSES: &str = "\
Exit status:
  0  done (`listen` and `room join`: --count reached, or stopped by Ctrl-C or SIGTERM)
  1  the gateway, a backend or the HTTP API refused or failed the operation
  2  usage: bad arguments, or no credentials found (run next to a zero-config
     gateway's ./pike-data, or pass --data-dir, --api-key, --token-secret)
  3  the gateway or the HTTP API could not be reached or did not answer in
     time (trying again may help; the only case a device command retries)
  the gateway refused the device for good (trying again cannot help; the
  server's code and reason are printed):
  4  unknown or disabled app (--app)
  5  credential refused: bad signature, malformed, another app or alias
  6  credential expired
  7  forbidden: the credential does not allow this business or device
  8  the gateway speaks no protocol version this pike speaks
  9  the gateway refused a value it was sent (e.g. --device, --alias too long)
  10  replaced: the same device logged in to the same alias on a newer connection
  11  `push --receipt`: --receipt-timeout passed with devices still pending
      (or none known yet); the receipts seen so far are printed";

/// `pike`: talk to a Pike gateway.
#[derive(Debug, Parser)]
#[command(
    name = "pike",
    version,
    about = "Talk to a Pike gateway: listen as a device, send uplink, push, mint credentials",
    after_help = EXIT_STATUSES
)]
pub struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Options every command shares.
#[derive(Debug, Args)]
pub struct Common {
    /// The gateway's data directory (dev credentials, the CLI's device id).
    #[arg(
        long,
        global = true,
        env = "PIKE_DATA_DIR",
        default_value = "./pike-data"
    )]
    pub data_dir: PathBuf,
    /// App id.
    #[arg(long, global = true, env = "PIKE_APP", default_value = "demo")]
    pub app: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect as a device, log a business in and print downlink as JSON
    /// lines.
    Listen(listen::ListenArgs),
    /// Send one uplink message as a device and wait for the backend.
    Send(send::SendArgs),
    /// Push a message through the HTTP API (as a business backend).
    Push(push::PushArgs),
    /// Mint a client credential (signed token) for a business alias.
    Token(token::TokenArgs),
    /// Load generator: many devices from one process (idle connections,
    /// unicast, group and room fan-out sweeps, uplink, reconnect storm).
    Bench(bench::BenchArgs),
    /// Live rooms: join or pull as a device, publish or show through the
    /// HTTP API.
    Room(room::RoomArgs),
}

/// Splits `biz:name` (e.g. `chat:u42`).
pub(crate) fn split_scoped(value: &str, what: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((biz, name)) if !biz.is_empty() && !name.is_empty() => {
            Ok((biz.to_owned(), name.to_owned()))
        }
        _ => Err(format!(
            "{what} must look like BIZ:NAME (e.g. chat:u42), got {value:?}"
        )),
    }
}

/// A failed command: a message for stderr and an exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) status: u8,
}

impl Failure {
    /// A usage error (status 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: 2,
        }
    }

    /// A failure of the operation (status 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: 1,
        }
    }

    /// The gateway or the HTTP API could not be reached or did not answer
    /// in time (status 3).
    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: 3,
        }
    }
}

/// Parses a number of seconds of a timeout flag: 1 to 86,400.
pub(crate) fn timeout_secs(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(secs @ 1..=86_400) => Ok(Duration::from_secs(secs)),
        Ok(_) => Err("a timeout is 1 to 86400 seconds".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Ctrl-C or SIGTERM: how `listen` and `room join` are stopped (exit
/// status 0). The handlers are installed when this is created, so a signal
/// that arrives before [`Interrupt::recv`] is awaited is not lost.
pub(crate) struct Interrupt {
    #[cfg(unix)]
    signals: Vec<tokio::signal::unix::Signal>,
}

impl Interrupt {
    /// Installs the handlers (call inside the runtime).
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = [SignalKind::interrupt(), SignalKind::terminate()]
                .into_iter()
                .filter_map(|kind| signal(kind).ok())
                .collect();
            Self { signals }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves once either signal has arrived.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.signals.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.signals.iter_mut().map(|s| Box::pin(s.recv()));
            let _ = futures_util::future::select_all(waits).await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The HTTP API key: the flag or environment, else the dev app's from the
/// data dir.
pub(crate) fn api_key(common: &Common, explicit: Option<&str>) -> Result<String, Failure> {
    if let Some(key) = explicit {
        return Ok(key.to_owned());
    }
    match DataDir::existing(&common.data_dir).read_dev_app() {
        Ok(Some(dev)) if dev.app == common.app => Ok(dev.api_key),
        Ok(_) => Err(Failure::usage(format!(
            "no API key for app {:?}: pass --api-key (or PIKE_API_KEY), or run next to a zero-config gateway's {}",
            common.app,
            common.data_dir.display()
        ))),
        Err(e) => Err(Failure::failed(e.to_string())),
    }
}

/// Sends a request to the HTTP API at `api` (a POST with `body`, else a
/// GET) with the app's `key` and prints the JSON answer; a refusal is a
/// failure carrying the API's error message (`what` names the request).
/// Gives up after `timeout` (status 3).
pub(crate) async fn api_request(
    api: &str,
    key: &str,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let text = api_call(api, key, path, body, what, timeout).await?;
    println!("{text}");
    Ok(())
}

/// [`api_request`] without printing: the answer's text.
pub(crate) async fn api_call(
    api: &str,
    key: &str,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
    timeout: Duration,
) -> Result<String, Failure> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Failure::failed(format!("HTTP client: {e}")))?;
    let request = match body {
        Some(body) => client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => client.get(&url),
    };
    let no_answer = |e: reqwest::Error| {
        if e.is_timeout() {
            Failure::unreachable(format!(
                "no answer from the HTTP API at {url} within {} s",
                timeout.as_secs()
            ))
        } else if e.is_connect() {
            Failure::unreachable(format!(
                "cannot reach the HTTP API at {url} (is the gateway running?): {e}"
            ))
        } else if e.is_builder() {
            Failure::usage(format!("bad HTTP API address {api:?}: {e}"))
        } else {
            Failure::unreachable(format!("the HTTP API at {url} failed: {e}"))
        }
    };
    let response = request.bearer_auth(key).send().await.map_err(no_answer)?;
    let status = response.status();
    let text = response.text().await.map_err(no_answer)?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(Failure::failed(format!(
            "{what} refused ({status}): {message}"
        )));
    }
    Ok(text)
}

/// The token secret: the flag or environment, else the dev app's.
pub(crate) fn token_secret(common: &Common, explicit: Option<&str>) -> Result<String, Failure> {
    if let Some(secret) = explicit {
        return Ok(secret.to_owned());
    }
    let data = DataDir::existing(&common.data_dir);
    match data.read_dev_app() {
        Ok(Some(dev)) if dev.app == common.app => Ok(dev.token_secret),
        Ok(_) => Err(Failure::usage(format!(
            "no token secret for app {:?}: pass --token-secret (or PIKE_TOKEN_SECRET), or run next to a zero-config gateway's {}",
            common.app,
            data.root().display()
        ))),
        Err(e) => Err(Failure::failed(e.to_string())),
    }
}

/// Runs the CLI; returns the process exit status.
pub fn main_with(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pike: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Listen(args) => listen::run(&cli.common, args).await,
            Command::Send(args) => send::run(&cli.common, args).await,
            Command::Push(args) => push::run(&cli.common, args).await,
            Command::Token(args) => token::run(&cli.common, args),
            Command::Bench(args) => bench::run(&cli.common, args).await,
            Command::Room(args) => room::run(&cli.common, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pike: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        for line in [
            "Exit status:",
            "0  done",
            "1  the gateway",
            "2  usage",
            "3  the gateway",
            "11  `push --receipt`",
        ] {
            assert!(help.contains(line), "{line:?} missing from:\n{help}");
        }
    }

    #[test]
    fn receipt_timeout_status_is_documented() {
        let line = format!("  {}  `push --receipt`", push::receipts::PENDING_STATUS);
        assert!(EXIT_STATUSES.contains(&line), "{line:?} missing");
    }

    #[test]
    fn help_lists_every_refusal_class() {
        for (status, _, what) in refusal::CLASSES {
            let line = format!("  {status}  {what}");
            assert!(EXIT_STATUSES.contains(&line), "{line:?} missing");
        }
    }

    #[test]
    fn scoped_names_need_both_halves() {
        assert_eq!(
            split_scoped("chat:u42", "--alias"),
            Ok(("chat".to_owned(), "u42".to_owned()))
        );
        assert_eq!(
            split_scoped("chat:u:42", "--alias"),
            Ok(("chat".to_owned(), "u:42".to_owned()))
        );
        for bad in ["nocolon", ":u42", "chat:", ""] {
            let err = split_scoped(bad, "--alias").unwrap_err();
            assert!(err.contains("BIZ:NAME"), "{err}");
        }
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(timeout_secs("1"), Ok(Duration::from_secs(1)));
        assert_eq!(timeout_secs("86400"), Ok(Duration::from_secs(86_400)));
        assert!(timeout_secs("0").is_err());
        assert!(timeout_secs("86401").is_err());
        assert!(timeout_secs("-1").is_err());
        assert!(timeout_secs("soon").is_err());
    }
}
