//! The chaos run's records (the JSON lines of `pike bench chaos`) and the
//! verdict drawn from them: what was accepted, delivered, lost, duplicated
//! and out of order, per direction.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Everything the devices, the publisher and the backend reported.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Push payload → (alias, accepted: answered 200).
    pushes: HashMap<String, (String, bool)>,
    /// Per alias: (seq, payload) of every reliable message handed to the app, in order.
    received: HashMap<String, Vec<(u64, String)>>,
    /// Uplink key → acked OK at the device.
    sent: HashMap<String, bool>,
    /// Backend calls in arrival order: (alias, key, answered 2xx).
    calls: Vec<(String, String, bool)>,
    /// `gap` lines (messages the client reported expired).
    pub(crate) gaps: u64,
    /// Accepted pushes not yet seen at a device (for the catch-up wait).
    pending: HashSet<String>,
}

impl Records {
    /// Takes one line.
    pub(crate) fn add(&mut self, line: &Value) {
        let s = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
        match line["kind"].as_str().unwrap_or_default() {
            "push" => {
                let accepted = line["status"].as_u64() == Some(200);
                let payload = s("payload");
                let seen = self.received_payload(&s("alias"), &payload);
                if accepted && !seen {
                    self.pending.insert(payload.clone());
                }
                self.pushes.insert(payload, (s("alias"), accepted));
            }
            "rx" => {
                let payload = s("payload");
                self.pending.remove(&payload);
                self.received
                    .entry(s("alias"))
                    .or_default()
                    .push((line["seq"].as_u64().unwrap_or(0), payload));
            }
            "up" => {
                let key = format!("{}-{}", s("alias"), line["j"].as_u64().unwrap_or(0));
                self.sent.insert(key, line["ok"].as_bool() == Some(true));
            }
            "call" => {
                let ok = line["status"].as_u64().is_some_and(|c| (200..300).contains(&c));
                self.calls.push((s("alias"), s("key"), ok));
            }
            "gap" => self.gaps += 1,
            _ => {}
        }
    }

    fn received_payload(&self, alias: &str, payload: &str) -> bool {
        self.received
            .get(alias)
            .is_some_and(|v| v.iter().any(|(_, p)| p == payload))
    }

    /// Accepted pushes no device has reported yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The verdict.
    pub(crate) fn verdict(&self) -> Verdict {
        let mut v = Verdict {
            pushed: self.pushes.len() as u64,
            gaps: self.gaps,
            ..Verdict::default()
        };
        v.accepted = self.pushes.values().filter(|(_, ok)| *ok).count() as u64;
        let mut delivered: HashSet<&str> = HashSet::new();
        for (alias, messages) in &self.received {
            let mut last = 0;
            for (seq, payload) in messages {
                v.delivered += 1;
                if *seq <= last {
                    v.down_order += 1;
                }
                last = *seq;
                match self.pushes.get(payload) {
                    Some((to, _)) if to != alias => v.misdelivered += 1,
                    Some((_, accepted)) => {
                        if !delivered.insert(payload) {
                            v.down_dups += 1;
                        } else if !accepted {
                            v.unaccepted_delivered += 1;
                        }
                    }
                    None => v.misdelivered += 1,
                }
            }
        }
        v.down_lost = self
            .pushes
            .iter()
            .filter(|(p, (_, ok))| *ok && !delivered.contains(p.as_str()))
            .count() as u64;

        v.sent = self.sent.len() as u64;
        v.acked = self.sent.values().filter(|ok| **ok).count() as u64;
        v.calls = self.calls.len() as u64;
        let mut taken: HashSet<&str> = HashSet::new();
        let mut keys: HashSet<&str> = HashSet::new();
        let mut last_j: HashMap<&str, u64> = HashMap::new();
        for (alias, key, ok) in &self.calls {
            keys.insert(key);
            if !ok {
                continue;
            }
            v.taken += 1;
            if !taken.insert(key) {
                v.up_dups += 1;
                continue;
            }
            let j = key
                .rsplit_once('-')
                .and_then(|(_, j)| j.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(prev) = last_j.insert(alias, j)
                && j <= prev
            {
                v.up_order += 1;
            }
        }
        v.distinct_keys = keys.len() as u64;
        v.up_lost = self
            .sent
            .iter()
            .filter(|(key, ok)| **ok && !taken.contains(key.as_str()))
            .count() as u64;
        v.taken_not_acked = taken
            .iter()
            .filter(|key| self.sent.get(**key) != Some(&true))
            .count() as u64;
        v
    }
}

/// The figures of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Pushes answered at all (any status).
    pub(crate) pushed: u64,
    /// Pushes answered 200.
    pub(crate) accepted: u64,
    /// Reliable messages handed to the apps (with duplicates).
    pub(crate) delivered: u64,
    pub(crate) down_lost: u64,
    pub(crate) down_dups: u64,
    /// Seq not increasing per alias.
    pub(crate) down_order: u64,
    /// Delivered to the wrong alias, or never pushed.
    pub(crate) misdelivered: u64,
    /// Pushes not answered 200 (e.g. the gateway died mid-answer) that
    /// were stored and delivered anyway (neither loss nor duplicate).
    pub(crate) unaccepted_delivered: u64,
    pub(crate) gaps: u64,
    /// Uplinks with an outcome at the device.
    pub(crate) sent: u64,
    /// Uplinks acked OK at the device.
    pub(crate) acked: u64,
    /// Backend calls (any answer).
    pub(crate) calls: u64,
    /// Backend calls answered 2xx.
    pub(crate) taken: u64,
    /// Distinct idempotency keys among the calls.
    pub(crate) distinct_keys: u64,
    pub(crate) up_lost: u64,
    /// 2xx calls for a key that already had one.
    pub(crate) up_dups: u64,
    pub(crate) up_order: u64,
    /// Keys the backend took whose device saw a failure (or no outcome).
    pub(crate) taken_not_acked: u64,
}

