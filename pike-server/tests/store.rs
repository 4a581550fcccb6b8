//! Tests of the durable store (`pike_server::store::RedbStore`) on real redb
//! files in temporary directories.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pike_server::store::{
    Append, MAX_READ, RedbStore, StoreConfig, StoreError, StreamKey, UplinkOutcome,
};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("pike.redb")
}

fn open(path: &Path) -> RedbStore {
    RedbStore::open(path, StoreConfig::default()).expect("open store")
}

fn alias(a: &str) -> StreamKey {
    StreamKey::alias("demo", "chat", a)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn seqs(batch: &pike_server::store::ReadBatch) -> Vec<u64> {
    batch.messages.iter().map(|m| m.seq).collect()
}

/// A store file is one log: its epoch is nonzero, survives reopening and
/// differs from another file's (a recreated log).
#[tokio::test]
async fn the_log_epoch_is_kept_by_the_file_and_new_for_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = open(&db_path(&dir));
        store
            .append(vec![Append::new(alias("u1"), "one")], NOW)
            .await
            .unwrap();
        store.epoch()
    };
    assert_ne!(first, 0);
    let reopened = open(&db_path(&dir));
    assert_eq!(
        <RedbStore as pike_api::server::Store>::epoch(&reopened),
        first,
        "the gateway's view of the store"
    );
    drop(reopened);
    assert_eq!(open(&db_path(&dir)).epoch(), first, "reopened: same log");
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        open(&db_path(&other)).epoch(),
        first,
        "a new file: a new log"
    );
}

#[tokio::test]
async fn append_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let s = alias("u1");
    let done = store
        .append(
            vec![
                Append::new(s.clone(), "one"),
                Append::new(s.clone(), Bytes::from_static(b"\x00two"))
                    .with_priority(7)
                    .with_expires_at_ms(NOW + 5_000),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].seq, done[1].seq), (1, 2));
    assert_eq!(
        done[0].expires_at_ms,
        NOW + 7 * DAY_MS,
        "default TTL is 7 days"
    );
    assert_eq!(done[1].expires_at_ms, NOW + 5_000);

    let batch = store.read(&s, 0, 10, NOW).await.unwrap();
    assert_eq!((batch.first_seq, batch.last_seq), (1, 2));
    assert_eq!(batch.messages.len(), 2);
    let m = &batch.messages[1];
    assert_eq!(
        (m.seq, m.message_id, m.priority),
        (2, done[1].message_id, 7)
    );
    assert_eq!(m.expires_at_ms, NOW + 5_000);
    assert_eq!(&m.payload[..], b"\x00two");
    assert_eq!(&batch.messages[0].payload[..], b"one");
    assert_eq!(batch.messages[0].priority, 0);

    // An unknown stream reads as empty, and the same alias in another biz is
    // another stream.
    let other = store
        .read(&StreamKey::alias("demo", "news", "u1"), 0, 10, NOW)
        .await
        .unwrap();
    assert!(other.messages.is_empty());
    assert_eq!((other.first_seq, other.last_seq), (1, 0));
    assert!(store.append(Vec::new(), NOW).await.unwrap().is_empty());
    store.close().await.unwrap();
}

/// `login` answers what `position`, `touch_alias` and `read` would, in one
/// trip: the alias recorded once, the read resuming after the larger of
/// the client's last ack and the stored position.
#[tokio::test]
async fn login_reads_position_records_alias_and_reads_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    // A first login of an unknown alias: no position, nothing to read, the
    // alias is recorded.
    let (position, start_after, batch) = store
        .login("demo", "chat", "u1", "d1", 0, 10, NOW)
        .await
        .unwrap();
    assert_eq!((position, start_after), (None, 0));
    assert!(batch.messages.is_empty());
    assert_eq!(
        store.aliases("demo", "chat", None, 10).await.unwrap(),
        strings(&["u1"])
    );
    let s = alias("u1");
    let appends = (1..=5)
        .map(|i| Append::new(s.clone(), format!("m{i}")))
        .collect();
    store.append(appends, NOW).await.unwrap();
    store.set_position(&s, "d1", 2).await.unwrap();
    // The stored position wins over an older client ack ...
    let (position, start_after, batch) = store
        .login("demo", "chat", "u1", "d1", 1, 10, NOW)
        .await
        .unwrap();
    assert_eq!((position, start_after), (Some(2), 2));
    assert_eq!(seqs(&batch), [3, 4, 5]);
    // ... and a newer client ack wins over the stored position; `max` holds.
    let (_, start_after, batch) = store
        .login("demo", "chat", "u1", "d1", 3, 1, NOW)
        .await
        .unwrap();
    assert_eq!(start_after, 3);
    assert_eq!(seqs(&batch), [4]);
    // Same answers as the three separate calls.
    assert_eq!(store.position(&s, "d1").await.unwrap(), Some(2));
    assert_eq!(seqs(&store.read(&s, 3, 1, NOW).await.unwrap()), [4]);
    // Bad ids are refused, not panicked on.
    assert!(
        store
            .login("demo", "chat", "", "d1", 0, 10, NOW)
            .await
            .is_err()
    );
    assert!(
        store
            .login("demo", "chat", "u1", "", 0, 10, NOW)
            .await
            .is_err()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn seqs_per_stream_independent_gap_free_and_ids_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let streams = [
        alias("a"),
        alias("b"),
        StreamKey::device("demo", "chat", "a"),
        StreamKey::alias("other", "chat", "a"),
    ];
    let mut expected: HashMap<StreamKey, u64> = HashMap::new();
    let mut last_id = 0;
    for round in 0..12usize {
        // Uneven interleaving: stream i gets i+1 messages in some rounds.
        let mut batch = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            if (round + i) % 3 != 0 {
                for _ in 0..=i {
                    batch.push(Append::new(s.clone(), format!("{round}")));
                }
            }
        }
        let keys: Vec<StreamKey> = batch.iter().map(|a| a.stream.clone()).collect();
        let done = store.append(batch, NOW).await.unwrap();
        for (k, d) in keys.iter().zip(&done) {
            let next = expected.entry(k.clone()).or_insert(0);
            *next += 1;
            assert_eq!(d.seq, *next, "stream {k:?}");
            assert!(d.message_id > last_id, "message ids increase");
            last_id = d.message_id;
        }
    }
    for s in &streams {
        let b = store.read(s, 0, 1000, NOW).await.unwrap();
        let n = expected[s];
        assert_eq!(seqs(&b), (1..=n).collect::<Vec<_>>(), "{s:?}");
        assert_eq!(b.last_seq, n);
    }
}

