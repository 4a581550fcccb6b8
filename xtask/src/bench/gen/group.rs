//! S4 group messages: device `i` (of `--devices`) is in group
//! `i / --group-size` (MQTT `g/<k>`, NATS `g.<k>`); message `k` goes to
//! group `k mod groups` (round-robin) through publisher `k mod
//! --publishers`; expected = sent × the group's healthy members.

use super::super::client::Proto;
use super::GenOptions;
use super::sweep::{Plan, ReceiverSpec, Route, SenderOf};

fn address(proto: Proto, group: u64) -> String {
    match proto {
        Proto::Mqtt => format!("g/{group}"),
        Proto::Nats => format!("g.{group}"),
    }
}

pub(crate) fn plan(o: &GenOptions) -> Plan {
    let size = o.group_size as u64;
    // Device numbers start at --first; groups are numbered by device / G.
    let first_group = o.first / size;
    let group_of = |i: usize| (o.first + i as u64) / size;
    let groups = (group_of(o.population - 1) - first_group + 1) as usize;
    Plan {
        receivers: (0..o.population)
            .map(|i| ReceiverSpec {
                name: format!("{}d{}", o.id_prefix, o.first + i as u64),
                topic: address(o.proto, group_of(i)),
                target: (group_of(i) - first_group) as usize,
                slow: false,
            })
            .collect(),
        targets: groups,
        senders: (0..o.publishers)
            .map(|p| format!("{}p{p}", o.id_prefix))
            .collect(),
        routes: (0..groups)
            .map(|t| Route {
                topic: address(o.proto, first_group + t as u64),
                target: t,
            })
            .collect(),
        sender_of: SenderOf::RoundRobin,
        population_key: "devices",
        population: o.population,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Workload;
    use super::*;

    #[test]
    fn groups_of_g() {
        let args: Vec<String> = ["--devices", "250", "--group-size", "100"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = GenOptions::parse(Workload::Group, &args).unwrap();
        let plan = plan(&o);
        assert_eq!(plan.targets, 3, "100 + 100 + 50");
        assert_eq!(plan.receivers[99].topic, "g/0");
        assert_eq!(plan.receivers[100].topic, "g/1");
        assert_eq!(plan.receivers[249].target, 2);
        let (_, route) = plan.route(5);
        assert_eq!(plan.routes[route].topic, "g/2");
        assert_eq!(plan.routes[route].target, 2);
    }
}
