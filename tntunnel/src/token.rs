//! Connection tokens: unique, unguessable ids of connections.

use ring::rand::{SecureRandom, SystemRandom};

/// A fresh connection token: 128 random bits as 32 lowercase hex digits.
///
/// The token names one connection for its whole life; the gateway keys the
/// connection's signaling trace by it. Returns `None` only if the operating
/// system's random source fails.
pub fn new_connection_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_and_distinct() {
        let a = new_connection_token().unwrap();
        let b = new_connection_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
