//! A protocol client that sends whatever it is told, over loopback TCP: for
//! tests of what the gateway answers to frames a well-behaved SDK would
//! never send.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pike_channel::Message;
use proto::channel::{
    DownlinkAck, Login, LoginResult, RoomJoin, RoomJoinResult, Uplink, UplinkAck,
};
use proto::tunnel::{ClientHello, ServerHello};
use tntunnel::{FramedTunnel, HandshakeError, TunnelConfig};
use tokio::net::TcpStream;

use super::LIMIT;

/// A raw protocol client.
pub struct Raw {
    pub framed: FramedTunnel<TcpStream>,
    pub hello: ServerHello,
}

impl Raw {
    pub async fn connect(addr: SocketAddr, hello: ClientHello) -> Result<Self, HandshakeError> {
        let io = TcpStream::connect(addr).await?;
        let (framed, hello) = tntunnel::connect(io, hello, &TunnelConfig::default()).await?;
        Ok(Self { framed, hello })
    }

    pub async fn device(addr: SocketAddr, app: &str, device: &str) -> Self {
        let hello = ClientHello {
            app_id: app.into(),
            device_id: device.into(),
            ..ClientHello::default()
        };
        Self::connect(addr, hello).await.expect("handshake")
    }

    pub async fn send(&mut self, message: Message) {
        self.framed.send(message.to_frame()).await.unwrap();
    }

    /// The next message (pings from the server are not expected here).
    pub async fn next(&mut self) -> Message {
        let frame = tokio::time::timeout(LIMIT, self.framed.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a valid frame");
        Message::decode(&frame).expect("a channel message")
    }

    /// Logs `alias` in to biz `chat` on `stream`; returns the result.
    pub async fn login(&mut self, stream: u32, alias: &str, credential: &str) -> LoginResult {
        let login = Login {
            stream,
            biz: "chat".into(),
            alias: alias.into(),
            credential: credential.into(),
            ..Login::default()
        };
        self.login_with(login).await
    }

    /// Sends `login`; returns its result.
    pub async fn login_with(&mut self, login: Login) -> LoginResult {
        self.send(Message::Login(login)).await;
        match self.next().await {
            Message::LoginResult(result) => result,
            other => panic!("expected a login result, got {other:?}"),
        }
    }

    pub async fn join(&mut self, room: &str) -> RoomJoinResult {
        self.send(Message::RoomJoin(RoomJoin {
            stream: 0,
            room: room.into(),
        }))
        .await;
        match self.next().await {
            Message::RoomJoinResult(result) => result,
            other => panic!("expected a join result, got {other:?}"),
        }
    }

    /// Sends uplink `seq` of stream 0 (key `key-<seq>`, `size` bytes).
    pub async fn uplink(&mut self, seq: u64, size: usize) {
        let payload = Bytes::from(vec![b'u'; size]);
        self.send_uplink(seq, format!("key-{seq}"), payload, false)
            .await;
    }

    /// Sends uplink `seq` of stream 0 with `key` and `first_attempt`.
    pub async fn uplink_keyed(&mut self, seq: u64, key: &str, first_attempt: bool) {
        self.send_uplink(seq, key.into(), Bytes::from_static(b"u"), first_attempt)
            .await;
    }

    async fn send_uplink(&mut self, seq: u64, key: String, payload: Bytes, first_attempt: bool) {
        self.send(Message::Uplink(Uplink {
            stream: 0,
            seq,
            idempotency_key: key,
            payload,
            first_attempt,
        }))
        .await;
    }

    pub async fn uplink_ack(&mut self) -> UplinkAck {
        match self.next().await {
            Message::UplinkAck(ack) => ack,
            other => panic!("expected an uplink ack, got {other:?}"),
        }
    }

    /// Acks stream 0's downlink up to `seq`.
    pub async fn ack(&mut self, seq: u64) {
        self.send(Message::DownlinkAck(DownlinkAck { stream: 0, seq }))
            .await;
    }
}
