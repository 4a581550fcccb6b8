//! Client credentials: JWT (RFC 7519) signed with HMAC-SHA256 (`HS256`) by a
//! per-app secret, scoped to one app, business and alias, with an expiry,
//! and optionally bound to one device.
//!
//! Business backends mint them with any JWT library (claims `app`, `biz`,
//! `sub` = alias, `exp`, `iat`, and `device` to bind the credential to a
//! device id; header `{"alg":"HS256","typ":"JWT"}`), or with `pike token`.
//! The gateway accepts exactly HS256: a token naming any other algorithm
//! (including `none`) is refused before its signature is looked at, and the
//! signature is checked in constant time.
//!
//! A credential with a `device` claim is valid only on a connection whose
//! hello names that device id ([`Claims::check_device`]), and only such
//! logins receive the pushes addressed to the device: a device id claimed
//! in a hello proves nothing by itself.
//!
//! ```
//! use pike_server::token::{Claims, Scope, mint, verify};
//!
//! let secret = b"per-app secret from the data dir";
//! let claims = Claims::new("demo", "chat", "u42", 1_000, 3_600).with_device("phone-1");
//! let token = mint(&claims, secret);
//! let scope = Scope { app: "demo", biz: "chat", alias: "u42" };
//! let verified = verify(&token, secret, &scope, 2_000).unwrap();
//! assert_eq!(verified, claims);
//! assert_eq!(verified.check_device("phone-1"), Ok(true), "bound to this device");
//! assert!(verified.check_device("phone-2").is_err(), "not valid on another");
//! assert!(verify(&token, secret, &scope, 10_000).is_err(), "expired");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use proto::tunnel::ErrorCode;

/// Longest token accepted, in bytes; longer input is refused unparsed.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The only header the gateway mints; on input, `typ` may be absent.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims of a client credential.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Claims {
    /// The app the credential belongs to.
    pub app: String,
    /// The business it may log in to.
    pub biz: String,
    /// The alias it may bind (JWT subject).
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issue time, unix seconds.
    pub iat: u64,
    /// Not valid before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The device id the credential is bound to (absent: any device, and
    /// the login does not receive pushes addressed to a device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Claims {
    /// Claims for `alias` of `biz` in `app`, issued at `now` (unix seconds)
    /// and valid for `ttl_secs`.
    pub fn new(app: &str, biz: &str, alias: &str, now: u64, ttl_secs: u64) -> Self {
        Self {
            app: app.to_owned(),
            biz: biz.to_owned(),
            sub: alias.to_owned(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            nbf: None,
            device: None,
        }
    }

    /// These claims, bound to `device`.
    #[must_use]
    pub fn with_device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Checks the `device` claim against the device id of the connection
    /// (from its hello): `Ok(true)` when the credential is bound to it,
    /// `Ok(false)` when the credential names no device, and
    /// [`TokenError::WrongScope`] (`FORBIDDEN`) when it names another.
    pub fn check_device(&self, device_id: &str) -> Result<bool, TokenError> {
        match &self.device {
            None => Ok(false),
            Some(device) if device == device_id => Ok(true),
            Some(device) => Err(TokenError::WrongScope {
                claim: "device",
                expected: device_id.to_owned(),
                got: device.clone(),
            }),
        }
    }
}

/// What a login asks for, to check a credential against.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The app of the connection (from its hello).
    pub app: &'a str,
    /// The business logging in.
    pub biz: &'a str,
    /// The alias to bind.
    pub alias: &'a str,
}

/// Why a credential was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWT (three base64url parts), too long, or bad JSON.
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm than HS256.
    #[error("credential algorithm {0:?} is not accepted (only HS256)")]
    Algorithm(String),
    /// The signature does not match the app's secret.
    #[error("credential signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("credential expired at {exp} (now {now})")]
    Expired {
        /// The expiry.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `nbf` is in the future.
    #[error("credential not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The start of validity.
        nbf: u64,
        /// The time of the check.
        now: u64,
    },
    /// The credential is for another app, business or alias.
    #[error("credential is for {claim} {got:?}, not {expected:?}")]
    WrongScope {
        /// Which claim differs.
        claim: &'static str,
        /// What the login asked for.
        expected: String,
        /// What the credential says.
        got: String,
    },
}

impl TokenError {
    /// The wire code a login gets for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Expired { .. } => ErrorCode::TokenExpired,
            Self::WrongScope { .. } => ErrorCode::Forbidden,
            Self::Malformed(_)
            | Self::Algorithm(_)
            | Self::BadSignature
            | Self::NotYetValid { .. } => ErrorCode::AuthFailed,
        }
    }
}

/// Signs `claims` with `secret` into a compact JWT.
pub fn mint(claims: &Claims, secret: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    // Serializing plain strings and integers cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = URL_SAFE_NO_PAD.encode(HEADER);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

/// Verifies `token` against `secret` and `scope` at `now` (unix seconds).
/// The `device` claim is checked separately, against the connection's
/// device id: [`Claims::check_device`].
pub fn verify(
    token: &str,
    secret: &[u8],
    scope: &Scope<'_>,
    now: u64,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("longer than 4096 bytes"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };

    #[derive(Deserialize)]
    struct Header {
        alg: String,
        #[serde(default)]
        typ: Option<String>,
    }
    let header: Header = decode_json(header, "header")?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(TokenError::Malformed("header typ is not JWT"));
    }

    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signed_len = token.len() - signature_len(token);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &token.as_bytes()[..signed_len], &signature)
        .map_err(|_| TokenError::BadSignature)?;

    let claims: Claims = decode_json(payload, "payload")?;
    if now > claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(LEEWAY_SECS) < nbf
    {
        return Err(TokenError::NotYetValid { nbf, now });
    }
    for (claim, expected, got) in [
        ("app", scope.app, &claims.app),
        ("biz", scope.biz, &claims.biz),
        ("alias", scope.alias, &claims.sub),
    ] {
        if expected != got {
            return Err(TokenError::WrongScope {
                claim,
                expected: expected.to_owned(),
                got: got.clone(),
            });
        }
    }
    Ok(claims)
}

