//! Rooms with connections' channel machines and paused time: long polls,
//! push and pull fan-out, encode-once, late joiners and members behind the
//! head, shedding under overload, the adaptive window.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pike_channel::{Message, ServerChannel, ServerConfig, StreamId};
use proto::channel::{Login, RoomBatch, RoomClass};
use proto::tunnel::{ClientHello, Compression};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::server::registry::ConnShared;

/// One member connection: its channel machine, its rooms, its wake flag.
struct Member {
    channel: ServerChannel,
    rooms: ConnRooms,
    shared: Arc<ConnShared>,
    stream: StreamId,
}

impl Member {
    fn new(id: u64) -> Self {
        Self::with_compression(id, Compression::None)
    }

    fn with_compression(id: u64, compression: Compression) -> Self {
        let now = Instant::now().into_std();
        let mut channel = ServerChannel::new(
            Arc::new(ServerConfig::default()),
            ClientHello::default(),
            now,
        );
        let login = Login {
            stream: 0,
            biz: "live".into(),
            alias: format!("u{id}"),
            ..Login::default()
        };
        channel.handle_frame(Message::Login(login).to_frame(), now);
        while channel.poll_event().is_some() {}
        let stream = StreamId::new(0);
        channel.accept_login(stream, "", 0, now).unwrap();
        while channel.poll_transmit().is_some() {}
        let shared = Arc::new(ConnShared::new(1));
        let rooms = ConnRooms::new(id, shared.clone(), (compression, 1024), 32);
        Self {
            channel,
            rooms,
            shared,
            stream,
        }
    }

    /// Joins `room`; returns (head, tail).
    fn join(&mut self, rooms: &Rooms, room: &str) -> (u64, u64) {
        match self.rooms.join(
            rooms,
            "demo",
            &mut self.channel,
            self.stream,
            room.into(),
            Instant::now(),
        ) {
            JoinOutcome::Joined { head, tail } => {
                let frames = self.frames();
                assert_eq!(frames.len(), 1, "the join result");
                (head, tail)
            }
            other => panic!("{other:?}"),
        }
    }

    fn pull(&mut self, room: &str, offset: u64, wait: Duration) {
        self.rooms.pull(
            &mut self.channel,
            self.stream,
            room,
            offset,
            0,
            wait,
            Instant::now(),
        );
    }

    /// What the connection task does when woken.
    fn wake(&mut self) {
        if self.shared.take_rooms_ready() {
            self.rooms.ready(&mut self.channel, Instant::now());
        }
    }

    fn frames(&mut self) -> Vec<tntunnel::Frame> {
        std::iter::from_fn(|| self.channel.poll_transmit()).collect()
    }

    fn batches(&mut self) -> Vec<RoomBatch> {
        self.frames()
            .iter()
            .map(|f| f.decode::<RoomBatch>().unwrap())
            .collect()
    }
}

fn rooms(config: RoomConfig) -> Rooms {
    Rooms::new(config, Vec::new(), (100, 100), CancellationToken::new())
}

fn config(mode: RoomMode) -> RoomConfig {
    let mut config = RoomConfig::default();
    config.mode(mode).room_rate(None).publisher_rate(None);
    config
}

async fn publish(rooms: &Rooms, room: &str, class: RoomClass, text: &str) -> RoomReceipt {
    rooms
        .publish(RoomPublish {
            app: "demo".into(),
            room: room.into(),
            payload: Bytes::copy_from_slice(text.as_bytes()),
            class,
            priority: 0,
            publisher: None,
        })
        .unwrap()
}

fn offset_of(receipt: RoomReceipt) -> u64 {
    match receipt {
        RoomReceipt::Accepted { offset } => offset,
        other => panic!("{other:?}"),
    }
}

