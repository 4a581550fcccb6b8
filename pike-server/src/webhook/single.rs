//! The single-message contract: one request per uplink message, the
//! message's fields in headers and its payload as the body
//! (`docs/webhooks.md`, "Uplink").

use pike_api::server::UplinkRequest;

use super::outcome::{self, Answer, Failure};
use super::{Route, header_value};

/// Sends `request` to `route` alone and reads the backend's answer.
pub(super) async fn send(route: &Route, request: &UplinkRequest) -> Answer {
    let built = route
        .client
        .post(&route.url)
        .timeout(route.timeout)
        .header("content-type", "application/octet-stream")
        .header("idempotency-key", header_value(&request.idempotency_key))
        .header("pike-app", header_value(&request.app))
        .header("pike-biz", header_value(&request.biz))
        .header("pike-alias", header_value(&request.alias))
        .header("pike-device", header_value(&request.device_id))
        .header("pike-connection", header_value(&request.connection_token))
        .header("pike-seq", request.seq.to_string())
        .header("pike-route", header_value(&request.route_id))
        .body(request.payload.clone())
        .build();
    let built = match built {
        Ok(built) => built,
        Err(e) => return Err(route.build_error(&e)),
    };
    let answer = match route.client.execute(built).await {
        Ok(response) => outcome::from_status(response.status().as_u16(), &route.id),
        Err(e) => Err(Failure::RouteFailed(format!(
            "backend {} unreachable: {e}",
            route.id
        ))),
    };
    if matches!(answer, Err(Failure::RouteFailed(_))) {
        route.mark_failed();
    }
    answer
}
