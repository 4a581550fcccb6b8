//! (c) PIKE_POSITIONS: per-device acked positions with compare-and-set,
//! only forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use bytes::Bytes;

use crate::common::*;

/// A position value: "<epoch>:<seq>" (the design's is binary; text here).
fn value(epoch: &str, seq: u64) -> Bytes {
    Bytes::from(format!("{epoch}:{seq}"))
}

fn parse(v: &[u8]) -> (String, u64) {
    let s = String::from_utf8_lossy(v);
    let (e, q) = s.split_once(':').unwrap_or(("", "0"));
    (e.to_owned(), q.parse().unwrap_or(0))
}

/// Moves `key` forward to `seq` (never back); returns (revision, conflicts).
pub async fn advance(store: &kv::Store, key: &str, epoch: &str, seq: u64) -> Res<(u64, u32)> {
    let (r, c, _) = advance_codes(store, key, epoch, seq).await?;
    Ok((r, c))
}

/// [`advance`], also returning the JetStream codes of the conflicts.
///
/// The first read is `kv.entry` (a direct get: any replica answers, it may
/// be stale). After a conflict the entry is read from the stream leader
/// (`STREAM.MSG.GET` last-by-subject), after a short jittered pause.
pub async fn advance_codes(store: &kv::Store, key: &str, epoch: &str, seq: u64) -> Res<(u64, u32, Vec<u64>)> {
    let mut conflicts = 0;
    let mut codes = Vec::new();
    let subject = format!("$KV.{}.{key}", store.name);
    for attempt in 0..20u32 {
        let current: Option<(u64, Option<(String, u64)>)> = if attempt == 0 {
            store.entry(key).await?.map(|e| {
                let v = (e.operation == kv::Operation::Put).then(|| parse(&e.value));
                (e.revision, v)
            })
        } else {
            let pause = 1 + (u64::from(attempt) * 7 + seq) % 5;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match store.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => {
                    let op = m.headers.get("KV-Operation").map(|v| v.as_str().to_owned());
                    let v = op.is_none().then(|| parse(&m.payload));
                    Some((m.sequence, v))
                }
                Err(_) => None,
            }
        };
        let revision = match current {
            Some((rev, Some((e_epoch, e_seq)))) => {
                if e_epoch == epoch && e_seq >= seq {
                    return Ok((rev, conflicts, codes)); // already there or further
                }
                rev
            }
            Some((rev, None)) => rev, // deleted/purged: CAS on its revision
            None => 0,                // absent: create
        };
        match store.update(key, value(epoch, seq), revision).await {
            Ok(r) => return Ok((r, conflicts, codes)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision || is_cas_conflict(&e) => {
                conflicts += 1;
                codes.extend(js_code(&e));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!("too many conflicts: {codes:?}").into())
}

pub async fn run() -> Res {
    let client = connect("c-kv").await?;
    let js = js(&client);
    let t = Instant::now();
    let store = fresh_kv(&js, positions_config()).await?;
    println!("create_key_value(PIKE_POSITIONS, R3, file, history 1): {}", ms(t.elapsed()));

    let key = "demo.chat.u42.phone-1";
    let r1 = store.create(key, value("e1", 1)).await?;
    println!("create({key}, e1:1) -> revision {r1}");
    match store.create(key, value("e1", 9)).await {
        Ok(r) => println!("create again -> ok?! {r}"),
        Err(e) => println!("create again -> Err kind={:?} '{e}'", e.kind()),
    }
    let r2 = store.update(key, value("e1", 5), r1).await?;
    println!("update({key}, e1:5, revision {r1}) -> revision {r2}");
    match store.update(key, value("e1", 3), r1).await {
        Ok(r) => println!("update with stale revision -> ok?! {r}"),
        Err(e) => println!(
            "update({key}, e1:3, stale revision {r1}) -> Err kind={:?} '{e}'",
            e.kind()
        ),
    }
    let entry = store.entry(key).await?.unwrap();
    println!(
        "entry -> value={:?} revision={} (stream seq of the bucket)",
        String::from_utf8_lossy(&entry.value),
        entry.revision
    );
    match store.update("bad key with spaces", value("e1", 1), 0).await {
        Ok(_) => println!("invalid key accepted?!"),
        Err(e) => println!("update('bad key with spaces') -> Err kind={:?} (keys: [-/_=.a-zA-Z0-9]+)", e.kind()),
    }

    // Two writers race forward on one key: A writes the even positions, B
    // the odd ones, 1..=200, concurrently. The result must be 200 and no
    // write may move it back.
    println!("\n-- two concurrent writers, positions 1..=200 on one key");
    let key2 = "demo.chat.u42.phone-2";
    let conflicts = Arc::new(AtomicU64::new(0));
    let c10164 = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for parity in 0..2u64 {
        let store = store.clone();
        let conflicts = conflicts.clone();
        let c10164 = c10164.clone();
        tasks.push(tokio::spawn(async move {
            for seq in (1..=200u64).filter(|s| s % 2 == parity) {
                let (_, c, codes) = advance_codes(&store, key2, "e1", seq).await.expect("advance");
                conflicts.fetch_add(u64::from(c), Ordering::Relaxed);
                c10164.fetch_add(codes.iter().filter(|c| **c == 10164).count() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let final_entry = store.entry(key2).await?.unwrap();
    println!(
        "  final value {:?} after {} with {} CAS conflicts (retried; {} of them error 10164)",
        String::from_utf8_lossy(&final_entry.value),
        ms(t.elapsed()),
        conflicts.load(Ordering::Relaxed),
        c10164.load(Ordering::Relaxed)
    );

    // A new epoch resets the position (the stream was recreated).
    let (r, _) = advance(&store, key2, "e2", 3).await?;
    println!("  advance to e2:3 (new epoch) -> revision {r}, value {:?}", String::from_utf8_lossy(&store.get(key2).await?.unwrap()));

    // Latency: serial updates on one key (the ack path of one device).
    let mut samples = Vec::new();
    let mut rev = store.entry(key).await?.unwrap().revision;
    for seq in 6..306u64 {
        let t = Instant::now();
        rev = store.update(key, value("e1", seq), rev).await?;
        samples.push(t.elapsed());
    }
    println!("\nserial kv.update (CAS) latency: {}", pct(&mut samples));
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let _ = store.entry(key).await?;
        samples.push(t.elapsed());
    }
    println!("serial kv.entry latency: {}", pct(&mut samples));

    // Throughput: 5,000 devices acking concurrently (256 in flight).
    let t = Instant::now();
    let n = 5_000u64;
    let mut set = tokio::task::JoinSet::new();
    let mut done = 0u64;
    for d in 0..n {
        let store = store.clone();
        set.spawn(async move { store.put(format!("demo.chat.u{d}.dev{d}"), value("e1", d + 1)).await });
        if set.len() >= 256 {
            set.join_next().await.unwrap()??;
            done += 1;
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
        done += 1;
    }
    let took = t.elapsed();
    println!(
        "{done} kv.put of distinct keys, 256 in flight: {} = {:.0}/s",
        ms(took),
        done as f64 / took.as_secs_f64()
    );
    let _ = Duration::ZERO;
    Ok(())
}
