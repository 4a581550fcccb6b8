//! Plain TCP: client transport and listener.

mod listener;
mod transport;

pub use listener::TcpListener;
pub use transport::{TcpConfig, TcpTransport};