#[tokio::test]
async fn read_honours_after_seq_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let s = alias("u");
    let appends = (0..20)
        .map(|i| Append::new(s.clone(), format!("m{i}")))
        .collect();
    store.append(appends, NOW).await.unwrap();
    assert_eq!(
        seqs(&store.read(&s, 5, 3, NOW).await.unwrap()),
        vec![6, 7, 8]
    );
    assert_eq!(
        seqs(&store.read(&s, 18, 10, NOW).await.unwrap()),
        vec![19, 20]
    );
    assert!(
        store
            .read(&s, 20, 10, NOW)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(
        store
            .read(&s, u64::MAX, 10, NOW)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    let none = store.read(&s, 0, 0, NOW).await.unwrap();
    assert!(none.messages.is_empty());
    assert_eq!((none.first_seq, none.last_seq), (1, 20));
    let b = store.read(&s, 0, usize::MAX, NOW).await.unwrap();
    assert_eq!(
        b.messages.len(),
        20,
        "a huge max is capped at {MAX_READ}, not an error"
    );
    assert_eq!(&b.messages[9].payload[..], b"m9");
}

#[tokio::test]
async fn shared_message_id_and_refused_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let id = store.next_message_id();
    let done = store
        .append(
            ["a", "b", "c"]
                .iter()
                .map(|a| Append::new(alias(a), "tag push").with_message_id(id))
                .collect(),
            NOW,
        )
        .await
        .unwrap();
    assert!(done.iter().all(|d| d.message_id == id && d.seq == 1));
    let fresh = store
        .append(vec![Append::new(alias("a"), "x")], NOW)
        .await
        .unwrap();
    assert!(fresh[0].message_id > id);

    let refused = [
        Append::new(alias("a"), "x").with_message_id(fresh[0].message_id + 1000),
        Append::new(alias("a"), "x").with_message_id(0),
        Append::new(alias("a"), "x").with_expires_at_ms(NOW),
        Append::new(alias(""), "x"),
        Append::new(StreamKey::alias("demo", "x".repeat(2000), "a"), "x"),
    ];
    for a in refused {
        let err = store
            .append(vec![Append::new(alias("a"), "ok"), a.clone()], NOW)
            .await;
        assert!(
            matches!(err, Err(StoreError::InvalidArgument(_))),
            "{a:?}: {err:?}"
        );
    }
    // Nothing of the refused calls was stored.
    assert_eq!(
        store.read(&alias("a"), 0, 100, NOW).await.unwrap().last_seq,
        2
    );
}

/// The gateway's batch path (`Store::append_many`): several pushes in one
/// commit, in order, each with its own message id shared by its streams;
/// one refused push refuses them all and stores nothing.
#[tokio::test]
async fn append_many_commits_pushes_in_order_in_one_commit() {
    use pike_api::server::{Append as ApiAppend, Store as _, StreamKey as ApiKey};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let item = |alias: &str, payload: &str| ApiAppend {
        stream: ApiKey::new("demo", "chat", alias),
        priority: 0,
        expires_at_ms: 0,
        payload: Bytes::from(payload.to_owned()),
        receipt: false,
    };
    let before = store.stats();
    let outcomes = store
        .append_many(vec![
            vec![item("a", "one")],
            vec![item("a", "two"), item("b", "two")],
            vec![item("a", "three")],
        ])
        .await;
    let commits = store.stats().commits - before.commits;
    assert_eq!(commits, 1, "three pushes, one commit");
    let done: Vec<_> = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("stored"))
        .collect();
    let seqs: Vec<Vec<u64>> = done
        .iter()
        .map(|push| push.iter().map(|d| d.seq).collect())
        .collect();
    assert_eq!(seqs, vec![vec![1], vec![2, 1], vec![3]]);
    let ids: Vec<u64> = done.iter().map(|push| push[0].message_id).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(done[1][0].message_id, done[1][1].message_id);
    let read = store.read(&alias("a"), 0, 10, NOW).await.unwrap();
    let payloads: Vec<&[u8]> = read.messages.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"three"]);

    // An empty alias refuses the call: every push gets the error, none is
    // stored.
    let outcomes = store
        .append_many(vec![vec![item("a", "four")], vec![item("", "bad")]])
        .await;
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        let error = outcome.as_ref().expect_err("refused together");
        assert!(error.0.contains("alias"), "{error}");
    }
    assert_eq!(
        store.read(&alias("a"), 0, 10, NOW).await.unwrap().last_seq,
        3
    );
}

