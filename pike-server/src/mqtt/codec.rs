//! MQTT packets in and out, over rumqttc's codec modules (`mqttbytes::v4`
//! for 3.1.1, `v5::mqttbytes::v5` for 5.0): the version is chosen from the
//! CONNECT's protocol level, and both versions are reduced to the few
//! shapes the translator needs.
//!
//! Every read checks the fixed header's remaining length against the
//! packet limit before the packet is split off the buffer (rumqttc's
//! `check`); a buffer therefore never holds more than one packet's limit
//! plus what one socket read brought.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version of a connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// Why bytes are not a packet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    /// The declared remaining length is over the limit.
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The first packet is not a CONNECT.
    #[error("the first packet must be CONNECT")]
    NotConnect,
    /// A CONNECT with a protocol level other than 4 or 5.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// Malformed bytes.
    #[error("malformed packet: {0}")]
    Malformed(String),
}

/// A CONNECT, either version.
#[derive(Clone, Debug)]
pub(crate) struct Connect {
    pub(crate) version: Version,
    pub(crate) client_id: String,
    /// Clean session (3.1.1) / clean start (5.0).
    pub(crate) clean: bool,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) will: Option<Will>,
    /// 5.0 Session Expiry Interval (absent: 0).
    pub(crate) session_expiry: u32,
    /// 5.0 Receive Maximum.
    pub(crate) receive_max: Option<u16>,
    /// 5.0 Maximum Packet Size the client accepts.
    pub(crate) max_packet_size: Option<u32>,
}

/// A will message.
#[derive(Clone, Debug)]
pub(crate) struct Will {
    pub(crate) topic: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
}

/// A PUBLISH from the device.
#[derive(Clone, Debug)]
pub(crate) struct Publish {
    pub(crate) topic: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) pkid: u16,
    pub(crate) payload: Bytes,
    /// 5.0: the packet uses a topic alias (none is granted).
    pub(crate) topic_alias: bool,
}

/// A packet after CONNECT, either version.
#[derive(Clone, Debug)]
pub(crate) enum Inbound {
    Publish(Publish),
    PubAck(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// DISCONNECT; `with_will` for 5.0's reason 0x04.
    Disconnect {
        with_will: bool,
    },
    /// A packet a client must not send here (CONNECT again, QoS 2 flow,
    /// AUTH, server-side packets).
    Unexpected(&'static str),
}

/// CONNACK outcomes, mapped to each version's code.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum ConnackCode {
    Accepted,
    UnsupportedVersion,
    BadClientId,
    BadCredentials,
    NotAuthorized,
    Unavailable,
    Busy,
    QuotaExceeded,
    QosNotSupported,
    RetainNotSupported,
    TopicNameInvalid,
}

/// What a CONNACK announces (5.0 only).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnackInfo {
    pub(crate) receive_max: u16,
    pub(crate) max_packet_size: u32,
    pub(crate) server_keep_alive: Option<u16>,
    pub(crate) session_expiry: Option<u32>,
}

/// A SUBACK entry (3.1.1: every refusal is 0x80).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum SubCode {
    Granted(u8),
    Wildcard,
    Shared,
    NotAuthorized,
    QuotaExceeded,
    /// 5.0 0x8F: a tag topic whose tag breaks the tag bounds.
    TopicFilterInvalid,
    /// 5.0 0x80: the gateway could not bind the tag (its store failed).
    Failed,
}

/// An UNSUBACK entry (5.0 only; a 3.1.1 UNSUBACK has none).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum UnsubCode {
    Success,
    NoSubscriptionExisted,
    /// 0x8F: a tag topic whose tag breaks the tag bounds.
    TopicFilterInvalid,
    /// 0x80: the gateway could not unbind the tag (its store failed).
    Failed,
}

/// 5.0 DISCONNECT reasons the server sends.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum DisconnectReason {
    NotAuthorized,
    ServerShuttingDown,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicAliasInvalid,
    ProtocolError,
    QosNotSupported,
    RetainNotSupported,
    PacketTooLarge,
    UnspecifiedError,
}

/// Length of the fixed header at the front of `buf` (1 + the remaining
/// length's bytes), when it is all there.
fn fixed_header_len(buf: &[u8]) -> Option<usize> {
    buf.iter()
        .skip(1)
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map(|i| i + 2)
}

