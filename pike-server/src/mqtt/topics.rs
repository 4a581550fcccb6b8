//! The fixed topic namespace: `pike/<biz>/down` (subscribe: the login's
//! pushes) and `pike/<biz>/up` (publish: uplink to the business backend).

/// Longest topic name or filter looked at, in bytes; longer ones are
/// refused like any topic outside the namespace.
pub const MAX_TOPIC_LEN: usize = 256;

/// Topic filters answered per SUBSCRIBE or UNSUBSCRIBE; further ones fail
/// (only one downlink topic exists per connection).
pub const MAX_SUBSCRIPTIONS: usize = 4;

/// The topics of one connection's business.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    down: String,
    up: String,
}

/// What a SUBSCRIBE filter is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum FilterKind {
    /// The connection's downlink topic.
    Down,
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
    pub(crate) fn classify(&self, filter: &str) -> FilterKind {
        if filter.len() > MAX_TOPIC_LEN {
            FilterKind::Other
        } else if filter.starts_with("$share/") {
            FilterKind::Shared
        } else if filter.contains(['+', '#']) {
            FilterKind::Wildcard
        } else if filter == self.down {
            FilterKind::Down
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
        assert!(t.is_up(b"pike/iot/up"));
        assert!(!t.is_up(b"pike/iot/down"));
    }
}
