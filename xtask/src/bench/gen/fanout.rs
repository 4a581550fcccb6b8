//! S2 room fan-out (S6 with `--churn`, S7 with `--slow`): `--members`
//! subscribe to one topic (`room`); `--publishers` (one) publish to it;
//! every message is expected at every healthy member.

use super::GenOptions;
use super::sweep::{Plan, ReceiverSpec, Route, SenderOf, is_slow};

pub(crate) const TOPIC: &str = "room";

pub(crate) fn plan(o: &GenOptions) -> Plan {
    Plan {
        receivers: (0..o.population)
            .map(|i| ReceiverSpec {
                name: format!("{}m{}", o.id_prefix, o.first + i as u64),
                topic: TOPIC.into(),
                target: 0,
                slow: is_slow(i, o.slow),
            })
            .collect(),
        targets: 1,
        senders: (0..o.publishers)
            .map(|p| format!("{}p{p}", o.id_prefix))
            .collect(),
        routes: vec![Route {
            topic: TOPIC.into(),
            target: 0,
        }],
        sender_of: SenderOf::RoundRobin,
        population_key: "members",
        population: o.population,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Workload;
    use super::*;

    #[test]
    fn one_room() {
        let args: Vec<String> = ["--members", "200", "--slow", "5"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = GenOptions::parse(Workload::Fanout, &args).unwrap();
        let plan = plan(&o);
        assert_eq!(plan.receivers.len(), 200);
        assert!(
            plan.receivers
                .iter()
                .all(|r| r.topic == "room" && r.target == 0)
        );
        assert_eq!(plan.receivers.iter().filter(|r| r.slow).count(), 10);
        assert_eq!(plan.senders.len(), 1);
        assert_eq!(plan.route(12_345), (0, 0));
    }
}
