//! The chaos run's records (the JSON lines of `pike bench chaos`) and the
//! verdict drawn from them: what was accepted, delivered, lost, duplicated
//! and out of order, per direction.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

/// Everything the devices, the publisher and the backend reported.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Push payload → (alias, accepted: answered 200).
    pushes: HashMap<String, (String, bool)>,
    /// Push payload → when its answer was read (run clock).
    pushed_at: HashMap<String, Duration>,
    /// Per alias: (seq, payload) of every reliable message handed to the app, in order.
    received: HashMap<String, Vec<(u64, String)>>,
    /// Uplink key → acked OK at the device.
    sent: HashMap<String, bool>,
    /// Why uplinks failed at the device: error text → count.
    failures: HashMap<String, u64>,
    /// Backend calls in arrival order.
    calls: Vec<Call>,
    /// `gap` lines (messages the client reported expired).
    pub(crate) gaps: u64,
    /// Accepted pushes not yet seen at a device (for the catch-up wait).
    pending: HashSet<String>,
    /// When the gateway was down or the webhook proxy faulty (run clock).
    disturbances: Vec<(Duration, Duration)>,
}

/// How long after a disturbance a late duplicate still counts as its
/// consequence (lines reach the harness with some delay).
const DISTURBANCE_MARGIN: Duration = Duration::from_secs(2);

impl Records {
    /// Notes that from `from` to `to` the gateway was down (killed) or the
    /// webhook proxy had a fault.
    pub(crate) fn disturbed(&mut self, from: Duration, to: Duration) {
        self.disturbances.push((from, to));
    }

    /// Takes one line, received at `at` (run clock).
    pub(crate) fn add(&mut self, line: &Value, at: Duration) {
        let s = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
        match line["kind"].as_str().unwrap_or_default() {
            "push" => {
                let accepted = line["status"].as_u64() == Some(200);
                let payload = s("payload");
                let seen = self.received_payload(&s("alias"), &payload);
                if accepted && !seen {
                    self.pending.insert(payload.clone());
                }
                self.pushed_at.insert(payload.clone(), at);
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
                let ok = line["ok"].as_bool() == Some(true);
                if !ok {
                    let error = line["error"].as_str().unwrap_or("no outcome");
                    *self.failures.entry(error.to_owned()).or_default() += 1;
                }
                self.sent.insert(key, ok);
            }
            "call" => self.calls.push(Call {
                alias: s("alias"),
                key: s("key"),
                ok: line["status"]
                    .as_u64()
                    .is_some_and(|c| (200..300).contains(&c)),
                late: line["slow"].as_bool() == Some(true),
                at,
            }),
            "gap" => self.gaps += 1,
            _ => {}
        }
    }

    fn received_payload(&self, alias: &str, payload: &str) -> bool {
        self.received
            .get(alias)
            .is_some_and(|v| v.iter().any(|(_, p)| p == payload))
    }

    /// Whether `at` falls into a disturbance (± [`DISTURBANCE_MARGIN`]).
    fn disturbed_at(&self, at: Duration) -> bool {
        self.disturbances
            .iter()
            .any(|(from, to)| *from <= at + DISTURBANCE_MARGIN && at <= *to + DISTURBANCE_MARGIN)
    }

    /// Accepted pushes never delivered: `payload → alias, answered at t`
    /// (at most `top` lines, Markdown list, by time), to find them in the
    /// gateways' logs.
    pub(crate) fn lost(&self, top: usize) -> String {
        let delivered: HashSet<&str> = self
            .received
            .values()
            .flatten()
            .map(|(_, payload)| payload.as_str())
            .collect();
        let mut lost: Vec<(Duration, &str, &str)> = self
            .pushes
            .iter()
            .filter(|(payload, (_, ok))| *ok && !delivered.contains(payload.as_str()))
            .map(|(payload, (alias, _))| {
                let at = self.pushed_at.get(payload).copied().unwrap_or_default();
                (at, payload.as_str(), alias.as_str())
            })
            .collect();
        lost.sort();
        lost.iter()
            .take(top)
            .map(|(at, payload, alias)| {
                format!(
                    "- {payload} → {alias}, answered 200 at t = {:.1} s\n",
                    at.as_secs_f64()
                )
            })
            .collect()
    }

