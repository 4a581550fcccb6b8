//! `pike push --receipt`: follows the message's status
//! (`GET /v1/messages/{id}`, `docs/receipts.md`) and prints each device
//! event once, as the receipt webhook's event JSON, until the message is
//! settled or the wait is over. The CLI cannot be a receipt webhook (the
//! webhook is per business, in the gateway's config), so it polls.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::Failure;
use crate::http::model::{DeviceStatusBody, MessageStatusResponse, PushResponse};
use crate::receipts::{ReceiptEvent, ReceiptKind};

/// How often the status is asked for.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Exit status when `--receipt-timeout` passed with devices still pending
/// (or none known yet): documented in `pike --help` and the README.
pub(crate) const PENDING_STATUS: u8 = 11;

/// Where and how long to follow a message.
pub(crate) struct Follow<'a> {
    pub(crate) api: &'a str,
    pub(crate) api_key: &'a str,
    pub(crate) app: &'a str,
    /// Longest one status request may take.
    pub(crate) request_timeout: Duration,
    /// Longest the whole wait may take.
    pub(crate) wait: Duration,
}

/// Polls the status of `pushed` every [`POLL_INTERVAL`] and prints the new
/// events until [`settled`] or `follow.wait` passed.
pub(crate) async fn follow(follow: Follow<'_>, pushed: &PushResponse) -> Result<(), Failure> {
    let deadline = Instant::now() + follow.wait;
    let path = format!("/v1/messages/{}", pushed.message_id);
    let mut seen = HashSet::new();
    let mut pending: Option<usize> = None;
    loop {
        let asked = tokio::time::timeout_at(
            deadline,
            crate::cli::api_call(
                follow.api,
                follow.api_key,
                &path,
                None,
                "message status",
                follow.request_timeout,
            ),
        )
        .await;
        let Ok(answer) = asked else { break };
        let status: MessageStatusResponse = serde_json::from_str(&answer?).map_err(|e| {
            Failure::failed(format!(
                "the message status is not the documented JSON: {e}"
            ))
        })?;
        for event in new_events(&status, follow.app, &mut seen) {
            match serde_json::to_string(&event) {
                Ok(line) => println!("{line}"),
                Err(e) => return Err(Failure::failed(format!("cannot print a receipt: {e}"))),
            }
        }
        if settled(&status, pushed.online) {
            return Ok(());
        }
        pending = Some(unsettled(&status));
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(deadline)).await;
        if Instant::now() >= deadline {
            break;
        }
    }
    let what = match pending {
        Some(0) | None => "no device known for it yet".to_owned(),
        Some(n) => format!("{n} device(s) still pending"),
    };
    Err(Failure {
        message: format!(
            "message {}: {what} after {} s (--receipt-timeout)",
            pushed.message_id,
            follow.wait.as_secs()
        ),
        status: PENDING_STATUS,
    })
}

/// The events of `status` not in `seen` (which they are added to), per
/// device in the order delivered, acked, expired, dropped.
fn new_events(
    status: &MessageStatusResponse,
    app: &str,
    seen: &mut HashSet<(String, String, ReceiptKind)>,
) -> Vec<ReceiptEvent> {
    let mut events = Vec::new();
    for device in &status.devices {
        for (kind, at) in [
            (ReceiptKind::Delivered, device.delivered_at),
            (ReceiptKind::Acked, device.acked_at),
            (ReceiptKind::Expired, device.expired_at),
            (ReceiptKind::Dropped, device.dropped_at),
        ] {
            let Some(at) = at else { continue };
            if seen.insert((device.alias.clone(), device.device.clone(), kind)) {
                events.push(ReceiptEvent {
                    message_id: status.message_id.clone(),
                    app: app.to_owned(),
                    biz: status.biz.clone(),
                    alias: device.alias.clone(),
                    device: device.device.clone(),
                    event: kind,
                    at,
                });
            }
        }
    }
    events
}

