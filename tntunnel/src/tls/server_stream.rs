//! The server side of TLS 1.3 on rustls's unbuffered API: see [`ServerTlsStream`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, BytesMut};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most plaintext one `poll_write` encrypts (four full records); the caller writes the rest
/// in later calls.
const MAX_WRITE: usize = 64 * 1024;
/// Encrypted bytes held before `poll_write` waits for the socket to take some.
const OUTGOING_LIMIT: usize = 64 * 1024;
/// Room offered to each read from the socket: a whole record of the largest size, so a
/// record never takes two reads and a reallocation (the buffer is freed once empty: its
/// size costs an idle connection nothing; memory only touched by a read is resident).
const READ_CHUNK: usize = MAX_RECORD;
/// Largest TLS 1.3 record on the wire: header, 2^14 bytes of plaintext, content type and
/// up to 255 bytes of padding and tag. rustls refuses a longer record from its header.
const MAX_RECORD: usize = 5 + 16 * 1024 + 256;
/// Largest handshake message rustls takes (it refuses longer ones).
const MAX_HANDSHAKE_MESSAGE: usize = 0xffff;
/// Per-record overhead of the encrypted form (header, content type, AEAD tag), with room.
const RECORD_OVERHEAD: usize = 5 + 1 + 16 + 10;

/// The server side of a TLS 1.3 connection on rustls's unbuffered API, with buffers that
/// exist only while bytes are in flight.
///
/// rustls's buffered connection (what tokio-rustls drives) keeps a 4 KiB receive buffer,
/// zero-filled and resident, between records for as long as the connection lives, and
/// offers no call to give it back. A gateway holds mostly idle connections, so that buffer
/// was a third of an idle TLS connection's memory. [`ServerTlsStream`] drives
/// [`rustls::server::UnbufferedServerConnection`] instead and owns the three buffers
/// itself:
///
/// - received TLS bytes not yet processed (a partial record at most between reads);
/// - decrypted application data not yet read;
/// - encrypted bytes not yet written.
///
/// Each is freed as soon as it is empty: an idle connection holds no buffer at all, and a
/// busy one allocates per wake-up (the allocator's thread cache makes that cheap next to
/// the decryption). The protocol work (records, alerts, session tickets, key updates,
/// close_notify) stays rustls's.
///
/// # Bounds
///
/// A peer cannot grow the buffers past these, whatever it sends:
///
/// - received bytes: at most two records of the largest size TLS allows (rustls refuses a
///   longer record from its header; past the bound the read fails with `InvalidData`);
/// - decrypted data: what one read brought in, until the caller reads it;
/// - bytes to send: a write waits for the socket once 64 KiB are queued, and one write
///   encrypts at most 64 KiB.
///
/// The handshake has no bound of its own: [`ServerSecurity::secure`](crate::ServerSecurity::secure)
/// bounds it with the configuration's handshake timeout.
///
/// Made by [`ServerSecurity::secure`](crate::ServerSecurity::secure) for a
/// [`TlsServerConfig`](super::TlsServerConfig); reads and writes application data like
/// tokio-rustls's server stream.
pub struct ServerTlsStream<S> {
    io: S,
    conn: UnbufferedServerConnection,
    /// TLS bytes received and not yet processed.
    incoming: BytesMut,
    /// Decrypted application data not yet read.
    plaintext: BytesMut,
    /// Encrypted bytes not yet written to `io`.
    outgoing: BytesMut,
    /// The peer sent close_notify or closed its side: reads return end of file once
    /// `plaintext` is drained.
    read_closed: bool,
    /// The peer closed its side without close_notify: the end of the stream is an
    /// `UnexpectedEof` error (as with rustls's buffered connection), not a clean end.
    truncated: bool,
    /// The session failed (a TLS error, its alert queued): every later read and write
    /// fails, and nothing more is processed or encrypted.
    failed: bool,
    /// Our close_notify is queued (by `poll_shutdown`).
    close_notify_queued: bool,
    /// The reader, when it waits for the socket: woken if a write decrypts records it has
    /// not seen (cannot happen with reads and writes in one task; kept for split halves).
    read_waker: Option<Waker>,
}

