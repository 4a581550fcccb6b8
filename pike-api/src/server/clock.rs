//! Wall-clock time, the one leaf every other module may use.

/// Wall-clock time, unix milliseconds (0 before 1970, saturating far ahead).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
