//! Project automation for the Pike workspace, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).
//!
//! `main` only parses the command line and dispatches; each command lives in
//! its own module (`codegen`, `bench`, `cluster`, `fuzz`, `soak`). Arguments are parsed by hand to keep
//! this crate dependency-light. `bench` drives the product binaries as
//! processes: this crate depends on no product crate.
//!
//! Exit codes: 0 on success, 1 when a command fails (or `codegen --check`
//! finds stale files), 2 on a usage error.
#![forbid(unsafe_code)]

mod bench;
mod chaos;
mod cluster;
mod codegen;
mod fuzz;
mod soak;

use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <command> [options]

Commands:
  codegen           Regenerate proto/src/gen/ (Rust) and sdk-ts/gen/
                    (TypeScript, with the SDK's npm tools) from
                    proto/proto/**/*.proto
  codegen --check   Check that both are up to date, without writing
  bench [--quick]   pike-server vs mosquitto and nats-server side by side
                    (see `cargo xtask bench --help`)
  chaos [--quick]   reliable downlink and uplink through one gateway under
                    proxy faults and SIGKILLs; fails on any loss or
                    duplicate (see `cargo xtask chaos --help`)
  cluster [--debug] 3 nats-server JetStream nodes and 3 pike-server gateways
                    on loopback as one cluster, until Ctrl-C
  fuzz [--minutes N] every cargo-fuzz target in turn for N minutes each;
                    fails on a crash (see `cargo xtask fuzz --help`)
  soak [--minutes N] a mixed load on one gateway for N minutes; fails
                    when RSS, fds, tasks or p99 grow after the warm-up or
                    a reliable message is lost (see `cargo xtask soak --help`)

Options:
  -h, --help        Print this help
";

/// Exit code for a bad command line.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = match utf8_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(arg) => return usage_error(&format!("argument is not valid UTF-8: {arg:?}")),
    };
    let Some((command, rest)) = args.split_first() else {
        return usage_error("no command given");
    };
    match command.as_str() {
        "codegen" => codegen_command(rest),
        "bench" => bench::command(rest),
        "chaos" => chaos::command(rest),
        "cluster" => cluster::command(rest),
        "fuzz" => fuzz::command(rest),
        "soak" => soak::command(rest),
        // The MQTT/NATS load generator process `bench` starts (internal).
        "bench-client" => bench::client_command(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => usage_error(&format!("unknown command `{other}`")),
    }
}

/// `cargo xtask codegen [--check]`.
fn codegen_command(args: &[String]) -> ExitCode {
    let mut mode = codegen::Mode::Write;
    for arg in args {
        match arg.as_str() {
            "--check" => mode = codegen::Mode::Check,
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown option `{other}` for `codegen`")),
        }
    }
    match codegen::run(mode) {
        Ok(codegen::Outcome::UpToDate) => ExitCode::SUCCESS,
        Ok(codegen::Outcome::Stale) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: codegen failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n");
    eprint!("{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn utf8_args(args: impl Iterator<Item = OsString>) -> Result<Vec<String>, OsString> {
    args.map(OsString::into_string).collect()
}
