//! The client API's error: one opaque type with a kind.

use std::fmt;
use std::sync::Arc;

use pike_channel::SendFailureReason;
use proto::tunnel::ErrorCode;

type Source = Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong, in broad classes; see [`Error::kind`].
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client is not started (never started, or stopped).
    NotStarted,
    /// The client was stopped (or restarted into a failed login) before the
    /// operation completed.
    Stopped,
    /// The gateway or the business backend refused the message
    /// ([`Error::code`] says why).
    Rejected,
    /// The message was transmitted the configured maximum number of times
    /// without an answer.
    MaxAttempts,
    /// Too many messages wait for an answer; try again later.
    QueueFull,
    /// The business login was refused (bad or expired credential,
    /// forbidden); [`Error::code`] says which.
    AuthFailed,
    /// The channel's driver is gone (runtime shutting down, proxy shut
    /// down).
    ChannelClosed,
    /// Called outside a tokio runtime.
    NoRuntime,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::NotStarted => "client not started",
            Self::Stopped => "client stopped",
            Self::Rejected => "refused by the gateway or backend",
            Self::MaxAttempts => "no answer after the maximum number of attempts",
            Self::QueueFull => "too many messages waiting",
            Self::AuthFailed => "login refused",
            Self::ChannelClosed => "channel closed",
            Self::NoRuntime => "no tokio runtime",
        }
    }
}

/// The error of the client API: an opaque value with a [`kind`](Self::kind),
/// the wire [`code`](Self::code) when the server gave one, a message, and
/// possibly a source. Cheap to clone.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    code: Option<ErrorCode>,
    message: String,
    source: Option<Source>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn from_send_failure(reason: SendFailureReason) -> Self {
        match reason {
            SendFailureReason::Rejected { code, message } => {
                Self::new(ErrorKind::Rejected, message).with_code(code)
            }
            SendFailureReason::MaxAttempts { attempts } => Self::new(
                ErrorKind::MaxAttempts,
                format!("transmitted {attempts} times without an ack"),
            ),
            SendFailureReason::LoginGone => Self::new(ErrorKind::Stopped, "the login ended"),
            other => Self::new(ErrorKind::Stopped, format!("{other:?}")),
        }
    }

    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's error code, if the server gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code
    }

    /// The detail.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(code) = self.code {
            d.field("code", &code);
        }
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(code) = self.code {
            write!(f, " ({})", code.as_str_name())?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Error {
    /// Kind, code and message (sources are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.code == other.code && self.message == other.message
    }
}

impl Eq for Error {}
