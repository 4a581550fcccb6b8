//! "pike mode" of the MQTT generator: the same MQTT devices, connected to
//! pike-server's MQTT listener instead of a broker (`docs/mqtt.md`).
//!
//! A device's client id is its name, which is also its alias; its user
//! name is the app and its password a Pike credential for that alias,
//! minted here with the app's token secret (HS256 JWT, the claims of
//! `pike-server/src/token.rs`: `app`, `biz`, `sub` = alias, `exp`, `iat`);
//! it subscribes to `pike/<biz>/down`. The publisher is the business
//! backend: `POST /v1/push/batch` on the HTTP API ([`super::http_push`]),
//! each push to one device's alias.

use ring::hmac;

/// How long a minted credential stays valid (a benchmark run is shorter).
const TOKEN_TTL_SECS: u64 = 24 * 3600;

/// The app, business and secret the devices log in with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PikeLogin {
    pub(crate) app: String,
    pub(crate) biz: String,
    pub(crate) token_secret: String,
}

impl PikeLogin {
    /// The topic every device subscribes to: all pushes to its login.
    pub(crate) fn down_topic(&self) -> String {
        format!("pike/{}/down", self.biz)
    }

    /// The credential of `alias`, issued at `now` (unix seconds).
    pub(crate) fn token(&self, alias: &str, now: u64) -> String {
        // Keys in a fixed order whatever serde_json's map features are.
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let claims = format!(
            r#"{{"app":{},"biz":{},"exp":{},"iat":{now},"sub":{}}}"#,
            text(&self.app),
            text(&self.biz),
            now.saturating_add(TOKEN_TTL_SECS),
            text(alias),
        );
        mint(&claims, self.token_secret.as_bytes())
    }

    /// `(user name, password)` of the device whose alias is `alias`.
    pub(crate) fn credentials(&self, alias: &str, now: u64) -> (String, String) {
        (self.app.clone(), self.token(alias, now))
    }
}

/// The pike-mode flags as they are parsed: `--pike-app`, `--pike-biz`
/// and `--token-secret`, all three or none.
#[derive(Clone, Debug, Default)]
pub(crate) struct PikeLoginArgs {
    app: Option<String>,
    biz: Option<String>,
    token_secret: Option<String>,
}

impl PikeLoginArgs {
    /// Takes `flag value` when it is one of the three; `false` otherwise.
    pub(crate) fn take(&mut self, flag: &str, value: &str) -> bool {
        let slot = match flag {
            "--pike-app" => &mut self.app,
            "--pike-biz" => &mut self.biz,
            "--token-secret" => &mut self.token_secret,
            _ => return false,
        };
        *slot = Some(value.to_owned());
        true
    }

    /// The login, when the three flags were given; an error for some.
    pub(crate) fn finish(self) -> Result<Option<PikeLogin>, String> {
        match (self.app, self.biz, self.token_secret) {
            (None, None, None) => Ok(None),
            (Some(app), Some(biz), Some(token_secret))
                if !app.is_empty() && is_name(&biz) && !token_secret.is_empty() =>
            {
                Ok(Some(PikeLogin {
                    app,
                    biz,
                    token_secret,
                }))
            }
            _ => Err(
                "pike mode needs `--pike-app`, `--pike-biz` (letters, digits, `-`, `_`) \
                      and `--token-secret`, all three non-empty"
                    .into(),
            ),
        }
    }
}

/// Whether `name` is usable as it is in a topic, an alias and JSON:
/// 1 to 128 ASCII letters, digits, `-` and `_`.
pub(crate) fn is_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The unix time now, seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HS256 compact JWT of the claims `payload_json` (header
/// `{"alg":"HS256","typ":"JWT"}`), as the gateway mints and verifies.
pub(crate) fn mint(payload_json: &str, secret: &[u8]) -> String {
    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut token = base64url(HEADER.as_bytes());
    token.push('.');
    token.push_str(&base64url(payload_json.as_bytes()));
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&base64url(tag.as_ref()));
    token
}