/// Lets the room's release task run, without letting paused time advance.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn texts(batch: &RoomBatch) -> Vec<String> {
    batch
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn long_poll_returns_on_data() {
    let rooms = rooms(config(RoomMode::Pull));
    let mut member = Member::new(1);
    let (_, tail) = member.join(&rooms, "r1");
    member.pull("r1", tail, Duration::from_secs(30));
    settle().await;
    member.wake();
    assert!(member.frames().is_empty(), "held: nothing to answer");

    let held_at = Instant::now();
    tokio::time::advance(Duration::from_secs(3)).await;
    let offset = offset_of(publish(&rooms, "r1", RoomClass::Droppable, "hello").await);
    assert_eq!(offset, tail);
    settle().await;
    member.wake();
    let batches = member.batches();
    assert_eq!(batches.len(), 1, "the held pull is answered once");
    assert_eq!(texts(&batches[0]), ["hello"]);
    assert_eq!(batches[0].next_offset, tail + 1);
    assert!(!batches[0].pushed);
    assert_eq!(
        Instant::now() - held_at,
        Duration::from_secs(3),
        "answered when the data came, not before"
    );
    // Answered: the next message waits for the next pull.
    publish(&rooms, "r1", RoomClass::Droppable, "again").await;
    settle().await;
    member.wake();
    assert!(member.frames().is_empty());
    member.pull("r1", tail + 1, Duration::from_secs(30));
    assert_eq!(texts(&member.batches()[0]), ["again"], "answered at once");
}

#[tokio::test(start_paused = true)]
async fn long_poll_expires_on_silence() {
    let rooms = rooms(config(RoomMode::Pull));
    let mut member = Member::new(1);
    let (_, tail) = member.join(&rooms, "r1");
    member.pull("r1", tail, Duration::from_secs(1));
    // Silence past the wait: no answer, ever, to that pull.
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    member.wake();
    assert!(member.frames().is_empty());
    publish(&rooms, "r1", RoomClass::Reliable, "late").await;
    settle().await;
    member.wake();
    assert!(
        member.frames().is_empty(),
        "an expired pull is not answered"
    );
    // The client pulls again with its offset and gets the message.
    member.pull("r1", tail, Duration::from_secs(1));
    assert_eq!(texts(&member.batches()[0]), ["late"]);

    // A pull with no wait is answered at once, empty.
    member.pull("r1", tail + 1, Duration::ZERO);
    let empty = member.batches();
    assert_eq!(empty.len(), 1);
    assert!(empty[0].messages.is_empty());
    assert_eq!(empty[0].next_offset, tail + 1);
}

#[tokio::test(start_paused = true)]
async fn push_mode_encodes_each_batch_once_for_every_member() {
    let rooms = rooms(config(RoomMode::Push));
    let mut members: Vec<Member> = (0..100).map(Member::new).collect();
    // A quarter negotiated LZ4: they share one compressed encoding.
    for (i, member) in members.iter_mut().enumerate() {
        if i % 4 == 0 {
            *member = Member::with_compression(i as u64, Compression::Lz4);
        }
        member.join(&rooms, "r1");
    }
    let big = "x".repeat(2000);
    publish(&rooms, "r1", RoomClass::Reliable, "small").await;
    settle().await;
    publish(&rooms, "r1", RoomClass::Droppable, &big).await;
    for _ in 0..3 {
        settle().await;
        for member in &mut members {
            member.wake();
        }
        tokio::time::advance(Duration::from_millis(60)).await;
    }
    let mut bodies: Vec<Vec<(usize, usize)>> = Vec::new();
    for member in &mut members {
        let frames = member.frames();
        assert_eq!(frames.len(), 2, "two batches, pushed once each");
        bodies.push(
            frames
                .iter()
                .map(|f| (f.body.as_ptr() as usize, f.body.len()))
                .collect(),
        );
    }
    // Every plain member wrote the very same bytes, every LZ4 member the
    // same compressed bytes.
    let plain: Vec<_> = bodies
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, b)| b)
        .collect();
    let lz4: Vec<_> = bodies
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 0)
        .map(|(_, b)| b)
        .collect();
    assert!(plain.iter().all(|b| *b == plain[0]));
    assert!(lz4.iter().all(|b| *b == lz4[0]));
    assert_eq!(plain[0][0], lz4[0][0], "the small batch is not compressed");
    assert!(lz4[0][1].1 < plain[0][1].1, "the big one is, once");
    let stats = stats(&rooms.get("demo", "r1").unwrap());
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.encodes, 2, "one encoding per batch for 100 members");
    assert_eq!(stats.catchup_encodes, 0);
    assert_eq!(stats.frames_sent, 200);
}

