//! Checks of the identifiers and numbers a request carries, at the API
//! boundary: a bad value is `400 invalid_request` naming its field, never a
//! store error reported as an outage.

use super::error::ApiError;

/// Longest identifier (biz, alias, tag, device, publisher) accepted, bytes:
/// the store's limit ([`crate::store::MAX_ID_LEN`]).
pub const MAX_ID_LEN: usize = crate::store::MAX_ID_LEN;

/// Longest `ttl_secs` of a reliable push: ten years, the store's longest
/// retention.
pub const MAX_TTL_SECS: u64 = 10 * 366 * 24 * 3600;

/// Longest business id accepted, bytes: what a login may carry
/// ([`pike_channel::limits::MAX_BIZ_LEN`]).
pub const MAX_BIZ_LEN: usize = pike_channel::limits::MAX_BIZ_LEN;

/// Longest alias accepted, bytes: what a login may carry
/// ([`pike_channel::limits::MAX_ALIAS_LEN`]).
pub const MAX_ALIAS_LEN: usize = pike_channel::limits::MAX_ALIAS_LEN;

/// Checks an identifier: 1 to [`MAX_ID_LEN`] bytes of UTF-8 without control
/// characters (they would not survive logs, traces and webhook headers).
pub(crate) fn id(field: &str, value: &str) -> Result<(), ApiError> {
    bounded_id(field, value, MAX_ID_LEN)
}

/// Checks a business id: an [`id`] of at most [`MAX_BIZ_LEN`] bytes without
/// `:`, what a device's login could carry (anything else could never reach
/// a device).
pub(crate) fn biz(field: &str, value: &str) -> Result<(), ApiError> {
    login_id(field, value, MAX_BIZ_LEN)
}

/// Checks an alias: an [`id`] of at most [`MAX_ALIAS_LEN`] bytes without
/// `:`, what a device's login could carry.
pub(crate) fn alias(field: &str, value: &str) -> Result<(), ApiError> {
    login_id(field, value, MAX_ALIAS_LEN)
}

/// [`alias`], returning the value.
pub(crate) fn owned_alias(field: &str, value: &str) -> Result<String, ApiError> {
    alias(field, value).map(|()| value.to_owned())
}

/// A biz or alias: bounded by the login's limit `max`, no `:`.
fn login_id(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    bounded_id(field, value, max)?;
    if value.contains(':') {
        return Err(ApiError::invalid_field(
            field,
            pike_channel::limits::separator_error(&format!("`{field}`")),
        ));
    }
    Ok(())
}

/// An identifier of 1 to `max` bytes without control characters.
fn bounded_id(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if value.len() > max {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "`{field}` is {} bytes long, more than the limit of {max}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(())
}

/// [`id`], returning the value.
pub(crate) fn owned_id(field: &str, value: &str) -> Result<String, ApiError> {
    id(field, value).map(|()| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(id("alias", "u42").is_ok());
        assert!(id("alias", &"x".repeat(MAX_ID_LEN)).is_ok());
        assert!(id("alias", "ünïcödé 名前").is_ok());
        for bad in [
            String::new(),
            "x".repeat(MAX_ID_LEN + 1),
            "a\nb".into(),
            "a\u{0}".into(),
        ] {
            let err = id("alias", &bad).unwrap_err();
            assert_eq!(err.field(), Some("alias"), "{err}");
            assert!(err.message().contains("`alias`"), "{err}");
        }
    }

    #[test]
    fn biz_and_alias_are_what_a_login_could_carry() {
        assert!(biz("biz", &"b".repeat(MAX_BIZ_LEN)).is_ok());
        assert!(alias("alias", &"a".repeat(MAX_ALIAS_LEN)).is_ok());
        let long = biz("biz", &"b".repeat(MAX_BIZ_LEN + 1)).unwrap_err();
        assert_eq!(long.field(), Some("biz"));
        assert_eq!(
            long.message(),
            "`biz` is 65 bytes long, more than the limit of 64"
        );
        let err = alias("aliases[2]", "chat:u7").unwrap_err();
        assert_eq!(err.field(), Some("aliases[2]"));
        assert_eq!(
            err.message(),
            "`aliases[2]` must not contain ':' (biz and alias are separate fields; \
             'chat:u7' is biz 'chat', alias 'u7')"
        );
        assert_eq!(
            owned_alias("alias", &"a".repeat(MAX_ALIAS_LEN + 1))
                .unwrap_err()
                .field(),
            Some("alias")
        );
        assert!(biz("biz", "a:b").is_err());
        // Tags and devices keep the store's limit and may hold ':'.
        assert!(id("tag", "room:1").is_ok());
        assert!(id("device", &"d".repeat(MAX_ID_LEN)).is_ok());
    }
}
