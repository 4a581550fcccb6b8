//! SUBSCRIBE and UNSUBSCRIBE of one connection. The downlink topic is
//! answered at once; a tag topic (`pike/<biz>/tag/<tag>`) becomes a Pike
//! `TAGS` request binding or unbinding the tag on the login's alias,
//! exactly as a Pike client binds tags, and its SUBACK or UNSUBACK entry
//! waits for the gateway's `TAGS_RESULT`.
//!
//! One `TAGS` request is in flight at a time (the gateway runs a
//! connection's tag requests concurrently, so a bind and a later unbind of
//! one tag could otherwise reach its store in the other order), and acks
//! are written in the order of their requests. At most
//! [`MAX_PENDING_ACKS`] acks wait; the translator stops reading the device
//! while they do.

use std::collections::{BTreeSet, VecDeque};
use std::sync::PoisonError;

use bytes::BytesMut;
use pike_channel::Message;
use proto::channel::{Tags, TagsResult};
use proto::tunnel::ErrorCode;
use tntunnel::Frame;

use super::codec::{SubCode, UnsubCode, Writer};
use super::session::SharedState;
use super::topics::{FilterKind, MAX_SUBSCRIPTIONS, MAX_TAG_SUBSCRIPTIONS, Topics};

/// SUBACKs and UNSUBACKs waiting (for a `TAGS_RESULT`, or behind one that
/// does); the device is not read from while this many wait.
pub const MAX_PENDING_ACKS: usize = 8;

/// The entries of one ack.
#[derive(Debug)]
enum Codes {
    Sub(Vec<SubCode>),
    Unsub(Vec<UnsubCode>),
}

/// A tag the request of a [`Pending`] names.
#[derive(Debug)]
struct TagEntry {
    /// Index of its entry in the ack.
    index: usize,
    tag: String,
    /// SUBSCRIBE: the granted QoS. UNSUBSCRIBE: unused.
    qos: u8,
    /// SUBSCRIBE: whether the session records the subscription once bound
    /// (false after a later UNSUBSCRIBE of the tag). UNSUBSCRIBE: whether
    /// the session held the subscription (UNSUBACK Success, else 0x11).
    flag: bool,
}

/// Where an ack's `TAGS` request is.
#[derive(Debug)]
enum Request {
    /// No tag: the ack is decided.
    None,
    /// Not sent yet (another request is in flight).
    Unsent(Tags),
    /// Sent, waiting for its result.
    Sent(u32),
}

#[derive(Debug)]
struct Pending {
    pkid: u16,
    codes: Codes,
    request: Request,
    tags: Vec<TagEntry>,
}

/// The connection's SUBSCRIBE and UNSUBSCRIBE answers in progress.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    pending: VecDeque<Pending>,
    next_request: u32,
}

