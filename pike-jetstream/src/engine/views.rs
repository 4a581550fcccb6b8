//! The JSON that cluster-wide views and takeovers travel in between nodes:
//! [`ViewQuery`] and [`ViewAnswer`] on [`QUERY_SUBJECT`](crate::QUERY_SUBJECT),
//! replace orders on `ctl.<node>`. Decoding never trusts the sender: a
//! malformed message is `None` (ignored).

use std::net::SocketAddr;

use bytes::Bytes;
use pike_api::server::engine::{LoginId, ViewAnswer, ViewQuery};
use pike_api::server::{
    ConnectionInfo, DeviceReceipts, DisconnectTarget, LoginView, MessageStatus, StreamKey,
    TraceEvent,
};
use serde_json::{Value, json};

/// Most connections one node puts in an answer: a page or a presence list
/// of this many fits well within a NATS message (about 300 bytes each).
pub const MAX_VIEW_CONNECTIONS: usize = 1000;

/// Most devices of a receipt record one node puts in an answer (about 150
/// bytes each: well within a NATS message); the rest are left out of the
/// cluster-wide status (`docs/receipts.md`, "Cluster mode").
pub const MAX_VIEW_RECEIPT_DEVICES: usize = 4000;

/// The signals a trace may hold; a remote trace's signal outside this list
/// shows as `other` (a signal is a `&'static str` in [`TraceEvent`]).
const SIGNALS: &[&str] = &[
    "hello",
    "auth",
    "alias-bind",
    "tags",
    "downlink",
    "ack",
    "uplink",
    "uplink-ack",
    "heartbeat",
    "go-away",
    "close",
    "login-expired",
    "logout",
    "protocol-error",
    "refresh",
    "transport-error",
    "takeover",
    "room-join",
    "room-leave",
];

fn signal(name: &str) -> &'static str {
    SIGNALS
        .iter()
        .find(|s| **s == name)
        .copied()
        .unwrap_or("other")
}

fn transport(name: &str) -> &'static str {
    match name {
        "tcp" => "tcp",
        "tls" => "tls",
        "quic" => "quic",
        _ => "other",
    }
}

fn stream_json(stream: &StreamKey) -> Value {
    json!({ "app": stream.app, "biz": stream.biz, "alias": stream.alias })
}

fn string(v: &Value, field: &str) -> Option<String> {
    Some(v.get(field)?.as_str()?.to_owned())
}

fn number(v: &Value, field: &str) -> Option<u64> {
    v.get(field)?.as_u64()
}

fn count(v: &Value, field: &str) -> Option<usize> {
    usize::try_from(number(v, field)?).ok()
}

fn stream_of(v: &Value) -> Option<StreamKey> {
    Some(StreamKey::new(
        v.get("app")?.as_str()?,
        v.get("biz")?.as_str()?,
        v.get("alias")?.as_str()?,
    ))
}

/// A view question as JSON.
pub(crate) fn encode_query(query: &ViewQuery) -> Bytes {
    let v = match query {
        ViewQuery::Presence(stream) => json!({ "kind": "presence", "stream": stream_json(stream) }),
        ViewQuery::Connections { app, after, limit } => json!({
            "kind": "connections", "app": app, "after": after,
            "limit": (*limit).min(MAX_VIEW_CONNECTIONS),
        }),
        ViewQuery::Count => json!({ "kind": "count" }),
        ViewQuery::Trace { app, token } => json!({ "kind": "trace", "app": app, "token": token }),
        ViewQuery::Disconnect {
            app,
            target,
            reason,
        } => {
            let target = match target {
                DisconnectTarget::Device(device) => json!({ "device": device }),
                DisconnectTarget::Alias { biz, alias } => json!({ "biz": biz, "alias": alias }),
                DisconnectTarget::Connection(token) => json!({ "connection": token }),
            };
            json!({ "kind": "disconnect", "app": app, "target": target, "reason": reason })
        }
        ViewQuery::MessageStatus { app, message_id } => {
            json!({ "kind": "message_status", "app": app, "message_id": message_id })
        }
    };
    Bytes::from(v.to_string())
}

