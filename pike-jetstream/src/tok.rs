//! The reversible token encoding of ids in subjects and KV keys (plan §4.1).
//!
//! Subject tokens cannot contain `.`, `*`, `>` or whitespace, and KV keys
//! allow only `[-/_=.a-zA-Z0-9]`. Ids are arbitrary strings (`chat:u42`), so
//! every id goes through [`tok`]:
//!
//! - bytes in `[A-Za-z0-9_-]` pass through;
//! - any other byte becomes `=XX` (two upper-case hex digits): `chat:u42` →
//!   `chat=3Au42`;
//! - a token longer than [`MAX_TOKEN`] bytes after encoding becomes `==`
//!   followed by the first 32 characters of base64url(sha256(id)): subjects
//!   and keys stay far below NATS's 4 KB control line. (The plan wrote `~`,
//!   which KV keys refuse; `==` cannot start an encoded id because `=` is
//!   always followed by two hex digits.)
//!
//! No id encodes to a lone `=`: the engine's internal subjects may use one.
//! The encoding is injective: [`untok`] reverses every token that was not
//! hashed.

use base64::Engine as _;

/// Longest encoded token kept as is; longer ones are hashed (34 bytes).
pub const MAX_TOKEN: usize = 128;

const HASHED_PREFIX: &str = "==";
const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn passes(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Encodes `id` as one subject token / KV key part.
pub fn tok(id: &str) -> String {
    let bytes = id.as_bytes();
    let encoded_len: usize = bytes.iter().map(|b| if passes(*b) { 1 } else { 3 }).sum();
    if encoded_len > MAX_TOKEN {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        return format!("{HASHED_PREFIX}{}", &b64[..32]);
    }
    let mut out = String::with_capacity(encoded_len);
    for &b in bytes {
        if passes(b) {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Decodes a token made by [`tok`]; `None` for a hashed token (not
/// reversible) or anything [`tok`] cannot have produced.
pub fn untok(token: &str) -> Option<String> {
    if token.starts_with(HASHED_PREFIX) {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if passes(b) {
            out.push(b);
            i += 1;
        } else if b == b'=' {
            let hex = |c: u8| HEX.iter().position(|h| *h == c);
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let decoded = u8::try_from(hi * 16 + lo).ok()?;
            if passes(decoded) {
                return None; // tok never escapes a passing byte
            }
            out.push(decoded);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(tok("chat:u42"), "chat=3Au42");
        assert_eq!(tok("a.b c>*"), "a=2Eb=20c=3E=2A");
        assert_eq!(tok("é"), "=C3=A9");
        assert_eq!(untok("chat=3Au42").as_deref(), Some("chat:u42"));
        assert_ne!(tok(""), "=");
        assert_eq!(
            untok("=41"),
            None,
            "an escaped passing byte is not canonical"
        );
        assert_eq!(untok("=3a"), None, "lower-case hex is not canonical");
        assert_eq!(untok("a.b"), None);
    }

    #[test]
    fn long_ids_are_hashed_to_a_valid_key() {
        let id = "x".repeat(129);
        let t = tok(&id);
        assert!(t.starts_with("=="));
        assert_eq!(t.len(), 34);
        assert!(t.bytes().all(|b| passes(b) || b == b'='));
        assert_eq!(untok(&t), None);
        assert_eq!(tok(&"x".repeat(128)), "x".repeat(128));
        assert_ne!(tok(&"x".repeat(129)), tok(&"x".repeat(130)));
        // 43 escaped bytes = 129 encoded bytes: hashed.
        assert!(tok(&":".repeat(43)).starts_with("=="));
    }

    proptest! {
        #[test]
        fn roundtrip(id in ".{0,50}") {
            let t = tok(&id);
            prop_assert!(t.bytes().all(|b| passes(b) || b == b'='));
            prop_assert!(t.len() <= MAX_TOKEN);
            if t.starts_with(HASHED_PREFIX) {
                prop_assert_eq!(t.len(), 34);
                prop_assert_eq!(untok(&t), None);
            } else {
                prop_assert_eq!(untok(&t), Some(id));
            }
        }

        #[test]
        fn printable_ids_roundtrip_unhashed(id in "[ -~]{1,42}") {
            let t = tok(&id);
            prop_assert!(!t.starts_with(HASHED_PREFIX));
            prop_assert_eq!(untok(&t), Some(id));
        }

        #[test]
        fn injective(a in "[a-z:.=]{0,12}", b in "[a-z:.=]{0,12}") {
            prop_assume!(a != b);
            prop_assert_ne!(tok(&a), tok(&b));
        }
    }
}
