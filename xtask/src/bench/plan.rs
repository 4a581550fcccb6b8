//! What each workload runs in quick and full mode: connections, the rate
//! sweep, the window lengths and the contenders.

use std::path::Path;

use super::servers::Kind;
use super::sweep::{Contender, Sweep};

/// The workloads, in run order.
pub(crate) const WORKLOADS: [&str; 9] =
    ["s1", "s2", "s3", "s3-acked", "s4", "s5", "s6", "s7", "s8"];

/// Workloads run only when named (not part of `all`): `cluster` needs
/// NATS and minutes of connects.
pub(crate) const NAMED_ONLY: [&str; 1] = ["cluster"];

/// The sweep workloads, in run order.
pub(crate) const SWEEPS: [&str; 7] = ["s2", "s3", "s3-acked", "s4", "s5", "s6", "s7"];

/// Members of the fan-out room (PERF-NOTES §3: 9,000 subscribers).
const FULL_MEMBERS: usize = 9_000;
/// Connections of every quick workload.
const QUICK_CONNECTIONS: usize = 1_000;
/// The rate search's ceiling: this many times a sweep's highest fixed rate.
const SEARCH_CEILING_FACTOR: u64 = 10;

/// The sweep of workload `id` (`s2` … `s7`).
pub(crate) fn sweep(id: &str, quick: bool) -> Option<Sweep> {
    let n = if quick {
        QUICK_CONNECTIONS
    } else {
        FULL_MEMBERS
    };
    // S2, the headline, gets 4 s windows; the others 3 s.
    let (warmup, step, drain) = match (quick, id) {
        (true, _) => (1, 1, 1),
        (false, "s2") => (2, 4, 2),
        (false, _) => (1, 3, 1),
    };
    let base = |id, title, workload, rates: Vec<u64>, fanout| Sweep {
        id,
        title,
        workload,
        args: Vec::new(),
        connections: n,
        // Full mode searches each contender's highest sustained rate, up
        // to 10× the highest fixed one; quick mode keeps to its grid.
        search_ceiling: (!quick)
            .then(|| rates.last().copied().unwrap_or(1) * SEARCH_CEILING_FACTOR),
        rates,
        warmup,
        step,
        drain,
        fanout,
    };
    let fanout = n as u64;
    Some(match id {
        "s2" => base(
            "S2",
            "room fan-out (1 publisher, 64 B, every member gets every message)",
            "fanout",
            if quick {
                vec![100]
            } else {
                vec![2, 20, 100, 200, 400, 640]
            },
            fanout,
        ),
        "s3" => base(
            "S3",
            "unicast to distinct devices (64 B)",
            "unicast",
            if quick {
                vec![2_000]
            } else {
                vec![2_000, 20_000, 100_000]
            },
            1,
        ),
        "s3-acked" => base(
            "S3 acked",
            "unicast, acknowledged (pike reliable vs MQTT QoS 1; NATS core has no acks)",
            "unicast",
            if quick {
                vec![1_000]
            } else {
                vec![1_000, 5_000, 20_000]
            },
            1,
        ),
        "s4" => {
            let mut s = base(
                "S4",
                "group push (groups of 100, 64 B)",
                "group",
                if quick {
                    vec![100]
                } else {
                    vec![100, 1_000, 10_000]
                },
                100,
            );
            s.args = vec!["--group-size".into(), "100".into()];
            s
        }
        "s5" => {
            let mut s = base(
                "S5",
                "uplink to one backend (64 B)",
                "uplink",
                if quick {
                    vec![1_000]
                } else {
                    vec![1_000, 10_000, 50_000]
                },
                1,
            );
            s.connections = if quick { 500 } else { 1_000 };
            s
        }
        "s6" => {
            let mut s = base(
                "S6",
                "room fan-out under 1 %/s reconnect churn",
                "fanout",
                if quick { vec![10] } else { vec![10, 100] },
                fanout,
            );
            s.args = vec!["--churn".into(), "1".into()];
            s
        }
        "s7" => {
            let mut s = base(
                "S7",
                "room fan-out with 1 % of members that stop reading",
                "fanout",
                if quick { vec![10] } else { vec![10, 100] },
                fanout,
            );
            s.args = vec!["--slow".into(), "1".into()];
            s
        }
        _ => return None,
    })
}