/// Reads the first packet, which must be a CONNECT: `Ok(None)` until it is
/// whole. `max` bounds its remaining length.
pub(crate) fn read_connect(buf: &mut BytesMut, max: usize) -> Result<Option<Connect>, CodecError> {
    let frame_len = match rumqttc::mqttbytes::check(buf.iter(), max) {
        Ok(header) => header.frame_length(),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
            return Err(CodecError::TooLarge(n));
        }
        Err(e) => return Err(CodecError::Malformed(e.to_string())),
    };
    if buf.first().map(|b| b >> 4) != Some(1) {
        return Err(CodecError::NotConnect);
    }
    let packet = buf.get(..frame_len).unwrap_or_default();
    let level = fixed_header_len(packet).and_then(|h| {
        let name_len = usize::from(u16::from_be_bytes([*packet.get(h)?, *packet.get(h + 1)?]));
        packet.get(h + 2 + name_len).copied()
    });
    match level {
        Some(4) => match v4::Packet::read(buf, max) {
            Ok(v4::Packet::Connect(c)) => Ok(Some(Connect {
                version: Version::V4,
                client_id: c.client_id,
                clean: c.clean_session,
                keep_alive: c.keep_alive,
                username: c.login.as_ref().map(|l| l.username.clone()),
                password: c.login.map(|l| l.password),
                will: c.last_will.map(|w| Will {
                    topic: Bytes::from(w.topic.into_bytes()),
                    payload: w.message,
                    qos: w.qos as u8,
                    retain: w.retain,
                }),
                session_expiry: 0,
                receive_max: None,
                max_packet_size: None,
            })),
            Ok(_) => Err(CodecError::NotConnect),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
        Some(5) => match v5::Packet::read(buf, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
            Ok(v5::Packet::Connect(c, will, login)) => {
                let props = c.properties.unwrap_or_default();
                Ok(Some(Connect {
                    version: Version::V5,
                    client_id: c.client_id,
                    clean: c.clean_start,
                    keep_alive: c.keep_alive,
                    username: login.as_ref().map(|l| l.username.clone()),
                    password: login.map(|l| l.password),
                    will: will.map(|w| Will {
                        topic: w.topic,
                        payload: w.message,
                        qos: w.qos as u8,
                        retain: w.retain,
                    }),
                    session_expiry: props.session_expiry_interval.unwrap_or(0),
                    receive_max: props.receive_maximum,
                    max_packet_size: props.max_packet_size,
                }))
            }
            Ok(_) => Err(CodecError::NotConnect),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
        Some(level) => Err(CodecError::UnsupportedLevel(level)),
        None => Err(CodecError::Malformed(
            "CONNECT without a protocol level".into(),
        )),
    }
}

/// Reads the next packet after CONNECT: `Ok(None)` until one is whole.
pub(crate) fn read(
    version: Version,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Inbound>, CodecError> {
    match version {
        Version::V4 => read_v4(buf, max),
        Version::V5 => read_v5(buf, max),
    }
}

fn read_v4(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, CodecError> {
    let packet = match v4::Packet::read(buf, max) {
        Ok(packet) => packet,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
            return Err(CodecError::TooLarge(n));
        }
        Err(e) => return Err(CodecError::Malformed(e.to_string())),
    };
    Ok(Some(match packet {
        v4::Packet::Publish(p) => Inbound::Publish(Publish {
            topic: Bytes::from(p.topic.into_bytes()),
            qos: p.qos as u8,
            retain: p.retain,
            pkid: p.pkid,
            payload: p.payload,
            topic_alias: false,
        }),
        v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect { with_will: false },
        v4::Packet::Connect(_) => Inbound::Unexpected("a second CONNECT"),
        v4::Packet::PubRec(_) | v4::Packet::PubRel(_) | v4::Packet::PubComp(_) => {
            Inbound::Unexpected("QoS 2 packets")
        }
        _ => Inbound::Unexpected("a server-side packet"),
    }))
}

fn read_v5(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, CodecError> {
    // rumqttc 0.25 refuses a DISCONNECT with remaining length 0 (the normal
    // one, reason 0x00, what most clients send): handled here.
    if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
        let _ = buf.split_to(2);
        return Ok(Some(Inbound::Disconnect { with_will: false }));
    }
    let packet = match v5::Packet::read(buf, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
        Ok(packet) => packet,
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
            return Err(CodecError::TooLarge(pkt_size));
        }
        Err(e) => return Err(CodecError::Malformed(e.to_string())),
    };
    Ok(Some(match packet {
        v5::Packet::Publish(p) => Inbound::Publish(Publish {
            topic_alias: p
                .properties
                .as_ref()
                .is_some_and(|p| p.topic_alias.is_some()),
            topic: p.topic,
            qos: p.qos as u8,
            retain: p.retain,
            pkid: p.pkid,
            payload: p.payload,
        }),
        v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
        },
        v5::Packet::Connect(..) => Inbound::Unexpected("a second CONNECT"),
        v5::Packet::PubRec(_) | v5::Packet::PubRel(_) | v5::Packet::PubComp(_) => {
            Inbound::Unexpected("QoS 2 packets")
        }
        v5::Packet::Auth(_) => Inbound::Unexpected("AUTH (no enhanced authentication)"),
        _ => Inbound::Unexpected("a server-side packet"),
    }))
}

