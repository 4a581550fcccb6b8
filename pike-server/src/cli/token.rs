//! `pike token`: mint a client credential.

use clap::Args;

use super::{Common, Failure, split_scoped, token_secret};
use crate::token::{Claims, mint};

/// Longest validity `pike token` mints: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 86_400;

/// Arguments of `pike token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The business alias the credential may bind, as BIZ:ALIAS.
    #[arg(long, env = "PIKE_ALIAS")]
    alias: String,
    /// Validity in seconds (1 to 315,360,000, ten years).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
    ttl: u64,
    /// Bind the credential to this device id: valid only on its
    /// connections, which then receive the pushes addressed to the device.
    #[arg(long, env = "PIKE_DEVICE")]
    device: Option<String>,
    /// The app's token secret (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
}

pub(crate) fn run(common: &Common, args: TokenArgs) -> Result<(), Failure> {
    let (biz, alias) = split_scoped(&args.alias, "--alias").map_err(Failure::usage)?;
    let secret = token_secret(common, args.token_secret.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = Claims::new(&common.app, &biz, &alias, now, args.ttl);
    match args.device {
        Some(device) if device.is_empty() => {
            return Err(Failure::usage("--device must not be empty"));
        }
        Some(device) => claims = claims.with_device(device),
        None => {}
    }
    println!("{}", mint(&claims, secret.as_bytes()));
    Ok(())
}
