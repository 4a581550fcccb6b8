//! Idempotent creation of the downlink stream and the buckets (plan §4.3–4.5),
//! and adoption of the stream epoch.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::error::{Error, Result, STREAM_NAME_EXIST, js_code};
use crate::keys::{
    DIRECTORY_BUCKET, DOWNLINK_STREAM, NODES_BUCKET, POSITIONS_BUCKET, PRESENCE_BUCKET,
    UPLINKS_BUCKET,
};
use crate::nodes::NODE_LEASE;

/// Stream metadata key holding the epoch.
pub(crate) const EPOCH_KEY: &str = "pike_epoch";

/// Pause between bootstrap attempts while JetStream is not ready.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The downlink stream's configuration with `epoch` in its metadata.
pub(crate) fn downlink_config(config: &ClusterConfig, epoch: u64) -> stream::Config {
    stream::Config {
        name: DOWNLINK_STREAM.into(),
        subjects: vec!["dl.>".into()],
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: config.max_age,
        max_messages_per_subject: config.max_messages_per_subject,
        duplicate_window: config.dedup_window,
        allow_direct: true,
        allow_message_ttl: true,
        republish: Some(stream::Republish {
            source: "dl.>".into(),
            destination: "live.>".into(),
            headers_only: false,
        }),
        metadata: [(EPOCH_KEY.to_string(), epoch.to_string())].into(),
        ..Default::default()
    }
}

/// `PIKE_POSITIONS`: file, history 1, CAS per key.
pub(crate) fn positions(config: &ClusterConfig) -> kv::Config {
    kv::Config {
        bucket: POSITIONS_BUCKET.into(),
        history: 1,
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        max_age: config.positions_max_age,
        ..Default::default()
    }
}

/// `PIKE_PRESENCE`: memory (soft state), per-key TTL (`limit_markers`
/// enables per-message TTL); `max_age` of twice the TTL bounds how long a
/// release's delete marker stays.
pub(crate) fn presence(config: &ClusterConfig) -> kv::Config {
    kv::Config {
        bucket: PRESENCE_BUCKET.into(),
        history: 1,
        num_replicas: config.replicas,
        storage: stream::StorageType::Memory,
        max_age: config.presence_ttl * 2,
        limit_markers: Some(Duration::from_secs(60)),
        ..Default::default()
    }
}

/// `PIKE_DIRECTORY`: file, history 1; tags and known aliases, one key
/// each, never expiring (an unbind deletes).
pub(crate) fn directory(config: &ClusterConfig) -> kv::Config {
    kv::Config {
        bucket: DIRECTORY_BUCKET.into(),
        history: 1,
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// `PIKE_UPLINKS`: file, history 1; one key per delivered uplink message,
/// kept `uplink_record_max_age` (the window in which a resend is answered
/// from the record).
pub(crate) fn uplinks(config: &ClusterConfig) -> kv::Config {
    kv::Config {
        bucket: UPLINKS_BUCKET.into(),
        history: 1,
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        max_age: config.uplink_record_max_age,
        ..Default::default()
    }
}

/// `PIKE_NODES`: memory, history 1; one key per gateway node, rewritten
/// every [`LEASE_REFRESH`](crate::nodes::LEASE_REFRESH) and gone
/// [`NODE_LEASE`] after the last write (a dead node drops out).
pub(crate) fn nodes(config: &ClusterConfig) -> kv::Config {
    kv::Config {
        bucket: NODES_BUCKET.into(),
        history: 1,
        num_replicas: config.replicas,
        storage: stream::StorageType::Memory,
        max_age: NODE_LEASE,
        ..Default::default()
    }
}

fn fresh_epoch() -> u64 {
    fastrand::u64(1..=u64::MAX >> 1)
}

/// The epoch in a stream's metadata.
pub(crate) fn epoch_of(info: &stream::Info) -> Result<u64> {
    info.config
        .metadata
        .get(EPOCH_KEY)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|e| *e != 0)
        .ok_or_else(|| {
            Error::Failed(format!(
                "stream {DOWNLINK_STREAM} exists without a valid {EPOCH_KEY} in its metadata \
                 (was it updated without it?)"
            ))
        })
}

/// Creates the downlink stream with a fresh epoch, or adopts the existing
/// stream's epoch. Never updates an existing stream (that would erase the
/// epoch: plan §4.3).
pub(crate) async fn downlink(
    js: &jetstream::Context,
    config: &ClusterConfig,
    deadline: Instant,
) -> Result<(stream::Stream, u64)> {
    let epoch = fresh_epoch();
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, js.create_stream(downlink_config(config, epoch)))
            .await
        {
            Err(_) => break,
            Ok(Ok(mut stream)) => {
                let info = stream.info().await.cloned();
                match info {
                    Ok(info) => {
                        let epoch = epoch_of(&info)?;
                        return Ok((stream, epoch));
                    }
                    Err(e) => last_error = format!("stream info: {e}"),
                }
            }
            Ok(Err(e)) if js_code(&e) == Some(STREAM_NAME_EXIST) => {
                match js.get_stream(DOWNLINK_STREAM).await {
                    Ok(mut stream) => match stream.info().await.cloned() {
                        Ok(info) => {
                            let existing = epoch_of(&info)?;
                            tracing::info!(
                                epoch = existing,
                                "adopted the existing downlink stream"
                            );
                            return Ok((stream, existing));
                        }
                        Err(e) => last_error = format!("stream info: {e}"),
                    },
                    Err(e) => last_error = format!("get stream: {e}"),
                }
            }
            Ok(Err(e)) => last_error = format!("create stream: {e}"),
        }
        tracing::debug!(%last_error, "bootstrap: downlink stream not ready, retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(Error::Unavailable(format!(
        "creating {DOWNLINK_STREAM} timed out (last error: {last_error})"
    )))
}

/// Creates the bucket, or opens it when it exists (with any configuration).
pub(crate) async fn bucket(
    js: &jetstream::Context,
    config: kv::Config,
    deadline: Instant,
) -> Result<kv::Store> {
    let name = config.bucket.clone();
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, js.create_key_value(config.clone())).await {
            Err(_) => break,
            Ok(Ok(store)) => return Ok(store),
            Ok(Err(e)) => {
                last_error = format!("create bucket: {e}");
                if js_code(&e) == Some(STREAM_NAME_EXIST) {
                    match js.get_key_value(&name).await {
                        Ok(store) => return Ok(store),
                        Err(e) => last_error = format!("open bucket: {e}"),
                    }
                }
            }
        }
        tracing::debug!(bucket = %name, %last_error, "bootstrap: bucket not ready, retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(Error::Unavailable(format!(
        "creating bucket {name} timed out (last error: {last_error})"
    )))
}
