//! A connection's uplink: each login's messages queue in order and go to
//! the backend one at a time ([`uplink_calls`](crate::server::uplink_calls)
//! makes each idempotency key reach it once, across connections).
//!
//! The queue is bounded by the channel machine, which reports a message only
//! within the login's uplink window and the connection's pending uplink
//! bytes (`pike_channel::ServerConfig::uplink_window` and
//! `uplink_pending_bytes`), and forgets it once acked here.

use std::collections::VecDeque;

use bytes::Bytes;
use pike_channel::{StreamId, UplinkResult};
use tokio::time::Instant;

use super::{Conn, Work, now};
use crate::server::uplink::{UplinkError, UplinkRequest};
use crate::server::{trace, uplink_calls};

/// An uplink message waiting for its turn.
pub(super) struct PendingUplink {
    seq: u64,
    key: String,
    payload: Bytes,
    /// The client's word that the key was never sent before (no dedup
    /// lookup needed).
    first_attempt: bool,
    received_at: Instant,
}

/// A login's uplink messages waiting for their turn, delivered one at a
/// time; allocated at the login's first uplink, given back when the
/// connection idles with it empty (see `Conn::release_idle_logins`).
#[derive(Default)]
pub(super) struct UplinkQueue {
    queue: VecDeque<PendingUplink>,
    /// The front message is with the backend.
    busy: bool,
}

impl UplinkQueue {
    /// Nothing queued, nothing with the backend.
    pub(super) fn is_idle(&self) -> bool {
        !self.busy && self.queue.is_empty()
    }
}

impl Conn {
    /// A new uplink message from the machine: queued behind the login's
    /// others.
    pub(super) fn uplink(
        &mut self,
        stream: StreamId,
        seq: u64,
        key: String,
        payload: Bytes,
        first_attempt: bool,
    ) {
        metrics::counter!(crate::server::metric_families::UPLINK_RECEIVED_TOTAL).increment(1);
        self.record(
            "uplink",
            format!("stream={} seq={seq} key={key}", stream.value()),
        );
        if let Some(state) = self.streams.get_mut(&stream) {
            let uplink = state.uplink.get_or_insert_with(Box::default);
            uplink.queue.push_back(PendingUplink {
                seq,
                key,
                payload,
                first_attempt,
                received_at: Instant::now(),
            });
            metrics::histogram!(crate::server::metric_families::UPLINK_QUEUE_DEPTH)
                .record(uplink.queue.len() as f64);
            self.next_uplink(stream);
        }
    }

    /// Starts delivering the login's next queued message, unless one is
    /// with the backend already.
    pub(super) fn next_uplink(&mut self, stream: StreamId) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(uplink) = state.uplink.as_mut() else {
            return;
        };
        if uplink.busy {
            return;
        }
        let Some(item) = uplink.queue.front() else {
            return;
        };
        uplink.busy = true;
        let request = UplinkRequest {
            app: state.key.app.clone(),
            biz: state.key.biz.clone(),
            alias: state.key.alias.clone(),
            device_id: self.channel.client_hello().device_id.clone(),
            connection_token: self.token.to_string(),
            route_id: state.route_id.to_string(),
            seq: item.seq,
            idempotency_key: item.key.clone(),
            payload: item.payload.clone(),
        };
        let seq = item.seq;
        let call = uplink_calls::deliver(&self.hub, state.key.clone(), request, item.first_attempt);
        self.start(Box::pin(async move {
            let result = call.await;
            Work::Uplink {
                stream,
                seq,
                result,
            }
        }));
    }

    /// The backend's outcome for the login's message `seq`: acks it to the
    /// client and starts the next one.
    pub(super) fn uplink_done(
        &mut self,
        stream: StreamId,
        seq: u64,
        result: Result<String, UplinkError>,
    ) {
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let item = state.uplink.as_mut().and_then(|uplink| {
            uplink.busy = false;
            uplink.queue.pop_front()
        });
        if let Some(item) = &item {
            metrics::histogram!(crate::server::metric_families::UPLINK_ACK_SECONDS)
                .record(item.received_at.elapsed().as_secs_f64());
        }
        let detail = trace::uplink_ack_detail(
            stream.value(),
            seq,
            result.as_deref().map_err(|e| (e.code, e.message.as_str())),
        );
        let reply = match result {
            Ok(route_id) => {
                metrics::counter!(crate::server::metric_families::UPLINK_ACKED_TOTAL, "result" => "ok").increment(1);
                if *route_id != *state.route_id {
                    state.route_id = route_id.as_str().into();
                    self.hub.registry.set_route(self.id, stream, &route_id);
                }
                UplinkResult::accepted().with_route_id(route_id)
            }
            Err(e) => {
                metrics::counter!(crate::server::metric_families::UPLINK_ACKED_TOTAL, "result" => "failed").increment(1);
                UplinkResult::rejected(e.code, e.message)
            }
        };
        self.record("uplink-ack", detail);
        let _ = self.channel.ack_uplink(stream, seq, reply, now());
        self.next_uplink(stream);
    }
}
