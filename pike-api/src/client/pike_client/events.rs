//! How a client follows its channels' events: lifecycle, login results,
//! deliveries, send outcomes, tag results and room events, from the current
//! binding and from bindings being retired.

use pike_channel::{DisconnectReason, Event};
use proto::tunnel::ErrorCode;

use super::Actor;
use crate::client::error::{Error, ErrorKind};
use crate::client::event::{ClientEvent, ClientState, StopReason};

impl Actor {
    pub(super) async fn on_event(&mut self, generation: u64, event: Event) {
        let is_current = self.current == Some(generation);
        match event {
            Event::Connecting { attempt } if is_current => {
                self.emit(ClientEvent::Connecting { attempt }).await;
            }
            Event::Reconnecting { attempt, delay } if is_current => {
                self.emit(ClientEvent::Reconnecting { attempt, delay })
                    .await;
            }
            Event::Connected { connection_token } if is_current => {
                self.emit(ClientEvent::Connected { connection_token }).await;
            }
            Event::Disconnected { reason } if is_current => {
                self.emit(ClientEvent::Disconnected { reason }).await;
            }
            Event::Stopped if is_current => {
                self.emit(ClientEvent::Disconnected {
                    reason: DisconnectReason::Stopped,
                })
                .await;
            }
            Event::LoginOk {
                route_id,
                epoch,
                positions_reset,
                ..
            } => {
                if let Some(binding) = self.bindings.get_mut(&generation) {
                    binding.active = true;
                }
                if !is_current {
                    return;
                }
                if positions_reset {
                    // The gateway's log was recreated: its sequence numbers
                    // start afresh.
                    tracing::debug!(from = self.epoch, to = epoch, "log epoch changed");
                    self.delivered = 0;
                }
                if epoch != 0 {
                    self.epoch = epoch;
                }
                self.route_id.clone_from(&route_id);
                self.save_session();
                // The new login receives everything from here on: the
                // previous channels can go.
                self.retire_all_but(Some(generation));
                if self.lifecycle == ClientState::Starting {
                    self.set_state(ClientState::Running);
                    self.emit(ClientEvent::Running { route_id }).await;
                }
            }
            Event::LoginFailed { code, message, .. } if is_current => {
                tracing::debug!(?code, %message, "login refused");
                self.current = None;
                self.retire_all_but(None);
                self.fail_all(Error::new(ErrorKind::AuthFailed, message.clone()).with_code(code))
                    .await;
                self.stopped(StopReason::AuthFailed { code, message }).await;
            }
            Event::Received(delivery) => self.on_delivery(generation, delivery.into()).await,
            Event::TagsResult {
                request_id,
                code,
                message,
                tags,
                ..
            } => {
                if let Some(reply) = self.tag_requests.remove(&(generation, request_id)) {
                    let result = if code == ErrorCode::Unspecified {
                        Ok(tags)
                    } else {
                        Err(Error::new(ErrorKind::Rejected, message).with_code(code))
                    };
                    let _ = reply.send(result);
                }
            }
            Event::SendSuccess { id: send, .. } => {
                // The ack may carry a new route id (the gateway moved the
                // login to another backend): keep the one the channel now
                // holds, for the session and the next login.
                if is_current {
                    self.follow_route(generation);
                }
                if let Some(id) = self.find_send(generation, send, false) {
                    self.finish_send(id, Ok(())).await;
                }
            }
            Event::SendFailure {
                id: send, reason, ..
            } => {
                // Only the latest placement's failure counts: a copy on a
                // retired channel failing is expected.
                if let Some(id) = self.find_send(generation, send, true) {
                    self.finish_send(id, Err(Error::from_send_failure(reason)))
                        .await;
                }
            }
            event @ (Event::RoomJoined { .. }
            | Event::RoomJoinFailed { .. }
            | Event::RoomMessages { .. }) => self.on_room_event(event).await,
            event @ (Event::CredentialExpiring { .. }
            | Event::CredentialRefreshed { .. }
            | Event::CredentialRefreshFailed { .. })
                if is_current =>
            {
                self.on_credential_event(event).await;
            }
            other => tracing::trace!(generation, event = ?other, "not reported"),
        }
    }
}
