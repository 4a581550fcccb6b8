//! What a backend's answer means for one message, in either contract.

use pike_api::server::UplinkError;
use proto::tunnel::ErrorCode;

/// The answer to one message: taken (`Ok`), refused by the backend, or a
/// failure of the route (the gateway re-routes the message and avoids the
/// backend for [`COOLDOWN`](super::COOLDOWN)).
pub(crate) type Answer = Result<(), Failure>;

/// Why a message was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The backend refused the message (4xx other than 408 and 429): the
    /// client is told at once.
    Refused(String),
    /// The backend instance is unavailable (connection error, timeout,
    /// 408, 429, 5xx, an unreadable batch answer).
    RouteFailed(String),
    /// The gateway could not even ask (a request that does not build): not
    /// the backend's fault, it stays in rotation.
    NotSent(String),
}

impl Failure {
    /// The error the uplink pipeline gets.
    pub(crate) fn into_error(self) -> UplinkError {
        let (message, route_failed) = match self {
            Self::Refused(m) | Self::NotSent(m) => (m, false),
            Self::RouteFailed(m) => (m, true),
        };
        UplinkError {
            code: ErrorCode::BackendUnavailable,
            message,
            route_failed,
        }
    }
}

/// The answer a status means, for a message sent to `route`.
pub(crate) fn from_status(status: u16, route: &str) -> Answer {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failure::RouteFailed(format!(
            "backend {route} answered {status}"
        ))),
        _ => Err(Failure::Refused(format!(
            "backend refused the message: {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_answers() {
        assert_eq!(from_status(200, "r0"), Ok(()));
        assert_eq!(from_status(204, "r0"), Ok(()));
        for status in [408, 429, 500, 503, 599] {
            assert!(
                matches!(from_status(status, "r1"), Err(Failure::RouteFailed(m)) if m.contains("r1")),
                "{status}"
            );
        }
        for status in [100, 302, 400, 403, 404, 413] {
            assert!(
                matches!(from_status(status, "r0"), Err(Failure::Refused(_))),
                "{status}"
            );
        }
        assert!(
            Failure::RouteFailed("x".into()).into_error().route_failed,
            "re-routed"
        );
        assert!(!Failure::Refused("x".into()).into_error().route_failed);
        assert!(!Failure::NotSent("x".into()).into_error().route_failed);
    }
}
