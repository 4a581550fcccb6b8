//! Transient pushes to a device: `dev.<app>.<device>` (core NATS, never
//! stored). Each node subscribes once per device it holds a device-proven
//! login of, so a push to a device reaches whichever node holds it.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use futures_util::Stream;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::keys::MAX_ID_BYTES;
use crate::log::MAX_PAYLOAD_BYTES;
use crate::message::{MessageMeta, PIKE_TRANSIENT};
use crate::tok::tok;

/// Header naming the business of a device push.
const PIKE_BIZ: &str = "Pike-Biz";

/// A transient push to a device, as received.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DeviceMessage {
    /// The business it is for.
    pub biz: String,
    /// Message id and priority.
    pub meta: MessageMeta,
    /// The payload.
    pub payload: Bytes,
    /// The node that published it.
    pub origin: String,
}

/// The transient pushes to one device.
#[derive(Debug)]
pub struct DeviceStream {
    subscriber: Subscriber,
}

impl Stream for DeviceStream {
    type Item = DeviceMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DeviceMessage>> {
        loop {
            match Pin::new(&mut self.subscriber).poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    let Some(headers) = message.headers else {
                        continue;
                    };
                    let (Some(origin), Some(biz)) =
                        (headers.get(PIKE_TRANSIENT), headers.get(PIKE_BIZ))
                    else {
                        continue;
                    };
                    return Poll::Ready(Some(DeviceMessage {
                        biz: biz.as_str().to_owned(),
                        meta: MessageMeta::from_headers(&headers),
                        payload: message.payload,
                        origin: origin.as_str().to_owned(),
                    }));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn subject(app: &str, device: &str) -> Result<String> {
    for id in [app, device] {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Error::Invalid(format!(
                "app and device ids must be 1..={MAX_ID_BYTES} bytes"
            )));
        }
    }
    Ok(format!("dev.{}.{}", tok(app), tok(device)))
}

impl Cluster {
    /// Subscribes this node to the transient pushes to `device` of `app`;
    /// resolves once this node's NATS server has the subscription.
    pub async fn subscribe_device(&self, app: &str, device: &str) -> Result<DeviceStream> {
        let subscriber = self
            .subscribe_flushed(subject(app, device)?, "device")
            .await?;
        Ok(DeviceStream { subscriber })
    }

    /// Publishes a transient push to `device` for `biz`: the nodes holding
    /// it deliver it to its device-proven logins of `biz`, at most once.
    pub async fn publish_device(
        &self,
        app: &str,
        biz: &str,
        device: &str,
        meta: MessageMeta,
        payload: Bytes,
    ) -> Result<()> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Invalid(format!(
                "payload is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        // Sent in a header as given: no control characters (CR, LF).
        if biz.is_empty() || biz.len() > MAX_ID_BYTES || biz.chars().any(char::is_control) {
            return Err(Error::Invalid(format!(
                "a biz id must be 1..={MAX_ID_BYTES} bytes without control characters"
            )));
        }
        let subject = subject(app, device)?;
        self.ensure_ready()?;
        let mut headers = HeaderMap::new();
        MessageMeta {
            expires_at_ms: 0,
            ..meta
        }
        .to_headers(&mut headers);
        headers.insert(PIKE_TRANSIENT, self.node());
        headers.insert(PIKE_BIZ, biz);
        self.client()
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| Error::Unavailable(format!("device publish: {e}")))
    }
}
