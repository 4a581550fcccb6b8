//! `pike send`: send one uplink message and wait for the backend's answer.
//!
//! It logs in send-only (`Login.send_only`): the gateway delivers it none
//! of the alias's messages, so it neither receives them nor leaves them
//! unacknowledged. It keeps its route id between runs
//! ([`routes`](super::routes)), and says when the gateway moved it.

use std::time::Duration;

use clap::Args;

use super::device::{DeviceArgs, LoginKind};
use super::routes::SavedRoutes;
use super::{Common, Failure, refusal, split_scoped, timeout_secs};
use crate::data_dir::DataDir;

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
    let (biz, alias) = split_scoped(&args.device.alias, "--alias").map_err(Failure::usage)?;
    let data = DataDir::existing(&common.data_dir);
    let routes = SavedRoutes::new(&data);
    let saved = routes.get(&common.app, &biz, &alias);
    let kind = LoginKind::SendOnly {
        route_id: saved.clone(),
    };
    let device = args.device.connect_as(common, kind).await?;
    // The route in use: the login's, then whatever an ack moved it to.
    let keep = |route: &str, previous: &str| {
        if !previous.is_empty() && route != previous && !route.is_empty() {
            eprintln!("pike: route moved from {previous} to {route}");
        }
        if let Err(e) = routes.put(&common.app, &biz, &alias, route) {
            eprintln!("pike: cannot save the route id: {e}");
        }
    };
    keep(&device.route_id, &saved);
    let payload = args.message.join(" ").into_bytes();
    let sending = match &args.key {
        Some(key) => device.client.send_with_key(payload, key.clone()),
        None => device.client.send(payload),
    };
    let key = sending.key().to_owned();
    let outcome = tokio::time::timeout(args.timeout, sending).await;
    let route = device.client.session().route_id;
    if route != device.route_id {
        keep(&route, &device.route_id);
    }
    match outcome {
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
