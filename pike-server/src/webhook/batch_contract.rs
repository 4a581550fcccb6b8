//! The batch contract's wire format (`docs/webhooks.md`, "Batches"): many
//! uplink messages in one JSON request, one result per message in the
//! answer, in the same order.
//!
//! ```json
//! {"messages":[{"idempotency_key":"9f2c…","app":"demo","biz":"chat","alias":"u42",
//!   "device":"3f2a…","connection":"5b1e…","seq":17,"route":"r1","payload":"aGk="}]}
//! ```
//! is answered `2xx` with
//! ```json
//! {"results":[{"status":200},{"status":422,"error":"unknown command"}]}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pike_api::server::UplinkRequest;
use serde::{Deserialize, Serialize};

use super::outcome::{self, Answer, Failure};

/// The header that marks a batch request; its value is the message count.
pub const BATCH_HEADER: &str = "pike-batch";
/// The batch request's content type.
pub const BATCH_CONTENT_TYPE: &str = "application/json";
/// Longest batch answer read, bytes: a result is a status and an error
/// text, so 1,000 results with short texts fit many times over. A longer
/// answer fails the route (the backend does not speak the contract).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest error text of one result kept, bytes (cut beyond).
pub const MAX_ERROR_TEXT: usize = 256;

/// One message as the backend receives it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchMessage<'a> {
    /// Stable across the client's resends: deduplicate on it.
    pub idempotency_key: &'a str,
    /// App id.
    pub app: &'a str,
    /// Business id.
    pub biz: &'a str,
    /// The sender's alias.
    pub alias: &'a str,
    /// The sender's device.
    pub device: &'a str,
    /// The sending connection's token (for the trace).
    pub connection: &'a str,
    /// Per-login sequence number.
    pub seq: u64,
    /// This backend's route id.
    pub route: &'a str,
    /// The payload, standard base64.
    pub payload: String,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    messages: Vec<BatchMessage<'a>>,
}

/// The result of one message in the answer.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct BatchResult {
    /// The HTTP status the message would have had alone: 2xx taken; 408,
    /// 429 or 5xx this backend cannot take it (re-routed); any other 4xx
    /// refused.
    pub status: u16,
    /// Why, for a message not taken (shown to the client, cut at
    /// [`MAX_ERROR_TEXT`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer's body.
#[derive(Debug, Deserialize, Serialize)]
pub struct BatchAnswer {
    /// One per message, in the request's order.
    pub results: Vec<BatchResult>,
}

/// The request body for `requests`.
pub(super) fn encode(requests: &[&UplinkRequest]) -> Vec<u8> {
    let body = BatchBody {
        messages: requests
            .iter()
            .map(|r| BatchMessage {
                idempotency_key: &r.idempotency_key,
                app: &r.app,
                biz: &r.biz,
                alias: &r.alias,
                device: &r.device_id,
                connection: &r.connection_token,
                seq: r.seq,
                route: &r.route_id,
                payload: STANDARD.encode(&r.payload),
            })
            .collect(),
    };
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Each message's answer from a 2xx answer's `body`, for a batch of
/// `count` messages sent to `route`. A body that is not the contract's
/// (not JSON, another number of results) fails every message's route: the
/// gateway cannot tell which were taken.
pub(super) fn decode(body: &[u8], count: usize, route: &str) -> Vec<Answer> {
    let unreadable = |why: String| {
        let message = format!("backend {route} answered a batch of {count} with {why}");
        (0..count)
            .map(|_| Err(Failure::RouteFailed(message.clone())))
            .collect()
    };
    let answer: BatchAnswer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(e) => return unreadable(format!("a body that is not the batch answer: {e}")),
    };
    if answer.results.len() != count {
        return unreadable(format!("{} results", answer.results.len()));
    }
    answer
        .results
        .into_iter()
        .map(|result| {
            outcome::from_status(result.status, route).map_err(|failure| match result.error {
                Some(text) => with_text(failure, &text),
                None => failure,
            })
        })
        .collect()
}

