//! `pike push`: push through the gateway's HTTP API, as a backend would.

use clap::Args;

use super::{Common, Failure, split_scoped};
use crate::data_dir::DataDir;

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
    /// The message (UTF-8); words are joined with spaces.
    #[arg(required = true)]
    message: Vec<String>,
}

pub(crate) async fn run(common: &Common, args: PushArgs) -> Result<(), Failure> {
    let api_key = match args.api_key {
        Some(key) => key,
        None => match DataDir::existing(&common.data_dir).read_dev_app() {
            Ok(Some(dev)) if dev.app == common.app => dev.api_key,
            Ok(_) => {
                return Err(Failure::usage(format!(
                    "no API key for app {:?}: pass --api-key (or PIKE_API_KEY), or run next to a zero-config gateway's {}",
                    common.app,
                    common.data_dir.display()
                )));
            }
            Err(e) => return Err(Failure::failed(e.to_string())),
        },
    };
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
    super::api_request(
        &args.api,
        &api_key,
        "/v1/push",
        Some(serde_json::Value::Object(body)),
        "push",
    )
    .await
}