/// Writes packets of one version into an output buffer.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) version: Version,
    /// The largest packet the client accepts (5.0 Maximum Packet Size).
    pub(crate) client_max: usize,
}

/// A packet over the client's Maximum Packet Size was not written.
#[derive(Debug)]
pub(crate) struct TooLargeForClient;

impl Writer {
    /// A CONNACK.
    pub(crate) fn connack(
        &self,
        out: &mut BytesMut,
        session_present: bool,
        code: ConnackCode,
        info: ConnackInfo,
    ) {
        match self.version {
            Version::V4 => {
                let code = match code {
                    ConnackCode::Accepted => v4::ConnectReturnCode::Success,
                    ConnackCode::UnsupportedVersion => {
                        v4::ConnectReturnCode::RefusedProtocolVersion
                    }
                    ConnackCode::BadClientId => v4::ConnectReturnCode::BadClientId,
                    ConnackCode::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                    ConnackCode::NotAuthorized
                    | ConnackCode::QosNotSupported
                    | ConnackCode::RetainNotSupported
                    | ConnackCode::TopicNameInvalid => v4::ConnectReturnCode::NotAuthorized,
                    ConnackCode::Unavailable | ConnackCode::Busy | ConnackCode::QuotaExceeded => {
                        v4::ConnectReturnCode::ServiceUnavailable
                    }
                };
                let ack = v4::ConnAck {
                    session_present,
                    code,
                };
                let _ = ack.write(out);
            }
            Version::V5 => {
                use v5::ConnectReturnCode as C;
                let accepted = code == ConnackCode::Accepted;
                let code = match code {
                    ConnackCode::Accepted => C::Success,
                    ConnackCode::UnsupportedVersion => C::UnsupportedProtocolVersion,
                    ConnackCode::BadClientId => C::ClientIdentifierNotValid,
                    ConnackCode::BadCredentials => C::BadUserNamePassword,
                    ConnackCode::NotAuthorized => C::NotAuthorized,
                    ConnackCode::Unavailable => C::ServerUnavailable,
                    ConnackCode::Busy => C::ServerBusy,
                    ConnackCode::QuotaExceeded => C::QuotaExceeded,
                    ConnackCode::QosNotSupported => C::QoSNotSupported,
                    ConnackCode::RetainNotSupported => C::RetainNotSupported,
                    ConnackCode::TopicNameInvalid => C::TopicNameInvalid,
                };
                let properties = accepted.then(|| v5::ConnAckProperties {
                    session_expiry_interval: info.session_expiry,
                    receive_max: Some(info.receive_max),
                    max_qos: Some(1),
                    retain_available: Some(0),
                    max_packet_size: Some(info.max_packet_size),
                    assigned_client_identifier: None,
                    topic_alias_max: None,
                    reason_string: None,
                    user_properties: Vec::new(),
                    wildcard_subscription_available: Some(0),
                    subscription_identifiers_available: Some(0),
                    shared_subscription_available: Some(0),
                    server_keep_alive: info.server_keep_alive,
                    response_information: None,
                    server_reference: None,
                    authentication_method: None,
                    authentication_data: None,
                });
                let ack = v5::ConnAck {
                    session_present,
                    code,
                    properties,
                };
                let _ = v5::Packet::ConnAck(ack).write(out, None);
            }
        }
    }