/// Whether `device` has its last event: acked or expired (reliable),
/// delivered or dropped (transient).
fn device_done(device: &DeviceStatusBody, reliable: bool) -> bool {
    if reliable {
        device.acked_at.is_some() || device.expired_at.is_some()
    } else {
        device.delivered_at.is_some() || device.dropped_at.is_some()
    }
}

/// Devices listed that are not done.
fn unsettled(status: &MessageStatusResponse) -> usize {
    status
        .devices
        .iter()
        .filter(|d| !device_done(d, status.reliable))
        .count()
}

/// Nothing more will happen that the wait is for: the message expired
/// (its notices are made), or every device listed is done and at least
/// one is listed (a reliable message waits for a device to come), or a
/// transient push reached no connection (`online` 0 in its answer).
fn settled(status: &MessageStatusResponse, online: usize) -> bool {
    if status.expired {
        return true;
    }
    if !status.reliable && online == 0 {
        return true;
    }
    !status.devices.is_empty() && unsettled(status) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, times: [Option<u64>; 4]) -> DeviceStatusBody {
        DeviceStatusBody {
            alias: "u42".to_owned(),
            device: name.to_owned(),
            delivered_at: times[0],
            acked_at: times[1],
            expired_at: times[2],
            dropped_at: times[3],
        }
    }

    fn status(
        reliable: bool,
        expired: bool,
        devices: Vec<DeviceStatusBody>,
    ) -> MessageStatusResponse {
        MessageStatusResponse {
            message_id: "7".to_owned(),
            biz: "chat".to_owned(),
            reliable,
            stored: reliable,
            created_at: 1,
            expires_at: 2,
            expired,
            pending: 0,
            partial: false,
            devices,
        }
    }

    #[test]
    fn each_event_is_printed_once_in_order() {
        let mut seen = HashSet::new();
        let first = status(
            true,
            false,
            vec![device("d1", [Some(10), None, None, None])],
        );
        let events = new_events(&first, "demo", &mut seen);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, ReceiptKind::Delivered);
        assert_eq!(events[0].at, 10);
        assert_eq!(events[0].app, "demo");
        assert_eq!(events[0].biz, "chat");
        assert_eq!(events[0].message_id, "7");
        assert!(new_events(&first, "demo", &mut seen).is_empty());

        let later = status(
            true,
            false,
            vec![
                device("d1", [Some(10), Some(12), None, None]),
                device("d2", [Some(11), Some(13), None, None]),
            ],
        );
        let kinds: Vec<_> = new_events(&later, "demo", &mut seen)
            .into_iter()
            .map(|e| (e.device, e.event))
            .collect();
        assert_eq!(
            kinds,
            [
                ("d1".to_owned(), ReceiptKind::Acked),
                ("d2".to_owned(), ReceiptKind::Delivered),
                ("d2".to_owned(), ReceiptKind::Acked),
            ]
        );
    }

    #[test]
    fn settled_when_every_listed_device_acked_or_expired() {
        assert!(!settled(&status(true, false, vec![]), 1), "no device yet");
        let delivered = device("d1", [Some(1), None, None, None]);
        let acked = device("d2", [Some(1), Some(2), None, None]);
        let expired = device("d3", [None, None, Some(3), None]);
        assert!(!settled(
            &status(true, false, vec![delivered.clone(), acked.clone()]),
            2
        ));
        assert_eq!(
            unsettled(&status(true, false, vec![delivered.clone(), acked.clone()])),
            1
        );
        assert!(settled(
            &status(true, false, vec![acked.clone(), expired]),
            2
        ));
        assert!(
            settled(&status(true, true, vec![delivered.clone()]), 1),
            "expired"
        );
        // Transient: delivered is the last event; nothing comes when no
        // connection got it.
        assert!(settled(&status(false, false, vec![delivered]), 1));
        assert!(settled(&status(false, false, vec![]), 0));
        assert!(!settled(&status(false, false, vec![]), 1));
    }
}