/// Who runs workload `id`: every server; S5 runs pike twice, with a
/// backend that takes batches and with one that takes one message per
/// request; in full mode S3, S3 acked and S4 run pike twice too, with the
/// backend's batches over HTTP/JSON and over the push connection. S3 also
/// runs `pike MQTT`: the MQTT generator's devices on pike's MQTT listener,
/// pushed to through the HTTP API exactly as `pike` (issue 17); S3
/// acked runs pike a third time with every push asking for delivery receipts (issue
/// 18: what receipts cost, on and off in the same run).
pub(crate) fn contenders(id: &str, kinds: &[Kind], quick: bool) -> Vec<Contender> {
    let mut list = Vec::new();
    if id == "s3-acked" {
        for &kind in kinds {
            match kind {
                Kind::Pike => {
                    let pike = Contender {
                        label: kind.name().to_owned(),
                        kind,
                        args: vec![
                            "--reliable".into(),
                            "--http-connections".into(),
                            PIKE_HTTP_CONNECTIONS.into(),
                            "--batch".into(),
                            PIKE_BATCH.into(),
                        ],
                        uplink_batch_max: 1,
                        pike_server: None,
                        pike_mqtt: false,
                        receipt_sink: false,
                    };
                    let socket = (!quick).then(|| push_connection(&pike));
                    let receipts = (!quick).then(|| with_receipts(&pike));
                    list.push(pike);
                    list.extend(socket);
                    list.extend(receipts);
                }
                Kind::Mosquitto => list.push(Contender {
                    label: "mosquitto QoS 1".into(),
                    kind,
                    args: vec![
                        "--qos".into(),
                        "1".into(),
                        "--concurrency".into(),
                        super::s1::peer_concurrency(kind, 256).to_string(),
                    ],
                    uplink_batch_max: 1,
                    pike_server: None,
                    pike_mqtt: false,
                    receipt_sink: false,
                }),
                Kind::Nats => {}
            }
        }
        return list;
    }
    for &kind in kinds {
        if id == "s5" && kind == Kind::Pike {
            // The backend takes batches (`uplink_batch_max`), and, for
            // comparison, one message per request (the single contract).
            list.push(Contender {
                uplink_batch_max: PIKE_UPLINK_BATCH,
                ..Contender::plain(kind)
            });
            list.push(Contender {
                label: "pike single-message webhook".into(),
                ..Contender::plain(kind)
            });
        } else if kind == Kind::Pike && matches!(id, "s2" | "s3" | "s4" | "s6" | "s7") {
            // pike's publisher is a backend calling the HTTP API: one
            // request per publish, so several in flight (the MQTT and NATS
            // publishers pipeline on one connection without waiting).
            let mut args = vec!["--http-connections".into(), PIKE_HTTP_CONNECTIONS.into()];
            let batched = matches!(id, "s3" | "s4");
            if batched {
                // Many distinct messages: the backend batches them
                // (`POST /v1/push/batch`), as the peers' publishers
                // pipeline them on one connection.
                args.extend(["--batch".into(), PIKE_BATCH.into()]);
            }
            let pike = Contender {
                label: kind.name().to_owned(),
                kind,
                args,
                uplink_batch_max: 1,
                pike_server: None,
                pike_mqtt: false,
                receipt_sink: false,
            };
            let socket = (batched && !quick).then(|| push_connection(&pike));
            let mqtt = (id == "s3").then(|| mqtt_devices(&pike));
            list.push(pike);
            list.extend(socket);
            list.extend(mqtt);
        } else if kind == Kind::Mosquitto {
            list.push(Contender {
                label: kind.name().to_owned(),
                kind,
                args: vec![
                    "--concurrency".into(),
                    super::s1::peer_concurrency(kind, 256).to_string(),
                ],
                uplink_batch_max: 1,
                pike_server: None,
                pike_mqtt: false,
                receipt_sink: false,
            });
        } else {
            list.push(Contender::plain(kind));
        }
    }
    list
}

/// `pike` with its batches over one push connection (`GET /v1/push/ws`,
/// protobuf, the same batches and as many in flight) instead of HTTP/JSON
/// requests: the backend's cheaper way in.
fn push_connection(pike: &Contender) -> Contender {
    let mut args = pike.args.clone();
    args.push("--push-socket".into());
    Contender {
        label: "pike push connection".into(),
        args,
        ..pike.clone()
    }
}

