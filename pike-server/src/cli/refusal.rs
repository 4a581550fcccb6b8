//! The gateway's refusals that trying again cannot fix (the server's
//! non-retryable codes, see `ErrorCode::is_retryable`), each with its own
//! exit status so that scripts can tell them apart.

use pike_api::{Error, StopReason};
use proto::tunnel::ErrorCode;

use super::Failure;

/// The exit status of each refusal class, and what `pike --help` says
/// about it: (status, codes, description).
pub(crate) const CLASSES: &[(u8, &[ErrorCode], &str)] = &[
    (
        4,
        &[ErrorCode::UnknownApp],
        "unknown or disabled app (--app)",
    ),
    (
        5,
        &[ErrorCode::AuthFailed],
        "credential refused: bad signature, malformed, another app or alias",
    ),
    (6, &[ErrorCode::TokenExpired], "credential expired"),
    (
        7,
        &[ErrorCode::Forbidden],
        "forbidden: the credential does not allow this business or device",
    ),
    (
        8,
        &[ErrorCode::UnsupportedVersion],
        "the gateway speaks no protocol version this pike speaks",
    ),
    (
        9,
        &[ErrorCode::InvalidArgument],
        "the gateway refused a value it was sent (e.g. --device, --alias too long)",
    ),
    (
        10,
        &[ErrorCode::Replaced],
        "replaced: the same device logged in to the same alias on a newer connection",
    ),
];

/// The exit status for a refusal with `code`: its class's, else 1.
pub(crate) fn status(code: ErrorCode) -> u8 {
    CLASSES
        .iter()
        .find(|(_, codes, _)| codes.contains(&code))
        .map_or(1, |(status, _, _)| *status)
}

/// The gateway refused the connection or the login for good: the server's
/// code and reason, and the class's exit status.
pub(crate) fn refused(code: ErrorCode, message: &str) -> Failure {
    Failure {
        message: format!(
            "the gateway refused the login ({}): {message}",
            code.as_str_name()
        ),
        status: status(code),
    }
}

/// Why a client stopped, as a failure.
pub(crate) fn stopped(reason: StopReason) -> Failure {
    match reason {
        StopReason::AuthFailed { code, message } => refused(code, &message),
        StopReason::ChannelClosed => Failure::failed("the connection to the gateway ended"),
        other => Failure::failed(format!("client stopped: {other:?}")),
    }
}

/// A failed operation of a running client (`what` names it): a refusal of
/// the login (the gateway closed it for good meanwhile) keeps its class's
/// status; anything else is status 1.
pub(crate) fn operation(what: &str, error: &Error) -> Failure {
    match (error.kind(), error.code()) {
        (pike_api::ErrorKind::AuthFailed, Some(code)) => Failure {
            message: format!("{what}: {error}"),
            status: status(code),
        },
        _ => Failure::failed(format!("{what}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_final_code_has_its_own_status_and_no_other_code_has_one() {
        let mut seen = std::collections::BTreeSet::new();
        // FORBIDDEN is final as a login refusal; in a close it is the
        // disconnect API's kick, which clients reconnect after.
        let login_only = [ErrorCode::Forbidden];
        for (status, codes, _) in CLASSES {
            assert!(*status > 3, "0 to 3 are taken");
            assert!(seen.insert(*status), "status {status} is used twice");
            for code in *codes {
                assert!(
                    !code.is_retryable() || login_only.contains(code),
                    "{code:?} is retryable"
                );
            }
        }
        for value in 0..200 {
            let Ok(code) = ErrorCode::try_from(value) else {
                continue;
            };
            let classed = CLASSES.iter().any(|(_, codes, _)| codes.contains(&code));
            assert_eq!(
                classed,
                !code.is_retryable() || login_only.contains(&code),
                "{code:?}"
            );
            if !classed {
                assert_eq!(status(code), 1, "{code:?}");
            }
        }
    }
}
