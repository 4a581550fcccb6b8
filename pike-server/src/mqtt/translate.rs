//! One MQTT connection's translator: MQTT to the device, the Pike protocol
//! to the gateway over an in-process duplex stream handed to it
//! (`docs/mqtt.md`). CONNECT becomes the hello and one login; PUBACK
//! becomes the cumulative downlink ack; PUBLISH on the uplink topic
//! becomes an uplink message, PUBACKed on its uplink ack; SUBSCRIBE to a
//! tag topic becomes a tag binding (`subscriptions.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use pike_channel::Message;
use proto::channel::{Downlink, DownlinkAck, Login, LoginResult, Ping, Pong, Uplink, UplinkAck};
use proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::{Frame, FramedTunnel, HandshakeError, TunnelConfig};
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tunnelkit::HandedSender;

use super::codec::{
    self, CodecError, ConnackCode, ConnackInfo, Connect, DisconnectReason, Inbound, PubAckReason,
    Publish, Version, Writer,
};
use super::config::MqttSection;
use super::envelope::{credential_scope, split_envelope};
use super::session::{SessionTable, SharedState};
use super::subscriptions::Subscriptions;
use super::topics::Topics;

/// Bytes each direction of the duplex pipe to the gateway may hold before
/// its writer waits: a cap, not an allocation (tokio's pipe allocates as
/// bytes pass, so an idle connection holds only what its largest write
/// left, a few hundred bytes after the login).
const DUPLEX_BUFFER: usize = 64 * 1024;

/// Longest wait for a device to take what is written to it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the backend to take a will message.
const WILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes reserved for each socket read. Device packets are small
/// (PINGREQ, PUBACK, short uplinks); a larger one grows the buffer as it
/// arrives. The buffer lives as long as the connection: 2 KiB were 20 %
/// of an idle MQTT connection's heap (heaptrack, `docs/mqtt.md`).
const READ_CHUNK: usize = 512;

/// Transient messages waiting for the in-flight window; more are dropped
/// (at most once).
pub const MAX_WAITING_TRANSIENT: usize = 64;

/// Reliable messages waiting; the gateway sends at most its downlink window
/// (512) unacknowledged, so more means a broken peer.
const MAX_WAITING_RELIABLE: usize = 1024;

/// The uplink window when the login result names none.
const DEFAULT_UPLINK_WINDOW: usize = 64;

/// What every translator of a node shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: MqttSection,
    pub(crate) sessions: SessionTable,
    pub(crate) gateway: HandedSender,
    pub(crate) tunnel: TunnelConfig,
    pub(crate) next_conn: AtomicU64,
    pub(crate) shutdown: CancellationToken,
}

/// How a connection ends.
#[derive(Debug)]
struct Exit {
    /// The 5.0 DISCONNECT to send first.
    reason: Option<DisconnectReason>,
    /// Whether the will message goes to the backend.
    will: bool,
}

impl Exit {
    fn abnormal(reason: DisconnectReason) -> Self {
        Self {
            reason: Some(reason),
            will: true,
        }
    }

    fn gateway(reason: DisconnectReason) -> Self {
        Self {
            reason: Some(reason),
            will: false,
        }
    }
}

struct Inflight {
    pkid: u16,
    seq: u64,
    acked: bool,
}

/// Gives back the empty codec buffers of the Pike side (as the gateway does
/// for its connections): a buffer keeps the capacity of the largest frame
/// it held; an unallocated one grows again for the next frame.
fn release_idle_buffers<S>(framed: &mut FramedTunnel<S>) {
    if framed.read_buffer().is_empty() && framed.read_buffer().capacity() != 0 {
        *framed.read_buffer_mut() = BytesMut::new();
    }
    if framed.write_buffer().is_empty() && framed.write_buffer().capacity() != 0 {
        *framed.write_buffer_mut() = BytesMut::new();
    }
}

