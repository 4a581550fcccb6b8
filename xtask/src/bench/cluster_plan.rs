//! The settings of the `cluster` workload in quick and full mode, and the
//! checks that keep every process within its open-file limit.

use std::time::Duration;

use super::cluster_rig::MAX_GATEWAYS;

/// Gateways of the measured cluster (issue 13: six on this box).
pub(crate) const GATEWAYS: u16 = 6;
/// Open files a server keeps free besides its device connections (NATS
/// connections, HTTP, store, logs).
const SERVER_FD_HEADROOM: usize = 300;
/// Open files a generator keeps free besides its connections.
const GENERATOR_FD_HEADROOM: usize = 1_000;

/// What the `cluster` workload runs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClusterSettings {
    /// Device connections held during the unicast phases, all systems
    /// together: the idle set plus the unicast devices.
    pub(crate) connections: usize,
    pub(crate) gateways: u16,
    /// Unicast devices (the idle set holds the rest), spread evenly.
    pub(crate) devices: usize,
    /// Fan-out room members.
    pub(crate) members: usize,
    /// Most connections of one generator process.
    pub(crate) per_generator: usize,
    /// Total rates (pushes/s over all generators) of the unicast steps.
    pub(crate) transient_rates: Vec<u64>,
    pub(crate) reliable_rates: Vec<u64>,
    /// Publishes/s of the fan-out steps.
    pub(crate) fanout_rates: Vec<u64>,
    pub(crate) warmup: u64,
    pub(crate) step: u64,
    pub(crate) drain: u64,
    pub(crate) connect_deadline: Duration,
    pub(crate) settle_limit: Duration,
    pub(crate) cpu_window: Duration,
    /// Time between spawning the unicast generators and their first step
    /// (`--start-at`), for their connect phase.
    pub(crate) start_allowance: Duration,
    /// Room members on every gateway (cross-node rooms); otherwise on the
    /// publishing gateway only.
    pub(crate) room_spread: bool,
}

impl ClusterSettings {
    /// The settings of a quick or full run; `connections` overrides the
    /// total; checked against the open-file limit `fd_limit`.
    pub(crate) fn new(
        quick: bool,
        connections: Option<usize>,
        room_spread: bool,
        fd_limit: u64,
    ) -> Result<Self, String> {
        let settings = if quick {
            Self {
                connections: connections.unwrap_or(2_000),
                gateways: GATEWAYS,
                devices: 300,
                members: 300,
                per_generator: 18_000,
                transient_rates: vec![1_000],
                reliable_rates: vec![300],
                fanout_rates: vec![20],
                warmup: 1,
                step: 2,
                drain: 1,
                connect_deadline: Duration::from_secs(60),
                settle_limit: Duration::from_secs(10),
                cpu_window: Duration::from_secs(2),
                start_allowance: Duration::from_secs(10),
                room_spread,
            }
        } else {
            Self {
                connections: connections.unwrap_or(100_000),
                gateways: GATEWAYS,
                devices: 3_000,
                members: 2_400,
                per_generator: 18_000,
                transient_rates: vec![1_000, 5_000, 20_000],
                reliable_rates: vec![500, 2_000, 5_000],
                fanout_rates: vec![2, 20, 100],
                warmup: 2,
                step: 5,
                drain: 2,
                connect_deadline: Duration::from_secs(900),
                settle_limit: Duration::from_secs(30),
                cpu_window: Duration::from_secs(10),
                start_allowance: Duration::from_secs(30),
                room_spread,
            }
        };
        settings.check(fd_limit)?;
        Ok(settings)
    }

    /// The idle connections (held through the whole run).
    pub(crate) fn idle(&self) -> usize {
        self.connections.saturating_sub(self.devices)
    }

    /// The idle connections of one gateway (the single node holds one
    /// gateway's share).
    pub(crate) fn idle_per_gateway(&self) -> usize {
        self.idle().div_ceil(usize::from(self.gateways.max(1)))
    }

    fn check(&self, fd_limit: u64) -> Result<(), String> {
        let fds = usize::try_from(fd_limit).unwrap_or(usize::MAX);
        let server_room = fds.saturating_sub(SERVER_FD_HEADROOM);
        let generator_room = fds.saturating_sub(GENERATOR_FD_HEADROOM);
        let g = usize::from(self.gateways);
        if !(2..=usize::from(MAX_GATEWAYS)).contains(&g) {
            return Err(format!("2 to {MAX_GATEWAYS} gateways, not {g}"));
        }
        if self.devices < g || self.members == 0 || self.connections <= self.devices {
            return Err(format!(
                "{} connections leave no idle set besides {} unicast devices over {g} gateways",
                self.connections, self.devices
            ));
        }
        let idle = self.idle_per_gateway();
        // The busiest process of each phase: a cluster gateway holds its
        // idle share plus its unicast devices, or the members of a
        // node-local room; the single node its idle share plus all of
        // either.
        let busiest = idle + self.devices.max(self.members);
        if busiest > server_room {
            return Err(format!(
                "a gateway would hold {busiest} connections (idle {idle} + {} workload devices): \
                 more than the open-file limit {fd_limit} allows ({server_room})",
                self.devices.max(self.members)
            ));
        }
        if self.per_generator > generator_room || self.per_generator == 0 {
            return Err(format!(
                "{} connections per generator: more than the open-file limit {fd_limit} allows",
                self.per_generator
            ));
        }
        Ok(())
    }

    /// Seconds one step takes (warm-up, window, drain).
    pub(crate) fn step_secs(&self) -> u64 {
        self.warmup + self.step + self.drain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_run_holds_100k_within_the_limits() {
        let s = ClusterSettings::new(false, None, false, 20_000).unwrap();
        assert_eq!(s.connections, 100_000);
        assert_eq!(s.idle() + s.devices, 100_000);
        // Each cluster gateway holds a sixth.
        assert_eq!(s.idle_per_gateway() + s.devices / 6, 16_667);
        assert!(s.idle_per_gateway() <= s.per_generator);
        let quick = ClusterSettings::new(true, None, true, 20_000).unwrap();
        assert_eq!(quick.connections, 2_000);
        assert!(quick.room_spread);
        // Quick mode: three phases of one step per system, two systems,
        // well under three minutes of steps.
        let steps =
            quick.transient_rates.len() + quick.reliable_rates.len() + quick.fanout_rates.len();
        assert!(2 * steps as u64 * (quick.step_secs() + quick.start_allowance.as_secs()) < 120);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(ClusterSettings::new(false, None, false, 10_000).is_err());
        assert!(ClusterSettings::new(false, Some(200_000), false, 20_000).is_err());
        assert!(ClusterSettings::new(true, Some(300), false, 20_000).is_err());
        assert!(ClusterSettings::new(true, Some(5_000), false, 20_000).is_ok());
    }
}