    /// A downlink PUBLISH (`pkid` 0 for QoS 0).
    pub(crate) fn publish(
        &self,
        out: &mut BytesMut,
        topic: &str,
        qos: u8,
        dup: bool,
        pkid: u16,
        payload: Bytes,
    ) -> Result<(), TooLargeForClient> {
        match self.version {
            Version::V4 => {
                let mut p = v4::Publish::new(topic, qos_v4(qos), payload);
                p.dup = dup;
                p.pkid = pkid;
                v4::Packet::Publish(p)
                    .write(out, self.client_max)
                    .map(|_| ())
                    .map_err(|_| TooLargeForClient)
            }
            Version::V5 => {
                let mut p = v5::Publish::new(topic, qos_v5(qos), payload, None);
                p.dup = dup;
                p.pkid = pkid;
                v5::Packet::Publish(p)
                    .write(
                        out,
                        Some(u32::try_from(self.client_max).unwrap_or(u32::MAX)),
                    )
                    .map(|_| ())
                    .map_err(|_| TooLargeForClient)
            }
        }
    }

    /// A PUBACK; `ok = false` is 5.0's 0x80 (3.1.1 has no failure: the
    /// caller closes instead), `not_authorized` 0x87.
    pub(crate) fn puback(&self, out: &mut BytesMut, pkid: u16, reason: PubAckReason) {
        match self.version {
            Version::V4 => {
                let _ = v4::PubAck::new(pkid).write(out);
            }
            Version::V5 => {
                let mut ack = v5::PubAck::new(pkid, None);
                ack.reason = match reason {
                    PubAckReason::Success => v5::PubAckReason::Success,
                    PubAckReason::Failed => v5::PubAckReason::UnspecifiedError,
                    PubAckReason::NotAuthorized => v5::PubAckReason::NotAuthorized,
                };
                let _ = v5::Packet::PubAck(ack).write(out, None);
            }
        }
    }

    /// A SUBACK.
    pub(crate) fn suback(&self, out: &mut BytesMut, pkid: u16, codes: &[SubCode]) {
        match self.version {
            Version::V4 => {
                let codes = codes
                    .iter()
                    .map(|c| match c {
                        SubCode::Granted(q) => v4::SubscribeReasonCode::Success(qos_v4(*q)),
                        _ => v4::SubscribeReasonCode::Failure,
                    })
                    .collect();
                let _ = v4::SubAck::new(pkid, codes).write(out);
            }
            Version::V5 => {
                use v5::SubscribeReasonCode as R;
                let return_codes = codes
                    .iter()
                    .map(|c| match c {
                        SubCode::Granted(q) => R::Success(qos_v5(*q)),
                        SubCode::Wildcard => R::WildcardSubscriptionsNotSupported,
                        SubCode::Shared => R::SharedSubscriptionsNotSupported,
                        SubCode::NotAuthorized => R::NotAuthorized,
                        SubCode::QuotaExceeded => R::QuotaExceeded,
                        SubCode::TopicFilterInvalid => R::TopicFilterInvalid,
                        SubCode::Failed => R::Unspecified,
                    })
                    .collect();
                let ack = v5::SubAck {
                    pkid,
                    return_codes,
                    properties: None,
                };
                let _ = v5::Packet::SubAck(ack).write(out, None);
            }
        }
    }

    /// An UNSUBACK; `existed[i]` says whether filter i was subscribed.
    pub(crate) fn unsuback(&self, out: &mut BytesMut, pkid: u16, codes: &[UnsubCode]) {
        match self.version {
            Version::V4 => {
                let _ = v4::UnsubAck::new(pkid).write(out);
            }
            Version::V5 => {
                let reasons = codes
                    .iter()
                    .map(|c| match c {
                        UnsubCode::Success => v5::UnsubAckReason::Success,
                        UnsubCode::NoSubscriptionExisted => {
                            v5::UnsubAckReason::NoSubscriptionExisted
                        }
                        UnsubCode::TopicFilterInvalid => v5::UnsubAckReason::TopicFilterInvalid,
                        UnsubCode::Failed => v5::UnsubAckReason::UnspecifiedError,
                    })
                    .collect();
                let ack = v5::UnsubAck {
                    pkid,
                    reasons,
                    properties: None,
                };
                let _ = v5::Packet::UnsubAck(ack).write(out, None);
            }
        }
    }

    /// A PINGRESP.
    pub(crate) fn pingresp(&self, out: &mut BytesMut) {
        match self.version {
            Version::V4 => {
                let _ = v4::Packet::PingResp.write(out, usize::MAX);
            }
            Version::V5 => {
                let _ = v5::Packet::PingResp(v5::PingResp).write(out, None);
            }
        }
    }