/// `pike` with MQTT devices: the same publisher (HTTP batches, as many
/// requests in flight), the devices MQTT 3.1.1 clients of the gateway's
/// MQTT listener instead of Pike clients.
fn mqtt_devices(pike: &Contender) -> Contender {
    Contender {
        label: "pike MQTT".into(),
        pike_mqtt: true,
        ..pike.clone()
    }
}

/// `pike` with every push asking for receipts (`"receipt": true`) and the
/// business's receipt webhook pointing at a sink the generator serves
/// (counts them, answers 200): receipts on, against `pike`'s receipts off.
fn with_receipts(pike: &Contender) -> Contender {
    let mut args = pike.args.clone();
    args.push("--receipt".into());
    Contender {
        label: "pike receipts".into(),
        args,
        receipt_sink: true,
        ..pike.clone()
    }
}

/// Adds a `(baseline)` copy of each pike contender, right after it, that
/// runs the pike-server binary `binary` (the build before a change).
pub(crate) fn add_baseline(contenders: &mut Vec<Contender>, binary: &Path) {
    let mut with = Vec::with_capacity(contenders.len() * 2);
    for contender in contenders.drain(..) {
        let copy = (contender.kind == Kind::Pike).then(|| Contender {
            label: format!("{} (baseline)", contender.label),
            pike_server: Some(binary.to_path_buf()),
            ..contender.clone()
        });
        with.push(contender);
        with.extend(copy);
    }
    *contenders = with;
}

/// `uplink_batch_max` of pike's business in S5: most uplink messages per
/// webhook request.
const PIKE_UPLINK_BATCH: usize = 256;

/// Most pushes per `POST /v1/push/batch` of pike's unicast and group
/// publishers.
const PIKE_BATCH: &str = "100";

/// Requests in flight of pike's HTTP publisher.
const PIKE_HTTP_CONNECTIONS: &str = "32";

