//! `POST /v1/rooms/{room}/publish`, `GET /v1/rooms`, `GET /v1/rooms/{room}`.

use axum::Json;
use axum::extract::State;
use pike_api::server::{MAX_ROOM_NAME, RoomClass, RoomPublish, RoomReceipt};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::model::{Room, RoomPublishBody, RoomPublishResponse, RoomsResponse};
use super::state::HttpState;

pub(crate) async fn publish(
    State(state): State<HttpState>,
    caller: Caller,
    ApiPath(room): ApiPath<String>,
    ApiJson(body): ApiJson<RoomPublishBody>,
) -> Result<Json<RoomPublishResponse>, ApiError> {
    let request = to_request(
        caller.app,
        room,
        body,
        state.push_handle().max_payload_len(),
    )?;
    let receipt = state.push_handle().publish_room(request).await?;
    Ok(Json(match receipt {
        RoomReceipt::Accepted { offset } => RoomPublishResponse {
            offset: Some(offset),
            dropped: false,
            reason: None,
        },
        RoomReceipt::Dropped { reason } => RoomPublishResponse {
            offset: None,
            dropped: true,
            reason: Some(reason.as_str().to_owned()),
        },
        // Future outcomes: reported as not taken.
        _ => RoomPublishResponse {
            offset: None,
            dropped: true,
            reason: Some("unknown".into()),
        },
    }))
}

pub(crate) async fn list(State(state): State<HttpState>, caller: Caller) -> Json<RoomsResponse> {
    Json(RoomsResponse {
        rooms: state
            .push_handle()
            .rooms(&caller.app)
            .into_iter()
            .map(Room::from)
            .collect(),
    })
}

pub(crate) async fn get(
    State(state): State<HttpState>,
    caller: Caller,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<Room>, ApiError> {
    state
        .push_handle()
        .room_stats(&caller.app, &room)
        .map(|stats| Json(Room::from(stats)))
        .ok_or_else(|| {
            ApiError::not_found("no live room with this name in this app (a room starts with its first join or publish)")
        })
}

/// Validates a publish body into the library's request (the room's own
/// payload limit is checked when publishing).
fn to_request(
    app: String,
    room: String,
    body: RoomPublishBody,
    max_payload: usize,
) -> Result<RoomPublish, ApiError> {
    if room.is_empty() || room.len() > MAX_ROOM_NAME || room.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "room",
            format!("a room name has 1 to {MAX_ROOM_NAME} bytes and no control characters"),
        ));
    }
    let payload = super::push::payload(body.payload, body.payload_base64, max_payload)?;
    let class = match body.class.as_deref() {
        None | Some("droppable") => RoomClass::Droppable,
        Some("reliable") => RoomClass::Reliable,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "class",
                format!("`class` is `droppable` or `reliable`, got {other:?}"),
            ));
        }
    };
    if let Some(publisher) = &body.publisher {
        super::validate::id("publisher", publisher)?;
    }
    Ok(RoomPublish {
        app,
        room,
        payload,
        class,
        priority: body.priority.unwrap_or(0),
        publisher: body.publisher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_request(
        app: String,
        room: String,
        body: RoomPublishBody,
    ) -> Result<RoomPublish, ApiError> {
        super::to_request(app, room, body, 1 << 20)
    }

    fn body() -> RoomPublishBody {
        RoomPublishBody {
            payload: Some("hi".into()),
            ..RoomPublishBody::default()
        }
    }

    #[test]
    fn defaults_are_droppable_priority_zero() {
        let request = to_request("demo".into(), "r1".into(), body()).unwrap();
        assert_eq!(request.class, RoomClass::Droppable);
        assert_eq!(request.priority, 0);
        assert_eq!(request.publisher, None);
        assert_eq!(&request.payload[..], b"hi");
    }

    #[test]
    fn unknown_class_and_empty_publisher_are_refused() {
        let err = to_request(
            "demo".into(),
            "r1".into(),
            RoomPublishBody {
                class: Some("urgent".into()),
                ..body()
            },
        )
        .unwrap_err();
        assert!(err.message().contains("`class`"), "{err}");
        let err = to_request(
            "demo".into(),
            "r1".into(),
            RoomPublishBody {
                publisher: Some(String::new()),
                ..body()
            },
        )
        .unwrap_err();
        assert!(err.message().contains("publisher"), "{err}");
    }
}