impl Subscriptions {
    /// Whether [`MAX_PENDING_ACKS`] acks wait (stop reading the device).
    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= MAX_PENDING_ACKS
    }

    /// Tags bound by requests not answered yet and not in the session: the
    /// session's tag count once they succeed, beyond `held`.
    fn reserved(&self, held: &std::collections::BTreeMap<String, u8>) -> BTreeSet<&str> {
        self.pending
            .iter()
            .filter(|p| matches!(p.codes, Codes::Sub(_)) && !matches!(p.request, Request::None))
            .flat_map(|p| p.tags.iter())
            .filter(|t| t.flag && !held.contains_key(&t.tag))
            .map(|t| t.tag.as_str())
            .collect()
    }

    /// Answers a SUBSCRIBE: the downlink topic at once, tag topics after
    /// the gateway bound them (a `TAGS` frame goes to `frames`).
    pub(crate) fn subscribe(
        &mut self,
        pkid: u16,
        filters: &[(String, u8)],
        topics: &Topics,
        session: &SharedState,
        frames: &mut Vec<Frame>,
    ) {
        let mut state = session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reserved: BTreeSet<String> = self
            .reserved(&state.tags)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut tags: Vec<TagEntry> = Vec::new();
        let mut codes = Vec::with_capacity(filters.len().min(MAX_SUBSCRIPTIONS + 1));
        for (i, (filter, qos)) in filters.iter().enumerate() {
            if i >= MAX_SUBSCRIPTIONS {
                codes.push(SubCode::QuotaExceeded);
                continue;
            }
            let granted = (*qos).min(1);
            let code = match topics.classify(filter) {
                FilterKind::Down => {
                    state.sub_qos = Some(granted);
                    SubCode::Granted(granted)
                }
                FilterKind::Tag(tag) => {
                    let held = state.tags.contains_key(tag) || reserved.contains(tag);
                    if !held && state.tags.len() + reserved.len() >= MAX_TAG_SUBSCRIPTIONS {
                        SubCode::QuotaExceeded
                    } else {
                        reserved.insert(tag.to_owned());
                        tags.push(TagEntry {
                            index: i,
                            tag: tag.to_owned(),
                            qos: granted,
                            flag: true,
                        });
                        // Decided by the TAGS_RESULT.
                        SubCode::Failed
                    }
                }
                FilterKind::BadTag => SubCode::TopicFilterInvalid,
                FilterKind::Wildcard => SubCode::Wildcard,
                FilterKind::Shared => SubCode::Shared,
                FilterKind::Other => SubCode::NotAuthorized,
            };
            codes.push(code);
        }
        drop(state);
        let request = self.request(&tags, true);
        self.pending.push_back(Pending {
            pkid,
            codes: Codes::Sub(codes),
            request,
            tags,
        });
        self.send_next(frames);
    }

    /// Answers an UNSUBSCRIBE: the downlink topic at once, tag topics after
    /// the gateway unbound them. A tag topic unbinds the tag also when the
    /// session did not subscribe it (its UNSUBACK then says 0x11): the
    /// binding is the alias's and outlives sessions.
    pub(crate) fn unsubscribe(
        &mut self,
        pkid: u16,
        filters: &[String],
        topics: &Topics,
        session: &SharedState,
        frames: &mut Vec<Frame>,
    ) {
        let mut state = session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tags: Vec<TagEntry> = Vec::new();
        let mut codes = Vec::with_capacity(filters.len().min(MAX_SUBSCRIPTIONS + 1));
        for (i, filter) in filters.iter().enumerate() {
            let code = match topics.classify(filter) {
                FilterKind::Down => {
                    if state.sub_qos.take().is_some() {
                        UnsubCode::Success
                    } else {
                        UnsubCode::NoSubscriptionExisted
                    }
                }
                // Each UNSUBSCRIBE's tags fit one TAGS request.
                FilterKind::Tag(_) if tags.len() >= MAX_SUBSCRIPTIONS => UnsubCode::Failed,
                FilterKind::Tag(tag) => {
                    let mut held = state.tags.remove(tag).is_some();
                    // A bind still on its way is not recorded when it ends.
                    for entry in self
                        .pending
                        .iter_mut()
                        .filter(|p| matches!(p.codes, Codes::Sub(_)))
                        .flat_map(|p| p.tags.iter_mut())
                        .filter(|t| t.tag == tag)
                    {
                        held |= entry.flag;
                        entry.flag = false;
                    }
                    tags.push(TagEntry {
                        index: i,
                        tag: tag.to_owned(),
                        qos: 0,
                        flag: held,
                    });
                    // Decided by the TAGS_RESULT.
                    UnsubCode::Failed
                }
                FilterKind::BadTag => UnsubCode::TopicFilterInvalid,
                FilterKind::Wildcard | FilterKind::Shared | FilterKind::Other => {
                    UnsubCode::NoSubscriptionExisted
                }
            };
            codes.push(code);
        }
        drop(state);
        let request = self.request(&tags, false);
        self.pending.push_back(Pending {
            pkid,
            codes: Codes::Unsub(codes),
            request,
            tags,
        });
        self.send_next(frames);
    }

    /// The `TAGS` request binding (or unbinding) `tags`, if any.
    fn request(&mut self, tags: &[TagEntry], bind: bool) -> Request {
        if tags.is_empty() {
            return Request::None;
        }
        self.next_request = self.next_request.wrapping_add(1);
        let mut names: Vec<String> = tags.iter().map(|t| t.tag.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let (bind, unbind) = if bind {
            (names, Vec::new())
        } else {
            (Vec::new(), names)
        };
        Request::Unsent(Tags {
            stream: 0,
            request_id: self.next_request,
            bind,
            unbind,
        })
    }

    /// Sends the oldest unsent request when none is in flight.
    fn send_next(&mut self, frames: &mut Vec<Frame>) {
        if self
            .pending
            .iter()
            .any(|p| matches!(p.request, Request::Sent(_)))
        {
            return;
        }
        let Some(pending) = self
            .pending
            .iter_mut()
            .find(|p| matches!(p.request, Request::Unsent(_)))
        else {
            return;
        };
        let Request::Unsent(tags) = std::mem::replace(&mut pending.request, Request::None) else {
            return;
        };
        pending.request = Request::Sent(tags.request_id);
        frames.push(Message::Tags(tags).to_frame());
    }

    /// Applies the gateway's answer to the request in flight: `Ok` for
    /// `TAGS_RESULT` success, else the error code (a `TAGS_RESULT` error or
    /// an `ERROR` frame for the `TAGS` frame).
    fn decide(
        &mut self,
        request_id: Option<u32>,
        outcome: Result<(), ErrorCode>,
        session: &SharedState,
        frames: &mut Vec<Frame>,
    ) {
        let Some(pending) = self.pending.iter_mut().find(|p| match p.request {
            Request::Sent(id) => request_id.is_none_or(|r| r == id),
            _ => false,
        }) else {
            return;
        };
        pending.request = Request::None;
        let mut state = session.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in &pending.tags {
            match &mut pending.codes {
                Codes::Sub(codes) => {
                    let code = match outcome {
                        Ok(()) => {
                            let fits = state.tags.len() < MAX_TAG_SUBSCRIPTIONS
                                || state.tags.contains_key(&entry.tag);
                            if entry.flag && fits {
                                state.tags.insert(entry.tag.clone(), entry.qos);
                            }
                            SubCode::Granted(entry.qos)
                        }
                        Err(ErrorCode::InvalidArgument) => SubCode::TopicFilterInvalid,
                        Err(_) => SubCode::Failed,
                    };
                    if let Some(slot) = codes.get_mut(entry.index) {
                        *slot = code;
                    }
                }
                Codes::Unsub(codes) => {
                    let code = match outcome {
                        Ok(()) if entry.flag => UnsubCode::Success,
                        Ok(()) => UnsubCode::NoSubscriptionExisted,
                        Err(ErrorCode::InvalidArgument) => UnsubCode::TopicFilterInvalid,
                        Err(_) => UnsubCode::Failed,
                    };
                    if let Some(slot) = codes.get_mut(entry.index) {
                        *slot = code;
                    }
                }
            }
        }
        drop(state);
        self.send_next(frames);
    }

    /// A `TAGS_RESULT` of the login.
    pub(crate) fn on_tags_result(
        &mut self,
        result: &TagsResult,
        session: &SharedState,
        frames: &mut Vec<Frame>,
    ) {
        let outcome = match ErrorCode::try_from(result.code) {
            Ok(ErrorCode::Unspecified) => Ok(()),
            Ok(code) => Err(code),
            Err(_) => Err(ErrorCode::Internal),
        };
        if let Err(code) = outcome {
            tracing::debug!(?code, message = %result.message, "mqtt: tag change refused");
        }
        self.decide(Some(result.request_id), outcome, session, frames);
    }

    /// An `ERROR` frame answering the `TAGS` request in flight (e.g. the
    /// login ended): its tags fail.
    pub(crate) fn on_tags_error(
        &mut self,
        code: ErrorCode,
        session: &SharedState,
        frames: &mut Vec<Frame>,
    ) {
        self.decide(None, Err(code), session, frames);
    }

    /// Writes the decided acks at the front, in request order.
    pub(crate) fn flush(&mut self, writer: &Writer, out: &mut BytesMut) {
        while self
            .pending
            .front()
            .is_some_and(|p| matches!(p.request, Request::None))
        {
            let Some(pending) = self.pending.pop_front() else {
                break;
            };
            match &pending.codes {
                Codes::Sub(codes) => writer.suback(out, pending.pkid, codes),
                Codes::Unsub(codes) => writer.unsuback(out, pending.pkid, codes),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::v5::mqttbytes::v5;

    use super::*;
    use crate::mqtt::codec::Version;
    use crate::mqtt::session::SessionState;

    fn tags_of(frames: &mut Vec<Frame>) -> Vec<Tags> {
        frames
            .drain(..)
            .map(|f| match Message::decode(&f) {
                Ok(Message::Tags(t)) => t,
                other => panic!("expected TAGS, got {other:?}"),
            })
            .collect()
    }

    fn acks(subs: &mut Subscriptions) -> Vec<v5::Packet> {
        let writer = Writer {
            version: Version::V5,
            client_max: usize::MAX,
        };
        let mut out = BytesMut::new();
        subs.flush(&writer, &mut out);
        let mut packets = Vec::new();
        while !out.is_empty() {
            packets.push(v5::Packet::read(&mut out, None).unwrap());
        }
        packets
    }

    fn ok(request_id: u32) -> TagsResult {
        TagsResult {
            stream: 0,
            request_id,
            ..Default::default()
        }
    }

    /// One TAGS request in flight, acks in packet order, the session
    /// updated on the results.
    #[test]
    fn tag_requests_go_one_at_a_time_and_acks_keep_their_order() {
        let topics = Topics::new("iot");
        let session = SharedState::default();
        let mut subs = Subscriptions::default();
        let mut frames = Vec::new();
        let filters = |f: &[&str]| f.iter().map(|f| ((*f).to_owned(), 1)).collect::<Vec<_>>();

        subs.subscribe(
            1,
            &filters(&["pike/iot/down", "pike/iot/tag/a", "pike/iot/tag/a"]),
            &topics,
            &session,
            &mut frames,
        );
        let first = tags_of(&mut frames);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].bind, vec!["a".to_owned()], "named once");
        subs.subscribe(
            2,
            &filters(&["pike/iot/tag/b"]),
            &topics,
            &session,
            &mut frames,
        );
        subs.unsubscribe(3, &["pike/iot/down".into()], &topics, &session, &mut frames);
        assert!(frames.is_empty(), "one request in flight");
        assert!(acks(&mut subs).is_empty(), "SUBACK 1 waits for its result");

        subs.on_tags_result(&ok(first[0].request_id), &session, &mut frames);
        let second = tags_of(&mut frames);
        assert_eq!(second[0].bind, vec!["b".to_owned()]);
        let written = acks(&mut subs);
        assert!(
            matches!(&written[..], [v5::Packet::SubAck(a)] if a.pkid == 1 && a.return_codes.len() == 3)
        );
        assert_eq!(session.lock().unwrap().tags.get("a"), Some(&1));

        let refused = TagsResult {
            code: ErrorCode::InvalidArgument as i32,
            ..ok(second[0].request_id)
        };
        subs.on_tags_result(&refused, &session, &mut frames);
        match &acks(&mut subs)[..] {
            [v5::Packet::SubAck(s), v5::Packet::UnsubAck(u)] => {
                assert_eq!(
                    s.return_codes,
                    vec![v5::SubscribeReasonCode::TopicFilterInvalid]
                );
                assert_eq!(u.reasons, vec![v5::UnsubAckReason::Success]);
            }
            other => panic!("expected SUBACK 2 then UNSUBACK 3, got {other:?}"),
        }
        let state: SessionState = session.lock().unwrap().clone();
        assert_eq!(state.tags.len(), 1, "b was refused");
        assert_eq!(state.delivery_qos(), Some(1), "the tag alone");
    }

    /// An UNSUBSCRIBE while the bind is on its way: the session does not
    /// record the tag when the bind ends.
    #[test]
    fn an_unsubscribe_overtaking_its_bind_wins() {
        let topics = Topics::new("iot");
        let session = SharedState::default();
        let mut subs = Subscriptions::default();
        let mut frames = Vec::new();
        subs.subscribe(
            1,
            &[("pike/iot/tag/a".into(), 1)],
            &topics,
            &session,
            &mut frames,
        );
        subs.unsubscribe(
            2,
            &["pike/iot/tag/a".into()],
            &topics,
            &session,
            &mut frames,
        );
        let bind = tags_of(&mut frames);
        subs.on_tags_result(&ok(bind[0].request_id), &session, &mut frames);
        let unbind = tags_of(&mut frames);
        assert_eq!(unbind[0].unbind, vec!["a".to_owned()]);
        subs.on_tags_result(&ok(unbind[0].request_id), &session, &mut frames);
        match &acks(&mut subs)[..] {
            [v5::Packet::SubAck(_), v5::Packet::UnsubAck(u)] => {
                assert_eq!(u.reasons, vec![v5::UnsubAckReason::Success]);
            }
            other => panic!("got {other:?}"),
        }
        assert!(session.lock().unwrap().tags.is_empty());
    }
}
