//! `pike room`: live rooms. `join` and `pull` as a device (batches printed
//! as JSON lines); `publish` and `stats` through the HTTP API, as a backend
//! would.

use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand};
use pike_api::{ClientEvent, RoomClass, RoomMessage, RoomPosition};

use super::device::{Device, DeviceArgs};
use super::{Common, Failure, Interrupt, refusal, timeout_secs};

/// Arguments of `pike room`.
#[derive(Debug, Args)]
pub(crate) struct RoomArgs {
    #[command(subcommand)]
    command: RoomCommand,
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Join a room as a device and print its batches as JSON lines (one per
    /// batch) until interrupted.
    Join(JoinArgs),
    /// Pull a room once from an offset (default: everything it holds) and
    /// print the batch as a JSON line.
    Pull(PullArgs),
    /// Publish a message into a room through the HTTP API.
    Publish(PublishArgs),
    /// Show a room (or every room of the app) through the HTTP API.
    Stats(StatsArgs),
}

/// Arguments of `pike room join`.
#[derive(Debug, Args)]
struct JoinArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// First offset wanted (default: the room's tail, live messages only).
    #[arg(long)]
    from: Option<u64>,
    /// Exit after this many batches.
    #[arg(long)]
    count: Option<u64>,
    /// The room.
    room: String,
}

/// Arguments of `pike room pull`.
#[derive(Debug, Args)]
struct PullArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// First offset wanted (0: from the oldest message the room holds).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How long to wait for a message when there is nothing at or after the
    /// offset, seconds.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// The room.
    room: String,
}

/// Where the HTTP API is and how to authenticate.
#[derive(Debug, Args)]
struct ApiArgs {
    /// The HTTP API.
    #[arg(long, env = "PIKE_API", default_value = "http://127.0.0.1:9380")]
    api: String,
    /// The app's API key (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds to wait for the HTTP API's answer (1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_secs)]
    timeout: Duration,
}

/// Arguments of `pike room publish`.
#[derive(Debug, Args)]
struct PublishArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Reliable (never dropped while the room exists) instead of droppable.
    #[arg(long)]
    reliable: bool,
    /// Priority (0 = normal): higher first in a batch, shed last.
    #[arg(long, default_value_t = 0)]
    priority: u32,
    /// Publisher id, for the per-publisher rate cap.
    #[arg(long)]
    publisher: Option<String>,
    /// The room.
    room: String,
    /// The message (UTF-8); words are joined with spaces.
    #[arg(required = true)]
    message: Vec<String>,
}

/// Arguments of `pike room stats`.
#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The room (default: every room of the app).
    room: Option<String>,
}

pub(crate) async fn run(common: &Common, args: RoomArgs) -> Result<(), Failure> {
    match args.command {
        RoomCommand::Join(args) => {
            let mut interrupt = Interrupt::new();
            tokio::select! {
                result = join(common, args) => result,
                () = interrupt.recv() => Ok(()),
            }
        }
        RoomCommand::Pull(args) => pull(common, args).await,
        RoomCommand::Publish(args) => publish(common, args).await,
        RoomCommand::Stats(args) => stats(common, args).await,
    }
}

async fn join(common: &Common, args: JoinArgs) -> Result<(), Failure> {
    let device = args.device.connect(common).await?;
    let position = join_room(&device, &args.room, args.from).await?;
    eprintln!(
        "pike: joined room {:?} (head {}, tail {})",
        args.room, position.head, position.tail
    );
    let mut batches = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        if handle(device.client.next_event().await)? {
            batches += 1;
            if args.count.is_some_and(|n| batches >= n) {
                return Ok(());
            }
        }
    }
}

async fn pull(common: &Common, args: PullArgs) -> Result<(), Failure> {
    let device = args.device.connect(common).await?;
    join_room(&device, &args.room, Some(args.from)).await?;
    let waited = tokio::time::timeout(Duration::from_secs(args.wait), async {
        loop {
            if handle(device.client.next_event().await)? {
                return Ok(());
            }
        }
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "pike: nothing at or after offset {} within {} s",
                args.from, args.wait
            );
            Ok(())
        }
    }
}

/// Joins `room` from `from`, waiting at most the device's timeout.
async fn join_room(
    device: &Device,
    room: &str,
    from: Option<u64>,
) -> Result<RoomPosition, Failure> {
    tokio::time::timeout(device.timeout, device.client.join_room(room, from))
        .await
        .map_err(|_| {
            Failure::unreachable(format!(
                "joining {room:?}: no answer within {} s",
                device.timeout.as_secs()
            ))
        })?
        .map_err(|e| refusal::operation(&format!("joining {room:?}"), &e))
}

/// Prints a batch as a JSON line; `Ok(true)` when the event was one.
fn handle(event: Option<ClientEvent>) -> Result<bool, Failure> {
    match event {
        Some(ClientEvent::RoomMessages {
            room,
            messages,
            missed,
        }) => {
            let line = serde_json::json!({
                "room": room,
                "missed": missed,
                "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
            });
            println!("{line}");
            Ok(true)
        }
        Some(ClientEvent::RoomJoinFailed {
            room,
            code,
            message,
        }) => Err(Failure::failed(format!(
            "the gateway refused to rejoin {room:?} ({code:?}): {message}"
        ))),
        Some(ClientEvent::Disconnected { reason }) => {
            eprintln!("pike: disconnected ({reason:?}); reconnecting");
            Ok(false)
        }
        Some(ClientEvent::OnStop { reason }) => Err(refusal::stopped(reason)),
        Some(_) => Ok(false),
        None => Err(Failure::failed("the client ended")),
    }
}

fn message_json(message: &RoomMessage) -> serde_json::Value {
    let class = match message.class() {
        RoomClass::Reliable => "reliable",
        RoomClass::Droppable => "droppable",
    };
    let mut value = serde_json::json!({
        "offset": message.offset,
        "class": class,
        "priority": message.priority,
    });
    match std::str::from_utf8(&message.payload) {
        Ok(text) => value["payload"] = text.into(),
        Err(_) => {
            value["payload_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&message.payload)
                .into();
        }
    }
    value
}

/// Sends a request to the HTTP API and prints the JSON answer.
async fn call(
    common: &Common,
    api: &ApiArgs,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
) -> Result<(), Failure> {
    let key = super::api_key(common, api.api_key.as_deref())?;
    super::api_request(&api.api, &key, path, body, what, api.timeout).await
}

/// A room name as one URL path segment.
fn segment(room: &str) -> String {
    let mut out = String::with_capacity(room.len());
    for byte in room.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn publish(common: &Common, args: PublishArgs) -> Result<(), Failure> {
    let mut body = serde_json::json!({
        "payload": args.message.join(" "),
        "class": if args.reliable { "reliable" } else { "droppable" },
    });
    if args.priority > 0 {
        body["priority"] = args.priority.into();
    }
    if let Some(publisher) = args.publisher {
        body["publisher"] = publisher.into();
    }
    let path = format!("/v1/rooms/{}/publish", segment(&args.room));
    call(common, &args.api, &path, Some(body), "publish").await
}

async fn stats(common: &Common, args: StatsArgs) -> Result<(), Failure> {
    let path = match &args.room {
        Some(room) => format!("/v1/rooms/{}", segment(room)),
        None => "/v1/rooms".to_owned(),
    };
    call(common, &args.api, &path, None, "room query").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_become_one_path_segment() {
        assert_eq!(segment("live:42"), "live:42");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
