//! Connection helpers, the stream and bucket configs of the design, timing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};

pub const DOWNLINK: &str = "PIKE_DOWNLINK";
pub const POSITIONS: &str = "PIKE_POSITIONS";
pub const PRESENCE: &str = "PIKE_PRESENCE";

pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Client URLs of the three nodes (PIKE_NATS_URLS, comma separated).
pub fn urls() -> Vec<ServerAddr> {
    std::env::var("PIKE_NATS_URLS")
        .unwrap_or_else(|_| {
            "nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224".into()
        })
        .split(',')
        .map(|u| u.parse().expect("url"))
        .collect()
}

pub fn nats_dir() -> PathBuf {
    std::env::var("PIKE_NATS_DIR")
        .unwrap_or_else(|_| "/work/cluster-design/run/nats".into())
        .into()
}

/// The options a gateway would use: short request timeout (a push must be
/// answered, 503 if need be, well before an HTTP client gives up), events
/// logged with a timestamp.
pub fn options(name: &str) -> ConnectOptions {
    let tag = name.to_owned();
    let t0 = Instant::now();
    let mut options = ConnectOptions::new();
    if std::env::var("NATS_FAST_RECONNECT").is_ok() {
        // Default: exponential backoff growing to several seconds per
        // attempt; a gateway wants to be back within ~1 s of NATS.
        options = options.reconnect_delay_callback(|attempts| {
            Duration::from_millis((50u64 << attempts.min(4)).min(500) + (attempts as u64 * 37) % 100)
        });
    }
    options
        .name(name)
        .request_timeout(Some(Duration::from_secs(2)))
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let tag = tag.clone();
            async move {
                eprintln!("    [{tag} +{:.3}s] nats event: {event}", t0.elapsed().as_secs_f64());
            }
        })
}

pub async fn connect(name: &str) -> Res<Client> {
    Ok(options(name).connect(urls()).await?)
}

/// Connects to one node only (for the subscription tests).
pub async fn connect_one(name: &str, index: usize) -> Res<Client> {
    Ok(options(name).connect(urls()[index].clone()).await?)
}

pub fn js(client: &Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone())
}

