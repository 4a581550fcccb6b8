//! Deterministic tests of both machines against each other in virtual time
//! (see [`util`] for the harness).

mod credential;
mod downlink;
mod inspection;
mod keepalive;
mod login;
mod login_deadline;
mod reconnect;
mod refusal;
mod rooms;
mod server;
mod uplink;
mod uplink_order;
pub(crate) mod util;
