//! The few frames the peers' adapters need, hand-encoded: MQTT 3.1.1
//! (CONNECT, SUBSCRIBE, PINGREQ, PUBACK and reading CONNACK, SUBACK,
//! PINGRESP) and
//! the NATS core text protocol (CONNECT, SUB, PING/PONG and reading INFO,
//! +OK, -ERR, PING, PONG, MSG).

/// MQTT control packet types (high nibble of the first byte).
pub(crate) mod mqtt_type {
    pub(crate) const CONNACK: u8 = 2;
    pub(crate) const PUBLISH: u8 = 3;
    pub(crate) const PUBACK: u8 = 4;
    pub(crate) const SUBACK: u8 = 9;
}

/// Appends MQTT's variable-length "remaining length" (1 to 4 bytes, 7 bits
/// each, least significant first; MQTT 3.1.1 §2.2.3).
pub(crate) fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    debug_assert!(len <= 268_435_455, "MQTT remaining length limit");
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// CONNECT (§3.1): protocol "MQTT" level 4, clean session, no will, no
/// credentials, `keep_alive` seconds, client id `client_id`.
#[cfg(test)]
pub(crate) fn mqtt_connect(client_id: &str, keep_alive: u16) -> Vec<u8> {
    mqtt_connect_as(client_id, keep_alive, None)
}

/// `mqtt_connect` with a user name and password (§3.1.2.8, §3.1.2.9:
/// flags 0x80 and 0x40, both strings after the client id).
pub(crate) fn mqtt_connect_as(
    client_id: &str,
    keep_alive: u16,
    credentials: Option<(&str, &str)>,
) -> Vec<u8> {
    let extra = credentials.map_or(0, |(u, p)| 4 + u.len() + p.len());
    let mut body = Vec::with_capacity(12 + client_id.len() + extra);
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level: 3.1.1
    // Connect flags: clean session, and user name + password when given.
    body.push(if credentials.is_some() { 0xC2 } else { 0x02 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    put_str(&mut body, client_id);
    if let Some((user, password)) = credentials {
        put_str(&mut body, user);
        put_str(&mut body, password);
    }
    let mut packet = vec![0x10];
    put_remaining_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

/// SUBSCRIBE (§3.8) to one topic filter at `qos`, packet id `packet_id`.
pub(crate) fn mqtt_subscribe(packet_id: u16, topic: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + topic.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    put_str(&mut body, topic);
    body.push(qos);
    let mut packet = vec![0x82]; // SUBSCRIBE, reserved flags 0b0010
    put_remaining_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

/// PUBACK (§3.4) of the QoS 1 PUBLISH with `packet_id`: type 4, flags 0,
/// remaining length 2, the packet identifier (big endian).
pub(crate) fn mqtt_puback(packet_id: u16) -> [u8; 4] {
    let [hi, lo] = packet_id.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// PINGREQ (§3.12).
pub(crate) const MQTT_PINGREQ: [u8; 2] = [0xC0, 0x00];

/// One MQTT packet read from a buffer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct MqttPacket {
    /// Packet type (high nibble).
    pub(crate) kind: u8,
    /// Flags (low nibble).
    pub(crate) flags: u8,
    /// Variable header and payload.
    pub(crate) body: Vec<u8>,
}

/// Why bytes are not a valid MQTT packet.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct MalformedMqtt;

/// The remaining length (1 to 4 bytes) of the packet whose length field
/// starts at `data[at]`: the body's length and where the body starts;
/// `Ok(None)` when the field is cut short.
pub(crate) fn mqtt_remaining_length(
    data: &[u8],
    at: usize,
) -> Result<Option<(usize, usize)>, MalformedMqtt> {
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = at;
    loop {
        let Some(&byte) = data.get(i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            return Ok(Some((len, i)));
        }
        shift += 7;
        if shift > 21 {
            return Err(MalformedMqtt);
        }
    }
}

/// Takes one whole packet from the front of `buf`; `Ok(None)` when more
/// bytes are needed.
pub(crate) fn mqtt_take(buf: &mut Vec<u8>) -> Result<Option<MqttPacket>, MalformedMqtt> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, i)) = mqtt_remaining_length(buf, 1)? else {
        return Ok(None);
    };
    if buf.len() < i + len {
        return Ok(None);
    }
    let body = buf[i..i + len].to_vec();
    buf.drain(..i + len);
    Ok(Some(MqttPacket {
        kind: first >> 4,
        flags: first & 0x0f,
        body,
    }))
}

/// CONNACK's return code (0 = accepted), if `packet` is a CONNACK.
pub(crate) fn mqtt_connack_code(packet: &MqttPacket) -> Option<u8> {
    (packet.kind == mqtt_type::CONNACK && packet.body.len() == 2).then(|| packet.body[1])
}

/// SUBACK for `packet_id`: the granted QoS (0..=2) or 0x80 (failure).
pub(crate) fn mqtt_suback_code(packet: &MqttPacket, packet_id: u16) -> Option<u8> {
    if packet.kind != mqtt_type::SUBACK || packet.body.len() < 3 {
        return None;
    }
    (packet.body[..2] == packet_id.to_be_bytes()).then(|| packet.body[2])
}

/// NATS `CONNECT` (no echo of +OK, no pedantic checks) with a client name.
pub(crate) fn nats_connect(name: &str) -> String {
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1,\"name\":\"{name}\"}}\r\n"
    )
}

