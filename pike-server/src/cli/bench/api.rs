//! Where and how the publisher reaches the gateway's HTTP API: the flags
//! shared by the workloads that publish through it, and the API key.

use std::net::SocketAddr;

use clap::Args;

use super::http_pool::{HttpPool, RequestTemplate, resolve_http};
use crate::cli::{Common, Failure};
use crate::data_dir::DataDir;

/// The publisher's flags.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The gateway's HTTP API (plain `http://host:port`).
    #[arg(long, env = "PIKE_API", default_value = "http://127.0.0.1:9380")]
    api: String,
    /// The app's API key (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Keep-alive HTTP connections of the publisher, i.e. requests in
    /// flight at most.
    #[arg(long, visible_alias = "publishers", default_value_t = 4)]
    http_connections: usize,
}

/// The resolved API.
#[derive(Debug)]
pub(crate) struct Api {
    addr: SocketAddr,
    host: String,
    api_key: String,
    connections: usize,
    /// The API's base URL, as given.
    pub(crate) url: String,
}

impl Api {
    /// Resolves the flags (the key from the dev app when not given).
    pub(crate) fn new(common: &Common, args: &ApiArgs) -> Result<Self, Failure> {
        let (addr, host) = resolve_http(args.api.trim_end_matches('/')).map_err(Failure::usage)?;
        Ok(Self {
            addr,
            host,
            api_key: api_key(common, args.api_key.as_deref())?,
            connections: args.http_connections.max(1),
            url: args.api.trim_end_matches('/').to_owned(),
        })
    }

    /// Requests to `path` (e.g. `/v1/push`).
    pub(crate) fn template(&self, path: &str) -> RequestTemplate {
        RequestTemplate::post_json(&self.host, path, &self.api_key)
    }

    /// The publisher's connections.
    pub(crate) fn pool(&self) -> HttpPool {
        HttpPool::new(self.addr, self.connections)
    }

    /// The API's socket address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's `host[:port]`, as requests name it.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The API key.
    pub(crate) fn key(&self) -> &str {
        &self.api_key
    }

    /// Keep-alive connections of the publisher.
    pub(crate) fn connections(&self) -> usize {
        self.connections
    }
}

/// The API key: the flag or environment, else the dev app's.
fn api_key(common: &Common, explicit: Option<&str>) -> Result<String, Failure> {
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
