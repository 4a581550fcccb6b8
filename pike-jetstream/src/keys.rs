//! The names the cluster stores things under: alias streams and login keys,
//! validated once, with their subjects and KV keys.

use crate::error::{Error, Result};
use crate::tok::tok;

/// Longest app, biz, alias or device id, in bytes (what the gateway accepts).
pub const MAX_ID_BYTES: usize = 1024;

/// Stream of the downlink log.
pub const DOWNLINK_STREAM: &str = "PIKE_DOWNLINK";
/// Bucket of the per-device acked positions.
pub const POSITIONS_BUCKET: &str = "PIKE_POSITIONS";
/// Bucket of the presence claims.
pub const PRESENCE_BUCKET: &str = "PIKE_PRESENCE";
/// The KV bucket of tags and known aliases.
pub const DIRECTORY_BUCKET: &str = "PIKE_DIRECTORY";
/// The KV bucket of delivered uplink messages (deduplication).
pub const UPLINKS_BUCKET: &str = "PIKE_UPLINKS";
/// The KV bucket of node leases (which gateway nodes are alive).
pub const NODES_BUCKET: &str = "PIKE_NODES";

pub(crate) fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::Invalid(format!("{what} is empty")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::Invalid(format!(
            "{what} is {} bytes, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

/// One alias stream of the downlink log: `(app, biz, alias)`.
#[derive(Clone, Debug, Eq, PartialEq, Hash)]
pub struct StreamKey {
    app: String,
    biz: String,
    alias: String,
    /// `<tok app>.<tok biz>.<tok alias>`.
    tokens: String,
}

impl StreamKey {
    /// Validates the ids (non-empty, at most [`MAX_ID_BYTES`] each).
    pub fn new(app: &str, biz: &str, alias: &str) -> Result<Self> {
        check_id("app", app)?;
        check_id("biz", biz)?;
        check_id("alias", alias)?;
        Ok(Self {
            tokens: format!("{}.{}.{}", tok(app), tok(biz), tok(alias)),
            app: app.to_owned(),
            biz: biz.to_owned(),
            alias: alias.to_owned(),
        })
    }

    /// The app id.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The business id.
    pub fn biz(&self) -> &str {
        &self.biz
    }

    /// The alias id.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// `dl.<app>.<biz>.<alias>`: the subject of the stored messages.
    pub fn log_subject(&self) -> String {
        format!("dl.{}", self.tokens)
    }

    /// `live.<app>.<biz>.<alias>`: where stored messages are republished and
    /// transient ones published.
    pub fn live_subject(&self) -> String {
        format!("live.{}", self.tokens)
    }

    /// `<app>.<biz>.<alias>` (tokens), the prefix of the KV keys.
    pub(crate) fn tokens(&self) -> &str {
        &self.tokens
    }
}

/// One login: a device of an alias stream (the presence and position key).
#[derive(Clone, Debug, Eq, PartialEq, Hash)]
pub struct LoginKey {
    stream: StreamKey,
    device: String,
}

impl LoginKey {
    /// Validates the ids (non-empty, at most [`MAX_ID_BYTES`] each).
    pub fn new(app: &str, biz: &str, alias: &str, device: &str) -> Result<Self> {
        Self::of(StreamKey::new(app, biz, alias)?, device)
    }

    /// The login of `device` on `stream`.
    pub fn of(stream: StreamKey, device: &str) -> Result<Self> {
        check_id("device", device)?;
        Ok(Self {
            stream,
            device: device.to_owned(),
        })
    }

    /// The alias stream.
    pub fn stream(&self) -> &StreamKey {
        &self.stream
    }

    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// `<app>.<biz>.<alias>.<device>`, every part through [`tok`].
    pub fn kv_key(&self) -> String {
        format!("{}.{}", self.stream.tokens(), tok(&self.device))
    }
}

/// Checks a node name: `[-_a-zA-Z0-9]{1,32}` (it is a subject token).
pub(crate) fn check_node(node: &str) -> Result<()> {
    if node.is_empty()
        || node.len() > 32
        || !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::Invalid(format!(
            "node name {node:?} must match [-_a-zA-Z0-9]{{1,32}}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_keys() {
        let k = StreamKey::new("demo", "chat", "chat:u42").unwrap();
        assert_eq!(k.log_subject(), "dl.demo.chat.chat=3Au42");
        assert_eq!(k.live_subject(), "live.demo.chat.chat=3Au42");
        let l = LoginKey::of(k, "phone 1").unwrap();
        assert_eq!(l.kv_key(), "demo.chat.chat=3Au42.phone=201");
    }

    #[test]
    fn limits() {
        assert!(matches!(
            StreamKey::new("", "b", "c"),
            Err(Error::Invalid(_))
        ));
        assert!(StreamKey::new("a", "b", &"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(matches!(
            StreamKey::new("a", "b", &"x".repeat(MAX_ID_BYTES + 1)),
            Err(Error::Invalid(_))
        ));
        assert!(check_node("gw-1_a").is_ok());
        assert!(check_node("gw.1").is_err());
        assert!(check_node(&"a".repeat(33)).is_err());
    }
}
