//! The rate sweeps that push through `POST /v1/push` to logged-in devices
//! (`unicast` and `group`): the fleet logs in (binding group tags for
//! `group`), every delivery goes to the [`Board`], and message `k` goes to
//! target `k mod targets` (an alias, or a group's tag), transient unless
//! `--reliable`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::api::Api;
use super::board::Board;
use super::fleet::{self, ConnectReport, FleetPlan, Sink, group_tag};
use super::http_pool::RequestTemplate;
use super::report::{ConnectedLine, Progress, Table, json_line};
use super::sweep::{self, Message, StepLine, SweepPlan, Tally, Window, Workload, json_string};
use crate::cli::Failure;

/// Where the pushes go.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Addressing {
    /// Each message to one alias, round robin over the logged-in aliases.
    Alias,
    /// Each message to one group's tag, round robin over the groups with a
    /// logged-in device.
    Group,
}

/// One push target: the JSON target field and the deliveries it makes.
#[derive(Clone, Debug, Eq, PartialEq)]
struct Target {
    /// `"alias":"u1"` or `"tag":"g0"`.
    field: String,
    /// Logged-in devices it reaches.
    devices: u64,
}

/// The targets of `aliases` (the logged-in ones, in device order): one
/// per alias, or one per group of `group_size` alias numbers (aliases are
/// `prefix<number>`).
fn targets(
    aliases: &[String],
    addressing: Addressing,
    prefix: &str,
    group_size: u64,
) -> Vec<Target> {
    match addressing {
        Addressing::Alias => aliases
            .iter()
            .map(|alias| Target {
                field: format!(r#""alias":{}"#, json_string(alias)),
                devices: 1,
            })
            .collect(),
        Addressing::Group => {
            let mut groups = BTreeMap::<u64, u64>::new();
            for alias in aliases {
                let number = alias
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(number) = number
                    && group_size > 0
                {
                    *groups.entry(number / group_size).or_default() += 1;
                }
            }
            groups
                .into_iter()
                .map(|(k, devices)| Target {
                    field: format!(r#""tag":{}"#, json_string(&group_tag(k))),
                    devices,
                })
                .collect()
        }
    }
}

/// The push workload's side of the sweep.
struct Pushes {
    template: RequestTemplate,
    /// `{"biz":…,"reliable":…,` shared by every body.
    prefix: String,
    targets: Vec<Target>,
}

impl Workload for Pushes {
    fn message(&self, k: u64, payload: &str) -> Message {
        let index = usize::try_from(k % self.targets.len() as u64).unwrap_or(0);
        let target = &self.targets[index];
        Message {
            request: self.template.with_body(&format!(
                r#"{}{},"payload":"{payload}"}}"#,
                self.prefix, target.field
            )),
            weight: target.devices,
        }
    }

    fn window_starts(&self, _window: &Window) {}

    async fn step_done(&self, _window: &Window, tally: &Tally) -> (u64, Map<String, Value>) {
        (tally.weight, Map::new())
    }
}

/// The `report` line.
#[derive(Debug, Serialize)]
struct PushReport {
    workload: &'static str,
    reliable: bool,
    targets: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_size: Option<u64>,
    http_connections: usize,
    payload_bytes: usize,
    connect: ConnectReport,
    disconnects: u64,
    relogins: u64,
    steps: Vec<StepLine>,
}

/// What a push sweep needs besides the fleet.
pub(crate) struct PushSweep<'a> {
    pub(crate) workload: &'static str,
    pub(crate) addressing: Addressing,
    pub(crate) reliable: bool,
    pub(crate) api: &'a Api,
    pub(crate) sweep: &'a SweepPlan,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

/// Connects the fleet, runs the sweep, prints the report.
pub(crate) async fn run(plan: FleetPlan, push: PushSweep<'_>) -> Result<(), Failure> {
    let progress = Progress::new(push.quiet);
    let board = Arc::new(Board::new(Instant::now()).map_err(|e| Failure::failed(e.to_string()))?);
    let sink: Sink = {
        let board = board.clone();
        Arc::new(move |delivery, at| {
            board.record_payload(&delivery.payload, at);
        })
    };
    let group_size = plan.group_size;
    let prefix = plan.alias_prefix.clone();
    let prefix_body = format!(
        r#"{{"biz":{},"reliable":{},"#,
        json_string(&plan.biz),
        push.reliable
    );
    let (fleet, connect) = fleet::connect(plan, Some(sink), &progress)
        .await
        .map_err(Failure::failed)?;
    if push.json {
        json_line("connected", &ConnectedLine::new(&connect));
    }
    let targets = targets(fleet.aliases(), push.addressing, &prefix, group_size);
    if targets.is_empty() {
        return Err(Failure::failed(format!(
            "no device logged in: {}",
            connect.first_error.as_deref().unwrap_or("no error")
        )));
    }
    let workload = Pushes {
        template: push.api.template("/v1/push"),
        prefix: prefix_body,
        targets,
    };
    let mut pool = push.api.pool();
    let steps = sweep::run(
        push.sweep, &board, &mut pool, &workload, &progress, push.json,
    )
    .await;
    let counters = fleet.counters();
    let (disconnects, relogins) = (
        fleet::Counters::get(&counters.disconnects),
        fleet::Counters::get(&counters.relogins),
    );
    fleet.close(Duration::from_secs(2)).await;
    let report = PushReport {
        workload: push.workload,
        reliable: push.reliable,
        targets: workload.targets.len(),
        group_size: (group_size > 0).then_some(group_size),
        http_connections: push.api.connections(),
        payload_bytes: push.sweep.size,
        connect,
        disconnects,
        relogins,
        steps,
    };
    if push.json {
        json_line("report", &report);
    } else {
        let mut table = Table::default();
        super::idle::connect_rows(&mut table, &report.connect);
        table.row("targets", report.targets).row(
            "disconnects / re-logins",
            format!("{disconnects} / {relogins}"),
        );
        for step in &report.steps {
            super::fanout::step_rows(&mut table, step);
        }
        print!("{}", table.render(&format!("pike bench {}", push.workload)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(numbers: &[u64]) -> Vec<String> {
        numbers.iter().map(|n| format!("u{n}")).collect()
    }

    #[test]
    fn one_target_per_alias() {
        let t = targets(&aliases(&[3, 4]), Addressing::Alias, "u", 0);
        assert_eq!(
            t,
            vec![
                Target {
                    field: r#""alias":"u3""#.into(),
                    devices: 1
                },
                Target {
                    field: r#""alias":"u4""#.into(),
                    devices: 1
                },
            ]
        );
    }

    #[test]
    fn groups_count_their_logged_in_devices() {
        // Groups of 100: u0..u99 → g0, u100.. → g1; u150 did not log in.
        let mut numbers: Vec<u64> = (0..200).filter(|&n| n != 150).collect();
        numbers.push(1_000);
        let t = targets(&aliases(&numbers), Addressing::Group, "u", 100);
        assert_eq!(
            t,
            vec![
                Target {
                    field: r#""tag":"g0""#.into(),
                    devices: 100
                },
                Target {
                    field: r#""tag":"g1""#.into(),
                    devices: 99
                },
                Target {
                    field: r#""tag":"g10""#.into(),
                    devices: 1
                },
            ]
        );
        // Foreign aliases are left out.
        assert!(targets(&["x1".to_owned()], Addressing::Group, "u", 100).is_empty());
    }

    #[test]
    fn bodies_are_json_with_weights() {
        let pushes = Pushes {
            template: RequestTemplate::post_json("h", "/v1/push", "k"),
            prefix: r#"{"biz":"bench","reliable":false,"#.into(),
            targets: targets(&aliases(&[0, 1, 100]), Addressing::Group, "u", 100),
        };
        let m = pushes.message(3, "0001");
        let text = String::from_utf8(m.request).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let value: Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["tag"], "g1");
        assert_eq!(value["biz"], "bench");
        assert_eq!(value["reliable"], false);
        assert_eq!(value["payload"], "0001");
        assert_eq!(m.weight, 1);
        assert_eq!(pushes.message(0, "x").weight, 2);
    }
}
