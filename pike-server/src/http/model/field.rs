//! How the optional fields of the request bodies read JSON, so that the
//! server and `docs/openapi.yaml` (JSON Schema 2020-12) agree on what a
//! valid value is:
//!
//! - an optional field is either left out or has a value of its type:
//!   `null` is refused (`400 invalid_request`), not read as "left out" (the
//!   schema types these fields strictly, and `null` next to the other
//!   payload form would make "exactly one payload" ambiguous);
//! - an integer field takes any JSON number with an integer value, `57.0`
//!   and `5.7e1` included (JSON Schema counts them as integers), and refuses
//!   fractions, negatives and values over the field's type.
//!
//! Use with `#[serde(default, deserialize_with = "...")]`: `default` makes
//! a missing field `None`, the function reads a present one.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// What a `null` optional field is told.
const NULL_REFUSED: &str = "null is not a value here; leave the field out for its default";

/// A present optional field: its value (never `null`).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(de::Error::custom(NULL_REFUSED)),
    }
}

/// An unsigned integer type an integer field reads into.
pub(crate) trait Unsigned: TryFrom<u64> {
    /// Its largest value.
    const MAX: u64;
}

impl Unsigned for u32 {
    const MAX: u64 = Self::MAX as u64;
}

impl Unsigned for u64 {
    const MAX: Self = Self::MAX;
}

/// A present optional integer field: a JSON number with a non-negative
/// integer value that fits `T` (`57`, `57.0`, `5.7e1`); never `null`.
pub(crate) fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Unsigned,
{
    let value = deserializer.deserialize_any(WholeNumber)?;
    T::try_from(value).map(Some).map_err(|_| {
        de::Error::invalid_value(
            de::Unexpected::Unsigned(value),
            &format!("an integer of at most {}", T::MAX).as_str(),
        )
    })
}

/// Reads a JSON number with a non-negative integer value as a `u64`.
struct WholeNumber;

/// 2^64 as an `f64` (exact): the first float a `u64` cannot hold.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

impl Visitor<'_> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
        if value.fract() == 0.0 && (0.0..TWO_POW_64).contains(&value) {
            // In range and integral, so the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(value as u64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Err(E::custom(NULL_REFUSED))
    }

    fn visit_none<E: de::Error>(self) -> Result<u64, E> {
        Err(E::custom(NULL_REFUSED))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole_number")]
        n: Option<u32>,
        #[serde(default, deserialize_with = "super::present")]
        s: Option<String>,
    }

    fn read(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        for (json, n) in [
            (r#"{"n": 57}"#, 57),
            (r#"{"n": 57.0}"#, 57),
            (r#"{"n": 5.7e1}"#, 57),
            (r#"{"n": 0}"#, 0),
            (r#"{"n": -0.0}"#, 0),
            (r#"{"n": 4294967295}"#, u32::MAX),
            (r#"{"n": 4294967295.0}"#, u32::MAX),
        ] {
            assert_eq!(read(json).unwrap().n, Some(n), "{json}");
        }
        assert_eq!(read("{}").unwrap().n, None);
        assert_eq!(read("{}").unwrap().s, None);
        assert_eq!(read(r#"{"s": "x"}"#).unwrap().s.as_deref(), Some("x"));
    }

    #[test]
    fn fractions_negatives_overflow_and_null_are_refused() {
        for json in [
            r#"{"n": 57.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "57"}"#,
            r#"{"n": null}"#,
            r#"{"s": null}"#,
            r#"{"s": 5}"#,
        ] {
            assert!(read(json).is_err(), "{json} was accepted");
        }
        let null = read(r#"{"s": null}"#).unwrap_err();
        assert!(null.contains("leave the field out"), "{null}");
        let over = read(r#"{"n": 4294967296}"#).unwrap_err();
        assert!(over.contains("at most 4294967295"), "{over}");
    }
}
