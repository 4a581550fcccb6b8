//! `pike push`: push through the gateway's HTTP API, as a backend would.

use std::time::Duration;

use clap::Args;

use crate::http::model::PushResponse;

use super::{Common, Failure, split_scoped, timeout_secs};

pub(crate) mod receipts;

/// Arguments of `pike push`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["alias", "tag", "device", "all"])))]
pub(crate) struct PushArgs {
    /// Push to every device of an alias, as BIZ:ALIAS.
    #[arg(long)]
    alias: Option<String>,
    /// Push to the aliases bound to a tag, as BIZ:TAG.
    #[arg(long)]
    tag: Option<String>,
    /// Push to one device's connections (transient only), as BIZ:DEVICE.
    #[arg(long)]
    device: Option<String>,
    /// Push to every alias of a business: BIZ.
    #[arg(long)]
    all: Option<String>,
    /// Not stored: at most once, to devices online now.
    #[arg(long)]
    transient: bool,
    /// Time to live in seconds (reliable pushes).
    #[arg(long)]
    ttl: Option<u64>,
    /// Priority (0 = normal).
    #[arg(long, default_value_t = 0)]
    priority: u32,
    /// The HTTP API.
    #[arg(long, env = "PIKE_API", default_value = "http://127.0.0.1:9380")]
    api: String,
    /// The app's API key (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds to wait for the HTTP API's answer (1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_secs)]
    timeout: Duration,
    /// Ask for receipts and wait for them: poll the message's status
    /// (`GET /v1/messages/{id}`) and print one JSON line per device event
    /// (delivered, acked, expired, dropped) until every device it lists
    /// acked or expired (exit 0) or --receipt-timeout passed (exit 11).
    #[arg(long)]
    receipt: bool,
    /// With --receipt: seconds to wait for the receipts (1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_secs, requires = "receipt")]
    receipt_timeout: Duration,
    /// The message (UTF-8); words are joined with spaces.
    #[arg(required = true)]
    message: Vec<String>,
}

pub(crate) async fn run(common: &Common, args: PushArgs) -> Result<(), Failure> {
    let api_key = super::api_key(common, args.api_key.as_deref())?;
    let mut body = serde_json::Map::new();
    let scoped = |v: &str, what| split_scoped(v, what).map_err(Failure::usage);
    if let Some(v) = &args.alias {
        let (biz, alias) = scoped(v, "--alias")?;
        body.insert("biz".into(), biz.into());
        body.insert("alias".into(), alias.into());
    } else if let Some(v) = &args.tag {
        let (biz, tag) = scoped(v, "--tag")?;
        body.insert("biz".into(), biz.into());
        body.insert("tag".into(), tag.into());
    } else if let Some(v) = &args.device {
        let (biz, device) = scoped(v, "--device")?;
        body.insert("biz".into(), biz.into());
        body.insert("device".into(), device.into());
    } else if let Some(biz) = &args.all {
        body.insert("biz".into(), biz.clone().into());
        body.insert("all".into(), true.into());
    }
    body.insert("payload".into(), args.message.join(" ").into());
    body.insert(
        "reliable".into(),
        (!args.transient && args.device.is_none()).into(),
    );
    if let Some(ttl) = args.ttl {
        body.insert("ttl_secs".into(), ttl.into());
    }
    if args.priority > 0 {
        body.insert("priority".into(), args.priority.into());
    }
    if args.receipt {
        body.insert("receipt".into(), true.into());
    }
    let answer = super::api_call(
        &args.api,
        &api_key,
        "/v1/push",
        Some(serde_json::Value::Object(body)),
        "push",
        args.timeout,
    )
    .await?;
    println!("{answer}");
    if !args.receipt {
        return Ok(());
    }
    let pushed: PushResponse = serde_json::from_str(&answer)
        .map_err(|e| Failure::failed(format!("the push answer is not the documented JSON: {e}")))?;
    receipts::follow(
        receipts::Follow {
            api: &args.api,
            api_key: &api_key,
            app: &common.app,
            request_timeout: args.timeout,
            wait: args.receipt_timeout,
        },
        &pushed,
    )
    .await
}
