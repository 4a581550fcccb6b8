//! The fixed topic namespace: `pike/<biz>/down` (subscribe: the login's
//! pushes), `pike/<biz>/tag/<tag>` (subscribe: binds the tag to the login's
//! alias) and `pike/<biz>/up` (publish: uplink to the business backend).

use pike_channel::limits::MAX_TAG_LEN;

/// Longest topic name or filter looked at, in bytes; longer ones are
/// refused like any topic outside the namespace.
pub const MAX_TOPIC_LEN: usize = 256;

/// Topic filters answered per SUBSCRIBE or UNSUBSCRIBE; further ones fail
/// (5.0: Quota exceeded). Far below the gateway's 64 tags per `TAGS`
/// request, so one SUBSCRIBE's tags always fit one request.
pub const MAX_SUBSCRIPTIONS: usize = 4;

/// Tag subscriptions one MQTT session holds at once; a SUBSCRIBE to one
/// more tag is refused (3.1.1: SUBACK 0x80, 5.0: 0x97 Quota exceeded) and
/// binds nothing.
pub const MAX_TAG_SUBSCRIPTIONS: usize = 16;

/// The topics of one connection's business.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    down: String,
    up: String,
    /// `pike/<biz>/tag/`, the prefix of the tag topics.
    tag_prefix: String,
}

/// What a SUBSCRIBE filter is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum FilterKind<'a> {
    /// The connection's downlink topic.
    Down,
    /// `pike/<biz>/tag/<tag>` with a valid tag: 1 to [`MAX_TAG_LEN`]
    /// bytes, no control character (the gateway's bounds for `TAGS`).
    Tag(&'a str),
    /// `pike/<biz>/tag/<tag>` with a tag the gateway would refuse.
    BadTag,
    /// A filter with `+` or `#`.
    Wildcard,
    /// `$share/...`.
    Shared,
    /// Any other topic.
    Other,
}

impl Topics {
    /// The topics of `biz`.
    pub(crate) fn new(biz: &str) -> Self {
        Self {
            down: format!("pike/{biz}/down"),
            up: format!("pike/{biz}/up"),
            tag_prefix: format!("pike/{biz}/tag/"),
        }
    }

    /// The downlink topic.
    pub(crate) fn down(&self) -> &str {
        &self.down
    }

    /// Whether `topic` (a PUBLISH's or a will's) is the uplink topic.
    pub(crate) fn is_up(&self, topic: &[u8]) -> bool {
        topic == self.up.as_bytes()
    }

    /// Classifies a SUBSCRIBE or UNSUBSCRIBE filter.
    pub(crate) fn classify<'a>(&self, filter: &'a str) -> FilterKind<'a> {
        if filter.len() > MAX_TOPIC_LEN {
            FilterKind::Other
        } else if filter.starts_with("$share/") {
            FilterKind::Shared
        } else if filter.contains(['+', '#']) {
            FilterKind::Wildcard
        } else if filter == self.down {
            FilterKind::Down
        } else if let Some(tag) = filter.strip_prefix(self.tag_prefix.as_str()) {
            if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.chars().any(char::is_control) {
                FilterKind::BadTag
            } else {
                FilterKind::Tag(tag)
            }
        } else {
            FilterKind::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_classified() {
        let t = Topics::new("iot");
        assert_eq!(t.classify("pike/iot/down"), FilterKind::Down);
        assert_eq!(t.classify("pike/+/down"), FilterKind::Wildcard);
        assert_eq!(t.classify("#"), FilterKind::Wildcard);
        assert_eq!(t.classify("$share/g/pike/iot/down"), FilterKind::Shared);
        assert_eq!(t.classify("pike/chat/down"), FilterKind::Other);
        assert_eq!(
            t.classify(&"a".repeat(MAX_TOPIC_LEN + 1)),
            FilterKind::Other
        );
        assert_eq!(t.classify("pike/iot/tag/vip"), FilterKind::Tag("vip"));
        assert_eq!(t.classify("pike/iot/tag/a/b"), FilterKind::Tag("a/b"));
        let longest = "t".repeat(MAX_TAG_LEN);
        assert_eq!(
            t.classify(&format!("pike/iot/tag/{longest}")),
            FilterKind::Tag(&longest)
        );
        assert_eq!(t.classify("pike/iot/tag/"), FilterKind::BadTag);
        assert_eq!(
            t.classify(&format!("pike/iot/tag/{longest}x")),
            FilterKind::BadTag
        );
        assert_eq!(t.classify("pike/iot/tag/a\u{7}b"), FilterKind::BadTag);
        assert_eq!(t.classify("pike/iot/tag/+"), FilterKind::Wildcard);
        assert_eq!(t.classify("pike/chat/tag/vip"), FilterKind::Other);
        assert!(t.is_up(b"pike/iot/up"));
        assert!(!t.is_up(b"pike/iot/down"));
    }
}
