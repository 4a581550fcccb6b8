//! `pike-api` (placeholder crate root; see README.md).
#![forbid(unsafe_code)]