/// Length of the signature part plus its leading dot.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(match what {
            "header" => "header is not base64url",
            _ => "payload is not base64url",
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Malformed(match what {
            "header" => "header is not the expected JSON",
            _ => "payload is not the expected JSON claims",
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const SCOPE: Scope<'static> = Scope {
        app: "demo",
        biz: "chat",
        alias: "u42",
    };

    fn token() -> String {
        mint(&Claims::new("demo", "chat", "u42", 1_000, 600), SECRET)
    }

    #[test]
    fn round_trip_and_expiry_with_leeway() {
        let t = token();
        assert_eq!(verify(&t, SECRET, &SCOPE, 1_000).unwrap().sub, "u42");
        assert!(verify(&t, SECRET, &SCOPE, 1_600 + LEEWAY_SECS).is_ok());
        let err = verify(&t, SECRET, &SCOPE, 1_601 + LEEWAY_SECS).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                exp: 1_600,
                now: 1_631
            }
        );
        assert_eq!(err.code(), ErrorCode::TokenExpired);
    }

    #[test]
    fn forged_and_tampered_tokens_are_refused() {
        let t = token();
        assert_eq!(
            verify(&t, b"another app's secret", &SCOPE, 1_000),
            Err(TokenError::BadSignature)
        );
        // Swap the payload for one naming another alias, keep the signature.
        let forged_payload = URL_SAFE_NO_PAD
            .encode(br#"{"app":"demo","biz":"chat","sub":"admin","exp":9999999999,"iat":0}"#);
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&forged, SECRET, &SCOPE, 1_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(TokenError::BadSignature.code(), ErrorCode::AuthFailed);
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"app":"demo","biz":"chat","sub":"u42","exp":9999999999,"iat":0}"#);
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            let t = format!("{header}.{payload}.");
            assert_eq!(
                verify(&t, SECRET, &SCOPE, 1_000),
                Err(TokenError::Algorithm(alg.into()))
            );
        }
    }

    #[test]
    fn wrong_scope_is_forbidden() {
        let t = token();
        let other = Scope {
            alias: "u43",
            ..SCOPE
        };
        let err = verify(&t, SECRET, &other, 1_000).unwrap_err();
        assert!(matches!(&err, TokenError::WrongScope { claim: "alias", got, .. } if got == "u42"));
        assert_eq!(err.code(), ErrorCode::Forbidden);
        let other = Scope {
            biz: "order",
            ..SCOPE
        };
        assert!(matches!(
            verify(&t, SECRET, &other, 1_000),
            Err(TokenError::WrongScope { claim: "biz", .. })
        ));
        let other = Scope {
            app: "other",
            ..SCOPE
        };
        assert!(matches!(
            verify(&t, SECRET, &other, 1_000),
            Err(TokenError::WrongScope { claim: "app", .. })
        ));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            &"x".repeat(5000),
            "e30.e30.e30",
        ] {
            assert!(
                matches!(
                    verify(bad, SECRET, &SCOPE, 0),
                    Err(TokenError::Malformed(_) | TokenError::BadSignature)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_device_claim_binds_the_credential_to_that_device() {
        let claims = Claims::new("demo", "chat", "u42", 1_000, 600).with_device("phone-1");
        let t = mint(&claims, SECRET);
        let verified = verify(&t, SECRET, &SCOPE, 1_000).unwrap();
        assert_eq!(verified.device.as_deref(), Some("phone-1"));
        assert_eq!(verified.check_device("phone-1"), Ok(true));
        let err = verified.check_device("phone-2").unwrap_err();
        assert!(
            matches!(&err, TokenError::WrongScope { claim: "device", got, .. } if got == "phone-1"),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::Forbidden);
        // Without the claim the credential is valid on any device, bound
        // to none.
        let unbound = verify(&token(), SECRET, &SCOPE, 1_000).unwrap();
        assert_eq!(unbound.device, None);
        assert_eq!(unbound.check_device("phone-1"), Ok(false));
        // The claim is signed: swapping it breaks the signature.
        let forged_payload = URL_SAFE_NO_PAD.encode(
            br#"{"app":"demo","biz":"chat","sub":"u42","exp":1600,"iat":1000,"device":"phone-2"}"#,
        );
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&forged, SECRET, &SCOPE, 1_000),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn not_before_is_honoured() {
        let mut claims = Claims::new("demo", "chat", "u42", 1_000, 600);
        claims.nbf = Some(1_200);
        let t = mint(&claims, SECRET);
        assert!(matches!(
            verify(&t, SECRET, &SCOPE, 1_100),
            Err(TokenError::NotYetValid { .. })
        ));
        assert!(verify(&t, SECRET, &SCOPE, 1_200).is_ok());
    }

    #[test]
    fn interoperates_with_a_reference_hs256_token() {
        // Built by hand per RFC 7515 §A.1's procedure with this module's
        // secret: header and payload base64url, HMAC-SHA256 over "h.p".
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"u42","biz":"chat","app":"demo","iat":1000,"exp":2000,"extra":true}"#,
        );
        let signing_input = format!("{header}.{payload}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, signing_input.as_bytes()).as_ref());
        let t = format!("{signing_input}.{sig}");
        let claims = verify(&t, SECRET, &SCOPE, 1_500).unwrap();
        assert_eq!(claims.exp, 2_000);
    }
}