#[tokio::test]
async fn reopen_continues_seqs_and_ids_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let s = alias("u1");
    let dev = StreamKey::device("demo", "chat", "phone");
    let last_id;
    {
        let store = open(&path);
        store
            .append(
                vec![Append::new(s.clone(), "1"), Append::new(s.clone(), "2")],
                NOW,
            )
            .await
            .unwrap();
        let d = store
            .append(vec![Append::new(dev.clone(), "d1")], NOW)
            .await
            .unwrap();
        last_id = d[0].message_id;
        // A reserved but unused id is never reissued after a clean stop.
        let reserved = store.next_message_id();
        assert!(reserved > last_id);
        assert_eq!(store.set_position(&s, "phone", 2).await.unwrap(), 2);
        assert_eq!(store.set_position(&s, "tablet", 1).await.unwrap(), 1);
        store
            .bind_tags("demo", "chat", "u1", &strings(&["vip", "beta"]))
            .await
            .unwrap();
        store.touch_alias("demo", "chat", "u9").await.unwrap();
        store
            .record_uplink(
                "demo",
                "chat",
                "u1",
                "k1",
                UplinkOutcome::accepted("r1"),
                NOW,
            )
            .await
            .unwrap();
        drop(store); // not close(): Drop must flush too.
    }
    let store = open(&path);
    let d = store
        .append(vec![Append::new(s.clone(), "3")], NOW)
        .await
        .unwrap();
    assert_eq!(d[0].seq, 3, "seqs continue");
    assert!(
        d[0].message_id > last_id + 1,
        "message ids continue past reserved ones"
    );
    let d = store
        .append(vec![Append::new(dev.clone(), "d2")], NOW)
        .await
        .unwrap();
    assert_eq!(d[0].seq, 2);
    assert_eq!(
        seqs(&store.read(&s, 0, 10, NOW).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(store.position(&s, "phone").await.unwrap(), Some(2));
    assert_eq!(store.position(&s, "tablet").await.unwrap(), Some(1));
    assert_eq!(
        store.tags_of("demo", "chat", "u1").await.unwrap(),
        strings(&["beta", "vip"])
    );
    assert_eq!(
        store
            .tag_members("demo", "chat", "vip", None, 10)
            .await
            .unwrap(),
        strings(&["u1"])
    );
    assert_eq!(
        store.aliases("demo", "chat", None, 10).await.unwrap(),
        strings(&["u1", "u9"])
    );
    assert_eq!(
        store
            .uplink_outcome("demo", "chat", "u1", "k1")
            .await
            .unwrap(),
        Some(UplinkOutcome::accepted("r1"))
    );
    store.close().await.unwrap();
    // close() releases the file.
    let store = open(&path);
    assert_eq!(store.read(&s, 0, 10, NOW).await.unwrap().last_seq, 3);
}

const CRASH_CHILD_ENV: &str = "PIKE_STORE_CRASH_CHILD_DIR";
const CRASH_STREAMS: usize = 4;

/// Child side of [`crash_durability_after_sigkill`]: appends from several
/// tasks and prints each append only after it returned (durable), until
/// killed.
fn crash_child(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(open(&Path::new(dir).join("pike.redb")));
        let s0 = alias("crash-0");
        store
            .append(vec![Append::new(s0.clone(), "first")], NOW)
            .await
            .unwrap();
        store.set_position(&s0, "phone", 1).await.unwrap();
        store.flush().await.unwrap();
        store
            .bind_tags("demo", "chat", "crash-0", &strings(&["t"]))
            .await
            .unwrap();
        store
            .record_uplink(
                "demo",
                "chat",
                "crash-0",
                "k",
                UplinkOutcome::accepted("r"),
                NOW,
            )
            .await
            .unwrap();
        println!("PIKE-EXTRAS-DONE");
        let mut tasks = Vec::new();
        for i in 0..CRASH_STREAMS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let s = alias(&format!("crash-{i}"));
                for n in 0..5_000u32 {
                    let d = store
                        .append(vec![Append::new(s.clone(), format!("p{n}"))], NOW)
                        .await
                        .unwrap();
                    println!("PIKE-ACK {i} {} {}", d[0].seq, d[0].message_id);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn crash_durability_after_sigkill() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_durability_after_sigkill",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); CRASH_STREAMS];
    let mut extras = false;
    let mut count = 0usize;
    let mut parse = |line: &str, acked: &mut Vec<BTreeMap<u64, u64>>| -> bool {
        // libtest may print "test <name> ... " before the child's first line.
        if line.ends_with("PIKE-EXTRAS-DONE") {
            extras = true;
        }
        let Some(at) = line.find("PIKE-ACK ") else {
            return false;
        };
        let rest = &line[at + "PIKE-ACK ".len()..];
        let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
        acked[v[0] as usize].insert(v[1], v[2]);
        true
    };
    // Kill it mid-stream, with appends in flight.
    for line in lines.by_ref() {
        if parse(&line.unwrap(), &mut acked) {
            count += 1;
            if count >= 400 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have been killed, not finished"
    );
    // Lines already in the pipe were printed after durable appends too.
    for line in lines {
        let Ok(line) = line else { break };
        if parse(&line, &mut acked) {
            count += 1;
        }
    }
    eprintln!("child acked {count} appends before SIGKILL");
    assert!(extras, "child did not report its setup");
    assert!(count >= 400, "child reported only {count} appends");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(&db_path(&dir));
        let mut max_id = 0;
        for (i, acks) in acked.iter().enumerate() {
            let s = alias(&format!("crash-{i}"));
            let b = store.read(&s, 0, MAX_READ, NOW).await.unwrap();
            let n = b.last_seq;
            assert_eq!(seqs(&b), (1..=n).collect::<Vec<_>>(), "stream {i} gap-free");
            let top = acks.keys().next_back().copied().unwrap_or(0);
            assert!(n >= top, "stream {i}: acked seq {top} lost (kept {n})");
            eprintln!("stream {i}: acked up to {top}, found {n} after the crash");
            for m in &b.messages {
                if let Some(id) = acks.get(&m.seq) {
                    assert_eq!(m.message_id, *id, "stream {i} seq {}", m.seq);
                }
                max_id = max_id.max(m.message_id);
            }
            let d = store
                .append(vec![Append::new(s, "after")], NOW)
                .await
                .unwrap();
            assert_eq!(d[0].seq, n + 1, "no seq reuse after the crash");
            assert!(
                d[0].message_id > max_id,
                "no message id reuse after the crash"
            );
            max_id = d[0].message_id;
        }
        let s0 = alias("crash-0");
        assert_eq!(
            store.position(&s0, "phone").await.unwrap(),
            Some(1),
            "flushed position"
        );
        assert_eq!(
            store.tags_of("demo", "chat", "crash-0").await.unwrap(),
            strings(&["t"])
        );
        assert_eq!(
            store
                .uplink_outcome("demo", "chat", "crash-0", "k")
                .await
                .unwrap(),
            Some(UplinkOutcome::accepted("r"))
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&db_path(&dir)));
    let before = store.stats();
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let s = alias(&format!("g{}", i % 10));
            let d = store
                .append(vec![Append::new(s, format!("{i}"))], NOW)
                .await
                .unwrap();
            (i % 10, d[0].seq)
        }));
    }
    let mut per_stream: Vec<Vec<u64>> = vec![Vec::new(); 10];
    for t in tasks {
        let (s, seq) = t.await.unwrap();
        per_stream[s].push(seq);
    }
    for (i, mut v) in per_stream.into_iter().enumerate() {
        v.sort_unstable();
        assert_eq!(v, (1..=100).collect::<Vec<_>>(), "stream g{i}");
        let b = store
            .read(&alias(&format!("g{i}")), 0, 1000, NOW)
            .await
            .unwrap();
        assert_eq!(seqs(&b), (1..=100).collect::<Vec<_>>());
    }
    let st = store.stats();
    let commits = st.commits - before.commits;
    assert_eq!(st.appended - before.appended, 1000);
    assert!(
        commits < 250,
        "1000 concurrent appends took {commits} commits"
    );
    assert!(st.largest_batch > 1, "no batching happened: {st:?}");
    eprintln!("1000 concurrent appends: {commits} commits, {st:?}");
}

