//! A lean room member: one framed Pike connection without a channel
//! machine (hello, login, join, then pushed room batches), so the
//! generator's cost per received message stays a few byte comparisons.
//!
//! Batches are scanned for the fields the generator needs and for the
//! stamps at the start of their payloads without decoding into structs;
//! server pings are answered and the member pings on its own (the gateway
//! closes connections silent for 90 s).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pike_channel::Message;
use pike_channel::frame_types;
use pike_channel::proto::channel::{Login, Ping, Pong, RoomJoin, RoomPull};
use pike_channel::proto::tunnel::ClientHello;
use tntunnel::{FramedTunnel, TunnelConfig};
use tokio::net::TcpStream;
use tunnelkit::{TcpTransport, Transport};

use super::fleet::server_of;
use super::stamp::SweepStamp;
use crate::token::{Claims, mint};

/// Validity of the credentials members mint.
const TOKEN_TTL_SECS: u64 = 86_400;
/// How often a member pings when it has nothing else to say.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);

/// A member's framed connection.
pub(crate) type Framed = FramedTunnel<TcpStream>;

/// How members log in and which room they join.
#[derive(Clone, Debug)]
pub(crate) struct RoomLogin {
    pub(crate) transport: TcpTransport,
    /// The gateways, never empty: member `i` joins through
    /// `servers[i mod len]`.
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) app: String,
    pub(crate) biz: String,
    pub(crate) room: String,
    pub(crate) token_secret: String,
    /// Bound on the whole dial, handshake, login and join.
    pub(crate) timeout: Duration,
}

impl RoomLogin {
    /// Dials member `index`'s gateway, logs in as `alias` and joins the
    /// room; returns the connection (its first pull already sent, so a
    /// push-mode room starts pushing) and the room's tail at the join.
    pub(crate) async fn join(&self, index: usize, alias: &str) -> Result<(Framed, u64), String> {
        let server = server_of(&self.servers, index).ok_or("no server to dial")?;
        tokio::time::timeout(self.timeout, self.join_unbounded(server, alias))
            .await
            .unwrap_or_else(|_| Err(format!("{alias}: not joined within {:?}", self.timeout)))
    }

    async fn join_unbounded(
        &self,
        server: SocketAddr,
        alias: &str,
    ) -> Result<(Framed, u64), String> {
        let stream = self
            .transport
            .connect(server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let hello = ClientHello {
            app_id: self.app.clone(),
            device_id: format!("bench-{alias}"),
            sdk_name: "pike-bench".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            ..ClientHello::default()
        };
        let (mut framed, _) = tntunnel::connect(stream, hello, &TunnelConfig::default())
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let credential = mint(
            &Claims::new(&self.app, &self.biz, alias, now, TOKEN_TTL_SECS),
            self.token_secret.as_bytes(),
        );
        let login = Login {
            stream: 0,
            biz: self.biz.clone(),
            alias: alias.to_owned(),
            credential,
            ..Login::default()
        };
        send(&mut framed, Message::Login(login)).await?;
        loop {
            if let Message::LoginResult(result) = next_message(&mut framed, "login").await? {
                if result.code != 0 {
                    return Err(format!("login refused: {}", result.message));
                }
                break;
            }
        }
        let join = RoomJoin {
            stream: 0,
            room: self.room.clone(),
        };
        send(&mut framed, Message::RoomJoin(join)).await?;
        let tail = loop {
            if let Message::RoomJoinResult(result) = next_message(&mut framed, "join").await? {
                if result.code != 0 {
                    return Err(format!("join refused: {}", result.message));
                }
                break result.tail;
            }
        };
        // Every client pulls after its join; a push-mode room holds it.
        send(&mut framed, self.pull(tail)).await?;
        Ok((framed, tail))
    }

    /// A long-poll pull from `offset`.
    fn pull(&self, offset: u64) -> Message {
        Message::RoomPull(RoomPull {
            stream: 0,
            room: self.room.clone(),
            offset,
            max: 1000,
            wait_ms: 30_000,
        })
    }
}

/// Sends one message.
async fn send(framed: &mut Framed, message: Message) -> Result<(), String> {
    framed
        .send(message.to_frame())
        .await
        .map_err(|e| format!("send: {e}"))
}

/// The next decodable message (during the login and join).
async fn next_message(framed: &mut Framed, during: &str) -> Result<Message, String> {
    let frame = framed
        .next()
        .await
        .ok_or_else(|| format!("closed during the {during}"))?
        .map_err(|e| format!("{during}: {e}"))?;
    Message::decode(&frame).map_err(|e| format!("{during}: {e}"))
}

/// What a member does with one frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// A room batch (its stamps were appended to the caller's vector).
    Batch(Scanned),
    /// A ping: answer with [`pong`].
    Ping(u64),
    /// Anything else (ignored).
    Other,
    /// A malformed batch.
    Malformed,
}

