//! What the translator reads out of a device's bytes before the gateway
//! sees them: the business and alias a credential names, and the message
//! id of an uplink payload's envelope.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use crate::token::MAX_TOKEN_LEN;

/// The envelope line's prefix: `pike-id:<message id>\n<body>`.
pub const ENVELOPE_PREFIX: &[u8] = b"pike-id:";

/// Longest message id in an envelope, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// The business and alias (`biz`, `sub`) a credential names, **unverified**:
/// only to build the login; the gateway verifies the credential itself.
/// `None` when it is not a JWT with both claims.
pub(crate) fn credential_scope(credential: &str) -> Option<(String, String)> {
    if credential.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = credential.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Scope {
        biz: String,
        sub: String,
    }
    let scope: Scope = serde_json::from_slice(&json).ok()?;
    (!scope.biz.is_empty() && !scope.sub.is_empty()).then_some((scope.biz, scope.sub))
}

/// Splits an uplink payload into its envelope's message id (if it has a
/// valid envelope) and the body the backend receives.
pub(crate) fn split_envelope(payload: Bytes) -> (Option<String>, Bytes) {
    let Some(rest) = payload.strip_prefix(ENVELOPE_PREFIX) else {
        return (None, payload);
    };
    let Some(end) = rest
        .iter()
        .take(MAX_MESSAGE_ID_LEN + 1)
        .position(|b| *b == b'\n')
    else {
        return (None, payload);
    };
    let id = &rest[..end];
    if id.is_empty() || id.iter().any(|b| b.is_ascii_control()) {
        return (None, payload);
    }
    let Ok(id) = std::str::from_utf8(id) else {
        return (None, payload);
    };
    let id = id.to_owned();
    let body = payload.slice(ENVELOPE_PREFIX.len() + end + 1..);
    (Some(id), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Claims, mint};

    #[test]
    fn the_scope_comes_from_the_claims() {
        let token = mint(&Claims::new("demo", "iot", "bike-7", 1, 60), b"secret");
        assert_eq!(
            credential_scope(&token),
            Some(("iot".to_owned(), "bike-7".to_owned()))
        );
        assert_eq!(credential_scope("not a token"), None);
        assert_eq!(credential_scope(&"a.b.c".repeat(2000)), None);
    }

    #[test]
    fn envelopes_are_split_and_bad_ones_left_alone() {
        let (id, body) = split_envelope(Bytes::from_static(b"pike-id:m-1\n{\"km\":3}"));
        assert_eq!(id.as_deref(), Some("m-1"));
        assert_eq!(&body[..], b"{\"km\":3}");
        for raw in [
            &b"plain"[..],
            b"pike-id:\nbody",
            b"pike-id:no newline",
            b"pike-id:a\tb\nbody",
        ] {
            let (id, body) = split_envelope(Bytes::copy_from_slice(raw));
            assert_eq!(id, None, "{raw:?}");
            assert_eq!(&body[..], raw);
        }
        let long = [
            b"pike-id:".as_slice(),
            &[b'x'; MAX_MESSAGE_ID_LEN + 1],
            b"\nb",
        ]
        .concat();
        assert_eq!(split_envelope(Bytes::from(long)).0, None);
    }
}