/// A view question from JSON.
pub(crate) fn decode_query(payload: &[u8]) -> Option<ViewQuery> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some(match v.get("kind")?.as_str()? {
        "presence" => ViewQuery::Presence(stream_of(v.get("stream")?)?),
        "connections" => ViewQuery::Connections {
            app: string(&v, "app")?,
            after: number(&v, "after")?,
            limit: count(&v, "limit")?.min(MAX_VIEW_CONNECTIONS),
        },
        "count" => ViewQuery::Count,
        "trace" => ViewQuery::Trace {
            app: string(&v, "app")?,
            token: string(&v, "token")?,
        },
        "disconnect" => {
            let t = v.get("target")?;
            let target = if let Some(device) = string(t, "device") {
                DisconnectTarget::Device(device)
            } else if let Some(token) = string(t, "connection") {
                DisconnectTarget::Connection(token)
            } else {
                DisconnectTarget::Alias {
                    biz: string(t, "biz")?,
                    alias: string(t, "alias")?,
                }
            };
            ViewQuery::Disconnect {
                app: string(&v, "app")?,
                target,
                reason: string(&v, "reason")?,
            }
        }
        "message_status" => ViewQuery::MessageStatus {
            app: string(&v, "app")?,
            message_id: number(&v, "message_id")?,
        },
        _ => return None,
    })
}

fn connection_json(c: &ConnectionInfo) -> Value {
    let logins: Vec<Value> = c
        .logins
        .iter()
        .map(|l| {
            json!({
                "biz": l.biz, "alias": l.alias, "route_id": l.route_id,
                "since_ms": l.since_ms, "device_verified": l.device_verified,
            })
        })
        .collect();
    json!({
        "token": c.token, "app": c.app, "device_id": c.device_id, "transport": c.transport,
        "peer": c.peer.to_string(), "connected_at_ms": c.connected_at_ms, "logins": logins,
    })
}

