//! The `pike` command-line tool: a device (`listen`, `send`, `room`) and a
//! business backend (`push`, `token`) for people and scripts. Its defaults
//! match the zero-config gateway: run from the gateway's directory, it
//! finds the dev credentials in `./pike-data`. Every default can be
//! overridden by a flag or an environment variable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::data_dir::DataDir;

mod bench;
mod device;
mod listen;
mod push;
mod room;
mod send;
mod token;

/// `pike`: talk to a Pike gateway.
#[derive(Debug, Parser)]
#[command(
    name = "pike",
    version,
    about = "Talk to a Pike gateway: listen as a device, send uplink, push, mint credentials"
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
}

/// The token secret: the flag or environment, else the dev app's.
/// Sends a request to the HTTP API at `api` (a POST with `body`, else a
/// GET) with the app's `key` and prints the JSON answer; a refusal is a
/// failure carrying the API's error message (`what` names the request).
pub(crate) async fn api_request(
    api: &str,
    key: &str,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
) -> Result<(), Failure> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let request = match body {
        Some(body) => client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => client.get(&url),
    };
    let response = request
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| Failure::failed(format!("cannot reach the HTTP API at {url}: {e}")))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Failure::failed(format!("reading the answer: {e}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(Failure::failed(format!(
            "{what} refused ({status}): {message}"
        )));
    }
    println!("{text}");
    Ok(())
}

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
