//! Connections: dialling from a loopback source address, the protocol
//! handshakes, and the outbox a sending connection writes through.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use super::super::client::Proto;
use super::{mqtt, nats};

/// Dials `server` from `source` (port chosen at connect time thanks to
/// `IP_BIND_ADDRESS_NO_PORT`), with a fixed receive buffer when given
/// (which also turns the kernel's auto-tuning off).
pub(crate) async fn dial(
    server: SocketAddr,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    if let Some(size) = recv_buffer {
        socket
            .set_recv_buffer_size(size)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    if let Some(ip) = source {
        use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
        setsockopt(&socket, IpBindAddressNoPort, &true)
            .map_err(|e| format!("IP_BIND_ADDRESS_NO_PORT: {e}"))?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))
}

/// Reads at least one more chunk into `buf`.
pub(crate) async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    let mut chunk = [0u8; 2048];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("connection closed by the server".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Where and how to open one connection.
#[derive(Clone, Debug)]
pub(crate) struct Dial {
    pub(crate) proto: Proto,
    pub(crate) server: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    pub(crate) recv_buffer: Option<u32>,
    /// The subscription's QoS (MQTT; 0 elsewhere).
    pub(crate) qos: u8,
    /// MQTT user name and password (pike mode).
    pub(crate) credentials: Option<(String, String)>,
}

/// Opens a connection named `name`, subscribed to `topic` when given;
/// returns it with the bytes already read past the handshake.
pub(crate) async fn open(
    dial_to: &Dial,
    name: &str,
    topic: Option<&str>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = dial(dial_to.server, dial_to.source, dial_to.recv_buffer).await?;
    let mut buf = Vec::with_capacity(512);
    match dial_to.proto {
        Proto::Mqtt => {
            let credentials = dial_to
                .credentials
                .as_ref()
                .map(|(user, password)| (user.as_str(), password.as_str()));
            mqtt::handshake_as(&mut stream, &mut buf, name, credentials, topic, dial_to.qos).await?
        }
        Proto::Nats => nats::handshake(&mut stream, &mut buf, name, topic).await?,
    }
    Ok((stream, buf))
}

/// The send side of a publishing connection. Whole frames are appended to
/// one buffer; [`Outbox::flush`] hands the socket what it takes now (one
/// `write` per tick for all the messages due), and the connection's writer
/// task ([`writer`]) finishes the rest when the socket is writable again.
/// Single-threaded (`Rc`), so appends never interleave with a write.
#[derive(Debug)]
pub(crate) struct Outbox {
    stream: Rc<TcpStream>,
    buf: RefCell<Vec<u8>>,
    head: Cell<usize>,
    wake: Notify,
    failed: Cell<bool>,
    error: RefCell<Option<String>>,
}

impl Outbox {
    pub(crate) fn new(stream: Rc<TcpStream>) -> Self {
        Self {
            stream,
            buf: RefCell::new(Vec::with_capacity(64 * 1024)),
            head: Cell::new(0),
            wake: Notify::new(),
            failed: Cell::new(false),
            error: RefCell::new(None),
        }
    }

    /// Bytes appended but not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.buf.borrow().len() - self.head.get()
    }

    /// Whether the connection failed (nothing more is sent on it).
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Why it failed.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }

    /// Marks the connection failed.
    pub(crate) fn fail(&self, why: String) {
        if !self.failed.replace(true) {
            *self.error.borrow_mut() = Some(why);
        }
        self.wake.notify_one();
    }

    /// Appends whole frames.
    #[inline]
    pub(crate) fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.buf.borrow_mut());
    }

    /// Writes what the socket takes now; `true` when nothing is left.
    /// What is left is the writer task's, which is woken.
    pub(crate) fn flush(&self) -> bool {
        if self.failed.get() {
            return true;
        }
        let mut buf = self.buf.borrow_mut();
        let mut head = self.head.get();
        let done = loop {
            if head == buf.len() {
                buf.clear();
                head = 0;
                break true;
            }
            match self.stream.try_write(&buf[head..]) {
                Ok(0) => {
                    drop(buf);
                    self.head.set(head);
                    self.fail("the connection wrote 0 bytes".into());
                    return true;
                }
                Ok(n) => head += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) => {
                    drop(buf);
                    self.head.set(head);
                    self.fail(format!("write: {e}"));
                    return true;
                }
            }
        };
        if !done && head > 1 << 20 && head * 2 > buf.len() {
            buf.drain(..head);
            head = 0;
        }
        self.head.set(head);
        if !done {
            self.wake.notify_one();
        }
        done
    }
}

/// Finishes what [`Outbox::flush`] could not write, whenever woken.
pub(crate) async fn writer(outbox: Rc<Outbox>) {
    loop {
        outbox.wake.notified().await;
        while !outbox.failed() && outbox.pending() > 0 {
            if let Err(e) = outbox.stream.writable().await {
                outbox.fail(format!("writable: {e}"));
                return;
            }
            outbox.flush();
        }
        if outbox.failed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flush writes everything the socket takes; a peer that does not
    /// read leaves the rest pending, and the writer finishes it once the
    /// peer reads.
    #[tokio::test]
    async fn outbox_flushes_and_backs_off() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let client = dial(addr, None, None).await.unwrap();
                let (mut server, _) = listener.accept().await.unwrap();
                let outbox = Rc::new(Outbox::new(Rc::new(client)));
                tokio::task::spawn_local(writer(outbox.clone()));
                outbox.append(|b| b.extend_from_slice(b"hello"));
                assert!(outbox.flush());
                assert_eq!(outbox.pending(), 0);
                // More than any socket buffer: something stays pending.
                let big = vec![7u8; 64 << 20];
                outbox.append(|b| b.extend_from_slice(&big));
                assert!(!outbox.flush());
                assert!(outbox.pending() > 0);
                let mut got = vec![0u8; 5];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(got, b"hello");
                let mut total = 0usize;
                let mut chunk = vec![0u8; 1 << 16];
                while total < big.len() {
                    let n = server.read(&mut chunk).await.unwrap();
                    assert!(n > 0);
                    total += n;
                }
                assert_eq!(total, big.len());
                assert_eq!(outbox.pending(), 0);
                assert!(!outbox.failed());
            })
            .await;
    }
}
