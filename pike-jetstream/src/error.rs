//! The crate's error type and the classification of async-nats errors.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind, PublishError,
    PublishErrorKind,
};
use async_nats::jetstream::stream::{LastRawMessageError, LastRawMessageErrorKind};

/// JetStream error 10071: "wrong last sequence: N" (a compare-and-set lost).
pub(crate) const WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream error 10164: "wrong last sequence" without a number: another
/// compare-and-set on the same subject is still being proposed. async-nats
/// 0.51 reports it as kind `Other`.
pub(crate) const WRONG_LAST_SEQUENCE_PROPOSED: u64 = 10164;
/// JetStream error 10058: "stream name already in use with a different configuration".
pub(crate) const STREAM_NAME_EXIST: u64 = 10058;

/// What went wrong in a cluster operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS is unreachable, has no quorum, or a leader election outlasted the
    /// deadline. Nothing was done, or the outcome is unknown and the call is
    /// idempotent to retry (an append with the same msg id). HTTP 503.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The caller's input is outside the documented limits (an empty or
    /// over-long id, an over-long payload). HTTP 400.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// JetStream refused the operation for another reason (a bug, a
    /// misconfigured server, a stream without an epoch). HTTP 500.
    #[error("cluster error: {0}")]
    Failed(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The JetStream API error code somewhere in an error's `source()` chain,
/// or in the kind of the async-nats errors that carry it there instead.
pub(crate) fn js_code(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        if let Some(create) = e.downcast_ref::<CreateStreamError>()
            && let CreateStreamErrorKind::JetStream(js) = create.kind()
        {
            return Some(js.error_code().0);
        }
        if let Some(get) = e.downcast_ref::<GetStreamError>()
            && let GetStreamErrorKind::JetStream(js) = get.kind()
        {
            return Some(js.error_code().0);
        }
        if let Some(last) = e.downcast_ref::<LastRawMessageError>()
            && let LastRawMessageErrorKind::JetStream(js) = last.kind()
        {
            return Some(js.error_code().0);
        }
        current = e.source();
    }
    None
}

/// A lost compare-and-set: error 10071 or 10164 anywhere in the chain.
pub(crate) fn is_cas_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        js_code(error),
        Some(WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_PROPOSED)
    )
}

/// True when an error is worth retrying under the same idempotency key:
/// timeouts, "no responders" (a leader election), a broken connection, and
/// "stream not found" while a leader is elected (plan §14.4).
pub(crate) fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    // A publish error anywhere in the chain: a KV put wraps it ("ack
    // error: no stream found for given subject" while a restarted node
    // catches up).
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(publish) = e.downcast_ref::<PublishError>()
            && matches!(
                publish.kind(),
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
                    | PublishErrorKind::MaxAckPending
            )
        {
            return true;
        }
        current = e.source();
    }
    if let Some(code) = js_code(error) {
        // 10008 cluster not available, 10023 insufficient resources during
        // elections, 10059 stream not found (transient during an election),
        // 10158 duplicate message id in process (an earlier attempt with
        // the same msg id has not finished: retrying returns its outcome).
        return code == ErrorCode::CLUSTER_NOT_AVAILABLE.0
            || code == 10059
            || code == 10023
            || code == 10158;
    }
    let text = error.to_string().to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "no responders",
        "503",
        "broken pipe",
        "disconnect",
        "not found",
        "no stream found",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl Error {
    /// Wraps an async-nats error: transient ones become [`Error::Unavailable`].
    pub(crate) fn from_nats(what: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        if is_transient(error) {
            Self::Unavailable(format!("{what}: {error}"))
        } else {
            Self::Failed(format!("{what}: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::kv::{PutError, PutErrorKind};

    use super::*;

    #[test]
    fn a_kv_put_whose_stream_is_not_found_yet_is_transient() {
        // What a KV put answers while a restarted node catches up.
        let put = PutError::with_source(
            PutErrorKind::Ack,
            PublishError::new(PublishErrorKind::StreamNotFound),
        );
        assert!(is_transient(&put), "{put}");
        assert!(matches!(
            Error::from_nats("record uplink", &put),
            Error::Unavailable(_)
        ));
        let invalid = PutError::new(PutErrorKind::InvalidKey);
        assert!(!is_transient(&invalid), "{invalid}");
    }
}
