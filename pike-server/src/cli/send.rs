//! `pike send`: send one uplink message and wait for the backend's answer.

use std::time::Duration;

use clap::Args;

use super::device::DeviceArgs;
use super::{Common, Failure, refusal, timeout_secs};

/// Arguments of `pike send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Idempotency key (default: generated).
    #[arg(long)]
    key: Option<String>,
    /// Seconds to wait for the backend's answer (1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_secs)]
    timeout: Duration,
    /// The message (UTF-8); words are joined with spaces.
    #[arg(required = true)]
    message: Vec<String>,
}

pub(crate) async fn run(common: &Common, args: SendArgs) -> Result<(), Failure> {
    let device = args.device.connect(common).await?;
    let payload = args.message.join(" ").into_bytes();
    let sending = match &args.key {
        Some(key) => device.client.send_with_key(payload, key.clone()),
        None => device.client.send(payload),
    };
    let key = sending.key().to_owned();
    match tokio::time::timeout(args.timeout, sending).await {
        Ok(Ok(_receipt)) => {
            println!("{}", serde_json::json!({"status": "accepted", "key": key}));
            Ok(())
        }
        Ok(Err(e)) => Err(refusal::operation("send failed", &e)),
        Err(_) => Err(Failure::unreachable(format!(
            "no answer from the backend within {} s (key {key})",
            args.timeout.as_secs()
        ))),
    }
}
