//! S3 unicast: `--devices` each subscribed to its own address (MQTT
//! `d/<i>`, NATS `d.<i>`); message `k` goes to device `k mod N` through
//! publisher `k mod --publishers`; expected = sent.

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
    let topics: Vec<String> = (0..o.population)
        .map(|i| address(o.proto, o.first + i as u64))
        .collect();
    Plan {
        receivers: topics
            .iter()
            .enumerate()
            .map(|(i, topic)| ReceiverSpec {
                name: format!("{}d{}", o.id_prefix, o.first + i as u64),
                topic: topic.clone(),
                target: i,
                slow: false,
            })
            .collect(),
        targets: o.population,
        senders: (0..o.publishers)
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
}