    /// Uplink failures at the device by error, most frequent first (at
    /// most `top` lines, Markdown list).
    pub(crate) fn failures(&self, top: usize) -> String {
        let mut failures: Vec<(&String, &u64)> = self.failures.iter().collect();
        failures.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        failures
            .iter()
            .take(top)
            .map(|(error, n)| format!("- {n} × {error}\n"))
            .collect()
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
        // Key → its first 2xx: answered late (past the timeout), and when.
        let mut taken: HashMap<&str, (bool, Duration)> = HashMap::new();
        let mut keys: HashSet<&str> = HashSet::new();
        let mut last_j: HashMap<&str, u64> = HashMap::new();
        for Call {
            alias,
            key,
            ok,
            late,
            at,
        } in &self.calls
        {
            keys.insert(key);
            if !ok {
                continue;
            }
            v.taken += 1;
            if let Some((first_late, first_at)) = taken.get(key.as_str()) {
                v.up_dups += 1;
                if *first_late {
                    v.up_dups_after_late += 1;
                } else if self.disturbed_at(*first_at) {
                    v.up_dups_disturbed += 1;
                }
                continue;
            }
            taken.insert(key, (*late, *at));
            let j = key
                .rsplit_once('-')
                .and_then(|(_, j)| j.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(prev) = last_j.insert(alias, j)
                && j <= prev
            {
                v.up_order += 1;
                // docs/webhooks.md: a request the gateway timed out (the
                // backend answered late, or its bytes were held by a
                // faulty link and delivered once it healed) may still
                // arrive, after the device's next messages.
                if *late || self.disturbed_at(*at) {
                    v.up_order_late += 1;
                }
            }
        }
        v.distinct_keys = keys.len() as u64;
        v.up_lost = self
            .sent
            .iter()
            .filter(|(key, ok)| **ok && !taken.contains_key(key.as_str()))
            .count() as u64;
        v.taken_not_acked = taken
            .keys()
            .filter(|key| self.sent.get(**key) != Some(&true))
            .count() as u64;
        v
    }
}

/// One call the backend answered.
#[derive(Debug)]
struct Call {
    alias: String,
    key: String,
    /// Answered 2xx.
    ok: bool,
    /// Answered only after the slow delay (past the gateway's timeout).
    late: bool,
    /// When the harness read it.
    at: Duration,
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
    /// Of `up_dups`: keys whose first 2xx was a late answer (the gateway
    /// had timed it out, so the message was retried).
    pub(crate) up_dups_after_late: u64,
    /// Of `up_dups`: the first 2xx was taken while the gateway was being
    /// killed or the webhook proxy had a fault, so its answer may never
    /// have been recorded by the gateway.
    pub(crate) up_dups_disturbed: u64,
    pub(crate) up_order: u64,
    /// Of `up_order`: the out-of-order first 2xx was a late answer or
    /// arrived during a gateway kill or webhook-link fault (a request the
    /// gateway had timed out, delivered late: docs/webhooks.md).
    pub(crate) up_order_late: u64,
    /// Keys the backend took whose device saw a failure (or no outcome).
    pub(crate) taken_not_acked: u64,
}

impl Verdict {
    /// Uplink duplicates none of the documented cases explains
    /// (docs/webhooks.md: a late answer, or a gateway that dies or loses
    /// the answer between the backend's 2xx and recording it).
    pub(crate) fn up_dups_unexplained(&self) -> u64 {
        self.up_dups - self.up_dups_after_late - self.up_dups_disturbed
    }

    /// Uplink order breaks no documented case explains.
    pub(crate) fn up_order_unexplained(&self) -> u64 {
        self.up_order - self.up_order_late
    }

    /// Whether the run kept every guarantee: no downlink loss, duplicate,
    /// order break or stray message; no uplink loss, order break or
    /// duplicate beyond the documented at-least-once cases.
    pub(crate) fn passed(&self) -> bool {
        self.down_lost + self.down_dups + self.down_order + self.misdelivered == 0
            && self.up_lost + self.up_order_unexplained() + self.up_dups_unexplained() == 0
    }