/// Classifies one frame; stamps of a batch go to `stamps`.
pub(crate) fn incoming(frame: &tntunnel::Frame, stamps: &mut Vec<SweepStamp>) -> Incoming {
    if frame.ty == frame_types::ROOM_BATCH {
        return scan_batch(&frame.body, stamps).map_or(Incoming::Malformed, Incoming::Batch);
    }
    if frame.ty == frame_types::PING
        && let Ok(Message::Ping(ping)) = Message::decode(frame)
    {
        return Incoming::Ping(ping.nonce);
    }
    Incoming::Other
}

/// The answer to a server ping.
pub(crate) fn pong(nonce: u64) -> tntunnel::Frame {
    Message::Pong(Pong { nonce }).to_frame()
}

/// A ping of the member's own.
pub(crate) fn ping(nonce: u64) -> tntunnel::Frame {
    Message::Ping(Ping { nonce }).to_frame()
}

/// The fields of a `RoomBatch` the generator needs.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) struct Scanned {
    /// Messages in the batch.
    pub(crate) messages: u64,
    /// Messages the member missed before this batch (shed for it).
    pub(crate) missed: u64,
    pub(crate) next_offset: u64,
}

/// Scans an encoded `RoomBatch` (protobuf) without decoding into structs;
/// the stamps of its payloads go to `stamps` (payloads without one are
/// counted but not stamped). `None` if malformed.
pub(crate) fn scan_batch(mut body: &[u8], stamps: &mut Vec<SweepStamp>) -> Option<Scanned> {
    let mut scanned = Scanned::default();
    while !body.is_empty() {
        let key = varint(&mut body)?;
        match (key >> 3, key & 7) {
            (2, 2) => {
                let message = length_delimited(&mut body)?;
                scanned.messages += 1;
                if let Some(stamp) = scan_message(message)? {
                    stamps.push(stamp);
                }
            }
            (3, 0) => scanned.missed = varint(&mut body)?,
            (4, 0) => scanned.next_offset = varint(&mut body)?,
            (_, 0) => {
                varint(&mut body)?;
            }
            (_, 2) => {
                length_delimited(&mut body)?;
            }
            _ => return None,
        }
    }
    Some(scanned)
}

/// The stamp of one `RoomMessage`'s payload (field 4): `Some(None)` for a
/// well-formed message without one, `None` if malformed.
fn scan_message(mut body: &[u8]) -> Option<Option<SweepStamp>> {
    let mut stamp = None;
    while !body.is_empty() {
        let key = varint(&mut body)?;
        match (key >> 3, key & 7) {
            (4, 2) => stamp = SweepStamp::decode(length_delimited(&mut body)?),
            (_, 0) => {
                varint(&mut body)?;
            }
            (_, 2) => {
                length_delimited(&mut body)?;
            }
            _ => return None,
        }
    }
    Some(stamp)
}

/// One protobuf varint.
fn varint(body: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = body.split_first()?;
        *body = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One length-delimited field.
fn length_delimited<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(body)?).ok()?;
    if body.len() < len {
        return None;
    }
    let (field, rest) = body.split_at(len);
    *body = rest;
    Some(field)
}

#[cfg(test)]
mod tests {
    use pike_channel::proto::channel::{RoomBatch, RoomMessage};

    use super::*;

