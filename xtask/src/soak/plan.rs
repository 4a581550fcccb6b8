//! The soak's load: who connects, at which rates, with which generator
//! flags. Rates are chosen so that the gateway (one worker on CPU 0) stays
//! well under one core and the generators (on CPU 1) keep up: reliable
//! pushes cost the gateway about 1.8 ms of CPU each at most
//! (docs/benchmarks.md, S3 acked and the cluster table), room deliveries
//! and idle connections far less.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::Options;
use crate::bench::load;
use crate::bench::servers::{Binaries, Kind, PikeRetention, Server};

/// Seconds published in each one-minute step of a sweep generator.
pub(crate) const STEP_SECS: u64 = 55;
/// Seconds each step drains (nothing published) before its line.
pub(crate) const DRAIN_SECS: u64 = 5;
/// Connections one idle generator holds at most.
const IDLE_PER_GENERATOR: usize = 2_500;
/// Messages an alias's stream keeps (`[store] max_messages_per_stream`):
/// at the unicast rate every stream reaches it within the warm-up, so the
/// store's downlink part stops growing.
const STREAM_CAP: u64 = 20;
/// Seconds a reliable room message is kept (`[rooms.defaults]
/// reliable_retention_secs`): the room's reliable store (1,024) holds
/// `room_rate × 60` messages at once instead of filling in minutes.
const ROOM_RELIABLE_RETENTION_SECS: u64 = 60;
/// Seconds an uplink's outcome is kept for dedup (`[store]
/// uplink_retention_secs`; shipped: 24 h): the store's uplink records turn
/// over within two minutes instead of growing the file (and the page
/// cache that follows it) for the whole run.
const UPLINK_RETENTION_SECS: u64 = 120;
/// The store's page cache, MiB (`[store] cache_mib`; shipped: 64): about
/// the store file's steady size here (12 MiB), so the cache is full within
/// the warm-up instead of filling towards 64 MiB for the whole run (a
/// bounded growth the rule cannot tell from a leak; 5 MiB of RSS at
/// minute 11 in a test run with 4 MiB against 64).
const STORE_CACHE_MIB: u64 = 8;
/// Devices receiving the reliable unicast (200/s): 0.4 pushes a second
/// each, so that each one's trace ring (256 events, a push and its ack
/// two of them) is full after about 5 minutes, inside the warm-up.
const UNICAST_DEVICES: usize = 500;
/// Devices sending the uplink (100/s): 0.5 messages a second each, so
/// that each login's uplink result memory (`uplink_dedup_memory`, 256
/// results) is full after about 9 minutes and its trace ring after about
/// 4, inside the warm-up. With 500 devices (0.2/s each) the results took
/// 21 minutes to fill: a heap profile of minutes 12-24 put the RSS growth
/// after the warm-up there (docs/reliability.md, "Soak").
const UPLINK_DEVICES: usize = 200;
/// Percent of the whole fleet that reconnects per second.
const CHURN_PCT_OF_FLEET: f64 = 1.0;

/// The soak's sizes and rates.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) minutes: u32,
    pub(crate) quick: bool,
    pub(crate) seed: u64,
    /// Idle devices (logged in, silent).
    pub(crate) idle: usize,
    /// Devices receiving reliable pushes, and the pushes per second.
    pub(crate) unicast_devices: usize,
    pub(crate) unicast_rate: u64,
    /// Members of the reliable room, and its publishes per second.
    pub(crate) room_members: usize,
    pub(crate) room_rate: u64,
    /// Members of the churning room (droppable, 1 publish per second).
    pub(crate) churn_members: usize,
    /// Devices sending uplink, and their messages per second in all.
    pub(crate) uplink_devices: usize,
    pub(crate) uplink_rate: u64,
    /// Time from the sweep generators' start to their first step.
    pub(crate) lead_in: Duration,
}

