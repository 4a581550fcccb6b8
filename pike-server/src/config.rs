//! `pike.toml`: the gateway's configuration, with the zero-config defaults of
//! ARCHITECTURE §5 (every listener on loopback, data in `./pike-data`, a dev
//! app `demo`). Every option is documented in `docs/config.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store, TLS identity and dev credentials live.
    pub data_dir: PathBuf,
    /// Listening addresses.
    pub listen: Listen,
    /// TLS identity for the TLS and QUIC listeners.
    pub tls: Tls,
    /// Heartbeat parameters advertised to clients.
    pub heartbeat: Heartbeat,
    /// Connection and frame limits.
    pub limits: Limits,
    /// Retention of reliable messages.
    pub store: Store,
    /// Apps served. Empty: the dev app `demo`, whose credentials are
    /// generated into the data dir on first start.
    pub apps: Vec<App>,
}

/// Listening addresses; a listener set to `""` is off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Plain TCP (no encryption).
    #[serde(with = "optional_addr")]
    pub tcp: Option<SocketAddr>,
    /// TLS 1.3 over TCP.
    #[serde(with = "optional_addr")]
    pub tls: Option<SocketAddr>,
    /// QUIC.
    #[serde(with = "optional_addr")]
    pub quic: Option<SocketAddr>,
    /// The HTTP API, `/metrics` and `/healthz`.
    #[serde(with = "optional_addr")]
    pub http: Option<SocketAddr>,
    /// Allow plain TCP on an address other than loopback (off: plain text
    /// over a real network exposes credentials and payloads).
    pub allow_plain_non_loopback: bool,
}

/// TLS identity.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain. With `key`; absent: a self-signed
    /// development certificate generated into `data_dir/tls/`.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// Heartbeat parameters the server advertises in its hello.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// Heartbeat period, seconds (default 60: a fifth of the 5-minute
    /// carrier NAT timeout).
    pub interval_secs: u32,
    /// Silence after a ping that marks the link dead, seconds (default 20).
    pub timeout_secs: u32,
}

/// Limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most client connections at once across listeners (0 = no limit);
    /// more get `CLOSE OVERLOADED`.
    pub max_connections: usize,
    /// Largest frame body accepted, bytes (default 1 MiB).
    pub max_frame_length: usize,
    /// Time allowed for the hello exchange, seconds (default 10).
    pub handshake_timeout_secs: u32,
}

/// Retention of reliable downlink.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// Default time to live of a reliable message, seconds (default 7 days).
    pub default_ttl_secs: u64,
    /// Most messages kept per alias stream; the oldest go first (default
    /// 10,000).
    pub max_messages_per_stream: u64,
}

/// One app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// App id, as clients send it in their hello.
    pub id: String,
    /// Bearer key of the HTTP API for this app (at least 16 characters).
    pub api_key: String,
    /// HMAC-SHA256 secret that signs client credentials (at least 16 bytes).
    pub token_secret: String,
    /// Businesses and their backends.
    #[serde(default)]
    pub biz: Vec<Biz>,
}

