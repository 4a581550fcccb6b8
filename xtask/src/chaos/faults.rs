//! What happens when during a chaos run, drawn from the seed: gateway
//! kills spread evenly (with jitter) over the load, and fault episodes on
//! the device and webhook proxies, each healed before the next.

use std::num::NonZeroUsize;
use std::time::Duration;

use faultproxy::{Action, Direction};

/// One step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// SIGKILL the gateway, wait `down`, start it again.
    Kill {
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
            events.push((Duration::from_millis(at), Event::Kill { down }));
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
}