impl Plan {
    pub(crate) fn new(options: &Options) -> Self {
        let quick = options.quick;
        Self {
            minutes: options.minutes,
            quick,
            seed: options.seed,
            idle: if quick { 1_000 } else { 5_800 },
            unicast_devices: if quick { 200 } else { UNICAST_DEVICES },
            unicast_rate: if quick { 50 } else { 200 },
            room_members: if quick { 200 } else { 1_000 },
            room_rate: if quick { 5 } else { 10 },
            churn_members: if quick { 200 } else { 800 },
            uplink_devices: if quick { 100 } else { UPLINK_DEVICES },
            uplink_rate: if quick { 20 } else { 100 },
            lead_in: Duration::from_secs(if quick { 15 } else { 30 }),
        }
    }

    /// The gateway's retention limits for the run.
    pub(crate) fn retention(&self) -> PikeRetention {
        PikeRetention {
            max_messages_per_stream: STREAM_CAP,
            room_reliable_retention_secs: ROOM_RELIABLE_RETENTION_SECS,
            uplink_retention_secs: UPLINK_RETENTION_SECS,
            cache_mib: STORE_CACHE_MIB,
        }
    }

    /// Every connection of the load.
    pub(crate) fn fleet(&self) -> usize {
        self.idle
            + self.unicast_devices
            + self.room_members
            + self.churn_members
            + self.uplink_devices
    }

    /// Reconnects per second: [`CHURN_PCT_OF_FLEET`] of the fleet.
    pub(crate) fn churn_per_sec(&self) -> f64 {
        self.fleet() as f64 * CHURN_PCT_OF_FLEET / 100.0
    }

    /// The churning room's `--churn` percent of its own members.
    pub(crate) fn churn_pct_of_members(&self) -> f64 {
        self.churn_per_sec() * 100.0 / self.churn_members.max(1) as f64
    }

    /// An alias prefix of the run for one part of the load.
    fn prefix(&self, part: &str) -> String {
        format!("s{}{part}", self.seed)
    }

