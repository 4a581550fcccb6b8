//! MQTT 3.1.1 for the generator: the handshake (CONNECT → CONNACK, then
//! SUBSCRIBE → SUBACK when subscribing), QoS 0 PUBLISH frames, and the
//! in-place scanner of the receive path (no allocation per packet).

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

/// Scans whole packets at the front of `data`, handing each PUBLISH
/// payload to `on_publish` and skipping every other packet; returns the
/// bytes consumed (the rest is an incomplete packet).
#[inline]
pub(crate) fn scan(data: &[u8], mut on_publish: impl FnMut(&[u8])) -> Result<usize, Malformed> {
    let mut pos = 0;
    while pos + 2 <= data.len() {
        let first = data[pos];
        // Remaining length: 1 to 4 bytes.
        let mut len = 0usize;
        let mut shift = 0;
        let mut i = pos + 1;
        loop {
            let Some(&byte) = data.get(i) else {
                return Ok(pos);
            };
            len |= usize::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(Malformed);
            }
        }
        let end = i + len;
        if end > data.len() {
            return Ok(pos);
        }
        if first >> 4 == 3 {
            let body = &data[i..end];
            if body.len() < 2 {
                return Err(Malformed);
            }
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            // QoS 1 and 2 carry a packet identifier (never asked for here).
            let id_len = if first & 0x06 != 0 { 2 } else { 0 };
            let start = 2 + topic_len + id_len;
            if start > body.len() {
                return Err(Malformed);
            }
            on_publish(&body[start..]);
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
    let mut out = wire::mqtt_connect(client_id, KEEP_ALIVE_SECS);
    if let Some(topic) = topic {
        out.extend_from_slice(&wire::mqtt_subscribe(1, topic, 0));
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
                return Ok(());
            }
        }
        fill(stream, buf).await?;
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
}
