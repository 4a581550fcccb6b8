//! QUIC (quinn, rustls with ring): one bidirectional stream per logical connection.

mod config;
mod listener;
mod stream;
mod transport;

pub use config::QuicConfig;
pub use listener::QuicListener;
pub use stream::QuicStream;
pub use transport::QuicTransport;
