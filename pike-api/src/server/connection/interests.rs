//! The live traffic a login subscribes to in the engine's route table: its
//! alias stream, and its device when the credential proved the device id.

use std::sync::Arc;

use crate::server::engine::{EngineError, Interest};
use crate::server::hub::Hub;
use crate::server::store::StreamKey;

/// Subscriptions taken for a login that is not granted yet: dropped (the
/// login refused, the connection gone first), they are given back.
pub(super) struct Interests {
    hub: Arc<Hub>,
    stream: StreamKey,
    device: Option<String>,
    held: bool,
}

impl Interests {
    /// Subscribes to `stream` and, if given, to the device.
    pub(super) async fn subscribe(
        hub: &Arc<Hub>,
        stream: &StreamKey,
        device: Option<&str>,
    ) -> Result<Self, EngineError> {
        let router = &hub.engine.router;
        router.subscribe(Interest::Stream(stream.clone())).await?;
        let mut interests = Self {
            hub: hub.clone(),
            stream: stream.clone(),
            device: None,
            held: true,
        };
        if let Some(device) = device {
            router.subscribe(device_interest(stream, device)).await?;
            interests.device = Some(device.to_owned());
        }
        Ok(interests)
    }

    /// The granted login owns the subscriptions from now on; it gives them
    /// back with [`release`].
    pub(super) fn keep(mut self) {
        self.held = false;
    }
}

impl Drop for Interests {
    fn drop(&mut self) {
        if self.held {
            release(&self.hub, &self.stream, self.device.as_deref());
        }
    }
}

/// Gives back a granted login's subscriptions.
pub(super) fn release(hub: &Hub, stream: &StreamKey, device: Option<&str>) {
    hub.engine
        .router
        .unsubscribe(Interest::Stream(stream.clone()));
    if let Some(device) = device {
        hub.engine
            .router
            .unsubscribe(device_interest(stream, device));
    }
}

fn device_interest(stream: &StreamKey, device: &str) -> Interest {
    Interest::Device {
        app: stream.app.clone(),
        device: device.to_owned(),
    }
}
