//! MQTT 3.1.1 for the generator: the handshake (CONNECT → CONNACK, then
//! SUBSCRIBE → SUBACK when subscribing), QoS 0 and QoS 1 PUBLISH frames,
//! the in-place scanner of the receive path (no allocation per packet;
//! it also reads PUBLISH packet ids and PUBACKs), and the packet-id pool of
//! a QoS 1 publisher.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::super::wire;
use super::conn::fill;

/// Keep-alive announced in CONNECT, seconds; the generator pings at half.
pub(crate) const KEEP_ALIVE_SECS: u16 = 60;

/// DISCONNECT (§3.14).
pub(crate) const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Why bytes are not MQTT.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Malformed;

/// The bytes before the payload of a QoS 0 PUBLISH to `topic` with a
/// payload of `payload_len` bytes (§3.3): fixed header, remaining length,
/// topic name (no packet identifier at QoS 0).
pub(crate) fn publish_prefix(topic: &str, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + topic.len());
    out.push(0x30);
    wire::put_remaining_length(&mut out, 2 + topic.len() + payload_len);
    let len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out
}

/// The bytes before the packet identifier of a QoS 1 PUBLISH to `topic`
/// with a payload of `payload_len` bytes (§3.3): fixed header `0x32`
/// (QoS 1, no DUP, no RETAIN), remaining length (counting the 2-byte
/// packet identifier), topic name. The sender appends the packet id
/// (big endian), then the payload.
pub(crate) fn publish_qos1_prefix(topic: &str, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + topic.len());
    out.push(0x32);
    wire::put_remaining_length(&mut out, 2 + topic.len() + 2 + payload_len);
    let len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out
}

/// One PUBLISH seen by [`scan_packets`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Publish<'a> {
    pub(crate) payload: &'a [u8],
    /// The packet identifier (QoS 1 and 2).
    pub(crate) packet_id: Option<u16>,
    /// The DUP flag (a redelivery of a QoS 1/2 message).
    pub(crate) dup: bool,
}

/// Scans whole packets at the front of `data`, handing each PUBLISH
/// payload to `on_publish` and skipping every other packet; returns the
/// bytes consumed (the rest is an incomplete packet).
#[inline]
pub(crate) fn scan(data: &[u8], mut on_publish: impl FnMut(&[u8])) -> Result<usize, Malformed> {
    scan_packets(data, |p| on_publish(p.payload), |_| {})
}

/// [`scan`] that also hands over each PUBLISH's packet id and DUP flag,
/// and each PUBACK's packet id (to `on_puback`).
#[inline]
pub(crate) fn scan_packets(
    data: &[u8],
    mut on_publish: impl FnMut(Publish<'_>),
    mut on_puback: impl FnMut(u16),
) -> Result<usize, Malformed> {
    let mut pos = 0;
    while pos + 2 <= data.len() {
        let first = data[pos];
        let Some((len, i)) = wire::mqtt_remaining_length(data, pos + 1).map_err(|_| Malformed)?
        else {
            return Ok(pos);
        };
        let end = i + len;
        if end > data.len() {
            return Ok(pos);
        }
        let kind = first >> 4;
        if kind == wire::mqtt_type::PUBLISH {
            let body = &data[i..end];
            if body.len() < 2 {
                return Err(Malformed);
            }
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            // QoS 1 and 2 carry a packet identifier after the topic.
            let id_at = 2 + topic_len;
            let qos = first & 0x06 != 0;
            let start = id_at + if qos { 2 } else { 0 };
            if start > body.len() {
                return Err(Malformed);
            }
            on_publish(Publish {
                payload: &body[start..],
                packet_id: qos.then(|| u16::from_be_bytes([body[id_at], body[id_at + 1]])),
                dup: first & 0x08 != 0,
            });
        } else if kind == wire::mqtt_type::PUBACK {
            if len != 2 {
                return Err(Malformed);
            }
            on_puback(u16::from_be_bytes([data[i], data[i + 1]]));
        }
        pos = end;
    }
    Ok(pos)
}

/// CONNECT as `client_id` (→ CONNACK accepted), then, with `topic`,
/// SUBSCRIBE at QoS 0 (→ SUBACK granted). Bytes read past the last
/// acknowledgement stay in `buf`.
pub(crate) async fn handshake<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    client_id: &str,
    topic: Option<&str>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake_qos(stream, buf, client_id, topic, 0).await
}

