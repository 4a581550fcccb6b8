//! S5 uplink: `--devices` each publish to their own topic (MQTT `up/<i>`,
//! NATS `up.<i>`); one sink connection subscribed to `up/#` (`up.>`) is the
//! backend; message `k` comes from device `k mod N`; expected = sent;
//! latency = arrival at the sink − scheduled.

use super::super::client::Proto;
use super::GenOptions;
use super::sweep::{Plan, ReceiverSpec, Route, SenderOf};

pub(crate) fn plan(o: &GenOptions) -> Plan {
    let (sink, topic): (&str, fn(u64) -> String) = match o.proto {
        Proto::Mqtt => ("up/#", |i| format!("up/{i}")),
        Proto::Nats => ("up.>", |i| format!("up.{i}")),
    };
    Plan {
        receivers: vec![ReceiverSpec {
            name: format!("{}sink", o.id_prefix),
            topic: sink.into(),
            target: 0,
            slow: false,
        }],
        targets: 1,
        senders: (0..o.population)
            .map(|i| format!("{}d{}", o.id_prefix, o.first + i as u64))
            .collect(),
        routes: (0..o.population)
            .map(|i| Route {
                topic: topic(o.first + i as u64),
                target: 0,
            })
            .collect(),
        sender_of: SenderOf::Route,
        population_key: "devices",
        population: o.population,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Workload;
    use super::*;

    #[test]
    fn devices_publish_to_one_sink() {
        let args: Vec<String> = ["--devices", "10", "--proto", "nats"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = GenOptions::parse(Workload::Uplink, &args).unwrap();
        let plan = plan(&o);
        assert_eq!(plan.receivers.len(), 1);
        assert_eq!(plan.receivers[0].topic, "up.>");
        assert_eq!(plan.senders.len(), 10);
        let (sender, route) = plan.route(23);
        assert_eq!((sender, route), (3, 3));
        assert_eq!(plan.routes[3].topic, "up.3");
    }
}