    /// The rates, for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "xtask soak: load: {} connections: {} idle; {} devices × reliable unicast {}/s; \
             reliable room of {} members × {} publishes/s ({} deliveries/s); \
             uplink {}/s from {} devices to a webhook backend (5 ms per answer); \
             churn room of {} members, {:.1} %/s of them = {:.0} reconnects/s \
             (1 % of the fleet per second, each a new connection, login and room join); \
             each minute = {STEP_SECS} s published + {DRAIN_SECS} s drained; \
             retention: {STREAM_CAP} messages per alias stream, room reliable messages \
             {ROOM_RELIABLE_RETENTION_SECS} s, uplink records {UPLINK_RETENTION_SECS} s; store cache {STORE_CACHE_MIB} MiB\n",
            self.fleet(),
            self.idle,
            self.unicast_devices,
            self.unicast_rate,
            self.room_members,
            self.room_rate,
            self.room_members as u64 * self.room_rate,
            self.uplink_rate,
            self.uplink_devices,
            self.churn_members,
            self.churn_pct_of_members(),
            self.churn_per_sec(),
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "fleet": self.fleet(),
            "idle": self.idle,
            "unicast_devices": self.unicast_devices,
            "unicast_reliable_per_sec": self.unicast_rate,
            "room_members": self.room_members,
            "room_reliable_publishes_per_sec": self.room_rate,
            "churn_members": self.churn_members,
            "churn_reconnects_per_sec": self.churn_per_sec(),
            "uplink_devices": self.uplink_devices,
            "uplink_per_sec": self.uplink_rate,
            "step_secs": STEP_SECS,
            "drain_secs": DRAIN_SECS,
            "max_messages_per_stream": STREAM_CAP,
            "room_reliable_retention_secs": ROOM_RELIABLE_RETENTION_SECS,
            "uplink_retention_secs": UPLINK_RETENTION_SECS,
            "store_cache_mib": STORE_CACHE_MIB,
        })
    }

    /// The idle generators (`pike bench idle --stdin-stop`), each from its
    /// own source network.
    pub(crate) fn idle_commands(&self, bins: &Binaries, server: &Server) -> Vec<Command> {
        let hold = u64::from(self.minutes) * 60 + 600;
        crate::bench::s1::split(self.idle, IDLE_PER_GENERATOR)
            .into_iter()
            .enumerate()
            .map(|(index, (first, count))| {
                let mut command = load::command_for(Kind::Pike, bins, server, "idle");
                command
                    .arg("--server")
                    .arg(server.addr.to_string())
                    .args(["--alias-prefix", &self.prefix("i")])
                    .arg("--first-alias")
                    .arg(first.to_string())
                    .arg("--connections")
                    .arg(count.to_string())
                    .arg("--source-net")
                    .arg(format!("127.0.{}", 30 + index))
                    .arg("--hold")
                    .arg(hold.to_string())
                    .arg("--stdin-stop");
                command
            })
            .collect()
    }

    /// The rate list of a sweep generator: one step per minute.
    fn rates(&self, rate: u64) -> String {
        vec![rate.to_string(); self.minutes as usize].join(",")
    }

    /// The flags every sweep generator shares.
    fn sweep_flags(&self, command: &mut Command, server: &Server, net: u8, rate: u64) {
        command
            .arg("--server")
            .arg(server.addr.to_string())
            .arg("--source-net")
            .arg(format!("127.0.{net}"))
            .arg("--rates")
            .arg(self.rates(rate))
            .args(["--warmup", "0"])
            .arg("--step")
            .arg(STEP_SECS.to_string())
            .arg("--drain")
            .arg(DRAIN_SECS.to_string());
    }

    /// The unicast, room and churn generators, starting their first step
    /// at `start_at` (Unix ms).
    pub(crate) fn sweep_commands(
        &self,
        bins: &Binaries,
        server: &Server,
        start_at: u64,
    ) -> Vec<(&'static str, Command)> {
        let mut unicast = load::command_for(Kind::Pike, bins, server, "unicast");
        self.sweep_flags(&mut unicast, server, 40, self.unicast_rate);
        unicast
            .arg("--reliable")
            .args(["--alias-prefix", &self.prefix("u")])
            .arg("--devices")
            .arg(self.unicast_devices.to_string());
        let mut room = load::command_for(Kind::Pike, bins, server, "fanout");
        self.sweep_flags(&mut room, server, 41, self.room_rate);
        room.arg("--reliable")
            .args(["--alias-prefix", &self.prefix("r")])
            .args(["--room", &self.prefix("room")])
            .arg("--members")
            .arg(self.room_members.to_string());
        let mut churn = load::command_for(Kind::Pike, bins, server, "fanout");
        self.sweep_flags(&mut churn, server, 42, 1);
        churn
            .args(["--alias-prefix", &self.prefix("c")])
            .args(["--room", &self.prefix("churn")])
            .arg("--members")
            .arg(self.churn_members.to_string())
            .arg("--churn")
            .arg(format!("{:.3}", self.churn_pct_of_members()));
        let mut list = vec![("unicast", unicast), ("room", room), ("churn", churn)];
        for (_, command) in &mut list {
            command.arg("--start-at").arg(start_at.to_string());
        }
        list
    }

    /// The uplink generator, the webhook backend at `sink`.
    pub(crate) fn uplink_command(
        &self,
        bins: &Binaries,
        server: &Server,
        sink: SocketAddr,
    ) -> Command {
        let mut command = load::command_for(Kind::Pike, bins, server, "uplink");
        self.sweep_flags(&mut command, server, 43, self.uplink_rate);
        command
            .args(["--alias-prefix", &self.prefix("l")])
            .arg("--devices")
            .arg(self.uplink_devices.to_string())
            .arg("--sink")
            .arg(sink.to_string());
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_is_one_percent_of_the_fleet() {
        let options = Options::parse(&[]).unwrap();
        let plan = Plan::new(&options);
        assert_eq!(plan.fleet(), 8_300);
        assert!((plan.churn_per_sec() - 83.0).abs() < 1e-9);
        let members_per_sec = plan.churn_members as f64 * plan.churn_pct_of_members() / 100.0;
        assert!((members_per_sec - 83.0).abs() < 1e-9);
        assert_eq!(plan.rates(7), "7,7,7,7,7,7,7,7,7,7");
    }
}