fn connection_of(v: &Value) -> Option<ConnectionInfo> {
    let logins = v
        .get("logins")?
        .as_array()?
        .iter()
        .map(|l| {
            Some(LoginView {
                biz: string(l, "biz")?,
                alias: string(l, "alias")?,
                route_id: string(l, "route_id")?,
                since_ms: number(l, "since_ms")?,
                device_verified: l.get("device_verified")?.as_bool()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ConnectionInfo {
        token: string(v, "token")?,
        app: string(v, "app")?,
        device_id: string(v, "device_id")?,
        transport: transport(v.get("transport")?.as_str()?),
        peer: v.get("peer")?.as_str()?.parse::<SocketAddr>().ok()?,
        connected_at_ms: number(v, "connected_at_ms")?,
        logins,
    })
}

fn status_json(s: &MessageStatus) -> Value {
    let devices: Vec<Value> = s
        .devices
        .iter()
        .take(MAX_VIEW_RECEIPT_DEVICES)
        .map(|d| {
            json!({
                "alias": d.alias, "device": d.device, "delivered_at": d.delivered_at,
                "acked_at": d.acked_at, "expired_at": d.expired_at, "dropped_at": d.dropped_at,
            })
        })
        .collect();
    json!({
        "message_id": s.message_id, "biz": s.biz, "reliable": s.reliable,
        "created_at_ms": s.created_at_ms, "expires_at_ms": s.expires_at_ms,
        "expired": s.expired, "devices": devices,
    })
}

/// An optional time: absent or `null` is none; anything else must be a
/// number.
fn time(v: &Value, field: &str) -> Option<Option<u64>> {
    match v.get(field) {
        None | Some(Value::Null) => Some(None),
        Some(t) => Some(Some(t.as_u64()?)),
    }
}

fn status_of(v: &Value) -> Option<MessageStatus> {
    Some(MessageStatus {
        message_id: number(v, "message_id")?,
        biz: string(v, "biz")?,
        reliable: v.get("reliable")?.as_bool()?,
        created_at_ms: number(v, "created_at_ms")?,
        expires_at_ms: number(v, "expires_at_ms")?,
        expired: v.get("expired")?.as_bool()?,
        devices: v
            .get("devices")?
            .as_array()?
            .iter()
            .take(MAX_VIEW_RECEIPT_DEVICES)
            .map(|d| {
                Some(DeviceReceipts {
                    alias: string(d, "alias")?,
                    device: string(d, "device")?,
                    delivered_at: time(d, "delivered_at")?,
                    acked_at: time(d, "acked_at")?,
                    expired_at: time(d, "expired_at")?,
                    dropped_at: time(d, "dropped_at")?,
                })
            })
            .collect::<Option<_>>()?,
    })
}

/// A node's answer as JSON (lists cut at [`MAX_VIEW_CONNECTIONS`]).
pub(crate) fn encode_answer(answer: &ViewAnswer) -> Bytes {
    let v = match answer {
        ViewAnswer::Presence(list) => json!({
            "kind": "presence",
            "connections": list.iter().take(MAX_VIEW_CONNECTIONS).map(connection_json).collect::<Vec<_>>(),
        }),
        ViewAnswer::Connections {
            total,
            connections,
            more,
        } => {
            let cut = connections.len() > MAX_VIEW_CONNECTIONS;
            let list: Vec<Value> = connections
                .iter()
                .take(MAX_VIEW_CONNECTIONS)
                .map(|(id, c)| json!({ "id": id, "connection": connection_json(c) }))
                .collect();
            json!({ "kind": "connections", "total": total, "connections": list, "more": *more || cut })
        }
        ViewAnswer::Count(n) => json!({ "kind": "count", "count": n }),
        ViewAnswer::Trace(events) => {
            let events = events.as_ref().map(|events| {
                events
                    .iter()
                    .map(|e| json!({ "at_ms": e.at_ms, "signal": e.signal, "detail": e.detail }))
                    .collect::<Vec<_>>()
            });
            json!({ "kind": "trace", "events": events })
        }
        ViewAnswer::Disconnected(n) => json!({ "kind": "disconnected", "count": n }),
        ViewAnswer::MessageStatus(record) => {
            json!({ "kind": "message_status", "record": record.as_ref().map(status_json) })
        }
    };
    Bytes::from(v.to_string())
}

/// A node's answer from JSON.
pub(crate) fn decode_answer(payload: &[u8]) -> Option<ViewAnswer> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some(match v.get("kind")?.as_str()? {
        "presence" => ViewAnswer::Presence(
            v.get("connections")?
                .as_array()?
                .iter()
                .take(MAX_VIEW_CONNECTIONS)
                .map(connection_of)
                .collect::<Option<_>>()?,
        ),
        "connections" => ViewAnswer::Connections {
            total: count(&v, "total")?,
            connections: v
                .get("connections")?
                .as_array()?
                .iter()
                .take(MAX_VIEW_CONNECTIONS)
                .map(|c| Some((number(c, "id")?, connection_of(c.get("connection")?)?)))
                .collect::<Option<_>>()?,
            more: v.get("more")?.as_bool()?,
        },
        "count" => ViewAnswer::Count(count(&v, "count")?),
        "trace" => ViewAnswer::Trace(match v.get("events")? {
            Value::Null => None,
            events => Some(
                events
                    .as_array()?
                    .iter()
                    .map(|e| {
                        Some(TraceEvent {
                            at_ms: number(e, "at_ms")?,
                            signal: signal(e.get("signal")?.as_str()?),
                            detail: string(e, "detail")?,
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
        }),
        "disconnected" => ViewAnswer::Disconnected(count(&v, "count")?),
        "message_status" => ViewAnswer::MessageStatus(match v.get("record")? {
            Value::Null => None,
            record => Some(status_of(record)?),
        }),
        _ => return None,
    })
}

/// A replace order for `ctl.<node>`: close connection `token` if it is
/// still logged in as `login`.
pub(crate) fn encode_replace(login: &LoginId, token: &str) -> Bytes {
    Bytes::from(
        json!({
            "replace": { "stream": stream_json(&login.stream), "device": login.device, "token": token }
        })
        .to_string(),
    )
}

/// A replace order from `ctl.<node>`.
pub(crate) fn decode_replace(payload: &[u8]) -> Option<(LoginId, String)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let r = v.get("replace")?;
    Some((
        LoginId {
            stream: stream_of(r.get("stream")?)?,
            device: string(r, "device")?,
        },
        string(r, "token")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnectionInfo {
        ConnectionInfo {
            token: "t1".into(),
            app: "demo".into(),
            device_id: "phone".into(),
            transport: "quic",
            peer: "127.0.0.1:4000".parse().unwrap(),
            connected_at_ms: 17,
            logins: vec![LoginView {
                biz: "chat".into(),
                alias: "u1".into(),
                route_id: "r".into(),
                since_ms: 18,
                device_verified: true,
            }],
        }
    }

    #[test]
    fn questions_and_answers_round_trip() {
        let queries = [
            ViewQuery::Presence(StreamKey::new("demo", "chat", "u1")),
            ViewQuery::Connections {
                app: "demo".into(),
                after: 7,
                limit: 10,
            },
            ViewQuery::Count,
            ViewQuery::Trace {
                app: "demo".into(),
                token: "t1".into(),
            },
            ViewQuery::Disconnect {
                app: "demo".into(),
                target: DisconnectTarget::Alias {
                    biz: "chat".into(),
                    alias: "u1".into(),
                },
                reason: "bye".into(),
            },
            ViewQuery::MessageStatus {
                app: "demo".into(),
                message_id: 1 << 61,
            },
        ];
        for query in queries {
            assert_eq!(decode_query(&encode_query(&query)), Some(query));
        }
        let answers = [
            ViewAnswer::Presence(vec![conn()]),
            ViewAnswer::Connections {
                total: 3,
                connections: vec![(4, conn())],
                more: true,
            },
            ViewAnswer::Count(9),
            ViewAnswer::Trace(Some(vec![TraceEvent {
                at_ms: 1,
                signal: "takeover",
                detail: "x".into(),
            }])),
            ViewAnswer::Trace(None),
            ViewAnswer::Disconnected(2),
            ViewAnswer::MessageStatus(None),
            ViewAnswer::MessageStatus(Some(MessageStatus {
                message_id: 42,
                biz: "chat".into(),
                reliable: true,
                created_at_ms: 5,
                expires_at_ms: 9,
                expired: false,
                devices: vec![DeviceReceipts {
                    alias: "u1".into(),
                    device: "phone".into(),
                    delivered_at: Some(6),
                    acked_at: Some(7),
                    expired_at: None,
                    dropped_at: None,
                }],
            })),
        ];
        for answer in answers {
            assert_eq!(decode_answer(&encode_answer(&answer)), Some(answer));
        }
        let login = LoginId {
            stream: StreamKey::new("demo", "chat", "u1"),
            device: "phone".into(),
        };
        assert_eq!(
            decode_replace(&encode_replace(&login, "t9")),
            Some((login, "t9".to_owned()))
        );
    }

    #[test]
    fn garbage_and_unknown_signals_are_harmless() {
        assert_eq!(decode_query(b"{\"kind\":\"rm -rf\"}"), None);
        assert_eq!(decode_answer(b"not json"), None);
        assert_eq!(decode_replace(b"{}"), None);
        let bad_time = br#"{"kind":"message_status","record":{"message_id":1,"biz":"b","reliable":true,"created_at_ms":1,"expires_at_ms":2,"expired":false,"devices":[{"alias":"a","device":"d","acked_at":"soon"}]}}"#;
        assert_eq!(decode_answer(bad_time), None);
        let odd = br#"{"kind":"trace","events":[{"at_ms":1,"signal":"new-thing","detail":""}]}"#;
        let Some(ViewAnswer::Trace(Some(events))) = decode_answer(odd) else {
            panic!("a trace with an unknown signal still decodes");
        };
        assert_eq!(events[0].signal, "other");
    }
}