/// What a turn of rustls's state machine is for, beyond processing received records.
enum Action<'a, 'b> {
    /// Nothing more.
    Process,
    /// Decrypted application data goes here first (what does not fit waits in
    /// `plaintext`): one copy less than going through `plaintext`.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this application data.
    Encrypt(&'a [u8]),
    /// Queue close_notify.
    CloseNotify,
}

/// Where one turn of rustls's state machine left the connection.
enum Turn {
    /// Progress was made; turn again.
    Again,
    /// rustls needs more bytes from the peer (the handshake is not done, or no complete
    /// record is buffered).
    NeedsInput,
    /// The handshake is done and nothing is pending; the action (if any) was done.
    Traffic,
    /// Both sides sent close_notify.
    Closed,
}

impl<S: std::fmt::Debug> std::fmt::Debug for ServerTlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsStream")
            .field("io", &self.io)
            .field("version", &self.conn.protocol_version())
            .field("buffered", &self.buffered_capacity())
            .field("read_closed", &self.read_closed)
            .finish_non_exhaustive()
    }
}

impl<S> ServerTlsStream<S> {
    /// The underlying transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The underlying transport, mutably. Do not read from or write to it: that corrupts
    /// the session.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The rustls connection, for what it reports (ALPN protocol, protocol version, cipher
    /// suite, peer certificates).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// Heap bytes held by the stream's own buffers right now (0 for an idle connection).
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.plaintext.capacity() + self.outgoing.capacity()
    }

    /// Runs one turn of rustls's state machine over the received bytes. The bytes rustls is
    /// done with are discarded on every path, errors included.
    fn turn(&mut self, action: Action<'_, '_>) -> Result<Turn, rustls::Error> {
        let Self {
            conn,
            incoming,
            plaintext,
            outgoing,
            read_closed,
            ..
        } = self;
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
        let turn = match state {
            Err(error) => Err(error),
            Ok(state) => Self::handle(
                state,
                action,
                plaintext,
                outgoing,
                read_closed,
                &mut discard,
            ),
        };
        incoming.advance(discard);
        turn
    }

    /// Handles one state rustls reached (see [`turn`](Self::turn)).
    fn handle(
        state: ConnectionState<'_, '_, ServerConnectionData>,
        mut action: Action<'_, '_>,
        plaintext: &mut BytesMut,
        outgoing: &mut BytesMut,
        read_closed: &mut bool,
        discard: &mut usize,
    ) -> Result<Turn, rustls::Error> {
        Ok(match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    *discard += record.discard;
                    let mut payload = record.payload;
                    if let Action::Read(out) = &mut action
                        && plaintext.is_empty()
                    {
                        let n = payload.len().min(out.remaining());
                        out.put_slice(&payload[..n]);
                        payload = &payload[n..];
                    }
                    plaintext.extend_from_slice(payload);
                }
                Turn::Again
            }
            // 0-RTT data (a configuration from `TlsServerConfig::from_rustls` may accept it):
            // read and not delivered, as rustls's buffered connection keeps it aside from
            // what its reader returns. Pike clients send none.
            ConnectionState::ReadEarlyData(mut early) => {
                while let Some(record) = early.next_record() {
                    *discard += record?.discard;
                }
                Turn::Again
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                let start = outgoing.len();
                let mut need = 1024;
                loop {
                    outgoing.resize(start + need, 0);
                    match encode.encode(&mut outgoing[start..]) {
                        Ok(written) => {
                            outgoing.truncate(start + written);
                            break;
                        }
                        Err(EncodeError::InsufficientSize(short)) => need = short.required_size,
                        Err(EncodeError::AlreadyEncoded) => {
                            outgoing.truncate(start);
                            break;
                        }
                    }
                }
                Turn::Again
            }
            // The encoded bytes are in `outgoing`, written before anything queued later.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Turn::Again
            }
            ConnectionState::PeerClosed => {
                *read_closed = true;
                Turn::Again
            }
            ConnectionState::Closed => Turn::Closed,
            ConnectionState::BlockedHandshake => Turn::NeedsInput,
            ConnectionState::WriteTraffic(mut traffic) => {
                match action {
                    Action::Process | Action::Read(_) => {}
                    Action::Encrypt(data) => {
                        let start = outgoing.len();
                        let records = data.len() / (16 * 1024) + 1;
                        let mut need = data.len() + records * RECORD_OVERHEAD;
                        loop {
                            outgoing.resize(start + need, 0);
                            match traffic.encrypt(data, &mut outgoing[start..]) {
                                Ok(written) => {
                                    outgoing.truncate(start + written);
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(short)) => {
                                    need = short.required_size;
                                }
                                Err(EncryptError::EncryptExhausted) => {
                                    outgoing.truncate(start);
                                    return Err(rustls::Error::EncryptError);
                                }
                            }
                        }
                    }
                    Action::CloseNotify => {
                        let start = outgoing.len();
                        outgoing.resize(start + 64, 0);
                        match traffic.queue_close_notify(&mut outgoing[start..]) {
                            Ok(written) => outgoing.truncate(start + written),
                            Err(_) => {
                                outgoing.truncate(start);
                                return Err(rustls::Error::EncryptError);
                            }
                        }
                    }
                }
                Turn::Traffic
            }
            // A state newer than this code is a failure, not a hang.
            _ => {
                return Err(rustls::Error::General(
                    "unexpected TLS connection state".into(),
                ));
            }
        })
    }

    /// After a TLS error: marks the session failed and encodes what rustls still has queued
    /// for the peer (its alert, after any handshake message queued before it), for a
    /// best-effort write. Turns only while rustls has something queued: with nothing
    /// queued, a turn would process the received bytes again.
    fn queue_alert(&mut self) {
        self.failed = true;
        // One queued message per turn; a failed connection has a few at most.
        for _ in 0..8 {
            if !self.conn.wants_write() || !matches!(self.turn(Action::Process), Ok(Turn::Again)) {
                break;
            }
        }
    }

    /// The error every call returns once the session failed.
    fn failed_error() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "the TLS session failed earlier")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerTlsStream<S> {
    /// Runs the TLS 1.3 handshake on `io` with `config` (unbounded: the caller bounds it
    /// with a timeout).
    ///
    /// # Errors
    ///
    /// As tokio-rustls reports them: a rustls error wrapped in
    /// [`io::ErrorKind::InvalidData`] (the alert rustls has for the peer is sent first, best
    /// effort), [`io::ErrorKind::UnexpectedEof`] if the peer closes during the handshake,
    /// and the transport's errors.
    pub async fn accept(config: Arc<rustls::ServerConfig>, io: S) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid_data)?;
        let mut stream = Self {
            io,
            conn,
            incoming: BytesMut::new(),
            plaintext: BytesMut::new(),
            outgoing: BytesMut::new(),
            read_closed: false,
            truncated: false,
            failed: false,
            close_notify_queued: false,
            read_waker: None,
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.turn(Action::Process) {
                Ok(Turn::Again) => {}
                Ok(Turn::Traffic) => {
                    ready!(self.poll_write_outgoing(cx))?;
                    self.release_empty();
                    return Poll::Ready(Ok(()));
                }
                Ok(Turn::NeedsInput) => {
                    ready!(self.poll_write_outgoing(cx))?;
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Ok(Turn::Closed) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Err(error) => return Poll::Ready(Err(self.fail(cx, error))),
            }
        }
    }

    /// Queues and sends (best effort, without waiting) the alert for `error`.
    fn fail(&mut self, cx: &mut Context<'_>, error: rustls::Error) -> io::Error {
        self.queue_alert();
        let _ = self.poll_write_outgoing(cx);
        invalid_data(error)
    }

    /// Reads more TLS bytes from the socket into `incoming` (room for the rest of the record
    /// being received, at least [`READ_CHUNK`]). `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let pending_record = match self.incoming.get(..5) {
            Some(header) => 5 + usize::from(u16::from_be_bytes([header[3], header[4]])),
            None => 5,
        };
        // After the handshake rustls takes every complete record, so at most one partial
        // record waits; during it, a handshake message (up to 64 KiB in rustls) may span
        // records that stay here until it is whole.
        let bound = if self.conn.is_handshaking() {
            MAX_HANDSHAKE_MESSAGE + MAX_RECORD
        } else {
            MAX_RECORD + READ_CHUNK
        };
        if self.incoming.len() > bound {
            return Poll::Ready(Err(invalid_data(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooLarge,
            ))));
        }
        let need = pending_record.saturating_sub(self.incoming.len());
        let want = need.max(READ_CHUNK);
        self.incoming.reserve(want);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.incoming) {
            Poll::Pending => {
                self.release_empty();
                Poll::Pending
            }
            ready => ready,
        }
    }

    /// Writes `outgoing` to the socket until it is empty.
    fn poll_write_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let written = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.advance(written);
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Processes every complete record received, so that what is left in `incoming` is at
    /// most one partial record; their application data goes to `out`, then to `plaintext`.
    fn process_received(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> io::Result<Turn> {
        loop {
            match self.turn(Action::Read(out)) {
                Ok(Turn::Again) => {}
                Ok(turn) => return Ok(turn),
                Err(error) => return Err(self.fail(cx, error)),
            }
        }
    }

    /// Frees the buffers that are empty.
    fn release_empty(&mut self) {
        for buffer in [&mut self.incoming, &mut self.plaintext, &mut self.outgoing] {
            if buffer.is_empty() && buffer.capacity() > 0 {
                *buffer = BytesMut::new();
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::failed_error()));
        }
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                if this.plaintext.is_empty() {
                    this.plaintext = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.truncated {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a TLS close_notify",
                )));
            }
            if this.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let turn = this.process_received(cx, buf)?;
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            match turn {
                Turn::Again => {}
                Turn::Closed => this.read_closed = true,
                Turn::NeedsInput | Turn::Traffic => {
                    if !this.plaintext.is_empty() || this.read_closed {
                        continue;
                    }
                    // Session tickets or a key update rustls answered: on their way
                    // if the socket takes them now. Not with the reader's waker: a
                    // writer in another task may be waiting on the socket, and the
                    // socket keeps one write waker (the writer's flush sends the rest).
                    let mut no_wake = Context::from_waker(Waker::noop());
                    if let Poll::Ready(Err(e)) = this.poll_write_outgoing(&mut no_wake) {
                        return Poll::Ready(Err(e));
                    }
                    match this.poll_fill(cx) {
                        Poll::Pending => {
                            this.read_waker = Some(cx.waker().clone());
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(0)) => {
                            // close_notify (`PeerClosed`) set `read_closed` before.
                            this.truncated = true;
                            this.release_empty();
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::failed_error()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.outgoing.len() >= OUTGOING_LIMIT {
            ready!(this.poll_write_outgoing(cx))?;
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        let plaintext_before = this.plaintext.len();
        loop {
            match this.turn(Action::Encrypt(data)) {
                Ok(Turn::Again) => {}
                Ok(Turn::Traffic) => break,
                Ok(Turn::NeedsInput) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "TLS handshake not complete",
                    )));
                }
                Ok(Turn::Closed) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Err(error) => return Poll::Ready(Err(this.fail(cx, error))),
            }
        }
        if this.plaintext.len() > plaintext_before
            && let Some(reader) = this.read_waker.take()
        {
            reader.wake();
        }
        // Start the bytes on their way; the caller's flush waits for the rest.
        if let Poll::Ready(Err(e)) = this.poll_write_outgoing(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_queued && !this.failed {
            this.close_notify_queued = true;
            loop {
                match this.turn(Action::CloseNotify) {
                    Ok(Turn::Again) => {}
                    // Closed already, or no traffic keys: nothing to say.
                    Ok(_) => break,
                    Err(error) => return Poll::Ready(Err(this.fail(cx, error))),
                }
            }
        }
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