    /// The summary table (Markdown).
    pub(crate) fn table(&self) -> String {
        format!(
            "| direction | accepted | delivered | lost | duplicated | order breaks |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | downlink (API 200 → app) | {} | {} | {} | {} | {} |\n\
             | uplink (device acked OK → backend 2xx) | {} | {} | {} | {} ({} unexplained) | {} ({} unexplained) |\n\n\
             downlink: {} pushes answered, {} not accepted but delivered anyway, {} misdelivered, {} gap events\n\
             uplink: {} sends with an outcome, {} backend calls for {} distinct keys, {} taken by the backend without an OK ack at the device; \
             of the {} duplicates, {} follow a late 2xx (after the gateway's webhook timeout), {} a 2xx during a gateway kill or webhook-link fault, {} unexplained\n",
            self.accepted,
            self.delivered,
            self.down_lost,
            self.down_dups,
            self.down_order,
            self.acked,
            self.taken,
            self.up_lost,
            self.up_dups,
            self.up_dups_unexplained(),
            self.up_order,
            self.up_order_unexplained(),
            self.pushed,
            self.unaccepted_delivered,
            self.misdelivered,
            self.gaps,
            self.sent,
            self.calls,
            self.distinct_keys,
            self.taken_not_acked,
            self.up_dups,
            self.up_dups_after_late,
            self.up_dups_disturbed,
            self.up_dups_unexplained(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lost_pushes_are_listed_with_alias_and_time() {
        let mut r = Records::default();
        r.add(
            &json!({"kind": "push", "alias": "a", "payload": "d1", "status": 200}),
            Duration::from_millis(1_500),
        );
        r.add(
            &json!({"kind": "push", "alias": "b", "payload": "d2", "status": 200}),
            Duration::from_secs(2),
        );
        r.add(
            &json!({"kind": "push", "alias": "b", "payload": "d3", "status": 503}),
            Duration::from_secs(2),
        );
        r.add(
            &json!({"kind": "rx", "alias": "b", "seq": 1, "payload": "d2"}),
            Duration::from_secs(3),
        );
        assert_eq!(r.lost(10), "- d1 → a, answered 200 at t = 1.5 s\n");
    }

    #[test]
    fn uplink_failures_are_counted_by_error() {
        let r = records(&[
            json!({"kind": "up", "alias": "a", "j": 0, "ok": false, "error": "overloaded"}),
            json!({"kind": "up", "alias": "a", "j": 1, "ok": false, "error": "backend unavailable"}),
            json!({"kind": "up", "alias": "b", "j": 0, "ok": false, "error": "overloaded"}),
            json!({"kind": "up", "alias": "b", "j": 1, "ok": true, "error": null}),
        ]);
        assert_eq!(
            r.failures(5),
            "- 2 × overloaded\n- 1 × backend unavailable\n"
        );
        assert_eq!(r.failures(1), "- 2 × overloaded\n");
    }

    fn records(lines: &[Value]) -> Records {
        let mut records = Records::default();
        for line in lines {
            records.add(line, Duration::ZERO);
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
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200,"slow":true}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":503}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
        ])
        .verdict();
        assert!(!v.passed());
        assert_eq!((v.down_lost, v.down_dups, v.down_order), (2, 1, 1));
        assert_eq!((v.up_lost, v.up_dups, v.up_order), (1, 1, 1));
        // u1-0's first 2xx was a late answer: a documented late copy.
        assert_eq!((v.up_order_late, v.up_order_unexplained()), (1, 0));
        assert_eq!(v.up_dups_after_late, 1);
        assert_eq!(v.up_dups_unexplained(), 0);
        assert_eq!((v.calls, v.taken, v.distinct_keys), (4, 3, 2));
    }

    #[test]
    fn an_order_break_fails_unless_it_is_a_late_copy() {
        let lines = [
            json!({"kind":"up","alias":"u1","j":0,"ok":false}),
            json!({"kind":"up","alias":"u1","j":1,"ok":true}),
            json!({"kind":"call","alias":"u1","key":"u1-1","status":200}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
        ];
        let mut r = Records::default();
        for (i, line) in lines.iter().enumerate() {
            r.add(line, Duration::from_secs(10 * i as u64));
        }
        let v = r.verdict();
        assert_eq!((v.up_order, v.up_order_unexplained()), (1, 1));
        assert!(!v.passed());
        // The same, u1-0 arriving while the webhook link had a fault.
        r.disturbed(Duration::from_secs(29), Duration::from_secs(31));
        let v = r.verdict();
        assert_eq!((v.up_order, v.up_order_unexplained()), (1, 0));
        assert!(v.passed(), "{v:?}");
    }

    #[test]
    fn a_duplicate_outside_any_disturbance_fails() {
        let lines = [
            json!({"kind":"up","alias":"u1","j":0,"ok":true}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
            json!({"kind":"call","alias":"u1","key":"u1-0","status":200}),
        ];
        let run = |disturbance: Option<(u64, u64)>| {
            let mut r = Records::default();
            if let Some((from, to)) = disturbance {
                r.disturbed(Duration::from_secs(from), Duration::from_secs(to));
            }
            for (i, line) in lines.iter().enumerate() {
                r.add(line, Duration::from_secs(10 + i as u64));
            }
            r.verdict()
        };
        let v = run(None);
        assert_eq!((v.up_dups, v.up_dups_unexplained()), (1, 1));
        assert!(!v.passed());
        let v = run(Some((10, 11)));
        assert_eq!((v.up_dups, v.up_dups_disturbed), (1, 1));
        assert!(
            v.passed(),
            "a kill between the 2xx and its record explains it"
        );
        assert!(!run(Some((1, 2))).passed(), "an older disturbance does not");
        assert!(!run(Some((30, 31))).passed(), "nor a later one");
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