#[tokio::test]
async fn ttl_expiry_hides_then_sweeps_and_first_seq_moves() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default()
        .with_default_ttl(Duration::from_secs(60))
        .unwrap();
    let store = RedbStore::open(db_path(&dir), config).unwrap();
    let s = alias("u");
    store
        .append(
            vec![
                Append::new(s.clone(), "1").with_expires_at_ms(NOW + 1_000),
                Append::new(s.clone(), "2").with_expires_at_ms(NOW + 2_000),
                Append::new(s.clone(), "3").with_expires_at_ms(NOW + 1_000), // expires before 2
                Append::new(s.clone(), "4"),                                 // default: NOW + 60 s
            ],
            NOW,
        )
        .await
        .unwrap();
    let b = store.read(&s, 0, 10, NOW + 999).await.unwrap();
    assert_eq!(seqs(&b), vec![1, 2, 3, 4]);
    assert_eq!(b.gap(0), None);

    // At NOW + 1000, 1 and 3 are expired: hidden before any sweep.
    let b = store.read(&s, 0, 10, NOW + 1_000).await.unwrap();
    assert_eq!(seqs(&b), vec![2, 4]);
    assert_eq!(b.first_seq, 2);
    assert_eq!(b.gap(0), Some(1..=1), "a device at 0 missed seq 1");
    assert_eq!(b.gap(1), None);
    assert_eq!(store.expire(NOW + 1_000).await.unwrap(), 2);
    let after = store.read(&s, 0, 10, NOW + 1_000).await.unwrap();
    assert_eq!(after, b, "sweeping changes nothing visible");
    assert_eq!(store.expire(NOW + 1_000).await.unwrap(), 0);

    let b = store.read(&s, 0, 10, NOW + 60_000).await.unwrap();
    assert!(b.messages.is_empty());
    assert_eq!((b.first_seq, b.last_seq), (5, 4));
    assert_eq!(b.gap(0), Some(1..=4));
    assert_eq!(store.expire(NOW + 60_000).await.unwrap(), 2);
    // Seqs are not reused once the stream is empty.
    let d = store
        .append(vec![Append::new(s.clone(), "5")], NOW + 60_000)
        .await
        .unwrap();
    assert_eq!(d[0].seq, 5);
    let b = store.read(&s, 0, 10, NOW + 60_000).await.unwrap();
    assert_eq!((seqs(&b), b.first_seq), (vec![5], 5));
}

