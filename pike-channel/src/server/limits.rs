//! Bounds on what a client may send in a request, checked by the server
//! machine before anything is reported to the gateway or stored.
//!
//! Business ids and aliases must not hold `:` besides their bounds
//! ([`check_biz`], [`check_alias`]).
//!
//! A request with a field beyond its bound is answered with
//! `INVALID_ARGUMENT` (in the request's result frame: `LOGIN_RESULT`,
//! `TAGS_RESULT`, `UPLINK_ACK`, `ROOM_JOIN_RESULT`, or an `ERROR` frame for
//! requests without one) and goes no further; the connection stays up. The
//! hello's fields are bounded one layer down, by the tunnel handshake
//! ([`tntunnel::check_client_hello`]). Counts that are settings (logins per
//! connection, the uplink window and pending bytes) are in
//! [`ServerConfig`](crate::ServerConfig).

/// Longest business id (`Login.biz`), bytes; at least 1.
pub const MAX_BIZ_LEN: usize = 64;
/// Longest alias (`Login.alias`), bytes; at least 1.
pub const MAX_ALIAS_LEN: usize = 256;
/// Longest credential (`Login.credential`), bytes.
pub const MAX_CREDENTIAL_LEN: usize = 4096;
/// Longest saved route id (`Login.route_id`), bytes.
pub const MAX_ROUTE_ID_LEN: usize = 256;
/// Longest uplink idempotency key (`Uplink.idempotency_key`), bytes; at
/// least 1 (the gateway deduplicates by it).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest tag name (`Tags.bind`, `Tags.unbind`), bytes; at least 1.
pub const MAX_TAG_LEN: usize = 128;
/// Most tags named in one `Tags` request (bind and unbind together).
pub const MAX_TAGS_PER_REQUEST: usize = 64;
/// Longest room name (`RoomJoin.room`, `RoomLeave.room`, `RoomPull.room`),
/// bytes; at least 1.
pub const MAX_ROOM_NAME_LEN: usize = 128;

/// Checks an identifier: 1 to `max` bytes, no control character. The error
/// names `field` and the bound.
pub(crate) fn check_id(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    check_opaque(field, value, max)?;
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not hold control characters"));
    }
    Ok(())
}

/// Checks a business id (`Login.biz`): 1 to [`MAX_BIZ_LEN`] bytes, no
/// control character, no `:` (see [`separator_error`]).
pub fn check_biz(biz: &str) -> Result<(), String> {
    check_id("biz", biz, MAX_BIZ_LEN)?;
    check_no_separator("biz", biz)
}

/// Checks an alias (`Login.alias`): 1 to [`MAX_ALIAS_LEN`] bytes, no
/// control character, no `:` (see [`separator_error`]).
pub fn check_alias(alias: &str) -> Result<(), String> {
    check_id("alias", alias, MAX_ALIAS_LEN)?;
    check_no_separator("alias", alias)
}

/// `value` of a biz or alias `field` holds no `:`.
fn check_no_separator(field: &str, value: &str) -> Result<(), String> {
    if value.contains(':') {
        return Err(separator_error(field));
    }
    Ok(())
}

/// Why a biz or alias must not hold `:` (`field` as the message names it):
/// `chat:u42` is documentation shorthand for biz `chat`, alias `u42`,
/// never one field. Shared with gateways that take a biz or alias from
/// elsewhere (e.g. the HTTP API), so that they refuse what no login could
/// match.
pub fn separator_error(field: &str) -> String {
    format!(
        "{field} must not contain ':' (biz and alias are separate fields; \
         'chat:u7' is biz 'chat', alias 'u7')"
    )
}

/// Checks an opaque value: at most `max` bytes (empty allowed).
pub(crate) fn check_opaque(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!(
            "{field} has {} bytes, more than the limit of {max}",
            value.len()
        ));
    }
    Ok(())
}

/// Checks a room name (shared with gateways that take room names from
/// elsewhere, e.g. an HTTP publish).
pub fn check_room_name(room: &str) -> Result<(), String> {
    check_id("room", room, MAX_ROOM_NAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_non_empty_and_printable() {
        assert!(check_id("biz", "chat", MAX_BIZ_LEN).is_ok());
        assert!(check_id("biz", &"b".repeat(MAX_BIZ_LEN), MAX_BIZ_LEN).is_ok());
        let long = check_id("biz", &"b".repeat(MAX_BIZ_LEN + 1), MAX_BIZ_LEN).unwrap_err();
        assert_eq!(long, "biz has 65 bytes, more than the limit of 64");
        assert_eq!(
            check_id("alias", "", MAX_ALIAS_LEN).unwrap_err(),
            "alias must not be empty"
        );
        assert!(check_id("tag", "a\nb", MAX_TAG_LEN).is_err());
        assert!(check_room_name("live:1").is_ok());
        assert!(check_room_name(&"r".repeat(MAX_ROOM_NAME_LEN + 1)).is_err());
        assert!(check_opaque("credential", "", MAX_CREDENTIAL_LEN).is_ok());
    }

    #[test]
    fn biz_and_alias_hold_no_separator() {
        assert!(check_biz("chat").is_ok());
        assert!(check_alias("u42").is_ok());
        assert_eq!(
            check_alias("chat:u7").unwrap_err(),
            "alias must not contain ':' (biz and alias are separate fields; \
             'chat:u7' is biz 'chat', alias 'u7')"
        );
        assert_eq!(
            check_biz("chat:").unwrap_err(),
            "biz must not contain ':' (biz and alias are separate fields; \
             'chat:u7' is biz 'chat', alias 'u7')"
        );
        assert!(check_biz(&"b".repeat(MAX_BIZ_LEN + 1)).is_err());
        assert!(check_alias(&"a".repeat(MAX_ALIAS_LEN + 1)).is_err());
        assert!(check_alias("").is_err());
        assert!(check_biz("a\u{7}").is_err());
    }
}