#[tokio::test(start_paused = true)]
async fn pull_mode_answers_every_held_pull_with_one_encoding() {
    let rooms = rooms(config(RoomMode::Pull));
    let mut members: Vec<Member> = (0..50).map(Member::new).collect();
    let mut tail = 0;
    for member in &mut members {
        tail = member.join(&rooms, "r1").1;
        member.pull("r1", tail, Duration::from_secs(30));
    }
    for i in 0..5 {
        publish(&rooms, "r1", RoomClass::Droppable, &format!("m{i}")).await;
    }
    settle().await;
    tokio::time::advance(Duration::from_millis(60)).await;
    settle().await;
    let mut pointers = Vec::new();
    for member in &mut members {
        member.wake();
        let frames = member.frames();
        assert_eq!(frames.len(), 1);
        pointers.push(frames[0].body.as_ptr());
        let batch = frames[0].decode::<RoomBatch>().unwrap();
        assert_eq!(texts(&batch), ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(batch.next_offset, tail + 5);
    }
    assert!(pointers.iter().all(|p| *p == pointers[0]));
    let stats = stats(&rooms.get("demo", "r1").unwrap());
    assert_eq!((stats.batches, stats.encodes), (1, 1));
    // A re-pull at the batch's start (a client whose answer was lost)
    // reuses it too.
    members[0].pull("r1", tail, Duration::from_secs(30));
    assert_eq!(members[0].frames()[0].body.as_ptr(), pointers[0]);
}

#[tokio::test(start_paused = true)]
async fn late_joiner_gets_live_messages_and_a_member_behind_the_head_gets_what_remains() {
    let mut cfg = config(RoomMode::Pull);
    cfg.ring_capacity(4);
    let rooms = rooms(cfg);
    let base = offset_of(publish(&rooms, "r1", RoomClass::Reliable, "start").await);
    for i in 0..10 {
        publish(&rooms, "r1", RoomClass::Droppable, &format!("d{i}")).await;
    }
    settle().await;
    tokio::time::advance(Duration::from_millis(60)).await;
    settle().await;

    // A late joiner starts at the tail: nothing old, nothing missed.
    let mut late = Member::new(1);
    let (head, tail) = late.join(&rooms, "r1");
    assert_eq!((head, tail), (base, base + 11));
    late.pull("r1", tail, Duration::from_secs(30));
    assert!(late.frames().is_empty());
    publish(&rooms, "r1", RoomClass::Droppable, "live").await;
    settle().await;
    late.wake();
    let batch = &late.batches()[0];
    assert_eq!(texts(batch), ["live"]);
    assert_eq!(batch.missed, 0);

    // A client behind the head (offset base + 1, overwritten): what
    // remains (the reliable one is before its offset), plus the count of
    // those it missed.
    let mut behind = Member::new(2);
    behind.join(&rooms, "r1");
    behind.pull("r1", base + 1, Duration::from_secs(30));
    let batch = &behind.batches()[0];
    assert_eq!(texts(batch), ["d7", "d8", "d9", "live"]);
    assert_eq!(batch.missed, 7, "d0..d6 were overwritten");
    assert_eq!(batch.next_offset, base + 12);
    // From the very start: the reliable message survived the barrage; the
    // member is behind by more than one batch, so it gets everything up to
    // the tail in one frame.
    behind.pull("r1", base, Duration::from_secs(30));
    let batch = &behind.batches()[0];
    assert_eq!(texts(batch), ["start", "d7", "d8", "d9", "live"]);
    assert_eq!((batch.missed, batch.next_offset), (7, base + 12));
    // A second member behind by as much shares that encoding.
    let mut also = Member::new(3);
    also.join(&rooms, "r1");
    also.pull("r1", base, Duration::from_secs(30));
    assert_eq!(texts(&also.batches()[0])[0], "start");
    let stats = stats(&rooms.get("demo", "r1").unwrap());
    assert_eq!(stats.catchup_encodes, 2, "base + 1 and base, once each");
}

#[tokio::test(start_paused = true)]
async fn reliable_is_never_dropped_while_droppable_is_shed_under_overload() {
    let mut cfg = config(RoomMode::Push);
    cfg.room_rate(Some(RateLimit::new(100, 100)))
        .ring_capacity(100_000);
    let rooms = rooms(cfg);
    let mut member = Member::new(1);
    member.join(&rooms, "r1");
    // Injected overload: 10,000 droppable messages/s for 2 s, with a
    // reliable one every 100.
    let (mut reliable, mut accepted, mut shed) = (Vec::new(), 0u64, 0u64);
    let mut received = Vec::new();
    for i in 0..20_000u64 {
        if i % 100 == 0 {
            reliable.push(offset_of(
                publish(&rooms, "r1", RoomClass::Reliable, &format!("r{i}")).await,
            ));
        }
        match publish(&rooms, "r1", RoomClass::Droppable, "barrage").await {
            RoomReceipt::Accepted { .. } => accepted += 1,
            RoomReceipt::Dropped { reason } => {
                assert_eq!(reason, DropReason::RoomRate);
                shed += 1;
            }
        }
        if i % 10 == 9 {
            tokio::time::advance(Duration::from_millis(1)).await;
            settle().await;
            member.wake();
            received.extend(member.batches());
        }
    }
    tokio::time::advance(Duration::from_millis(100)).await;
    settle().await;
    member.wake();
    received.extend(member.batches());
    let got: Vec<u64> = received
        .iter()
        .flat_map(|b| b.messages.iter())
        .filter(|m| m.class() == RoomClass::Reliable)
        .map(|m| m.offset)
        .collect();
    assert_eq!(got, reliable, "every reliable message, in order");
    assert!(shed > 15_000, "barrage was shed: {shed}");
    // Roughly the cap: 2 s at 100/s plus the burst, minus the reserve.
    assert!((250..=320).contains(&accepted), "{accepted}");
    let droppable = received
        .iter()
        .flat_map(|b| b.messages.iter())
        .filter(|m| m.class() == RoomClass::Droppable)
        .count() as u64;
    assert_eq!(droppable, accepted, "every accepted message arrived");
    assert!(received.iter().all(|b| b.missed == 0));
    let stats = stats(&rooms.get("demo", "r1").unwrap());
    assert_eq!(stats.dropped_room_rate, shed);
    assert_eq!(stats.published_reliable, 200);
}

#[tokio::test(start_paused = true)]
async fn window_adapts_to_the_fan_out_within_the_latency_budget() {
    let mut cfg = config(RoomMode::Push);
    cfg.latency_budget(Duration::from_millis(50));
    let rooms = rooms(cfg);
    let mut member = Member::new(1);
    member.join(&rooms, "r1");
    let room = || rooms.get("demo", "r1").unwrap();

    // Idle room: the first message is released at once.
    publish(&rooms, "r1", RoomClass::Droppable, "a").await;
    settle().await;
    assert_eq!(room().seq(), 1, "released without waiting");

    // The member has not taken batch 1 yet (its fan-out is not done): the
    // next messages wait, at most the budget.
    publish(&rooms, "r1", RoomClass::Droppable, "b").await;
    settle().await;
    assert_eq!(room().seq(), 1);
    tokio::time::advance(Duration::from_millis(30)).await;
    publish(&rooms, "r1", RoomClass::Droppable, "c").await;
    settle().await;
    assert_eq!(room().seq(), 1, "within the budget, still batching");
    tokio::time::advance(Duration::from_millis(20)).await;
    settle().await;
    assert_eq!(room().seq(), 2, "released at the budget");

    // Once the member took everything, the next message goes out at once
    // again.
    member.wake();
    assert_eq!(
        member.batches().iter().map(texts).collect::<Vec<_>>(),
        [vec!["a"], vec!["b", "c"]]
    );
    publish(&rooms, "r1", RoomClass::Droppable, "d").await;
    settle().await;
    assert_eq!(room().seq(), 3);

    // A full batch is released early.
    member.wake();
    member.frames();
    publish(&rooms, "r1", RoomClass::Droppable, "e").await;
    settle().await;
    assert_eq!(room().seq(), 4);
    for i in 0..100 {
        publish(&rooms, "r1", RoomClass::Droppable, &format!("f{i}")).await;
    }
    settle().await;
    assert_eq!(room().seq(), 5, "100 messages: released before the budget");
}

#[tokio::test(start_paused = true)]
async fn members_leave_on_logout_and_close_and_idle_rooms_go_away() {
    let mut cfg = config(RoomMode::Auto);
    cfg.idle_ttl(Duration::from_secs(60)).push_max_members(1);
    let rooms = rooms(cfg);
    let old = offset_of(publish(&rooms, "r1", RoomClass::Droppable, "old").await);
    settle().await;
    let mut a = Member::new(1);
    let mut b = Member::new(2);
    a.join(&rooms, "r1");
    assert_eq!(rooms.get("demo", "r1").unwrap().mode(), RoomMode::Push);
    b.join(&rooms, "r1");
    let room = rooms.get("demo", "r1").unwrap();
    assert_eq!(room.members(), 2);
    assert_eq!(room.mode(), RoomMode::Pull, "auto: pull above 1 member");

    a.rooms.logged_out(a.stream, Instant::now());
    assert_eq!(room.members(), 1);
    drop(b); // the connection ends
    assert_eq!(room.members(), 0);
    drop(room);

    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert!(rooms.get("demo", "r1").is_some(), "not idle long enough");
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    assert!(rooms.get("demo", "r1").is_none(), "removed once idle");

    // A new incarnation continues above the old offsets.
    let offset = offset_of(publish(&rooms, "r1", RoomClass::Droppable, "x").await);
    settle().await;
    let mut c = Member::new(3);
    c.join(&rooms, "r1");
    assert!(offset > old, "{offset} > {old}");
    let again = rooms.get("demo", "r1").unwrap();
    assert_eq!(again.visible(), offset + 1);
}

/// The offsets of `batches`, in the order written.
fn offsets(batches: &[RoomBatch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| b.messages.iter().map(|m| m.offset))
        .collect()
}

/// A push member pulls right after its join while the room's first batch
/// is released and not yet taken by its connection (the race seen in about
/// a third of tries): the pull answer and the push must not both carry it.
#[tokio::test(start_paused = true)]
async fn a_pull_racing_the_first_pushed_batch_gets_no_offset_twice() {
    let rooms = rooms(config(RoomMode::Push));
    let mut member = Member::new(1);
    let (_, tail) = member.join(&rooms, "r1");
    publish(&rooms, "r1", RoomClass::Reliable, "first").await;
    settle().await;
    // Released, and the connection not woken yet: the pull comes first.
    assert_eq!(rooms.get("demo", "r1").unwrap().visible(), tail + 1);
    member.pull("r1", tail, Duration::from_secs(30));
    member.wake();
    publish(&rooms, "r1", RoomClass::Reliable, "second").await;
    settle().await;
    member.wake();
    let batches = member.batches();
    assert_eq!(offsets(&batches), [tail, tail + 1], "each offset once");
    assert!(batches.iter().all(|b| b.pushed), "{batches:?}");
    let stats = stats(&rooms.get("demo", "r1").unwrap());
    assert_eq!(stats.encodes, 2, "one encoding per batch");
    assert_eq!(stats.catchup_encodes, 0);
    // The client's periodic re-pull from where it is: held, nothing new.
    member.pull("r1", tail + 2, Duration::from_secs(30));
    member.pull("r1", tail, Duration::from_secs(30));
    assert!(member.frames().is_empty(), "everything was pushed already");
}

/// A push member's pull for history (before its join) is answered up to
/// where the pushes began, never with what was pushed.
#[tokio::test(start_paused = true)]
async fn a_push_members_history_pull_stops_where_the_pushes_began() {
    let rooms = rooms(config(RoomMode::Push));
    let head = offset_of(publish(&rooms, "r1", RoomClass::Reliable, "old").await);
    settle().await;
    let mut member = Member::new(1);
    let (_, tail) = member.join(&rooms, "r1");
    assert_eq!(tail, head + 1);
    publish(&rooms, "r1", RoomClass::Reliable, "new").await;
    settle().await;
    member.wake();
    assert_eq!(offsets(&member.batches()), [tail], "pushed");
    // A pull from the head: the history only.
    member.pull("r1", head, Duration::from_secs(30));
    let history = member.batches();
    assert_eq!(offsets(&history), [head]);
    assert_eq!(history[0].next_offset, tail);
    assert!(!history[0].pushed);
    // Released and not taken yet when a history pull comes: pushed first,
    // the history still stops where the pushes began.
    publish(&rooms, "r1", RoomClass::Reliable, "newer").await;
    settle().await;
    member.pull("r1", head, Duration::ZERO);
    let batches = member.batches();
    assert_eq!(offsets(&batches), [tail + 1, head]);
    assert!(batches[0].pushed && !batches[1].pushed);
    member.wake();
    assert!(member.frames().is_empty(), "nothing pushed twice");
}

/// A stream that joins again (the client restarts its room, e.g. after a
/// re-login) starts the room afresh from its own offset: what was pushed
/// to the connection before that join is answered to its pull again.
#[tokio::test(start_paused = true)]
async fn a_repeated_join_gets_what_was_pushed_before_it() {
    let rooms = rooms(config(RoomMode::Push));
    let mut member = Member::new(1);
    let (_, tail) = member.join(&rooms, "r1");
    publish(&rooms, "r1", RoomClass::Reliable, "a").await;
    settle().await;
    member.wake();
    assert_eq!(offsets(&member.batches()), [tail]);
    member.join(&rooms, "r1");
    member.pull("r1", tail, Duration::from_secs(30));
    let again = member.batches();
    assert_eq!(offsets(&again), [tail]);
    assert!(!again[0].pushed);
}
