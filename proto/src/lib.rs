//! Generated protobuf messages (placeholder until codegen).
#![forbid(unsafe_code)]
