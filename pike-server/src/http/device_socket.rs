//! `GET /v1/ws`: the WebSocket transport for devices (browsers, web views):
//! a WebSocket with the subprotocol [`DEVICE_SUBPROTOCOL`] whose binary
//! messages carry whole Pike frames of the same codec as TCP, handed to the
//! gateway as one more transport (`"ws"`). The connection then goes
//! through the gateway's admission like any other (connection limit,
//! handshake bound and timeout, the hello) and runs the same channel
//! machine; the Pike heartbeat keeps it alive (browsers cannot send
//! WebSocket pings).
//!
//! Per connection the WebSocket keeps a 1 KiB read buffer (tungstenite's
//! default is 128 KiB) and writes each flush at once; a message may be at
//! most the API's body limit.

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::serve::PeerAddr;
use super::state::HttpState;
use super::ws_stream::WsStream;

/// The WebSocket subprotocol of a device connection.
pub const DEVICE_SUBPROTOCOL: &str = "pike.v1";

/// Read buffer of a device's WebSocket: tungstenite keeps it allocated
/// between messages (it grows for a larger message and keeps that size).
/// Device frames are small; 1 KiB against 4 KiB saved ≈ 3 KB per idle
/// connection in S1.
const READ_BUFFER: usize = 1024;

/// `GET /v1/ws`: upgrades and hands the connection to the gateway.
pub(crate) async fn device_socket(
    State(state): State<HttpState>,
    peer: Option<Extension<PeerAddr>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(sender) = state.ws_transport().cloned() else {
        return ApiError::not_found("the WebSocket transport is off on this gateway")
            .into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::invalid(format!(
                "`GET /v1/ws` is a WebSocket upgrade (subprotocol {DEVICE_SUBPROTOCOL}): {}",
                rejection.body_text()
            ))
            .into_response();
        }
    };
    if !upgrade
        .requested_protocols()
        .any(|p| p.as_bytes() == DEVICE_SUBPROTOCOL.as_bytes())
    {
        return ApiError::invalid(format!(
            "ask for the WebSocket subprotocol {DEVICE_SUBPROTOCOL} (`Sec-WebSocket-Protocol: {DEVICE_SUBPROTOCOL}`)"
        ))
        .into_response();
    }
    if sender.is_closed() {
        return ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is not accepting connections",
        )
        .into_response();
    }
    let peer = peer.map_or_else(
        || std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        |Extension(PeerAddr(addr))| addr,
    );
    let limit = state.body_limit();
    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit);
    upgrade.set_selected_protocol(HeaderValue::from_static(DEVICE_SUBPROTOCOL));
    upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "device WebSocket: upgrade failed"))
        .on_upgrade(move |socket| async move {
            if sender.hand(Box::new(WsStream::new(socket)), peer).is_err() {
                // The gateway's backlog is full or it stopped: dropping the
                // stream closes the connection; the client backs off.
                metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "ws_backlog")
                    .increment(1);
            }
        })
}
