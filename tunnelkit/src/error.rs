//! Error types, one per operation.

use std::{fmt, io, net::SocketAddr, time::Duration};

/// A configuration value was rejected when a component was built.
///
/// Configuration is validated once, at construction (`FibonacciBackoff::new`, `Dialer::new`,
/// `Acceptor::new`, `QuicTransport::new`, ...); nothing panics on a bad value later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is outside the range the component accepts.
    #[error("`{name}` is out of bounds: {reason}")]
    OutOfBounds {
        /// Name of the offending setting.
        name: &'static str,
        /// What the accepted range is.
        reason: &'static str,
    },
    /// The TLS configuration cannot be used for QUIC (for example it has no TLS 1.3 cipher
    /// suite usable for QUIC's initial packets).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The server name used for certificate verification is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
}

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The socket could not be created, configured or bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was requested.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The listener configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// [`Acceptor::accept`](crate::Acceptor::accept) stopped producing connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// Shutdown was requested; the listening socket has been closed and no more connections
    /// will be accepted. This is the normal end of an accept loop.
    #[error("the acceptor was shut down")]
    ShutDown,
    /// The listener failed in a way that retrying cannot fix (for example the socket is no
    /// longer listening, or the QUIC endpoint was closed).
    #[error("the listener failed")]
    Listener(#[source] io::Error),
}

/// [`Dialer::dial`](crate::Dialer::dial) could not establish a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The endpoint list was empty.
    #[error("no endpoints to dial")]
    NoEndpoints,
    /// Every endpoint was tried and every attempt failed.
    #[error("all {} endpoints failed: {}", .failures.len(), FailureList(.failures))]
    AllFailed {
        /// One entry per endpoint, in endpoint-list order.
        failures: Vec<EndpointFailure>,
    },
    /// The overall dial timeout elapsed first. Attempts still running were cancelled and
    /// endpoints not yet tried were skipped; each has an entry saying so.
    #[error("dial timed out after {timeout:?}: {}", FailureList(.failures))]
    TimedOut {
        /// The configured overall timeout.
        timeout: Duration,
        /// One entry per endpoint, in endpoint-list order.
        failures: Vec<EndpointFailure>,
    },
}

impl DialError {
    /// The per-endpoint failures (empty for [`DialError::NoEndpoints`]).
    pub fn failures(&self) -> &[EndpointFailure] {
        match self {
            Self::NoEndpoints => &[],
            Self::AllFailed { failures } | Self::TimedOut { failures, .. } => failures,
        }
    }
}

impl From<DialError> for io::Error {
    fn from(error: DialError) -> Self {
        let kind = match &error {
            DialError::NoEndpoints => io::ErrorKind::InvalidInput,
            DialError::AllFailed { failures } => match failures.first() {
                Some(first) if failures.iter().all(|f| f.kind() == first.kind()) => first.kind(),
                _ => io::ErrorKind::Other,
            },
            DialError::TimedOut { .. } => io::ErrorKind::TimedOut,
        };
        Self::new(kind, error)
    }
}

/// Why one endpoint of a dial did not produce the connection.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {error}")]
pub struct EndpointFailure {
    /// The endpoint.
    pub addr: SocketAddr,
    /// What happened to it: the transport's error, or a `TimedOut` error when the overall dial
    /// timeout cancelled the attempt or left no time to start it.
    #[source]
    pub error: io::Error,
}

impl EndpointFailure {
    /// The [`io::ErrorKind`] of the failure.
    pub fn kind(&self) -> io::ErrorKind {
        self.error.kind()
    }
}

/// Displays a failure list as `a: e1; b: e2`.
struct FailureList<'a>(&'a [EndpointFailure]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_failed_lists_every_endpoint() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let error = DialError::AllFailed {
            failures: vec![
                EndpointFailure {
                    addr: a,
                    error: io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
                },
                EndpointFailure {
                    addr: b,
                    error: io::Error::new(io::ErrorKind::TimedOut, "slow"),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "all 2 endpoints failed: 127.0.0.1:1: refused; 127.0.0.1:2: slow"
        );
        assert_eq!(io::Error::from(error).kind(), io::ErrorKind::Other);
    }

    #[test]
    fn io_kind_is_kept_when_all_failures_agree() {
        let error = DialError::AllFailed {
            failures: vec![EndpointFailure {
                addr: "[::1]:9".parse().unwrap(),
                error: io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
            }],
        };
        assert_eq!(
            io::Error::from(error).kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}