/// The downlink stream of the design: one stream, per-alias subjects,
/// R3, file, dedup window, direct get, per-message TTL, republish of every
/// stored message to the live subjects.
pub fn downlink_config(epoch: &str) -> stream::Config {
    stream::Config {
        name: DOWNLINK.into(),
        subjects: vec!["dl.>".into()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: Duration::from_secs(7 * 24 * 3600),
        max_messages_per_subject: 10_000,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        allow_message_ttl: true,
        republish: Some(stream::Republish {
            source: "dl.>".into(),
            destination: "live.>".into(),
            headers_only: false,
        }),
        metadata: [("pike_epoch".to_string(), epoch.to_string())].into(),
        ..Default::default()
    }
}

/// Deletes (if present) and creates the downlink stream; returns it.
pub async fn fresh_downlink(js: &jetstream::Context, epoch: &str) -> Res<stream::Stream> {
    let _ = js.delete_stream(DOWNLINK).await;
    Ok(js.create_stream(downlink_config(epoch)).await?)
}

pub fn positions_config() -> kv::Config {
    kv::Config {
        bucket: POSITIONS.into(),
        history: 1,
        num_replicas: 3,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(30 * 24 * 3600),
        ..Default::default()
    }
}

pub fn presence_config() -> kv::Config {
    kv::Config {
        bucket: PRESENCE.into(),
        history: 1,
        num_replicas: 3,
        // Soft state (node leases decide liveness): memory is enough.
        storage: if std::env::var("PIKE_PRESENCE_FILE").is_ok() {
            stream::StorageType::File
        } else {
            stream::StorageType::Memory
        },
        // Enables per-key TTL (allow_msg_ttl) and delete markers that live
        // this long when a key expires.
        limit_markers: Some(Duration::from_secs(60)),
        ..Default::default()
    }
}

pub async fn fresh_kv(js: &jetstream::Context, config: kv::Config) -> Res<kv::Store> {
    let _ = js.delete_key_value(&config.bucket).await;
    Ok(js.create_key_value(config).await?)
}

/// Percentiles of durations, in ms.
pub fn pct(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "n=0".into();
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    )
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// GET a monitoring endpoint of node `n` (1..3) as JSON.
pub async fn monitor(n: usize, path: &str) -> Res<serde_json::Value> {
    let base: u16 = std::env::var("PIKE_NATS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(14222);
    let port = base + 4000 + (n as u16 - 1);
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=3).read().decode())"
        ))
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("monitor {n}{path}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The pid of node `n` (1..3) from ci-install.sh's pid file.
pub fn node_pid(n: usize) -> Option<i32> {
    std::fs::read_to_string(nats_dir().join(format!("n{n}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SIGKILL node `n` (a server this test run started, by its pid file).
pub async fn kill_node(n: usize) -> Res {
    let pid = node_pid(n).ok_or("no pid file")?;
    let status = tokio::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .await?;
    if !status.success() {
        return Err(format!("kill -KILL {pid} failed").into());
    }
    let _ = std::fs::remove_file(nats_dir().join(format!("n{n}.pid")));
    Ok(())
}

/// Starts node `n` again through ci-install.sh (same config and data).
pub async fn restart_node(n: usize) -> Res {
    restart_nodes(&[n]).await
}

/// Starts nodes again together (after a full outage one node alone never
/// becomes healthy: no meta quorum).
pub async fn restart_nodes(nodes: &[usize]) -> Res {
    let script = std::env::var("PIKE_CI_INSTALL")
        .unwrap_or_else(|_| "/work/cluster-design/ci-install.sh".into());
    let status = tokio::process::Command::new(script)
        .arg("restart")
        .args(nodes.iter().map(|n| n.to_string()))
        .status()
        .await?;
    if !status.success() {
        return Err(format!("restart nodes {nodes:?} failed").into());
    }
    Ok(())
}

/// Node index (1..3) of a server name `pike-nN`.
pub fn node_of(server_name: &str) -> Option<usize> {
    server_name.strip_prefix("pike-n")?.parse().ok()
}

/// A compare-and-set conflict: JetStream error 10071 ("wrong last sequence:
/// N", mapped by async-nats to WrongLastSequence / WrongLastRevision) or
/// 10164 ("wrong last sequence", no number: another CAS on the same subject
/// is still being proposed; async-nats 0.51 reports it as kind Other).
pub fn is_cas_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            let code = js.error_code();
            return code == async_nats::jetstream::ErrorCode(10071)
                || code == async_nats::jetstream::ErrorCode(10164);
        }
        cur = e.source();
    }
    false
}

/// The JetStream error code in an error chain, if any.
pub fn js_code(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        cur = e.source();
    }
    None
}

/// CPU seconds (user + system) used so far by each of the three nodes.
pub fn nodes_cpu() -> [f64; 3] {
    let mut out = [0.0; 3];
    for (i, slot) in out.iter_mut().enumerate() {
        if let Some(pid) = node_pid(i + 1)
            && let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(rest) = stat.rsplit(')').next()
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields after the command: state is [0], utime [11], stime [12]
            let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            *slot = ticks / 100.0;
        }
    }
    out
}

/// CPU seconds of this process.
pub fn self_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

/// "n1 a s, n2 b s, n3 c s = total; x us per message".
pub fn cpu_report(before: [f64; 3], after: [f64; 3], messages: usize) -> String {
    let d: Vec<f64> = before.iter().zip(after).map(|(b, a)| a - b).collect();
    let total: f64 = d.iter().sum();
    format!(
        "nats-server CPU n1 {:.2}s n2 {:.2}s n3 {:.2}s = {:.2}s, {:.1} CPU-us per message over the 3 nodes",
        d[0], d[1], d[2], total, total * 1e6 / messages as f64
    )
}
