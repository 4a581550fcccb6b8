//! End-to-end tests of the `pike-server` binary: each test starts the real
//! binary (`CARGO_BIN_EXE_pike-server`) with a config file in a temporary
//! directory, every listener on `127.0.0.1:0`, learns the addresses from the
//! banner, and drives it with real `pike_api::PikeClient`s (TCP, TLS with
//! the printed fingerprint pinned, QUIC) and the HTTP API. One file per
//! behaviour; helpers in `support/`.

mod support;

mod alias_devices;
mod cluster_failover;
mod cluster_presence;
mod cluster_receipts;
mod cluster_rooms_uplink;
mod crash_restart;
mod identity;
mod isolation;
mod metrics;
mod offline;
mod receipts;
mod receipts_push_socket;
mod shutdown;
mod store_corruption;
mod tags;
mod tokens;
mod trace;
mod uplink_batches;
mod uplink_failover;
mod webhook_faults;
