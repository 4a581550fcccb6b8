//! What happens when during a chaos run, drawn from the seed: gateway
//! kills spread evenly (with jitter) over the load, and fault episodes on
//! the device and webhook proxies, each healed before the next; in a
//! cluster, which gateway each kill hits and NATS node kills too.

use std::num::NonZeroUsize;
use std::time::Duration;

use faultproxy::{Action, Direction};

/// One step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// SIGKILL a gateway, wait `down`, start it again.
    Kill {
        /// Which gateway (0 with a single one).
        gateway: usize,
        /// How long it stays down.
        down: Duration,
    },
    /// SIGKILL a NATS JetStream node, wait `down`, start it again (on its
    /// data) and wait until it is healthy.
    NatsKill {
        /// Which node.
        node: usize,
        /// How long it stays down.
        down: Duration,
    },
    /// A fault on the proxy between devices and gateway.
    Devices(Action),
    /// A fault on the proxy between gateway and webhook backend.
    Hooks(Action),
    /// Lift every proxy fault.
    Heal,
}

/// The run's events, by offset from the start of the load.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    pub(crate) events: Vec<(Duration, Event)>,
}

impl Plan {
    /// Draws `kills` kills and fault episodes over `load` from `seed`.
    pub(crate) fn draw(seed: u64, kills: u32, load: Duration) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut events = Vec::new();
        let ms = load.as_millis() as u64;
        for k in 0..u64::from(kills) {
            // Slot k of `kills` equal slots, anywhere in its middle half.
            let slot = ms / u64::from(kills).max(1);
            let at = k * slot + slot / 4 + rng.u64(..=slot / 2);
            let down = Duration::from_millis(rng.u64(100..=1_500));
            events.push((Duration::from_millis(at), Event::Kill { gateway: 0, down }));
        }
        let mut at = rng.u64(500..=2_000);
        while at < ms {
            let length = rng.u64(300..=3_000);
            let dir = match rng.u8(..3) {
                0 => Direction::Up,
                1 => Direction::Down,
                _ => Direction::Both,
            };
            let action = match rng.u8(..5) {
                0 => Action::Reset,
                1 => Action::Blackhole { dir, on: true },
                2 => Action::Slice {
                    dir,
                    max: NonZeroUsize::new(rng.usize(1..=64)),
                },
                3 => Action::Latency {
                    dir,
                    latency: Duration::from_millis(rng.u64(5..=200)),
                    jitter: Duration::from_millis(rng.u64(0..=50)),
                },
                _ => Action::Bandwidth {
                    dir,
                    bytes_per_sec: Some(rng.u64(2_000..=200_000)),
                },
            };
            let event = if rng.u8(..4) == 0 {
                Event::Hooks(action)
            } else {
                Event::Devices(action)
            };
            events.push((Duration::from_millis(at), event));
            events.push((Duration::from_millis(at + length), Event::Heal));
            at += length + rng.u64(200..=2_000);
        }
        events.sort_by_key(|(at, _)| *at);
        Self { events }
    }

    /// [`Plan::draw`] for a cluster of `gateways` gateways on `nats_nodes`
    /// JetStream nodes: the same kills and proxy faults as a single node's
    /// plan of `seed`, each kill hitting a gateway drawn from the seed,
    /// plus `nats_kills` NATS node kills, one in the middle half of each of
    /// as many equal slots, down 1–5 s (the harness handles one event at a
    /// time, so at most one node is ever down: the replicas keep a quorum).
    pub(crate) fn draw_cluster(
        seed: u64,
        kills: u32,
        nats_kills: u32,
        gateways: usize,
        nats_nodes: usize,
        load: Duration,
    ) -> Self {
        let mut plan = Self::draw(seed, kills, load);
        // A stream of its own: the single node's plan of a seed stays the
        // same.
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xc1u64.rotate_left(56));
        for (_, event) in &mut plan.events {
            if let Event::Kill { gateway, .. } = event {
                *gateway = rng.usize(..gateways.max(1));
            }
        }
        let ms = load.as_millis() as u64;
        let slot = ms / u64::from(nats_kills).max(1);
        for k in 0..u64::from(nats_kills) {
            let at = k * slot + slot / 4 + rng.u64(..=slot / 2);
            let node = rng.usize(..nats_nodes.max(1));
            let down = Duration::from_millis(rng.u64(1_000..=5_000));
            plan.events
                .push((Duration::from_millis(at), Event::NatsKill { node, down }));
        }
        plan.events.sort_by_key(|(at, _)| *at);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_seeds_and_holds_every_kill_inside_the_load() {
        let load = Duration::from_secs(60);
        let plan = Plan::draw(42, 20, load);
        assert_eq!(plan, Plan::draw(42, 20, load), "same seed, same plan");
        assert_ne!(plan, Plan::draw(43, 20, load));
        let kills: Vec<_> = plan
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Kill { .. }))
            .collect();
        assert_eq!(kills.len(), 20);
        assert!(kills.iter().all(|(at, _)| *at < load));
        assert!(
            plan.events
                .iter()
                .any(|(_, e)| matches!(e, Event::Devices(_)))
        );
        assert!(
            plan.events
                .iter()
                .any(|(_, e)| matches!(e, Event::Hooks(_)))
        );
        assert!(plan.events.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn a_cluster_plan_keeps_the_single_plan_and_adds_targets_and_nats_kills() {
        let load = Duration::from_secs(120);
        let single = Plan::draw(7, 20, load);
        let cluster = Plan::draw_cluster(7, 20, 5, 3, 3, load);
        assert_eq!(cluster, Plan::draw_cluster(7, 20, 5, 3, 3, load));
        // Without the NATS kills and the kill targets, the same events.
        let strip = |plan: &Plan| -> Vec<(Duration, Event)> {
            plan.events
                .iter()
                .filter(|(_, e)| !matches!(e, Event::NatsKill { .. }))
                .map(|(at, e)| match e {
                    Event::Kill { down, .. } => (
                        *at,
                        Event::Kill {
                            gateway: 0,
                            down: *down,
                        },
                    ),
                    other => (*at, other.clone()),
                })
                .collect()
        };
        assert_eq!(strip(&cluster), single.events);
        let targets: std::collections::HashSet<usize> = cluster
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Kill { gateway, .. } => Some(*gateway),
                _ => None,
            })
            .collect();
        assert!(
            targets.len() > 1 && targets.iter().all(|g| *g < 3),
            "{targets:?}"
        );
        let nats: Vec<_> = cluster
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::NatsKill { node, down } => Some((*at, *node, *down)),
                _ => None,
            })
            .collect();
        assert_eq!(nats.len(), 5);
        for (at, node, down) in nats {
            assert!(at < load && node < 3);
            assert!((1..=5).contains(&down.as_secs()));
        }
    }
}
