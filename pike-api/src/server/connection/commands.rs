//! Commands sent to a connection from outside its task: transient pushes,
//! go-away, close and replaced logins.

use pike_channel::Push;
use proto::tunnel::ErrorCode;

use super::{Conn, now};
use crate::server::clock::unix_ms;
use crate::server::receipts::TransientReceipt;
use crate::server::registry::ConnCommand;
use crate::server::trace;

impl Conn {
    pub(super) fn command(&mut self, command: ConnCommand) {
        match command {
            ConnCommand::Transient {
                biz,
                alias,
                message_id,
                priority,
                payload,
                receipt,
            } => {
                // One clock reading per command; the logins are walked in
                // place (the fields are disjoint: no list of targets).
                let (at, at_ms) = (now(), unix_ms());
                let hook = self.hub.receipts.as_deref().filter(|_| receipt);
                let device = hook.map(|_| self.device_id().to_owned());
                let matching = self.streams.iter().filter(|(_, s)| {
                    // No alias: a push to the device, for logins that
                    // proved the device id only.
                    s.key.biz == biz
                        && alias
                            .as_ref()
                            .map_or(s.device_verified, |a| *a == s.key.alias)
                });
                for (&stream, state) in matching {
                    let push = Push::new(payload.clone())
                        .message_id(message_id)
                        .priority(priority);
                    let delivered = self.channel.push_transient(stream, push, at).is_ok();
                    if delivered {
                        self.hub.hot.transient_sent.increment(1);
                        trace::lock(&self.trace).transient(at_ms, stream.value(), message_id);
                    }
                    if let (Some(hook), Some(device)) = (hook, &device) {
                        hook.transient(TransientReceipt {
                            message_id,
                            stream: state.key.clone(),
                            device: device.clone(),
                            delivered,
                        });
                    }
                }
            }
            ConnCommand::GoAway { advice } => {
                self.record(
                    "go-away",
                    format!(
                        "reconnect in {}..{} ms",
                        advice.min_delay_ms, advice.max_delay_ms
                    ),
                );
                self.channel.go_away(
                    ErrorCode::GoingAway,
                    "the gateway is shutting down",
                    Some(advice),
                    now(),
                );
            }
            ConnCommand::Close { code, message } => {
                self.channel.close(code, message, now());
            }
            ConnCommand::Replace {
                biz,
                alias,
                message,
            } => {
                let replaced = self
                    .streams
                    .iter()
                    .find(|(_, s)| s.key.biz == biz && s.key.alias == alias)
                    .map(|(&stream, _)| stream);
                let Some(stream) = replaced else {
                    // Logged out since: nothing to replace.
                    return;
                };
                if self.streams.iter().nth(1).is_some() {
                    // The connection's other businesses go on: only this
                    // login ends (the machine reports `LoginEnded`).
                    self.record(
                        "replaced",
                        format!("stream={} biz={biz} alias={alias}", stream.value()),
                    );
                    self.channel
                        .end_login(stream, ErrorCode::Replaced, message, now());
                } else {
                    self.channel.close(ErrorCode::Replaced, message, now());
                }
            }
        }
    }
}