    fn batch(payloads: &[Vec<u8>], missed: u64, next_offset: u64) -> Vec<u8> {
        let batch = RoomBatch {
            room: "hall".into(),
            messages: payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RoomMessage {
                    offset: 1_000 + i as u64,
                    priority: 1,
                    payload: p.clone().into(),
                    ..RoomMessage::default()
                })
                .collect(),
            missed,
            next_offset,
            stream: 0,
            pushed: true,
        };
        Message::RoomBatch(batch).to_frame().body.to_vec()
    }

    #[test]
    fn batches_are_scanned_for_stamps() {
        let a = SweepStamp {
            run: 9,
            step: 1,
            scheduled_ns: 5,
        };
        let b = SweepStamp {
            run: 9,
            step: 2,
            scheduled_ns: 123_456_789,
        };
        let body = batch(
            &[
                a.encode(64).into_bytes(),
                b"no stamp".to_vec(),
                b.encode(24).into_bytes(),
            ],
            7,
            1_003,
        );
        let mut stamps = Vec::new();
        let scanned = scan_batch(&body, &mut stamps).unwrap();
        assert_eq!(
            scanned,
            Scanned {
                messages: 3,
                missed: 7,
                next_offset: 1_003
            }
        );
        assert_eq!(stamps, vec![a, b]);
    }

    #[test]
    fn malformed_batches_are_refused() {
        let body = batch(
            &[SweepStamp {
                run: 9,
                step: 1,
                scheduled_ns: 5,
            }
            .encode(64)
            .into_bytes()],
            0,
            1,
        );
        let mut stamps = Vec::new();
        // Cut in the middle of the message.
        assert_eq!(scan_batch(&body[..body.len() - 10], &mut stamps), None);
        // An unterminated varint.
        assert_eq!(scan_batch(&[0x08, 0xff], &mut stamps), None);
        // A fixed64 wire type, which a RoomBatch never has.
        assert_eq!(
            scan_batch(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0], &mut stamps),
            None
        );
        // Empty: a batch with nothing in it.
        assert_eq!(scan_batch(&[], &mut stamps), Some(Scanned::default()));
    }

    #[test]
    fn frames_are_classified() {
        let mut stamps = Vec::new();
        let frame = Message::Ping(Ping { nonce: 9 }).to_frame();
        assert_eq!(incoming(&frame, &mut stamps), Incoming::Ping(9));
        assert_eq!(incoming(&pong(9), &mut stamps), Incoming::Other);
        let body = batch(
            &[SweepStamp {
                run: 9,
                step: 3,
                scheduled_ns: 1,
            }
            .encode(30)
            .into_bytes()],
            0,
            8,
        );
        let frame = tntunnel::Frame::new(frame_types::ROOM_BATCH, body);
        assert!(matches!(incoming(&frame, &mut stamps), Incoming::Batch(s) if s.messages == 1));
        assert_eq!(stamps.len(), 1);
        let frame = tntunnel::Frame::new(frame_types::ROOM_BATCH, vec![0x08]);
        assert_eq!(incoming(&frame, &mut stamps), Incoming::Malformed);
    }

    /// Members join through the `--server` list in turn: member `i`
    /// dials listener `i mod 2` (real sockets; the listeners accept and
    /// say nothing, so each join ends in its handshake timeout).
    #[tokio::test]
    async fn members_dial_the_servers_in_turn() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let login = RoomLogin {
            transport: TcpTransport::new(tunnelkit::TcpConfig::default()).unwrap(),
            servers: vec![a.local_addr().unwrap(), b.local_addr().unwrap()],
            app: "app".into(),
            biz: "bench".into(),
            room: "hall".into(),
            token_secret: "secret".into(),
            timeout: Duration::from_millis(200),
        };
        for index in 0..4 {
            let (joined, accepted) = tokio::join!(login.join(index, "u1"), async {
                let listener = if index % 2 == 0 { &a } else { &b };
                tokio::time::timeout(Duration::from_secs(5), listener.accept()).await
            });
            assert!(joined.is_err(), "member {index}: joined a silent listener");
            assert!(
                matches!(accepted, Ok(Ok(_))),
                "member {index}: its listener saw no connection"
            );
        }
        let empty = RoomLogin {
            servers: Vec::new(),
            ..login
        };
        assert!(empty.join(0, "u1").await.is_err());
    }
}