#[tokio::test]
async fn sweep_runs_in_bounded_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default().with_sweep_chunk(7).unwrap();
    let store = RedbStore::open(db_path(&dir), config).unwrap();
    for i in 0..5 {
        let appends = (0..10)
            .map(|_| Append::new(alias(&format!("s{i}")), "x").with_expires_at_ms(NOW + 10))
            .collect();
        store.append(appends, NOW).await.unwrap();
    }
    for k in 0..3 {
        store
            .record_uplink(
                "demo",
                "chat",
                "u",
                &format!("k{k}"),
                UplinkOutcome::accepted("r"),
                NOW,
            )
            .await
            .unwrap();
    }
    let before = store.stats().commits;
    assert_eq!(store.expire(NOW + 10).await.unwrap(), 50);
    assert_eq!(store.expire(NOW + 2 * DAY_MS).await.unwrap(), 3);
    let commits = store.stats().commits - before;
    assert!(
        commits > 50 / 7,
        "chunks of at most 7 entries: {commits} commits"
    );
}

#[tokio::test]
async fn cap_evicts_oldest_and_first_seq_moves_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default()
        .with_max_messages_per_stream(5)
        .unwrap();
    let store = RedbStore::open(db_path(&dir), config).unwrap();
    let s = alias("u");
    for i in 1..=12 {
        store
            .append(vec![Append::new(s.clone(), format!("{i}"))], NOW)
            .await
            .unwrap();
    }
    let b = store.read(&s, 0, 100, NOW).await.unwrap();
    assert_eq!(seqs(&b), vec![8, 9, 10, 11, 12]);
    assert_eq!((b.first_seq, b.last_seq), (8, 12));
    assert_eq!(
        b.gap(3),
        Some(4..=7),
        "a device at 3 can tell what it missed"
    );
    assert_eq!(b.gap(7), None);
    // One call over the cap keeps only the newest.
    let many = (0..9)
        .map(|i| Append::new(s.clone(), format!("b{i}")))
        .collect();
    store.append(many, NOW).await.unwrap();
    let b = store.read(&s, 0, 100, NOW).await.unwrap();
    assert_eq!(seqs(&b), vec![17, 18, 19, 20, 21]);
    assert_eq!(&b.messages[4].payload[..], b"b8");
    // Evicted messages left nothing for the sweep.
    assert_eq!(store.expire(NOW + 8 * DAY_MS).await.unwrap(), 5);
}

#[tokio::test]
async fn positions_are_monotonic_and_first_login_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let s = alias("u");
    assert_eq!(
        store.position(&s, "phone").await.unwrap(),
        None,
        "unknown stream"
    );
    assert_eq!(
        store.set_position(&s, "phone", 3).await.unwrap(),
        0,
        "nothing to ack yet"
    );
    assert_eq!(store.position(&s, "phone").await.unwrap(), None);
    let appends = (0..5).map(|_| Append::new(s.clone(), "x")).collect();
    store.append(appends, NOW).await.unwrap();
    assert_eq!(
        store.position(&s, "phone").await.unwrap(),
        None,
        "first login"
    );
    assert_eq!(store.set_position(&s, "phone", 3).await.unwrap(), 3);
    assert_eq!(
        store.set_position(&s, "phone", 2).await.unwrap(),
        3,
        "lower ack ignored"
    );
    assert_eq!(store.position(&s, "phone").await.unwrap(), Some(3));
    assert_eq!(
        store.set_position(&s, "phone", 99).await.unwrap(),
        5,
        "capped at last_seq"
    );
    assert_eq!(
        store.position(&s, "tablet").await.unwrap(),
        None,
        "per device"
    );
    // A first-login device reads the alias's unexpired messages from 0.
    assert_eq!(store.read(&s, 0, 10, NOW).await.unwrap().messages.len(), 5);
    let st = store.stats();
    assert!(
        st.commits > st.durable_commits,
        "position commits skip the fsync: {st:?}"
    );
}

#[tokio::test]
async fn noted_positions_are_seen_at_once_capped_and_written_together_at_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // An interval no test waits for: only `flush` writes.
    let config = StoreConfig::default()
        .with_position_flush_interval(Duration::from_secs(60))
        .unwrap();
    let store = RedbStore::open(&path, config.clone()).unwrap();
    let (s, t) = (alias("u"), alias("v"));
    let appends = (0..5)
        .map(|_| Append::new(s.clone(), "x"))
        .chain((0..2).map(|_| Append::new(t.clone(), "y")))
        .collect();
    store.append(appends, NOW).await.unwrap();
    let before = store.stats();

    store.note_position(&s, "phone", 3).await.unwrap();
    store.note_position(&s, "phone", 2).await.unwrap();
    assert_eq!(
        store.position(&s, "phone").await.unwrap(),
        Some(3),
        "seen at once; a lower ack is ignored"
    );
    store.note_position(&s, "phone", 99).await.unwrap();
    assert_eq!(
        store.position(&s, "phone").await.unwrap(),
        Some(5),
        "capped at last_seq"
    );
    store.note_position(&t, "phone", 1).await.unwrap();
    store
        .note_position(&alias("nobody"), "phone", 4)
        .await
        .unwrap();
    assert_eq!(
        store.position(&alias("nobody"), "phone").await.unwrap(),
        None,
        "a stream with nothing stored has no position"
    );
    let (position, start_after, batch) = store
        .login("demo", "chat", "u", "phone", 0, 10, NOW)
        .await
        .unwrap();
    assert_eq!(
        (position, start_after),
        (Some(5), 5),
        "a login sees the note"
    );
    assert!(batch.messages.is_empty());
    assert_eq!(
        store.stats().commits,
        before.commits,
        "noting costs no commit"
    );

    store.flush().await.unwrap();
    let after = store.stats();
    assert_eq!(after.commits, before.commits + 1, "one commit for all");
    assert_eq!(
        after.noted_positions_written, 3,
        "one row per (stream, device)"
    );
    store.close().await.unwrap();

    let store = RedbStore::open(&path, config).unwrap();
    assert_eq!(store.position(&s, "phone").await.unwrap(), Some(5));
    assert_eq!(store.position(&t, "phone").await.unwrap(), Some(1));
    assert_eq!(store.position(&s, "tablet").await.unwrap(), None);
}