/// Serves one accepted MQTT connection to its end: the CONNECT and the
/// login here, then the translation in a task of its own (holding
/// `permit`), sized for the loop alone: this future also holds the
/// handshake's state, which an idle connection would otherwise keep
/// allocated for its whole life (heaptrack: 5.25 KB per connection).
pub(crate) async fn serve<S>(
    io: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let max = shared.config.max_packet_size;
    let connect = match timeout(
        shared.config.connect_timeout(),
        read_connect(&mut rd, &mut buf, max),
    )
    .await
    {
        Ok(Ok(connect)) => connect,
        Ok(Err(Some(CodecError::UnsupportedLevel(level)))) => {
            tracing::debug!(%peer, level, "mqtt: unsupported protocol level");
            let writer = Writer {
                version: Version::V4,
                client_max: usize::MAX,
            };
            let mut out = BytesMut::new();
            writer.connack(
                &mut out,
                false,
                ConnackCode::UnsupportedVersion,
                ConnackInfo::default(),
            );
            let _ = timeout(WRITE_TIMEOUT, wr.write_all(&out)).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = ?e, "mqtt: no valid CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "mqtt: no CONNECT in time");
            return;
        }
    };
    let writer = Writer {
        version: connect.version,
        client_max: connect
            .max_packet_size
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    match open(&connect, peer, &shared).await {
        Ok(opened) => {
            let conn = Translator::new(connect, writer, opened, &shared);
            tokio::spawn(async move {
                let _permit = permit;
                let mut conn = conn;
                conn.run(&mut rd, &mut wr, buf, &shared).await;
            });
        }
        Err(code) => {
            tracing::debug!(%peer, client_id = %connect.client_id, ?code, "mqtt: CONNECT refused");
            let mut out = BytesMut::new();
            writer.connack(&mut out, false, code, ConnackInfo::default());
            let _ = timeout(WRITE_TIMEOUT, wr.write_all(&out)).await;
            let _ = timeout(WRITE_TIMEOUT, wr.shutdown()).await;
        }
    }
}

/// Reads until the CONNECT is whole. `Err(None)`: the socket ended.
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Connect, Option<CodecError>> {
    loop {
        if let Some(connect) = codec::read_connect(buf, max).map_err(Some)? {
            return Ok(connect);
        }
        buf.reserve(READ_CHUNK);
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// A connection whose login the gateway accepted.
struct Opened {
    pike: FramedTunnel<DuplexStream>,
    token: String,
    heartbeat: Duration,
    result: LoginResult,
    topics: Topics,
    session: SharedState,
    session_key: (String, String),
    present: bool,
    conn_id: u64,
    cancel: CancellationToken,
}

/// Checks the CONNECT, opens the Pike connection and logs in.
async fn open(connect: &Connect, peer: SocketAddr, shared: &Shared) -> Result<Opened, ConnackCode> {
    let id = &connect.client_id;
    if id.is_empty() || id.len() > tntunnel::MAX_DEVICE_ID_LEN || id.chars().any(char::is_control) {
        return Err(ConnackCode::BadClientId);
    }
    let (Some(app), Some(credential)) = (&connect.username, &connect.password) else {
        return Err(ConnackCode::BadCredentials);
    };
    if app.is_empty() || app.len() > tntunnel::MAX_APP_ID_LEN {
        return Err(ConnackCode::BadCredentials);
    }
    let Some((biz, alias)) = credential_scope(credential) else {
        return Err(ConnackCode::BadCredentials);
    };
    let topics = Topics::new(&biz);
    if let Some(will) = &connect.will {
        if will.qos > 1 {
            return Err(ConnackCode::QosNotSupported);
        }
        if will.retain {
            return Err(ConnackCode::RetainNotSupported);
        }
        if !topics.is_up(&will.topic) {
            return Err(ConnackCode::TopicNameInvalid);
        }
    }

    let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
    if shared.gateway.hand(Box::new(theirs), peer).is_err() {
        return Err(ConnackCode::Unavailable);
    }
    let hello = ClientHello {
        app_id: app.clone(),
        device_id: id.clone(),
        sdk_name: "pike-mqtt".into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let deadline = shared.config.connect_timeout();
    let (mut pike, server_hello) =
        match timeout(deadline, tntunnel::connect(ours, hello, &shared.tunnel)).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(HandshakeError::Rejected { code, message, .. })) => {
                tracing::debug!(?code, %message, "mqtt: hello refused");
                return Err(hello_refusal(code));
            }
            _ => return Err(ConnackCode::Unavailable),
        };
    let login = Login {
        stream: 0,
        biz: biz.clone(),
        alias,
        credential: credential.clone(),
        ..Default::default()
    };
    if pike.send(Message::Login(login).to_frame()).await.is_err() {
        return Err(ConnackCode::Unavailable);
    }
    let result = timeout(deadline, async {
        while let Some(Ok(frame)) = pike.next().await {
            match Message::decode(&frame) {
                Ok(Message::LoginResult(r)) if r.stream == 0 => return Ok(r),
                Ok(Message::Ping(p)) => {
                    let pong = Message::Pong(Pong { nonce: p.nonce }).to_frame();
                    if pike.send(pong).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(c)) => return Err(hello_refusal(c.code())),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Err(ConnackCode::Unavailable)
    })
    .await
    .unwrap_or(Err(ConnackCode::Unavailable))?;
    if result.code != 0 {
        tracing::debug!(code = result.code, message = %result.message, "mqtt: login refused");
        return Err(login_refusal(
            ErrorCode::try_from(result.code).unwrap_or(ErrorCode::Internal),
        ));
    }

    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let cancel = CancellationToken::new();
    let session_key = (app.clone(), id.clone());
    let Ok((session, present)) =
        shared
            .sessions
            .open(session_key.clone(), connect.clean, conn_id, cancel.clone())
    else {
        return Err(ConnackCode::QuotaExceeded);
    };
    Ok(Opened {
        pike,
        token: server_hello.connection_token,
        heartbeat: Duration::from_millis(server_hello.heartbeat_interval_ms.max(1000).into()),
        result,
        topics,
        session,
        session_key,
        present,
        conn_id,
        cancel,
    })
}

/// The CONNACK for a hello the gateway refused.
fn hello_refusal(code: ErrorCode) -> ConnackCode {
    match code {
        ErrorCode::UnknownApp | ErrorCode::AuthFailed | ErrorCode::TokenExpired => {
            ConnackCode::BadCredentials
        }
        ErrorCode::InvalidArgument => ConnackCode::BadClientId,
        ErrorCode::Forbidden => ConnackCode::NotAuthorized,
        ErrorCode::Overloaded | ErrorCode::RateLimited | ErrorCode::LimitExceeded => {
            ConnackCode::Busy
        }
        _ => ConnackCode::Unavailable,
    }
}

/// The CONNACK for a login the gateway refused.
fn login_refusal(code: ErrorCode) -> ConnackCode {
    match code {
        ErrorCode::AuthFailed
        | ErrorCode::TokenExpired
        | ErrorCode::InvalidArgument
        | ErrorCode::UnknownApp => ConnackCode::BadCredentials,
        ErrorCode::Forbidden => ConnackCode::NotAuthorized,
        ErrorCode::Overloaded | ErrorCode::RateLimited | ErrorCode::LimitExceeded => {
            ConnackCode::Busy
        }
        _ => ConnackCode::Unavailable,
    }
}

/// A connected device: the state between the two protocols.
struct Translator {
    connect: Connect,
    writer: Writer,
    pike: FramedTunnel<DuplexStream>,
    token: String,
    topics: Topics,
    session: SharedState,
    session_key: (String, String),
    conn_id: u64,
    cancel: CancellationToken,
    /// MQTT bytes to write.
    out: BytesMut,
    /// Pike frames to send.
    frames: Vec<Frame>,
    /// SUBACKs and UNSUBACKs waiting for tag changes.
    subscriptions: Subscriptions,
    heartbeat: Duration,
    keep_alive: Duration,
    /// Reliable seqs at or below it are skipped (a clean session's backlog).
    skip_through: u64,
    waiting: VecDeque<Downlink>,
    waiting_transient: usize,
    inflight: VecDeque<Inflight>,
    unacked: usize,
    window: usize,
    acked_sent: u64,
    next_pkid: u16,
    uplink_seq: u64,
    uplink_pending: VecDeque<(u64, Option<u16>)>,
    uplink_window: usize,
    keep_for: Option<Duration>,
    exit: Option<Exit>,
}

impl Translator {
    fn new(connect: Connect, writer: Writer, opened: Opened, shared: &Shared) -> Self {
        let config = &shared.config;
        let max_ka = config.max_keep_alive_secs;
        let ka = if connect.keep_alive == 0 || connect.keep_alive > max_ka {
            max_ka
        } else {
            connect.keep_alive
        };
        let server_keep_alive =
            (connect.version == Version::V5 && ka != connect.keep_alive).then_some(ka);
        let cap = config.max_session_expiry_secs;
        let (keep_for, session_expiry) = match connect.version {
            Version::V4 => ((!connect.clean).then_some(cap), None),
            Version::V5 => (
                (connect.session_expiry > 0).then_some(connect.session_expiry.min(cap)),
                (connect.session_expiry > cap).then_some(cap),
            ),
        };
        let window = usize::from(
            config
                .max_inflight
                .min(connect.receive_max.unwrap_or(u16::MAX))
                .max(1),
        );
        let uplink_window = match opened.result.uplink_window {
            0 => DEFAULT_UPLINK_WINDOW,
            n => usize::try_from(n).unwrap_or(DEFAULT_UPLINK_WINDOW),
        }
        .min(usize::from(u16::MAX));
        let mut pike = opened.pike;
        // The handshake's 8 KiB codec buffers (tokio-util's `Framed`
        // starts with them) are never needed again by a device's frames.
        release_idle_buffers(&mut pike);
        let mut out = BytesMut::new();
        writer.connack(
            &mut out,
            opened.present,
            ConnackCode::Accepted,
            ConnackInfo {
                receive_max: u16::try_from(uplink_window).unwrap_or(u16::MAX),
                max_packet_size: u32::try_from(config.max_packet_size).unwrap_or(u32::MAX),
                server_keep_alive,
                session_expiry,
            },
        );
        Self {
            skip_through: if connect.clean {
                opened.result.last_seq
            } else {
                0
            },
            writer,
            pike,
            token: opened.token,
            topics: opened.topics,
            session: opened.session,
            session_key: opened.session_key,
            conn_id: opened.conn_id,
            cancel: opened.cancel,
            out,
            frames: Vec::new(),
            subscriptions: Subscriptions::default(),
            heartbeat: opened.heartbeat,
            keep_alive: Duration::from_millis(u64::from(ka) * 1500),
            waiting: VecDeque::new(),
            waiting_transient: 0,
            inflight: VecDeque::new(),
            unacked: 0,
            window,
            acked_sent: 0,
            next_pkid: 0,
            uplink_seq: 0,
            uplink_pending: VecDeque::new(),
            uplink_window,
            keep_for: keep_for.map(|s| Duration::from_secs(s.into())),
            exit: None,
            connect,
        }
    }

    async fn run<S: AsyncRead + AsyncWrite>(
        &mut self,
        rd: &mut ReadHalf<S>,
        wr: &mut WriteHalf<S>,
        mut buf: BytesMut,
        shared: &Shared,
    ) {
        let max = shared.config.max_packet_size;
        let mut ka_deadline = Instant::now() + self.keep_alive;
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        // A resumed session's subscription is active at once.
        self.pump();
        let exit = loop {
            if !self.frames.is_empty() {
                let frames = std::mem::take(&mut self.frames);
                let mut sent = Ok(());
                for frame in frames {
                    sent = self.pike.feed(frame).await;
                    if sent.is_err() {
                        break;
                    }
                }
                if sent.is_err() || self.pike.flush().await.is_err() {
                    self.exit
                        .get_or_insert_with(|| Exit::gateway(DisconnectReason::ServerShuttingDown));
                }
            }
            if !self.out.is_empty() {
                match timeout(WRITE_TIMEOUT, wr.write_all(&self.out)).await {
                    Ok(Ok(())) => self.out.clear(),
                    _ => {
                        self.out.clear();
                        break Exit {
                            reason: None,
                            will: true,
                        };
                    }
                }
            }
            if let Some(exit) = self.exit.take() {
                break exit;
            }
            let can_read =
                self.uplink_pending.len() < self.uplink_window && !self.subscriptions.is_full();
            if can_read {
                match codec::read(self.writer.version, &mut buf, max) {
                    Ok(Some(packet)) => {
                        ka_deadline = Instant::now() + self.keep_alive;
                        self.on_packet(packet);
                        continue;
                    }
                    Ok(None) => {}
                    Err(CodecError::TooLarge(n)) => {
                        tracing::debug!(size = n, "mqtt: packet over the limit");
                        break Exit::abnormal(DisconnectReason::PacketTooLarge);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "mqtt: malformed packet");
                        break Exit::abnormal(DisconnectReason::ProtocolError);
                    }
                }
                if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                    buf.reserve(READ_CHUNK);
                }
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    break Exit::abnormal(DisconnectReason::SessionTakenOver);
                }
                () = shared.shutdown.cancelled() => {
                    break Exit::gateway(DisconnectReason::ServerShuttingDown);
                }
                frame = self.pike.next() => match frame {
                    Some(Ok(frame)) => self.on_frame(&frame),
                    _ => break Exit::gateway(DisconnectReason::ServerShuttingDown),
                },
                read = rd.read_buf(&mut buf), if can_read => match read {
                    Ok(0) | Err(_) => break Exit { reason: None, will: true },
                    Ok(_) => {}
                },
                () = sleep_until(ka_deadline) => {
                    break Exit::abnormal(DisconnectReason::KeepAliveTimeout);
                }
                _ = heartbeat.tick() => {
                    // An idle connection gives back what a burst grew.
                    release_idle_buffers(&mut self.pike);
                    self.frames.push(Message::Ping(Ping { nonce: 0 }).to_frame());
                }
            }
        };
        if let Some(reason) = exit.reason {
            let mut out = BytesMut::new();
            self.writer.disconnect(&mut out, reason);
            if !out.is_empty() {
                let _ = timeout(WRITE_TIMEOUT, wr.write_all(&out)).await;
            }
        }
        let _ = timeout(WRITE_TIMEOUT, wr.shutdown()).await;
        if exit.will {
            self.send_will().await;
        }
        shared
            .sessions
            .close(&self.session_key, self.conn_id, self.keep_for);
    }

    /// Sends the will message as an uplink message and waits (bounded) for
    /// the backend to take it.
    async fn send_will(&mut self) {
        let Some(will) = self.connect.will.take() else {
            return;
        };
        let (id, payload) = split_envelope(will.payload);
        self.uplink_seq += 1;
        let seq = self.uplink_seq;
        let uplink = Uplink {
            stream: 0,
            seq,
            idempotency_key: id.unwrap_or_else(|| format!("will:{}", self.token)),
            payload,
            first_attempt: false,
        };
        let pike = &mut self.pike;
        let delivered = timeout(WILL_TIMEOUT, async {
            pike.send(Message::Uplink(uplink).to_frame()).await.ok()?;
            while let Some(Ok(frame)) = pike.next().await {
                if let Ok(Message::UplinkAck(a)) = Message::decode(&frame)
                    && a.seq == seq
                {
                    return Some(a.code == 0);
                }
            }
            None
        })
        .await;
        tracing::debug!(?delivered, "mqtt: will message sent as uplink");
    }

    fn on_packet(&mut self, packet: Inbound) {
        match packet {
            Inbound::Publish(p) => self.on_publish(p),
            Inbound::PubAck(pkid) => self.on_puback(pkid),
            Inbound::Subscribe { pkid, filters } => {
                self.subscriptions.subscribe(
                    pkid,
                    &filters,
                    &self.topics,
                    &self.session,
                    &mut self.frames,
                );
                self.subscriptions.flush(&self.writer, &mut self.out);
                self.pump();
            }
            Inbound::Unsubscribe { pkid, filters } => {
                self.subscriptions.unsubscribe(
                    pkid,
                    &filters,
                    &self.topics,
                    &self.session,
                    &mut self.frames,
                );
                self.subscriptions.flush(&self.writer, &mut self.out);
            }
            Inbound::PingReq => self.writer.pingresp(&mut self.out),
            Inbound::Disconnect { with_will } => {
                self.exit = Some(Exit {
                    reason: None,
                    will: with_will,
                });
            }
            Inbound::Unexpected(what) => {
                tracing::debug!(what, "mqtt: unexpected packet");
                let reason = if what == "QoS 2 packets" {
                    DisconnectReason::QosNotSupported
                } else {
                    DisconnectReason::ProtocolError
                };
                self.exit = Some(Exit::abnormal(reason));
            }
        }
    }

    fn on_publish(&mut self, p: Publish) {
        if p.qos > 1 {
            self.exit = Some(Exit::abnormal(DisconnectReason::QosNotSupported));
            return;
        }
        if p.retain {
            self.exit = Some(Exit::abnormal(DisconnectReason::RetainNotSupported));
            return;
        }
        if p.topic_alias {
            self.exit = Some(Exit::abnormal(DisconnectReason::TopicAliasInvalid));
            return;
        }
        if !self.topics.is_up(&p.topic) {
            if p.qos == 1 && self.writer.version == Version::V5 {
                self.writer
                    .puback(&mut self.out, p.pkid, PubAckReason::NotAuthorized);
            } else {
                self.exit = Some(Exit::abnormal(DisconnectReason::NotAuthorized));
            }
            return;
        }
        let (id, payload) = split_envelope(p.payload);
        self.uplink_seq += 1;
        let seq = self.uplink_seq;
        // A key made here from this connection's random token and a number
        // new on it was never used: the gateway need not look it up. An
        // envelope's id is the device's own and may have been sent before.
        let first_attempt = id.is_none();
        let key = id.unwrap_or_else(|| format!("mqtt:{}:{seq}", self.token));
        let uplink = Uplink {
            stream: 0,
            seq,
            idempotency_key: key,
            payload,
            first_attempt,
        };
        self.frames.push(Message::Uplink(uplink).to_frame());
        self.uplink_pending
            .push_back((seq, (p.qos == 1).then_some(p.pkid)));
    }

    fn on_uplink_ack(&mut self, ack: &UplinkAck) {
        let Some(at) = self.uplink_pending.iter().position(|(s, _)| *s == ack.seq) else {
            return;
        };
        let Some((_, pkid)) = self.uplink_pending.remove(at) else {
            return;
        };
        let Some(pkid) = pkid else {
            if ack.code != 0 {
                tracing::debug!(code = ack.code, message = %ack.message, "mqtt: QoS 0 uplink failed");
            }
            return;
        };
        if ack.code == 0 {
            self.writer
                .puback(&mut self.out, pkid, PubAckReason::Success);
        } else if self.writer.version == Version::V5 {
            tracing::debug!(code = ack.code, message = %ack.message, "mqtt: uplink failed");
            self.writer
                .puback(&mut self.out, pkid, PubAckReason::Failed);
        } else {
            // 3.1.1 has no failed PUBACK: close, the device sends it again.
            tracing::debug!(code = ack.code, message = %ack.message, "mqtt: uplink failed, closing");
            self.exit = Some(Exit {
                reason: None,
                will: false,
            });
        }
    }

    fn on_frame(&mut self, frame: &Frame) {
        match Message::decode(frame) {
            Ok(Message::Downlink(d)) if d.stream == 0 => self.on_downlink(d),
            Ok(Message::UplinkAck(a)) if a.stream == 0 => self.on_uplink_ack(&a),
            Ok(Message::TagsResult(r)) if r.stream == 0 => {
                self.subscriptions
                    .on_tags_result(&r, &self.session, &mut self.frames);
                self.subscriptions.flush(&self.writer, &mut self.out);
                self.pump();
            }
            Ok(Message::Ping(p)) => self
                .frames
                .push(Message::Pong(Pong { nonce: p.nonce }).to_frame()),
            Ok(Message::Error(e)) => {
                tracing::debug!(code = e.code, message = %e.message, "mqtt: gateway error");
                if e.frame_type == u32::from(pike_channel::frame_types::TAGS.code()) {
                    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal);
                    self.subscriptions
                        .on_tags_error(code, &self.session, &mut self.frames);
                    self.subscriptions.flush(&self.writer, &mut self.out);
                }
                if e.code == ErrorCode::TokenExpired as i32 {
                    self.exit = Some(Exit::gateway(DisconnectReason::NotAuthorized));
                }
            }
            Ok(Message::GoAway(_)) => {
                self.exit = Some(Exit::gateway(DisconnectReason::ServerShuttingDown));
            }
            Ok(Message::Close(c)) => {
                let reason = if c.code() == ErrorCode::Replaced {
                    DisconnectReason::SessionTakenOver
                } else {
                    DisconnectReason::ServerShuttingDown
                };
                self.exit = Some(Exit::gateway(reason));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "mqtt: undecodable frame from the gateway");
                self.exit = Some(Exit::gateway(DisconnectReason::UnspecifiedError));
            }
        }
    }

    fn on_downlink(&mut self, d: Downlink) {
        let subscribed = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delivery_qos()
            .is_some();
        if d.seq == 0 {
            if !subscribed || self.waiting_transient >= MAX_WAITING_TRANSIENT {
                return;
            }
            self.waiting_transient += 1;
        } else if self.waiting.len() - self.waiting_transient >= MAX_WAITING_RELIABLE {
            self.exit = Some(Exit::gateway(DisconnectReason::UnspecifiedError));
            return;
        }
        self.waiting.push_back(d);
        self.pump();
    }

    fn on_puback(&mut self, pkid: u16) {
        if let Some(entry) = self
            .inflight
            .iter_mut()
            .find(|e| !e.acked && e.pkid == pkid)
        {
            entry.acked = true;
            self.unacked -= 1;
            self.pump();
        }
    }

    /// Sends what the window and the subscriptions allow, in seq order, and
    /// acknowledges to the gateway what is done. Every message goes on the
    /// downlink topic, once, whichever subscription (the downlink topic or
    /// a tag's) made it: the `DOWNLINK` frame does not say how a push was
    /// addressed.
    fn pump(&mut self) {
        let sub_qos = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delivery_qos();
        while let Some(front) = self.waiting.front() {
            if front.seq == 0 {
                let Some(d) = self.waiting.pop_front() else {
                    break;
                };
                self.waiting_transient -= 1;
                if sub_qos.is_some() {
                    let topic = self.topics.down().to_owned();
                    let _ = self
                        .writer
                        .publish(&mut self.out, &topic, 0, false, 0, d.payload);
                }
                continue;
            }
            let skip = front.seq <= self.skip_through || (self.connect.clean && sub_qos.is_none());
            if !skip && (sub_qos.is_none() || (sub_qos == Some(1) && self.unacked >= self.window)) {
                break;
            }
            let Some(d) = self.waiting.pop_front() else {
                break;
            };
            if skip {
                self.inflight.push_back(Inflight {
                    pkid: 0,
                    seq: d.seq,
                    acked: true,
                });
                continue;
            }
            let qos = sub_qos.unwrap_or(0);
            let dup = {
                let mut state = self.session.lock().unwrap_or_else(PoisonError::into_inner);
                let dup = d.seq <= state.last_sent_seq;
                state.last_sent_seq = state.last_sent_seq.max(d.seq);
                dup
            };
            let pkid = if qos == 1 { self.next_pkid() } else { 0 };
            let topic = self.topics.down().to_owned();
            let written =
                self.writer
                    .publish(&mut self.out, &topic, qos, dup && qos == 1, pkid, d.payload);
            let acked = qos == 0 || written.is_err();
            if written.is_err() {
                tracing::debug!(
                    seq = d.seq,
                    "mqtt: message over the client's maximum packet size, skipped"
                );
            }
            if !acked {
                self.unacked += 1;
            }
            self.inflight.push_back(Inflight {
                pkid,
                seq: d.seq,
                acked,
            });
        }
        let mut upto = None;
        while self.inflight.front().is_some_and(|e| e.acked) {
            upto = self.inflight.pop_front().map(|e| e.seq);
        }
        if let Some(seq) = upto
            && seq > self.acked_sent
        {
            self.acked_sent = seq;
            self.frames
                .push(Message::DownlinkAck(DownlinkAck { stream: 0, seq }).to_frame());
        }
    }

    /// The next packet id not in flight (the window is far below 65,535).
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            let candidate = self.next_pkid;
            if !self
                .inflight
                .iter()
                .any(|e| !e.acked && e.pkid == candidate)
            {
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Pike side's codec buffers: released when empty (tokio-util
    /// allocates 8 KiB each up front), kept while they hold a partial
    /// frame.
    #[tokio::test]
    async fn idle_codec_buffers_are_released() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut framed = tntunnel::FrameCodec::builder().new_framed(ours);
        assert!(framed.read_buffer().capacity() >= 8 * 1024);
        assert!(framed.write_buffer().capacity() >= 8 * 1024);
        framed.read_buffer_mut().extend_from_slice(&[0x18, 0]);
        release_idle_buffers(&mut framed);
        assert_eq!(framed.write_buffer().capacity(), 0);
        assert_eq!(
            framed.read_buffer().as_ref(),
            &[0x18, 0],
            "a partial frame stays"
        );
        framed.read_buffer_mut().clear();
        release_idle_buffers(&mut framed);
        assert_eq!(framed.read_buffer().capacity(), 0);
        // Still usable: a frame is encoded into a grown buffer.
        framed
            .send(Message::Ping(Ping { nonce: 7 }).to_frame())
            .await
            .unwrap();
    }
}