/// Parses `--workloads s1,s2,...` (`all` for every one).
pub(crate) fn parse_workloads(list: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "all" {
            return Ok(WORKLOADS.to_vec());
        }
        let lower = name.to_ascii_lowercase();
        let found = WORKLOADS
            .iter()
            .chain(NAMED_ONLY.iter())
            .find(|w| **w == lower)
            .ok_or_else(|| {
                format!("unknown workload {name:?} (s1 … s8, s3-acked, cluster or all)")
            })?;
        if !chosen.contains(found) {
            chosen.push(*found);
        }
    }
    if chosen.is_empty() {
        return Err("--workloads needs at least one workload".into());
    }
    chosen.sort_by_key(|w| {
        WORKLOADS
            .iter()
            .chain(NAMED_ONLY.iter())
            .position(|x| x == w)
    });
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sweep_has_a_plan_in_both_modes() {
        for id in SWEEPS {
            for quick in [true, false] {
                let s = sweep(id, quick).unwrap();
                assert!(!s.rates.is_empty() && s.step > 0, "{id}");
                assert!(
                    s.rates.windows(2).all(|w| w[0] < w[1]),
                    "{id}: rates ascend"
                );
            }
        }
        assert!(sweep("s1", true).is_none());
        assert_eq!(sweep("s3", true).unwrap().search_ceiling, None);
        assert_eq!(sweep("s3", false).unwrap().search_ceiling, Some(1_000_000));
        assert_eq!(sweep("s2", false).unwrap().connections, 9_000);
    }

    #[test]
    fn quick_mode_fits_three_minutes() {
        // Start, connect and stop (≈ 0.5 s at 1,000 connections in the
        // first quick run; 2 s allowed) plus the steps, per contender; S1
        // (≈ 30 s) and S8 (≈ 20 s) come on top.
        let mut seconds = 0;
        for id in SWEEPS {
            let s = sweep(id, true).unwrap();
            let per =
                2 + s.warmup * s.rates.len() as u64 + (s.step + s.drain) * s.rates.len() as u64;
            seconds += per * contenders(id, &Kind::ALL, true).len() as u64;
        }
        assert!(seconds < 120, "{seconds} s of sweeps");
    }

    #[test]
    fn a_baseline_follows_each_pike_contender() {
        let mut list = contenders("s5", &Kind::ALL, false);
        add_baseline(&mut list, Path::new("/tmp/old-pike-server"));
        let labels: Vec<(&str, bool)> = list
            .iter()
            .map(|c| (c.label.as_str(), c.pike_server.is_some()))
            .collect();
        assert_eq!(
            labels,
            [
                ("pike", false),
                ("pike (baseline)", true),
                ("pike single-message webhook", false),
                ("pike single-message webhook (baseline)", true),
                ("mosquitto", false),
                ("nats", false),
            ]
        );
        assert_eq!(list[1].uplink_batch_max, list[0].uplink_batch_max);
        assert_eq!(list[1].args, list[0].args);
    }

    #[test]
    fn s5_runs_pike_with_both_windows() {
        let labels: Vec<String> = contenders("s5", &Kind::ALL, false)
            .into_iter()
            .map(|c| c.label)
            .collect();
        assert_eq!(
            labels,
            ["pike", "pike single-message webhook", "mosquitto", "nats"]
        );
        assert_eq!(contenders("s2", &[Kind::Nats], false).len(), 1);
        let acked: Vec<String> = contenders("s3-acked", &Kind::ALL, false)
            .into_iter()
            .map(|c| c.label)
            .collect();
        assert_eq!(
            acked,
            [
                "pike",
                "pike push connection",
                "pike receipts",
                "mosquitto QoS 1"
            ]
        );
        let s3 = contenders("s3", &Kind::ALL, false);
        let labels: Vec<&str> = s3.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "pike",
                "pike push connection",
                "pike MQTT",
                "mosquitto",
                "nats"
            ]
        );
        assert_eq!(s3[1].args[..s3[0].args.len()], s3[0].args[..]);
        assert_eq!(s3[1].args.last().map(String::as_str), Some("--push-socket"));
        // pike MQTT: pike's publisher, MQTT devices.
        assert_eq!(s3[2].args, s3[0].args);
        assert!(s3[2].pike_mqtt && !s3[0].pike_mqtt && !s3[1].pike_mqtt);
        assert_eq!(s3[2].kind, Kind::Pike);
        assert_eq!(contenders("s2", &[Kind::Pike], false).len(), 1);
        let quick: Vec<String> = contenders("s3", &[Kind::Pike], true)
            .into_iter()
            .map(|c| c.label)
            .collect();
        assert_eq!(quick, ["pike", "pike MQTT"], "quick");
        assert!(
            contenders("s2", &Kind::ALL, false)
                .iter()
                .all(|c| !c.pike_mqtt)
        );
    }

    #[test]
    fn s3_acked_measures_receipts_on_and_off_in_full_mode_only() {
        let full = contenders("s3-acked", &[Kind::Pike], false);
        let off = full.iter().find(|c| c.label == "pike").unwrap();
        let on = full.iter().find(|c| c.label == "pike receipts").unwrap();
        // The same load, plus receipts.
        assert_eq!(on.args[..off.args.len()], off.args[..]);
        assert_eq!(on.args[off.args.len()..], ["--receipt".to_owned()]);
        assert!(on.receipt_sink && !off.receipt_sink);
        assert!(!on.args.contains(&"--push-socket".to_owned()));
        assert_eq!(full.iter().filter(|c| c.receipt_sink).count(), 1);
        let quick = contenders("s3-acked", &[Kind::Pike], true);
        assert!(quick.iter().all(|c| !c.receipt_sink), "quick: off only");
        for id in SWEEPS.iter().filter(|id| **id != "s3-acked") {
            assert!(
                contenders(id, &Kind::ALL, false)
                    .iter()
                    .all(|c| !c.receipt_sink && !c.args.contains(&"--receipt".to_owned())),
                "{id}"
            );
        }
    }

    #[test]
    fn workload_lists() {
        assert_eq!(parse_workloads("all").unwrap().len(), 9);
        assert_eq!(parse_workloads("s3-acked,s1").unwrap(), ["s1", "s3-acked"]);
        assert_eq!(parse_workloads("s3,S1,s3").unwrap(), ["s1", "s3"]);
        assert!(parse_workloads("s9").is_err());
        assert_eq!(parse_workloads("cluster,s2").unwrap(), ["s2", "cluster"]);
        assert!(!parse_workloads("all").unwrap().contains(&"cluster"));
        assert!(parse_workloads(",").is_err());
    }
}