#[tokio::test]
async fn noted_positions_are_written_within_the_interval_and_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let config = StoreConfig::default()
        .with_position_flush_interval(Duration::from_millis(20))
        .unwrap();
    let store = RedbStore::open(&path, config.clone()).unwrap();
    let s = alias("u");
    let appends = (0..4).map(|_| Append::new(s.clone(), "x")).collect();
    store.append(appends, NOW).await.unwrap();
    for seq in 1..=3 {
        store.note_position(&s, "phone", seq).await.unwrap();
    }
    // Written by the flush the first note scheduled (polled, bounded).
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        while store.stats().noted_positions_written == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.stats().noted_positions_written
    })
    .await
    .expect("the noted positions are written within the interval");
    assert_eq!(written, 1, "three acks, one row");

    // A note after that schedules the next flush; closing writes it even
    // though its interval has not passed.
    let store_config = config
        .with_position_flush_interval(Duration::from_secs(60))
        .unwrap();
    drop(store);
    let store = RedbStore::open(&path, store_config.clone()).unwrap();
    assert_eq!(store.position(&s, "phone").await.unwrap(), Some(3));
    store.note_position(&s, "phone", 4).await.unwrap();
    store.close().await.unwrap();
    let store = RedbStore::open(&path, store_config).unwrap();
    assert_eq!(store.position(&s, "phone").await.unwrap(), Some(4));
    // Dropped without close: the writer still writes what was noted.
    store.note_position(&s, "tablet", 2).await.unwrap();
    drop(store);
    let store = open(&path);
    assert_eq!(store.position(&s, "tablet").await.unwrap(), Some(2));
}

#[test]
fn the_position_flush_interval_is_bounded() {
    assert!(
        StoreConfig::default()
            .with_position_flush_interval(Duration::from_secs(61))
            .is_err()
    );
    assert_eq!(
        StoreConfig::default().position_flush_interval(),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn position_only_commits_are_made_durable_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default()
        .with_lazy_commits_per_flush(3)
        .unwrap();
    let store = RedbStore::open(db_path(&dir), config).unwrap();
    let s = alias("u");
    let appends = (0..10).map(|_| Append::new(s.clone(), "x")).collect();
    store.append(appends, NOW).await.unwrap();
    let before = store.stats();
    for seq in 1..=6 {
        store.set_position(&s, "phone", seq).await.unwrap();
    }
    let after = store.stats();
    assert_eq!(after.commits - before.commits, 6);
    assert_eq!(
        after.durable_commits - before.durable_commits,
        2,
        "every 3rd position-only commit is fsynced"
    );
    store.flush().await.unwrap();
    assert_eq!(store.stats().durable_commits, after.durable_commits + 1);
}

#[tokio::test]
async fn tags_bind_unbind_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default().with_max_tags_per_alias(3).unwrap();
    let store = RedbStore::open(db_path(&dir), config).unwrap();
    let t = store
        .bind_tags("demo", "chat", "u1", &strings(&["vip", "cn"]))
        .await
        .unwrap();
    assert_eq!(t, strings(&["cn", "vip"]));
    store
        .bind_tags("demo", "chat", "u2", &strings(&["vip"]))
        .await
        .unwrap();
    store
        .bind_tags("demo", "chat", "u3", &strings(&["vip"]))
        .await
        .unwrap();
    store
        .bind_tags("demo", "news", "u4", &strings(&["vip"]))
        .await
        .unwrap();
    assert_eq!(
        store
            .tag_members("demo", "chat", "vip", None, 100)
            .await
            .unwrap(),
        strings(&["u1", "u2", "u3"]),
        "members of one biz only"
    );
    // Paging.
    assert_eq!(
        store
            .tag_members("demo", "chat", "vip", None, 2)
            .await
            .unwrap(),
        strings(&["u1", "u2"])
    );
    assert_eq!(
        store
            .tag_members("demo", "chat", "vip", Some("u2"), 2)
            .await
            .unwrap(),
        strings(&["u3"])
    );
    assert!(
        store
            .tag_members("demo", "chat", "vip", Some("u3"), 2)
            .await
            .unwrap()
            .is_empty()
    );

    let t = store
        .update_tags(
            "demo",
            "chat",
            "u1",
            &strings(&["beta"]),
            &strings(&["vip", "none"]),
        )
        .await
        .unwrap();
    assert_eq!(t, strings(&["beta", "cn"]));
    assert_eq!(
        store.tags_of("demo", "chat", "u1").await.unwrap(),
        strings(&["beta", "cn"])
    );
    assert_eq!(
        store
            .tag_members("demo", "chat", "vip", None, 100)
            .await
            .unwrap(),
        strings(&["u2", "u3"])
    );
    assert_eq!(
        store
            .tag_members("demo", "chat", "beta", None, 100)
            .await
            .unwrap(),
        strings(&["u1"])
    );
    assert!(
        store
            .tags_of("demo", "chat", "nobody")
            .await
            .unwrap()
            .is_empty()
    );
    // The limit: 2 bound + 2 new > 3.
    let err = store
        .bind_tags("demo", "chat", "u1", &strings(&["x", "y"]))
        .await;
    assert!(
        matches!(err, Err(StoreError::InvalidArgument(_))),
        "{err:?}"
    );
    assert_eq!(
        store.tags_of("demo", "chat", "u1").await.unwrap(),
        strings(&["beta", "cn"])
    );
    let t = store
        .unbind_tags("demo", "chat", "u1", &strings(&["cn"]))
        .await
        .unwrap();
    assert_eq!(t, strings(&["beta"]));
}