impl Verdict {
    /// Whether the run kept every guarantee.
    pub(crate) fn passed(&self) -> bool {
        self.down_lost + self.down_dups + self.down_order + self.misdelivered == 0
            && self.up_lost + self.up_dups + self.up_order == 0
    }

    /// The summary table (Markdown).
    pub(crate) fn table(&self) -> String {
        format!(
            "| direction | accepted | delivered | lost | duplicated | order breaks |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | downlink (API 200 → app) | {} | {} | {} | {} | {} |\n\
             | uplink (device acked OK → backend 2xx) | {} | {} | {} | {} | {} |\n\n\
             downlink: {} pushes answered, {} not accepted but delivered anyway, {} misdelivered, {} gap events\n\
             uplink: {} sends with an outcome, {} backend calls for {} distinct keys, {} taken by the backend without an OK ack at the device\n",
            self.accepted,
            self.delivered,
            self.down_lost,
            self.down_dups,
            self.down_order,
            self.acked,
            self.taken,
            self.up_lost,
            self.up_dups,
            self.up_order,
            self.pushed,
            self.unaccepted_delivered,
            self.misdelivered,
            self.gaps,
            self.sent,
            self.calls,
            self.distinct_keys,
            self.taken_not_acked,
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn records(lines: &[Value]) -> Records {
        let mut records = Records::default();
        for line in lines {
            records.add(line);
        }
        records
    }

    #[test]
    fn a_clean_run_passes() {
        let r = records(&[
            json!({"kind":"push","alias":"u0","payload":"d0","status":200}),
            json!({"kind":"push","alias":"u0","payload":"d1","status":503}),
            json!({"kind":"rx","alias":"u0","seq":1,"payload":"d0"}),
            json!({"kind":"up","alias":"u1","j":0,"ok":true}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
        ]);
        let v = r.verdict();
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.accepted, v.delivered, v.acked, v.taken), (1, 1, 1, 1));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn loss_duplicates_and_order_breaks_fail() {
        let v = records(&[
            json!({"kind":"push","alias":"u0","payload":"d0","status":200}),
            json!({"kind":"push","alias":"u0","payload":"d1","status":200}),
            json!({"kind":"push","alias":"u0","payload":"d2","status":200}),
            json!({"kind":"rx","alias":"u0","seq":2,"payload":"d1"}),
            json!({"kind":"rx","alias":"u0","seq":2,"payload":"d1"}),
            json!({"kind":"up","alias":"u1","j":0,"ok":true}),
            json!({"kind":"up","alias":"u1","j":1,"ok":true}),
            json!({"kind":"up","alias":"u1","j":2,"ok":true}),
            json!({"kind":"call","alias":"u1","key":"u1-1","status":200}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":503}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
        ])
        .verdict();
        assert!(!v.passed());
        assert_eq!((v.down_lost, v.down_dups, v.down_order), (2, 1, 1));
        assert_eq!((v.up_lost, v.up_dups, v.up_order), (1, 1, 1));
        assert_eq!((v.calls, v.taken, v.distinct_keys), (4, 3, 2));
    }

    #[test]
    fn unaccepted_pushes_delivered_are_neither_lost_nor_duplicated() {
        let v = records(&[
            json!({"kind":"push","alias":"u0","payload":"d0","status":0}),
            json!({"kind":"rx","alias":"u0","seq":1,"payload":"d0"}),
            json!({"kind":"rx","alias":"u9","seq":1,"payload":"d7"}),
        ])
        .verdict();
        assert_eq!((v.unaccepted_delivered, v.misdelivered), (1, 1));
        assert!(!v.passed(), "a message nobody pushed is a failure");
    }
}