const ALPHABET_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends base64 of `data`: the standard alphabet, or base64url's with
/// `url`; `pad` appends `=` to a whole quantum.
fn encode(data: &[u8], url: bool, pad: bool, out: &mut String) {
    let symbol = |v: u32| -> char {
        let c = ALPHABET_STD[(v & 63) as usize];
        match (url, c) {
            (true, b'+') => '-',
            (true, b'/') => '_',
            _ => char::from(c),
        }
    };
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(symbol(n >> shift));
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let n = u32::from(rest[0]) << 16 | rest.get(1).map_or(0, |b| u32::from(*b) << 8);
        out.push(symbol(n >> 18));
        out.push(symbol(n >> 12));
        if rest.len() == 2 {
            out.push(symbol(n >> 6));
        }
        if pad {
            for _ in rest.len()..3 {
                out.push('=');
            }
        }
    }
}

/// Base64url without padding (RFC 4648 §5), as JWTs use.
pub(crate) fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    encode(data, true, false, &mut out);
    out
}

/// Appends standard base64 with padding (RFC 4648 §4) of `data`: the HTTP
/// API's `payload_base64`.
pub(crate) fn push_base64(data: &[u8], out: &mut String) {
    encode(data, false, true, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        // RFC 4648 §10.
        let std = |s: &str| {
            let mut out = String::new();
            push_base64(s.as_bytes(), &mut out);
            out
        };
        assert_eq!(std(""), "");
        assert_eq!(std("f"), "Zg==");
        assert_eq!(std("fo"), "Zm8=");
        assert_eq!(std("foo"), "Zm9v");
        assert_eq!(std("foob"), "Zm9vYg==");
        assert_eq!(std("fooba"), "Zm9vYmE=");
        assert_eq!(std("foobar"), "Zm9vYmFy");
        // The two alphabets differ in 62 and 63, and url has no padding.
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let mut out = String::new();
        push_base64(&[0xfb, 0xff], &mut out);
        assert_eq!(out, "+/8=");
    }

    /// A token minted here verifies with the gateway's algorithm, checked
    /// against a reference computed independently (Python's `hmac` and
    /// `base64` on the same claims and secret).
    #[test]
    fn token_matches_a_reference_jwt() {
        let login = PikeLogin {
            app: "bench".into(),
            biz: "bench".into(),
            token_secret: "bench-token-secret-not-secret-0001".into(),
        };
        let token = login.token("b7", 1_700_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        assert_eq!(token, REFERENCE_TOKEN);
        // Another alias, another signature.
        assert_ne!(login.token("b8", 1_700_000_000), token);
        assert_eq!(login.down_topic(), "pike/bench/down");
        let (user, password) = login.credentials("b7", 1_700_000_000);
        assert_eq!(
            (user.as_str(), password.as_str()),
            ("bench", REFERENCE_TOKEN)
        );
    }

    #[test]
    fn pike_flags_are_all_or_none() {
        let parse = |pairs: &[(&str, &str)]| {
            let mut args = PikeLoginArgs::default();
            for (flag, value) in pairs {
                assert!(args.take(flag, value), "{flag}");
            }
            args.finish()
        };
        assert_eq!(parse(&[]), Ok(None));
        let login = parse(&[
            ("--pike-app", "bench"),
            ("--pike-biz", "iot"),
            ("--token-secret", "s"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(login.down_topic(), "pike/iot/down");
        assert!(parse(&[("--pike-app", "bench")]).is_err());
        assert!(
            parse(&[
                ("--pike-app", "a"),
                ("--pike-biz", "a/b"),
                ("--token-secret", "s")
            ])
            .is_err()
        );
        assert!(
            parse(&[
                ("--pike-app", ""),
                ("--pike-biz", "b"),
                ("--token-secret", "s")
            ])
            .is_err()
        );
        assert!(!PikeLoginArgs::default().take("--proto", "mqtt"));
        assert!(is_name("x1f3d42"));
        assert!(!is_name("a:b") && !is_name("") && !is_name("a\"b"));
    }

    /// `{"app":"bench","biz":"bench","exp":1700086400,"iat":1700000000,"sub":"b7"}`
    /// signed with the bench secret (Python: `hmac.new(secret, msg, sha256)`).
    const REFERENCE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhcHAiOiJiZW5jaCIsImJpeiI6ImJlbmNoIiwiZXhwIjoxNzAwMDg2NDAwLCJpYXQiOjE3MDAwMDAwMDAsInN1YiI6ImI3In0.oMB2IpJEt4e21w0v4cp7xx3WV3FFSgTxiqabkB_cMTY";
}