/// One business of an app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Biz {
    /// Business id, as clients log in with it.
    pub id: String,
    /// Webhook URLs receiving this business's uplink (one backend instance
    /// each; the gateway balances logins over them and keeps each login
    /// sticky to one).
    #[serde(default)]
    pub uplink_webhooks: Vec<String>,
    /// Optional webhook asked to approve each login (after the token check).
    #[serde(default)]
    pub auth_webhook: Option<String>,
    /// Time a webhook may take, milliseconds (default 5000).
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    5_000
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(addr) = self.listen.tcp
            && !addr.ip().is_loopback()
            && !self.listen.allow_plain_non_loopback
        {
            return invalid(format!(
                "plain TCP on non-loopback address {addr} exposes credentials and payloads; use the TLS or QUIC listener, or set listen.allow_plain_non_loopback = true"
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert and tls.key go together".into());
        }
        if self.heartbeat.interval_secs == 0 || self.heartbeat.timeout_secs == 0 {
            return invalid(
                "heartbeat.interval_secs and heartbeat.timeout_secs must be at least 1".into(),
            );
        }
        if !(1024..=(1 << 28) - 1).contains(&self.limits.max_frame_length) {
            return invalid("limits.max_frame_length must be between 1024 and 268435455".into());
        }
        if self.limits.handshake_timeout_secs == 0 {
            return invalid("limits.handshake_timeout_secs must be at least 1".into());
        }
        if self.store.max_messages_per_stream == 0 || self.store.default_ttl_secs == 0 {
            return invalid(
                "store.max_messages_per_stream and store.default_ttl_secs must be at least 1"
                    .into(),
            );
        }
        let mut ids = std::collections::HashSet::new();
        for app in &self.apps {
            if app.id.is_empty() || !ids.insert(app.id.as_str()) {
                return invalid(format!("app id {:?} is empty or duplicated", app.id));
            }
            if app.api_key.len() < 16 || app.token_secret.len() < 16 {
                return invalid(format!(
                    "app {:?}: api_key and token_secret need at least 16 characters",
                    app.id
                ));
            }
            let mut bizs = std::collections::HashSet::new();
            for biz in &app.biz {
                if biz.id.is_empty() || !bizs.insert(biz.id.as_str()) {
                    return invalid(format!(
                        "app {:?}: biz id {:?} is empty or duplicated",
                        app.id, biz.id
                    ));
                }
                for url in biz.uplink_webhooks.iter().chain(&biz.auth_webhook) {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return invalid(format!(
                            "app {:?} biz {:?}: webhook {url:?} is not an http(s) URL",
                            app.id, biz.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./pike-data"),
            listen: Listen::default(),
            tls: Tls::default(),
            heartbeat: Heartbeat::default(),
            limits: Limits::default(),
            store: Store::default(),
            apps: Vec::new(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        let local = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        Self {
            tcp: local(9300),
            tls: local(9301),
            quic: local(9302),
            http: local(9380),
            allow_plain_non_loopback: false,
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            timeout_secs: 20,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_frame_length: 1 << 20,
            handshake_timeout_secs: 10,
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self {
            default_ttl_secs: 7 * 24 * 3600,
            max_messages_per_stream: 10_000,
        }
    }
}

/// `""` or absent turns a listener off.
mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        addr: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an ip:port address")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_the_zero_config_gateway() {
        let config = parse("").unwrap();
        assert_eq!(config.listen.tcp, Some("127.0.0.1:9300".parse().unwrap()));
        assert_eq!(config.listen.tls, Some("127.0.0.1:9301".parse().unwrap()));
        assert_eq!(config.listen.quic, Some("127.0.0.1:9302".parse().unwrap()));
        assert_eq!(config.listen.http, Some("127.0.0.1:9380".parse().unwrap()));
        assert_eq!(config.data_dir, PathBuf::from("./pike-data"));
        assert!(config.apps.is_empty());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../docs/pike.example.toml");
        let config = parse(text).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].biz[0].uplink_webhooks.len(), 2);
    }

    #[test]
    fn plain_tcp_off_loopback_needs_consent() {
        let err = parse("[listen]\ntcp = \"0.0.0.0:9300\"\n").unwrap_err();
        assert!(
            err.to_string().contains("allow_plain_non_loopback"),
            "{err}"
        );
        assert!(
            parse("[listen]\ntcp = \"0.0.0.0:9300\"\nallow_plain_non_loopback = true\n").is_ok()
        );
        assert!(
            parse("[listen]\ntcp = \"\"\n")
                .unwrap()
                .listen
                .tcp
                .is_none()
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_place() {
        let err = parse("[listen]\ntcp = \"nonsense\"\n").unwrap_err();
        assert!(err.to_string().contains("not an ip:port"), "{err}");
        let err = parse("[limits]\nmax_frame_length = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_frame_length"), "{err}");
        let err = parse("unknown_key = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = parse("[[apps]]\nid = \"a\"\napi_key = \"short\"\ntoken_secret = \"short\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("16 characters"), "{err}");
        let err = parse(
            "[[apps]]\nid = \"a\"\napi_key = \"0123456789abcdef\"\ntoken_secret = \"0123456789abcdef\"\n[[apps.biz]]\nid = \"chat\"\nuplink_webhooks = [\"ftp://x\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
        let err = parse("[tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }
}
