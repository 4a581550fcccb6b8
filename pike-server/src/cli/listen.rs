//! `pike listen`: connect as a device and print downlink as JSON lines.

use base64::Engine as _;
use clap::Args;
use pike_api::ClientEvent;

use super::device::DeviceArgs;
use super::{Common, Failure, Interrupt, refusal};

/// Arguments of `pike listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Bind these tags after logging in (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

/// Runs until `--count` messages arrived, or Ctrl-C or SIGTERM (status 0).
pub(crate) async fn run(common: &Common, args: ListenArgs) -> Result<(), Failure> {
    let mut interrupt = Interrupt::new();
    tokio::select! {
        result = listen(common, args) => result,
        () = interrupt.recv() => Ok(()),
    }
}

async fn listen(common: &Common, args: ListenArgs) -> Result<(), Failure> {
    let device = args.device.connect(common).await?;
    if !args.tags.is_empty() {
        let tags = tokio::time::timeout(
            device.timeout,
            device.client.update_tags(args.tags.clone(), Vec::new()),
        )
        .await
        .map_err(|_| {
            Failure::unreachable(format!(
                "binding tags: no answer within {} s",
                device.timeout.as_secs()
            ))
        })?
        .map_err(|e| refusal::operation("binding tags", &e))?;
        eprintln!("pike: tags bound: {}", tags.join(", "));
    }
    let mut received = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        match device.client.next_event().await {
            Some(ClientEvent::OnReceive(message)) => {
                let mut line = serde_json::json!({
                    "biz": device.biz,
                    "alias": device.alias,
                    "seq": message.seq,
                    "priority": message.priority,
                    "transient": message.is_transient(),
                });
                if message.message_id != 0 {
                    line["message_id"] = message.message_id.to_string().into();
                }
                match std::str::from_utf8(&message.payload) {
                    Ok(text) => line["payload"] = text.into(),
                    Err(_) => {
                        line["payload_base64"] = base64::engine::general_purpose::STANDARD
                            .encode(&message.payload)
                            .into();
                    }
                }
                println!("{line}");
                received += 1;
                if args.count.is_some_and(|n| received >= n) {
                    return Ok(());
                }
            }
            Some(ClientEvent::Gap { expected, got }) => {
                eprintln!(
                    "pike: messages {expected}..{} expired before delivery",
                    got.saturating_sub(1)
                );
            }
            Some(ClientEvent::Disconnected { reason }) => {
                eprintln!("pike: disconnected ({reason:?}); reconnecting")
            }
            Some(ClientEvent::Connected { .. }) => eprintln!("pike: connected"),
            Some(ClientEvent::OnStop { reason }) => return Err(refusal::stopped(reason)),
            Some(_) => {}
            None => return Err(Failure::failed("the client ended")),
        }
    }
}
