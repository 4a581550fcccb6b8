//! `pike bench idle`: connect N devices, hold them idle, report.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::fleet::{self, ConnectReport, Counters, FleetPlan};
use super::report::{Progress, Table, json_line};
use super::{FleetArgs, sources};
use crate::cli::{Common, Failure, token_secret};

/// Arguments of `pike bench idle`.
#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Seconds to hold the devices idle after the connect phase.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Also end the hold when standard input reaches end of file (for a
    /// harness that measures the gateway during the hold and then closes
    /// the pipe).
    #[arg(long)]
    stdin_stop: bool,
}

/// The hold, as reported.
#[derive(Clone, Debug, Serialize)]
struct HoldReport {
    seconds: f64,
    online_at_end: u64,
    disconnects: u64,
    relogins: u64,
    stopped_by_stdin: bool,
}

#[derive(Debug, Serialize)]
struct IdleReport {
    workload: &'static str,
    connect: ConnectReport,
    hold: HoldReport,
}

/// Most gateways one generator spreads its devices over.
const MAX_SERVERS: usize = 64;

/// The `--server` list, checked: 1 to [`MAX_SERVERS`] addresses.
fn checked_servers(servers: &[SocketAddr]) -> Result<Vec<SocketAddr>, Failure> {
    if servers.is_empty() || servers.len() > MAX_SERVERS {
        return Err(Failure::usage(format!(
            "--server takes 1 to {MAX_SERVERS} addresses, not {}",
            servers.len()
        )));
    }
    Ok(servers.to_vec())
}

/// Builds the plan shared by the workloads from the command line.
pub(super) fn plan(common: &Common, args: &FleetArgs) -> Result<FleetPlan, Failure> {
    if args.connections == 0 {
        return Err(Failure::usage("--connections must be at least 1"));
    }
    sources::check_fd_budget(args.connections, sources::open_file_limit())
        .map_err(Failure::usage)?;
    let ips = sources::source_ips(&args.source_net, args.sources).map_err(Failure::usage)?;
    let dial = args.dial.dial(common, &ips, args.login_timeout())?;
    Ok(FleetPlan {
        servers: checked_servers(&args.server)?,
        app: common.app.clone(),
        biz: args.biz.clone(),
        alias_prefix: args.alias_prefix.clone(),
        first_alias: args.first_alias,
        connections: args.connections,
        token_secret: token_secret(common, args.token_secret.as_deref())?,
        sources: ips,
        concurrency: args.concurrency,
        login_timeout: args.login_timeout(),
        connect_deadline: args.connect_deadline(),
        group_size: 0,
        dial,
        channel: pike_channel::ClientConfig::default(),
    })
}

pub(crate) async fn run(common: &Common, args: IdleArgs) -> Result<(), Failure> {
    let plan = plan(common, &args.fleet)?;
    let progress = Progress::new(args.fleet.quiet);
    let (fleet, connect) = fleet::connect(plan, None, &progress)
        .await
        .map_err(Failure::failed)?;
    if args.fleet.json {
        json_line("connected", &connect);
    }

    let stdin_closed = if args.stdin_stop { watch_stdin() } else { None };
    let hold = Duration::from_secs(args.hold);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let counters = fleet.counters();
    let mut stopped_by_stdin = false;
    let mut stdin_closed = stdin_closed;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(started + hold) => break,
            _ = tick.tick() => progress.update(&format!(
                "holding: {:.0}/{} s, {} online, {} disconnects",
                started.elapsed().as_secs_f64(),
                args.hold,
                Counters::get(&counters.online),
                Counters::get(&counters.disconnects),
            )),
            _ = async {
                match stdin_closed.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            } => {
                stopped_by_stdin = true;
                break;
            }
        }
    }
    let report = IdleReport {
        workload: "idle",
        hold: HoldReport {
            seconds: started.elapsed().as_secs_f64(),
            online_at_end: Counters::get(&counters.online),
            disconnects: Counters::get(&counters.disconnects),
            relogins: Counters::get(&counters.relogins),
            stopped_by_stdin,
        },
        connect,
    };
    progress.done(&format!(
        "held {:.1} s: {} online at the end, {} disconnects",
        report.hold.seconds, report.hold.online_at_end, report.hold.disconnects
    ));
    fleet.close(Duration::from_secs(2)).await;
    if args.fleet.json {
        json_line("report", &report);
    } else {
        let mut table = Table::default();
        connect_rows(&mut table, &report.connect);
        table
            .row("hold", format!("{:.1} s", report.hold.seconds))
            .row("online at the end", report.hold.online_at_end)
            .row("disconnects during the hold", report.hold.disconnects)
            .row("re-logins during the hold", report.hold.relogins);
        print!("{}", table.render("pike bench idle"));
    }
    if report.connect.connected == 0 {
        return Err(Failure::failed(format!(
            "no device logged in: {}",
            report.connect.first_error.as_deref().unwrap_or("no error")
        )));
    }
    Ok(())
}

/// The connect phase's rows of a summary table.
pub(super) fn connect_rows(table: &mut Table, connect: &ConnectReport) {
    table
        .row("devices requested", connect.requested)
        .row("logged in", connect.connected)
        .row("failed", connect.failed)
        .row("connect phase", format!("{:.2} s", connect.seconds))
        .row("connect + login rate", format!("{:.0}/s", connect.rate))
        .row("source addresses", connect.sources)
        .row("connects in flight", connect.concurrency);
    if let Some(error) = &connect.first_error {
        table.row("first error", error);
    }
}

/// Resolves once standard input reaches end of file (a plain thread reads
/// it: a detached thread never holds the process at exit).
pub(super) fn watch_stdin() -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tx.send(());
        })
        .ok()?;
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_bounded() {
        let addr: SocketAddr = "127.0.0.1:9300".parse().unwrap();
        assert!(checked_servers(&[]).is_err());
        assert_eq!(checked_servers(&[addr]).unwrap(), vec![addr]);
        assert!(checked_servers(&vec![addr; MAX_SERVERS]).is_ok());
        assert!(checked_servers(&vec![addr; MAX_SERVERS + 1]).is_err());
        let two = [addr, "127.0.0.1:9310".parse().unwrap()];
        let servers: Vec<_> = (0..5).map(|i| fleet::server_of(&two, i)).collect();
        assert_eq!(
            servers,
            [two[0], two[1], two[0], two[1], two[0]].map(Some).to_vec()
        );
        assert_eq!(fleet::server_of(&[], 3), None);
    }
}
