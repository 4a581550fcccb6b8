//! `GET /v1/ws`: the WebSocket transport for devices (browsers, web views):
//! a WebSocket with the subprotocol [`DEVICE_SUBPROTOCOL`] whose binary
//! messages carry whole Pike frames of the same codec as TCP, handed to the
//! gateway as one more transport (`"ws"`). The connection then goes
//! through the gateway's admission like any other (connection limit,
//! handshake bound and timeout, the hello) and runs the same channel
//! machine; the Pike heartbeat keeps it alive (browsers cannot send
//! WebSocket pings).
//!
//! A request with an `Origin` header (a web page's) is refused `403
//! forbidden` before the upgrade unless an app lists the origin in its
//! `allowed_origins` (`crate::origin`); when some apps do not, the
//! connection's client hello must name one that does ([`HelloGate`]).
//! Requests without `Origin` (native clients, Node.js) are not concerned:
//! the check protects against other web sites, which browsers make send
//! their origin.
//!
//! Per connection the WebSocket keeps a 1 KiB read buffer (tungstenite's
//! default is 128 KiB) and writes each flush at once; a message may be at
//! most the API's body limit.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::hello_gate::HelloGate;
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
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(sender) = state.ws_transport().cloned() else {
        return ApiError::not_found("the WebSocket transport is off on this gateway")
            .into_response();
    };
    // The apps the page's origin may connect to; `None`: every app.
    let gate = match headers.get(header::ORIGIN) {
        None => None,
        Some(origin) => {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let apps: Vec<String> = state
                .apps()
                .apps_allowing_origin(&origin)
                .map(str::to_owned)
                .collect();
            if apps.is_empty() {
                metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "origin")
                    .increment(1);
                let shown: String = origin.chars().take(crate::origin::MAX_ORIGIN_LEN).collect();
                return ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "web pages of origin {shown:?} may not connect: add it to the allowed_origins of the app"
                    ),
                )
                .into_response();
            }
            (apps.len() < state.apps().len()).then(|| (Arc::<[String]>::from(apps), origin))
        }
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
            let stream = WsStream::new(socket);
            let conn: tunnelkit::HandedConn = match gate {
                Some((apps, origin)) => Box::new(HelloGate::new(stream, apps, origin)),
                None => Box::new(stream),
            };
            if sender.hand(conn, peer).is_err() {
                // The gateway's backlog is full or it stopped: dropping the
                // stream closes the connection; the client backs off.
                metrics::counter!(crate::metric_families::HTTP_REFUSED_TOTAL, "reason" => "ws_backlog")
                    .increment(1);
            }
        })
}