/// [`handshake`] subscribing at `qos`; at QoS 1 the SUBACK must grant
/// QoS 1 (a broker that downgrades to 0 is refused).
pub(crate) async fn handshake_qos<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    client_id: &str,
    topic: Option<&str>,
    qos: u8,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake_as(stream, buf, client_id, None, topic, qos).await
}

/// [`handshake_qos`] with a user name and password in the CONNECT (pike
/// mode: the app and a Pike credential).
pub(crate) async fn handshake_as<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    topic: Option<&str>,
    qos: u8,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = wire::mqtt_connect_as(client_id, KEEP_ALIVE_SECS, credentials);
    if let Some(topic) = topic {
        out.extend_from_slice(&wire::mqtt_subscribe(1, topic, qos));
    }
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut connack = false;
    loop {
        while let Some(packet) = wire::mqtt_take(buf).map_err(|_| "malformed MQTT".to_owned())? {
            if let Some(code) = wire::mqtt_connack_code(&packet) {
                if code != 0 {
                    return Err(format!("CONNACK refused: return code {code}"));
                }
                connack = true;
                if topic.is_none() {
                    return Ok(());
                }
            } else if let Some(code) = wire::mqtt_suback_code(&packet, 1) {
                if !connack {
                    return Err("SUBACK before CONNACK".into());
                }
                if code > 2 {
                    return Err(format!("SUBACK failure: {code:#x}"));
                }
                if qos > 0 && code != qos {
                    return Err(format!("SUBACK granted QoS {code}, asked for {qos}"));
                }
                return Ok(());
            }
        }
        fill(stream, buf).await?;
    }
}

/// Packet ids of a QoS 1 publisher: 1..=65535, handed out cycling, never
/// one still in flight (§2.3.1: a new PUBLISH must use an id not in use).
#[derive(Clone, Debug)]
pub(crate) struct IdPool {
    /// In flight, by id (index 0 unused).
    used: Vec<bool>,
    /// The next id to try.
    next: u16,
    in_flight: usize,
}

impl Default for IdPool {
    fn default() -> Self {
        Self::new()
    }
}

impl IdPool {
    /// Ids `1..=65535`.
    pub(crate) const CAPACITY: usize = 65_535;

    pub(crate) fn new() -> Self {
        Self {
            used: vec![false; Self::CAPACITY + 1],
            next: 1,
            in_flight: 0,
        }
    }

    /// Ids in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The next free id after the last one handed out (cycling, skipping
    /// 0 and the ids in flight); `None` when all 65,535 are in flight.
    pub(crate) fn take(&mut self) -> Option<u16> {
        if self.in_flight >= Self::CAPACITY {
            return None;
        }
        // At most CAPACITY probes: a free id exists.
        for _ in 0..Self::CAPACITY {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            let slot = &mut self.used[usize::from(id)];
            if !*slot {
                *slot = true;
                self.in_flight += 1;
                return Some(id);
            }
        }
        None
    }