#[tokio::test]
async fn aliases_listing_is_scoped_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    store.touch_alias("demo", "chat", "u2").await.unwrap();
    store.touch_alias("demo", "chat", "u2").await.unwrap();
    store
        .append(vec![Append::new(alias("u1"), "x")], NOW)
        .await
        .unwrap();
    // A device stream is not an alias.
    store
        .append(
            vec![Append::new(StreamKey::device("demo", "chat", "d1"), "x")],
            NOW,
        )
        .await
        .unwrap();
    // Scopes whose concatenation collides must not mix: ("de","mochat").
    store.touch_alias("de", "mochat", "zz").await.unwrap();
    store.touch_alias("demo", "chatx", "u0").await.unwrap();
    store.touch_alias("demo", "chat", "u3").await.unwrap();
    assert_eq!(
        store.aliases("demo", "chat", None, 100).await.unwrap(),
        strings(&["u1", "u2", "u3"])
    );
    assert_eq!(
        store.aliases("demo", "chat", None, 2).await.unwrap(),
        strings(&["u1", "u2"])
    );
    assert_eq!(
        store.aliases("demo", "chat", Some("u2"), 2).await.unwrap(),
        strings(&["u3"])
    );
    assert_eq!(
        store.aliases("de", "mochat", None, 10).await.unwrap(),
        strings(&["zz"])
    );
    assert!(
        store
            .aliases("nope", "chat", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn uplink_dedup_record_lookup_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let get = |k: &'static str| store.uplink_outcome("demo", "chat", "u1", k);
    assert_eq!(get("k1").await.unwrap(), None);
    let first = UplinkOutcome::accepted("route-a");
    assert_eq!(
        store
            .record_uplink("demo", "chat", "u1", "k1", first.clone(), NOW)
            .await
            .unwrap(),
        first
    );
    assert_eq!(get("k1").await.unwrap(), Some(first.clone()));
    // A resend does not overwrite: the first outcome wins.
    let second = UplinkOutcome {
        code: 105,
        route_id: "route-b".into(),
        message: "nope".into(),
    };
    assert_eq!(
        store
            .record_uplink("demo", "chat", "u1", "k1", second.clone(), NOW + 5)
            .await
            .unwrap(),
        first
    );
    // Keys are per alias.
    assert_eq!(
        store
            .uplink_outcome("demo", "chat", "u2", "k1")
            .await
            .unwrap(),
        None
    );
    // Kept for the 24 h retention, then swept.
    assert_eq!(store.expire(NOW + DAY_MS - 1).await.unwrap(), 0);
    assert_eq!(get("k1").await.unwrap(), Some(first));
    assert_eq!(store.expire(NOW + DAY_MS).await.unwrap(), 1);
    assert_eq!(get("k1").await.unwrap(), None);
    // An expired (even unswept) record is replaced by a new one.
    store
        .record_uplink(
            "demo",
            "chat",
            "u1",
            "k2",
            UplinkOutcome::accepted("x"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .record_uplink("demo", "chat", "u1", "k2", second.clone(), NOW + DAY_MS)
            .await
            .unwrap(),
        second
    );
    assert_eq!(
        store.expire(NOW + DAY_MS + 1).await.unwrap(),
        0,
        "old index row is gone"
    );
    assert_eq!(get("k2").await.unwrap(), Some(second));
}

#[tokio::test]
async fn second_open_of_same_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let err = RedbStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(err.is_already_open(), "{err:?}");
    assert!(err.to_string().contains("already open"), "{err}");
    // The first instance still works.
    store
        .append(vec![Append::new(alias("u"), "x")], NOW)
        .await
        .unwrap();
}

#[test]
fn garbage_or_foreign_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    let junk: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &junk).unwrap();
    let err = RedbStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::InvalidFile { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        junk,
        "the file is left alone"
    );

    // A redb database of another application.
    let path = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, &str> = redb::TableDefinition::new("users");
            let mut t = txn.open_table(def).unwrap();
            t.insert("a", "b").unwrap();
        }
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::InvalidFile { .. }), "{err:?}");
    assert!(err.to_string().contains("another application"), "{err}");
}