/// NATS `SUB <subject> <sid>`.
pub(crate) fn nats_sub(subject: &str, sid: u64) -> String {
    format!("SUB {subject} {sid}\r\n")
}

/// NATS `PING` and `PONG`.
pub(crate) const NATS_PING: &[u8] = b"PING\r\n";
pub(crate) const NATS_PONG: &[u8] = b"PONG\r\n";

/// A server operation of the NATS protocol.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum NatsOp {
    Info,
    Ok,
    Err(String),
    Ping,
    Pong,
    Msg {
        subject: String,
        sid: u64,
        payload: Vec<u8>,
    },
}

/// Why bytes are not valid NATS protocol.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct MalformedNats(pub(crate) String);

/// Longest control line accepted (INFO lines are a few hundred bytes).
const MAX_NATS_LINE: usize = 64 * 1024;

/// Takes one operation from the front of `buf`; `Ok(None)` when more bytes
/// are needed.
pub(crate) fn nats_take(buf: &mut Vec<u8>) -> Result<Option<NatsOp>, MalformedNats> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_NATS_LINE {
            return Err(MalformedNats("control line too long".into()));
        }
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let op = match verb.as_str() {
        "INFO" => NatsOp::Info,
        "+OK" => NatsOp::Ok,
        "-ERR" => NatsOp::Err(line[4..].trim().trim_matches('\'').to_owned()),
        "PING" => NatsOp::Ping,
        "PONG" => NatsOp::Pong,
        "MSG" => {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let args: Vec<&str> = words.collect();
            let (subject, sid, size) = match args.as_slice() {
                [subject, sid, size] | [subject, sid, _, size] => (*subject, *sid, *size),
                _ => return Err(MalformedNats(format!("bad MSG line: {line}"))),
            };
            let sid = sid
                .parse()
                .map_err(|_| MalformedNats(format!("bad sid: {line}")))?;
            let size: usize = size
                .parse()
                .map_err(|_| MalformedNats(format!("bad size: {line}")))?;
            let start = end + 2;
            if buf.len() < start + size + 2 {
                return Ok(None);
            }
            let payload = buf[start..start + size].to_vec();
            buf.drain(..start + size + 2);
            return Ok(Some(NatsOp::Msg {
                subject: subject.to_owned(),
                sid,
                payload,
            }));
        }
        _ => return Err(MalformedNats(format!("unknown operation: {line}"))),
    };
    buf.drain(..end + 2);
    Ok(Some(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        put_remaining_length(&mut out, len);
        out
    }

    #[test]
    fn remaining_length_matches_the_spec_table() {
        // MQTT 3.1.1 §2.2.3, Table 2.4.
        assert_eq!(remaining(0), [0x00]);
        assert_eq!(remaining(127), [0x7f]);
        assert_eq!(remaining(128), [0x80, 0x01]);
        assert_eq!(remaining(16_383), [0xff, 0x7f]);
        assert_eq!(remaining(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(remaining(2_097_151), [0xff, 0xff, 0x7f]);
        assert_eq!(remaining(2_097_152), [0x80, 0x80, 0x80, 0x01]);
        assert_eq!(remaining(268_435_455), [0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn connect_bytes() {
        let packet = mqtt_connect("b7", 60);
        assert_eq!(
            packet,
            [
                0x10, 14, // CONNECT, remaining length
                0, 4, b'M', b'Q', b'T', b'T', // protocol name
                4,    // level 3.1.1
                0x02, // clean session
                0, 60, // keep alive
                0, 2, b'b', b'7', // client id
            ]
        );
    }

    #[test]
    fn connect_with_credentials_bytes() {
        let packet = mqtt_connect_as("b7", 60, Some(("ap", "tok")));
        assert_eq!(
            packet,
            [
                0x10, 23, // CONNECT, remaining length
                0, 4, b'M', b'Q', b'T', b'T', // protocol name
                4,    // level 3.1.1
                0xC2, // user name, password, clean session
                0, 60, // keep alive
                0, 2, b'b', b'7', // client id
                0, 2, b'a', b'p', // user name
                0, 3, b't', b'o', b'k', // password
            ]
        );
        assert_eq!(mqtt_connect_as("b7", 60, None), mqtt_connect("b7", 60));
    }

    #[test]
    fn subscribe_bytes() {
        let packet = mqtt_subscribe(1, "d/7", 0);
        assert_eq!(
            packet,
            [0x82, 8, 0, 1, 0, 3, b'd', b'/', b'7', 0],
            "SUBSCRIBE flags 0b0010, packet id 1, one filter at QoS 0"
        );
    }

    #[test]
    fn reads_connack_suback_and_pingresp_across_splits() {
        let wire = [
            0x20, 0x02, 0x00, 0x00, 0x90, 0x03, 0x00, 0x01, 0x00, 0xD0, 0x00,
        ];
        let mut buf = Vec::new();
        let mut packets = Vec::new();
        // Byte by byte: every split point must work.
        for byte in wire {
            buf.push(byte);
            while let Some(p) = mqtt_take(&mut buf).unwrap() {
                packets.push(p);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(packets.len(), 3);
        assert_eq!(mqtt_connack_code(&packets[0]), Some(0));
        assert_eq!(mqtt_suback_code(&packets[1], 1), Some(0));
        assert_eq!(mqtt_suback_code(&packets[1], 2), None);
        assert_eq!(packets[2].kind, 13, "PINGRESP");
        assert_eq!(mqtt_connack_code(&packets[2]), None);
    }

    #[test]
    fn puback_bytes() {
        assert_eq!(mqtt_puback(1), [0x40, 0x02, 0x00, 0x01]);
        assert_eq!(mqtt_puback(0x1234), [0x40, 0x02, 0x12, 0x34]);
        assert_eq!(mqtt_puback(65_535), [0x40, 0x02, 0xff, 0xff]);
        // Read back as a whole packet of type PUBACK, even byte by byte.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for byte in mqtt_puback(0xBEEF) {
            buf.push(byte);
            while let Some(p) = mqtt_take(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(
            got,
            [MqttPacket {
                kind: mqtt_type::PUBACK,
                flags: 0,
                body: vec![0xBE, 0xEF]
            }]
        );
    }

    #[test]
    fn refused_connack_and_failed_suback() {
        let mut buf = vec![0x20, 0x02, 0x00, 0x05, 0x90, 0x03, 0x00, 0x09, 0x80];
        let connack = mqtt_take(&mut buf).unwrap().unwrap();
        assert_eq!(mqtt_connack_code(&connack), Some(5));
        let suback = mqtt_take(&mut buf).unwrap().unwrap();
        assert_eq!(mqtt_suback_code(&suback, 9), Some(0x80));
    }

    #[test]
    fn long_remaining_length_is_malformed() {
        let mut buf = vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(mqtt_take(&mut buf), Err(MalformedMqtt));
    }

    #[test]
    fn nats_client_lines() {
        assert_eq!(nats_sub("d.7", 1), "SUB d.7 1\r\n");
        let connect = nats_connect("b7");
        assert!(connect.starts_with("CONNECT {"));
        assert!(connect.ends_with("}\r\n"));
        let json = &connect["CONNECT ".len()..connect.len() - 2];
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["verbose"], false);
        assert_eq!(value["pedantic"], false);
        assert_eq!(value["name"], "b7");
    }

    #[test]
    fn nats_server_operations() {
        let mut buf = b"INFO {\"server_id\":\"x\"}\r\n+OK\r\nPING\r\nPONG\r\n-ERR 'Authorization Violation'\r\nMSG d.7 1 5\r\nhello\r\nMSG d.8 2 _INBOX.x 0\r\n\r\n"
            .to_vec();
        let mut ops = Vec::new();
        while let Some(op) = nats_take(&mut buf).unwrap() {
            ops.push(op);
        }
        assert!(buf.is_empty());
        assert_eq!(
            ops,
            vec![
                NatsOp::Info,
                NatsOp::Ok,
                NatsOp::Ping,
                NatsOp::Pong,
                NatsOp::Err("Authorization Violation".into()),
                NatsOp::Msg {
                    subject: "d.7".into(),
                    sid: 1,
                    payload: b"hello".to_vec()
                },
                NatsOp::Msg {
                    subject: "d.8".into(),
                    sid: 2,
                    payload: Vec::new()
                },
            ]
        );
    }

    #[test]
    fn nats_waits_for_whole_lines_and_payloads() {
        let mut buf = b"PON".to_vec();
        assert_eq!(nats_take(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"G\r\nMSG a 1 4\r\nab");
        assert_eq!(nats_take(&mut buf).unwrap(), Some(NatsOp::Pong));
        assert_eq!(nats_take(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"cd\r\n");
        assert!(matches!(
            nats_take(&mut buf).unwrap(),
            Some(NatsOp::Msg { payload, .. }) if payload == b"abcd"
        ));
        let mut bad = b"WHAT\r\n".to_vec();
        assert!(nats_take(&mut bad).is_err());
    }
}
