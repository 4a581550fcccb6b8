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

/// Checks an identifier: 1 to [`MAX_ID_LEN`] bytes of UTF-8 without control
/// characters (they would not survive logs, traces and webhook headers).
pub(crate) fn id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if value.len() > MAX_ID_LEN {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "`{field}` is {} bytes long, more than the limit of {MAX_ID_LEN}",
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
}