#[tokio::test]
async fn corrupt_values_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = open(&path);
        store
            .append(vec![Append::new(alias("a"), "x")], NOW)
            .await
            .unwrap();
        store
            .append(vec![Append::new(alias("b"), "y")], NOW)
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    {
        // Overwrite message (stream 1, seq 1) and the metadata of stream 2,
        // following the layout in docs/storage.md.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let msgs: redb::TableDefinition<'_, (u64, u64), &[u8]> =
                redb::TableDefinition::new("messages");
            txn.open_table(msgs)
                .unwrap()
                .insert((1, 1), &[1u8, 0xff][..])
                .unwrap();
            let streams: redb::TableDefinition<'_, u64, &[u8]> =
                redb::TableDefinition::new("streams");
            txn.open_table(streams)
                .unwrap()
                .insert(2, &[7u8, 1, 2][..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(&path);
    let err = store.read(&alias("a"), 0, 10, NOW).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                table: "messages",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store.read(&alias("b"), 0, 10, NOW).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                table: "streams",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .append(vec![Append::new(alias("b"), "z")], NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // Other streams are unaffected.
    let d = store
        .append(vec![Append::new(alias("c"), "z")], NOW)
        .await
        .unwrap();
    assert_eq!(d[0].seq, 1);
}

#[test]
fn config_setters_validate() {
    let c = StoreConfig::default();
    assert_eq!(c.default_ttl(), Duration::from_secs(7 * 24 * 3600));
    assert_eq!(c.max_messages_per_stream(), 10_000);
    assert_eq!(c.uplink_retention(), Duration::from_secs(24 * 3600));
    assert!(c.clone().with_default_ttl(Duration::ZERO).is_err());
    assert!(
        c.clone()
            .with_uplink_retention(Duration::from_millis(10))
            .is_err()
    );
    assert!(c.clone().with_max_messages_per_stream(0).is_err());
    assert!(c.clone().with_max_batch(0).is_err());
    assert!(c.clone().with_queue_capacity(0).is_err());
    assert!(c.clone().with_sweep_chunk(0).is_err());
    assert!(c.clone().with_lazy_commits_per_flush(0).is_err());
    assert!(c.clone().with_cache_size(1024).is_err());
    assert!(c.clone().with_max_tags_per_alias(0).is_err());
    let c = c.with_max_batch(1).unwrap().with_sweep_chunk(3).unwrap();
    assert_eq!((c.max_batch(), c.sweep_chunk()), (1, 3));
}

// ---- Property test against an in-memory model ----

#[derive(Debug, Clone)]
enum Step {
    Append {
        stream: usize,
        n: usize,
        ttl: Option<u64>,
    },
    Read {
        stream: usize,
        after: u64,
        max: usize,
    },
    Advance(u64),
    Expire,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 1..4usize, prop::option::of(1..3_000u64))
            .prop_map(|(stream, n, ttl)| Step::Append { stream, n, ttl }),
        4 => (0..3usize, 0..14u64, 0..6usize).prop_map(|(stream, after, max)| Step::Read { stream, after, max }),
        2 => (0..1_500u64).prop_map(Step::Advance),
        1 => Just(Step::Expire),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Debug, Default)]
struct ModelStream {
    last_seq: u64,
    /// seq -> (message id, expires_at_ms, payload)
    kept: BTreeMap<u64, (u64, u64, String)>,
}

const MODEL_CAP: usize = 4;
const MODEL_TTL_MS: u64 = 2_000;

fn model_config() -> StoreConfig {
    StoreConfig::default()
        .with_max_messages_per_stream(MODEL_CAP as u64)
        .unwrap()
        .with_default_ttl(Duration::from_millis(MODEL_TTL_MS))
        .unwrap()
        .with_sweep_chunk(3)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let keys = [alias("p0"), alias("p1"), StreamKey::device("demo", "chat", "p0")];
        rt.block_on(async {
            let mut store = RedbStore::open(&path, model_config()).unwrap();
            let mut model: Vec<ModelStream> = (0..3).map(|_| ModelStream::default()).collect();
            let mut now = NOW;
            let mut next_id = 1u64;
            let mut counter = 0u32;
            for step in steps {
                match step {
                    Step::Append { stream, n, ttl } => {
                        let appends: Vec<Append> = (0..n).map(|_| {
                            counter += 1;
                            let a = Append::new(keys[stream].clone(), format!("m{counter}"));
                            match ttl { Some(t) => a.with_expires_at_ms(now + t), None => a }
                        }).collect();
                        let payloads: Vec<String> = (counter + 1 - n as u32..=counter).map(|c| format!("m{c}")).collect();
                        let done = store.append(appends, now).await.unwrap();
                        let m = &mut model[stream];
                        for (d, p) in done.iter().zip(payloads) {
                            m.last_seq += 1;
                            prop_assert_eq!(d.seq, m.last_seq);
                            prop_assert_eq!(d.message_id, next_id);
                            next_id += 1;
                            let exp = now + ttl.unwrap_or(MODEL_TTL_MS);
                            prop_assert_eq!(d.expires_at_ms, exp);
                            m.kept.insert(d.seq, (d.message_id, exp, p));
                            while m.kept.len() > MODEL_CAP {
                                m.kept.pop_first();
                            }
                        }
                    }
                    Step::Read { stream, after, max } => {
                        let b = store.read(&keys[stream], after, max, now).await.unwrap();
                        let m = &model[stream];
                        let live: Vec<(&u64, &(u64, u64, String))> =
                            m.kept.iter().filter(|(_, v)| v.1 > now).collect();
                        let first = live.first().map_or(m.last_seq + 1, |(s, _)| **s);
                        let want: Vec<(u64, u64, u64, String)> = live.iter()
                            .filter(|(s, _)| **s > after)
                            .take(max)
                            .map(|(s, v)| (**s, v.0, v.1, v.2.clone()))
                            .collect();
                        let got: Vec<(u64, u64, u64, String)> = b.messages.iter()
                            .map(|x| (x.seq, x.message_id, x.expires_at_ms, String::from_utf8(x.payload.to_vec()).unwrap()))
                            .collect();
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(b.first_seq, first);
                        prop_assert_eq!(b.last_seq, m.last_seq);
                    }
                    Step::Advance(dt) => now += dt,
                    Step::Expire => {
                        let removed = store.expire(now).await.unwrap();
                        let mut want = 0;
                        for m in &mut model {
                            let before = m.kept.len();
                            m.kept.retain(|_, v| v.1 > now);
                            want += before - m.kept.len();
                        }
                        prop_assert_eq!(removed, want);
                    }
                    Step::Reopen => {
                        drop(store);
                        store = RedbStore::open(&path, model_config()).unwrap();
                    }
                }
            }
            store.close().await.unwrap();
            Ok(())
        })?;
    }
}
