//! S3 unicast: `--devices` each subscribed to its own address (MQTT
//! `d/<i>`, NATS `d.<i>`); message `k` goes to device `k mod N` through
//! publisher `k mod --publishers`; expected = sent.
//!
//! In pike mode every device subscribes to `pike/<biz>/down` and its
//! address is its alias (its client id); the publishers are the HTTP
//! connections of the push API.

use super::super::client::Proto;
use super::GenOptions;
use super::sweep::{Plan, ReceiverSpec, Route, SenderOf};

/// Device `i`'s address.
pub(crate) fn address(proto: Proto, device: u64) -> String {
    match proto {
        Proto::Mqtt => format!("d/{device}"),
        Proto::Nats => format!("d.{device}"),
    }
}

pub(crate) fn plan(o: &GenOptions) -> Plan {
    let name = |i: usize| format!("{}d{}", o.id_prefix, o.first + i as u64);
    // Where message k is addressed: the device's topic, or (pike mode) its
    // alias, which is its client id.
    let topics: Vec<String> = (0..o.population)
        .map(|i| match o.pike {
            None => address(o.proto, o.first + i as u64),
            Some(_) => name(i),
        })
        .collect();
    let publishers = match o.pike {
        None => o.publishers,
        Some(_) => o.http_connections,
    };
    Plan {
        receivers: topics
            .iter()
            .enumerate()
            .map(|(i, topic)| ReceiverSpec {
                name: name(i),
                topic: o
                    .pike
                    .as_ref()
                    .map_or_else(|| topic.clone(), |login| login.down_topic()),
                target: i,
                slow: false,
            })
            .collect(),
        targets: o.population,
        senders: (0..publishers)
            .map(|p| format!("{}p{p}", o.id_prefix))
            .collect(),
        routes: topics
            .into_iter()
            .enumerate()
            .map(|(target, topic)| Route { topic, target })
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
    fn one_address_per_device() {
        let args: Vec<String> = ["--devices", "10", "--first", "100", "--proto", "nats"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = GenOptions::parse(Workload::Unicast, &args).unwrap();
        let plan = plan(&o);
        assert_eq!(plan.receivers[3].topic, "d.103");
        assert_eq!(plan.receivers[3].target, 3);
        assert_eq!(plan.senders.len(), 4);
        // Message 13: device 3, publisher 1; the route's topic is the device's.
        let (sender, route) = plan.route(13);
        assert_eq!((sender, route), (1, 3));
        assert_eq!(plan.routes[route].topic, plan.receivers[3].topic);
        assert_eq!(address(Proto::Mqtt, 7), "d/7");
    }

    #[test]
    fn pike_mode_addresses_aliases() {
        let args: Vec<String> = [
            "--devices",
            "10",
            "--first",
            "100",
            "--id-prefix",
            "x1",
            "--pike-app",
            "bench",
            "--pike-biz",
            "iot",
            "--token-secret",
            "s",
            "--api",
            "127.0.0.1:1",
            "--api-key",
            "k",
            "--http-connections",
            "3",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let o = GenOptions::parse(Workload::Unicast, &args).unwrap();
        let plan = plan(&o);
        assert!(plan.receivers.iter().all(|r| r.topic == "pike/iot/down"));
        assert_eq!(plan.receivers[3].name, "x1d103");
        // The route of a device is its alias = its client id.
        let (sender, route) = plan.route(13);
        assert_eq!((sender, route), (1, 3));
        assert_eq!(plan.routes[route].topic, "x1d103");
        assert_eq!(plan.routes[route].target, plan.receivers[3].target);
        assert_eq!(plan.senders.len(), 3, "one per HTTP connection");
    }
}