    /// A DISCONNECT with `reason` (5.0; 3.1.1 servers just close). Written
    /// here: rumqttc 0.25 writes a DISCONNECT without properties as a
    /// normal disconnection, losing the reason.
    pub(crate) fn disconnect(&self, out: &mut BytesMut, reason: DisconnectReason) {
        if self.version == Version::V4 {
            return;
        }
        let code: u8 = match reason {
            DisconnectReason::UnspecifiedError => 0x80,
            DisconnectReason::ProtocolError => 0x82,
            DisconnectReason::NotAuthorized => 0x87,
            DisconnectReason::ServerShuttingDown => 0x8B,
            DisconnectReason::KeepAliveTimeout => 0x8D,
            DisconnectReason::SessionTakenOver => 0x8E,
            DisconnectReason::TopicAliasInvalid => 0x94,
            DisconnectReason::PacketTooLarge => 0x95,
            DisconnectReason::RetainNotSupported => 0x9A,
            DisconnectReason::QosNotSupported => 0x9B,
        };
        // Type 14, remaining length 2: the reason code and an empty
        // property list.
        out.extend_from_slice(&[0xE0, 0x02, code, 0x00]);
    }
}

/// PUBACK outcomes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum PubAckReason {
    Success,
    Failed,
    NotAuthorized,
}

fn qos_v4(q: u8) -> rumqttc::mqttbytes::QoS {
    if q == 0 {
        rumqttc::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::mqttbytes::QoS::AtLeastOnce
    }
}

fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    if q == 0 {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_bytes(level: u8) -> BytesMut {
        let mut out = BytesMut::new();
        match level {
            4 => {
                let mut c = v4::Connect::new("dev-1");
                c.set_login("demo", "pw");
                v4::Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
            }
            _ => {
                let c = v5::Connect {
                    keep_alive: 30,
                    client_id: "dev-1".into(),
                    clean_start: false,
                    properties: None,
                };
                v5::Packet::Connect(c, None, Some(v5::Login::new("demo", "pw")))
                    .write(&mut out, None)
                    .unwrap();
            }
        }
        out
    }

    #[test]
    fn the_connect_picks_the_version_and_waits_for_whole_packets() {
        for (level, version) in [(4, Version::V4), (5, Version::V5)] {
            let whole = connect_bytes(level);
            let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
            assert!(read_connect(&mut partial, 1024).unwrap().is_none());
            let mut buf = whole.clone();
            let c = read_connect(&mut buf, 1024).unwrap().unwrap();
            assert_eq!(c.version, version);
            assert_eq!(c.client_id, "dev-1");
            assert_eq!(c.username.as_deref(), Some("demo"));
            assert_eq!(c.password.as_deref(), Some("pw"));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_oversized_packet_is_refused_on_its_header() {
        // A PUBLISH declaring 2 MiB, with only its header present.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        assert!(matches!(
            read(Version::V4, &mut buf, 64 * 1024),
            Err(CodecError::TooLarge(_))
        ));
        let mut buf = BytesMut::from(&[0x10, 0x80, 0x80, 0x80, 0x01][..]);
        assert!(matches!(
            read_connect(&mut buf, 64 * 1024),
            Err(CodecError::TooLarge(_))
        ));
    }

    #[test]
    fn mqtt_3_1_and_other_first_packets_are_refused() {
        // MQTT 3.1: "MQIsdp", level 3.
        let mut buf = BytesMut::from(
            &[
                0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60,
            ][..],
        );
        assert!(matches!(
            read_connect(&mut buf, 1024),
            Err(CodecError::UnsupportedLevel(3))
        ));
        let mut buf = BytesMut::from(&[0xC0, 0][..]);
        assert!(matches!(
            read_connect(&mut buf, 1024),
            Err(CodecError::NotConnect)
        ));
    }

    #[test]
    fn a_v5_disconnect_keeps_its_reason() {
        let writer = Writer {
            version: Version::V5,
            client_max: usize::MAX,
        };
        let mut out = BytesMut::new();
        writer.disconnect(&mut out, DisconnectReason::QosNotSupported);
        match v5::Packet::read(&mut out, None).unwrap() {
            v5::Packet::Disconnect(d) => {
                assert_eq!(d.reason_code, v5::DisconnectReasonCode::QoSNotSupported);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bare_v5_disconnect_is_read() {
        let mut buf = BytesMut::from(&[0xE0, 0][..]);
        assert!(matches!(
            read(Version::V5, &mut buf, 1024),
            Ok(Some(Inbound::Disconnect { with_will: false }))
        ));
    }
}