/// `failure` with the backend's own `text` after it (cut, controls
/// escaped: it comes from the backend and goes to a client).
fn with_text(failure: Failure, text: &str) -> Failure {
    let mut cut = String::new();
    for c in text.chars() {
        let escaped: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if cut.len() + escaped.len() > MAX_ERROR_TEXT {
            cut.push('…');
            break;
        }
        cut.push_str(&escaped);
    }
    match failure {
        Failure::Refused(m) => Failure::Refused(format!("{m}: {cut}")),
        Failure::RouteFailed(m) => Failure::RouteFailed(format!("{m}: {cut}")),
        Failure::NotSent(m) => Failure::NotSent(format!("{m}: {cut}")),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request(seq: u64, payload: &'static [u8]) -> UplinkRequest {
        UplinkRequest {
            app: "demo".into(),
            biz: "chat".into(),
            alias: "Zoë \"Li\"\n".into(),
            device_id: "d1".into(),
            connection_token: "c1".into(),
            route_id: "r1".into(),
            seq,
            idempotency_key: format!("k{seq}"),
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn a_batch_carries_every_field_of_every_message_in_order() {
        let (a, b) = (request(1, b"hi"), request(2, &[0, 255, 10]));
        let body = encode(&[&a, &b]);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let messages = value["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["seq"], 1);
        assert_eq!(messages[1]["seq"], 2);
        assert_eq!(messages[0]["idempotency_key"], "k1");
        assert_eq!(messages[0]["alias"], "Zoë \"Li\"\n", "any string, exactly");
        assert_eq!(messages[0]["route"], "r1");
        assert_eq!(messages[0]["device"], "d1");
        assert_eq!(messages[0]["connection"], "c1");
        assert_eq!(messages[0]["payload"], "aGk=");
        let raw = STANDARD
            .decode(messages[1]["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, [0, 255, 10], "binary payloads survive");
    }

    #[test]
    fn each_result_is_read_as_its_own_status() {
        let body = br#"{"results":[{"status":200},{"status":422,"error":"no such command"},{"status":503}]}"#;
        let answers = decode(body, 3, "r1");
        assert_eq!(answers[0], Ok(()));
        assert!(
            matches!(&answers[1], Err(Failure::Refused(m)) if m.contains("422") && m.contains("no such command"))
        );
        assert!(matches!(&answers[2], Err(Failure::RouteFailed(_))));
    }

    #[test]
    fn an_answer_outside_the_contract_fails_every_message_s_route() {
        for body in [
            &b""[..],
            b"OK",
            br#"{"results":[{"status":200}]}"#,
            br#"{"results":[{"status":200},{"status":200},{"status":200}]}"#,
            br#"{"results":[{"status":"200"},{"status":200}]}"#,
            br#"{"results":[{"status":70000},{"status":200}]}"#,
        ] {
            let answers = decode(body, 2, "r0");
            assert_eq!(answers.len(), 2);
            assert!(
                answers
                    .iter()
                    .all(|a| matches!(a, Err(Failure::RouteFailed(m)) if m.contains("r0"))),
                "{:?}: {answers:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_backend_s_error_text_is_cut_and_escaped() {
        let long = "x".repeat(10_000);
        let body = serde_json::to_vec(&BatchAnswer {
            results: vec![
                BatchResult {
                    status: 400,
                    error: Some(long),
                },
                BatchResult {
                    status: 400,
                    error: Some("a\nb\u{1b}".into()),
                },
            ],
        })
        .unwrap();
        let answers = decode(&body, 2, "r0");
        let Err(Failure::Refused(cut)) = &answers[0] else {
            panic!("{answers:?}")
        };
        assert!(cut.len() < MAX_ERROR_TEXT + 100, "{}", cut.len());
        assert!(cut.ends_with('…'));
        let Err(Failure::Refused(escaped)) = &answers[1] else {
            panic!("{answers:?}")
        };
        assert!(escaped.ends_with("a\\nb\\u{1b}"), "{escaped}");
    }
}