    /// Frees `id` (its PUBACK came); `false` when it was not in flight
    /// (a PUBACK for nothing, or a second one).
    pub(crate) fn release(&mut self, id: u16) -> bool {
        match self.used.get_mut(usize::from(id)) {
            Some(slot) if id != 0 && *slot => {
                *slot = false;
                self.in_flight -= 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = publish_prefix(topic, payload.len());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn publish_bytes() {
        assert_eq!(
            frame("room", b"hi"),
            [0x30, 8, 0, 4, b'r', b'o', b'o', b'm', b'h', b'i']
        );
        // 200-byte payload: two-byte remaining length (206 = 0xCE 0x01).
        let long = frame("d/7", &[b'.'; 200]);
        assert_eq!(&long[..3], &[0x30, 0xCD, 0x01]);
        assert_eq!(long.len(), 3 + 2 + 3 + 200);
    }

    #[test]
    fn scans_publishes_at_every_split() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x90, 3, 0, 1, 0]); // SUBACK
        wire.extend(frame("room", b"first"));
        wire.extend_from_slice(&[0xD0, 0]); // PINGRESP
        wire.extend(frame("a/b", &[7u8; 300]));
        // QoS 1 PUBLISH: packet id before the payload.
        wire.extend_from_slice(&[0x32, 9, 0, 1, b't', 0, 5, b'q', b'o', b's', b'1']);
        for split in 0..=wire.len() {
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut carry = wire[..split].to_vec();
            let used = scan(&carry, |p| got.push(p.to_vec())).unwrap();
            carry.drain(..used);
            carry.extend_from_slice(&wire[split..]);
            let used = scan(&carry, |p| got.push(p.to_vec())).unwrap();
            assert_eq!(used, carry.len(), "split {split}");
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[0], b"first");
            assert_eq!(got[1], vec![7u8; 300]);
            assert_eq!(got[2], b"qos1");
        }
    }

    #[test]
    fn qos1_publish_bytes() {
        let mut f = publish_qos1_prefix("d/7", 2);
        f.extend_from_slice(&0x0102u16.to_be_bytes());
        f.extend_from_slice(b"hi");
        assert_eq!(
            f,
            [0x32, 9, 0, 3, b'd', b'/', b'7', 0x01, 0x02, b'h', b'i'],
            "QoS 1 header, remaining length counts the packet id"
        );
        let mut got = Vec::new();
        let used = scan_packets(
            &f,
            |p| got.push((p.payload.to_vec(), p.packet_id, p.dup)),
            |_| panic!("no PUBACK here"),
        )
        .unwrap();
        assert_eq!(used, f.len());
        assert_eq!(got, [(b"hi".to_vec(), Some(0x0102), false)]);
    }

    /// PUBLISH at QoS 0 and 1 (one with DUP) and PUBACKs, cut at every
    /// byte: the ids, DUP flags and PUBACK ids all come through once.
    #[test]
    fn scans_packet_ids_and_pubacks_at_every_split() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&wire::mqtt_puback(7));
        wire.extend(frame("room", b"zero"));
        let mut q1 = publish_qos1_prefix("room", 3);
        q1.extend_from_slice(&[0xAB, 0xCD]);
        q1.extend_from_slice(b"one");
        wire.extend_from_slice(&q1);
        q1[0] |= 0x08; // DUP
        wire.extend_from_slice(&q1);
        wire.extend_from_slice(&wire::mqtt_puback(65_535));
        wire.extend_from_slice(&[0xD0, 0]); // PINGRESP
        for split in 0..=wire.len() {
            let mut pubs: Vec<(Vec<u8>, Option<u16>, bool)> = Vec::new();
            let mut acks = Vec::new();
            let mut carry = wire[..split].to_vec();
            let used = scan_packets(
                &carry,
                |p| pubs.push((p.payload.to_vec(), p.packet_id, p.dup)),
                |id| acks.push(id),
            )
            .unwrap();
            carry.drain(..used);
            carry.extend_from_slice(&wire[split..]);
            let used = scan_packets(
                &carry,
                |p| pubs.push((p.payload.to_vec(), p.packet_id, p.dup)),
                |id| acks.push(id),
            )
            .unwrap();
            assert_eq!(used, carry.len(), "split {split}");
            assert_eq!(acks, [7, 65_535], "split {split}");
            assert_eq!(
                pubs,
                [
                    (b"zero".to_vec(), None, false),
                    (b"one".to_vec(), Some(0xABCD), false),
                    (b"one".to_vec(), Some(0xABCD), true),
                ],
                "split {split}"
            );
        }
        // A PUBACK must have remaining length 2.
        assert_eq!(
            scan_packets(&[0x40, 3, 0, 1, 2], |_| {}, |_| {}),
            Err(Malformed)
        );
    }

    #[test]
    fn packet_ids_cycle_and_skip_those_in_flight() {
        let mut pool = IdPool::new();
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), Some(2));
        assert_eq!(pool.take(), Some(3));
        assert!(pool.release(2));
        assert!(!pool.release(2), "a second PUBACK frees nothing");
        assert!(!pool.release(0), "0 is never an id");
        assert!(!pool.release(9), "never handed out");
        // Cycling on: 4, not the freed 2.
        assert_eq!(pool.take(), Some(4));
        assert_eq!(pool.in_flight(), 3);
        // Take the rest: every id once, never 0, never one in flight.
        let mut seen = vec![false; 65_536];
        for id in [1usize, 3, 4] {
            seen[id] = true;
        }
        while let Some(id) = pool.take() {
            assert_ne!(id, 0);
            assert!(!seen[usize::from(id)], "id {id} handed out while in flight");
            seen[usize::from(id)] = true;
        }
        assert_eq!(pool.in_flight(), IdPool::CAPACITY);
        assert!(seen[1..].iter().all(|s| *s), "all 65,535 ids used");
        assert_eq!(pool.take(), None, "all in flight");
        // Wrapped around: the next free one after 65535 is the lowest freed.
        assert!(pool.release(10));
        assert!(pool.release(5));
        assert_eq!(pool.take(), Some(5));
        assert_eq!(pool.take(), Some(10));
        assert_eq!(pool.take(), None);
    }

    /// A long run at a bounded window, acknowledged out of order: an id is
    /// never handed out twice while in flight.
    #[test]
    fn packet_ids_never_reused_in_flight_over_wraps() {
        let mut pool = IdPool::new();
        let window = 1000usize;
        let mut flight: std::collections::VecDeque<u16> = std::collections::VecDeque::new();
        let mut live = vec![false; 65_536];
        // A few messages never acknowledged: their ids must be skipped on
        // every wrap.
        for _ in 0..5 {
            let id = pool.take().unwrap();
            live[usize::from(id)] = true;
        }
        for round in 0..300_000u32 {
            if flight.len() == window {
                // Ack one from the middle now and then, else the oldest.
                let at = if round % 7 == 0 { window / 2 } else { 0 };
                let id = flight.remove(at).unwrap();
                assert!(pool.release(id));
                live[usize::from(id)] = false;
            }
            let id = pool.take().unwrap();
            assert!(!live[usize::from(id)], "id {id} reused in flight");
            live[usize::from(id)] = true;
            flight.push_back(id);
            assert_eq!(pool.in_flight(), flight.len() + 5);
        }
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(
            scan(&[0x30, 0xff, 0xff, 0xff, 0xff, 1], |_| {}),
            Err(Malformed)
        );
        // Topic longer than the packet.
        assert_eq!(scan(&[0x30, 3, 0, 9, b'x'], |_| {}), Err(Malformed));
        // Incomplete is not malformed.
        assert_eq!(scan(&[0x30, 0x80], |_| {}), Ok(0));
    }

    /// Handshake without a subscription ends at CONNACK and keeps what
    /// followed in the buffer.
    #[tokio::test]
    async fn publisher_handshake_keeps_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut got = [0u8; 64];
            let n = server.read(&mut got).await.unwrap();
            assert_eq!(
                &got[..n],
                wire::mqtt_connect("p1", KEEP_ALIVE_SECS).as_slice()
            );
            server.write_all(&[0x20, 2, 0, 0, 0xD0, 0]).await.unwrap();
            server
        });
        let mut buf = Vec::new();
        handshake(&mut client, &mut buf, "p1", None).await.unwrap();
        assert_eq!(buf, [0xD0, 0]);
        drop(task.await.unwrap());
    }
    /// At QoS 1 the subscription must be granted QoS 1.
    #[tokio::test]
    async fn qos1_subscription_needs_grant_1() {
        for (granted, ok) in [(1u8, true), (0, false), (0x80, false)] {
            let (mut client, mut server) = tokio::io::duplex(1024);
            let task = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut got = vec![0u8; 256];
                let mut have = 0;
                let mut want = wire::mqtt_connect("s1", KEEP_ALIVE_SECS);
                want.extend_from_slice(&wire::mqtt_subscribe(1, "d/1", 1));
                while have < want.len() {
                    have += server.read(&mut got[have..]).await.unwrap();
                }
                assert_eq!(&got[..have], want.as_slice());
                server
                    .write_all(&[0x20, 2, 0, 0, 0x90, 3, 0, 1, granted])
                    .await
                    .unwrap();
                server
            });
            let mut buf = Vec::new();
            let outcome = handshake_qos(&mut client, &mut buf, "s1", Some("d/1"), 1).await;
            assert_eq!(outcome.is_ok(), ok, "granted {granted}: {outcome:?}");
            drop(task.await.unwrap());
        }
    }
}
