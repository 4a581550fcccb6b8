//! `cargo xtask fuzz`: runs every cargo-fuzz target in `fuzz/` in turn for
//! a given time, and fails when any of them finds a crash.
//!
//! The targets need a nightly compiler's flags (sanitizer coverage,
//! AddressSanitizer); the stable toolchain accepts them with
//! `RUSTC_BOOTSTRAP=1`, which this command sets for cargo-fuzz only, so the
//! workspace itself stays on stable. Each target starts from its committed
//! seeds (`fuzz/seeds/<target>/`) plus the corpus of earlier runs
//! (`fuzz/corpus/<target>/`, not committed) and writes crashes to
//! `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Every target, in the order they run (cheap decoders first).
pub(crate) const TARGETS: &[&str] = &[
    "frame_decoder",
    "handshake",
    "proto_messages",
    "server_channel",
    "client_channel",
    "config_file",
    "http_api",
];

/// The cargo-fuzz release installed when none is on the machine.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

const HELP: &str = "\
Usage: cargo xtask fuzz [--minutes N] [--jobs J] [--only T1,T2]

Runs each fuzz target for N minutes (default 1) in turn, with J libFuzzer
workers each (default 1; J workers use J cores, so the CPU time is
N x J per target), and fails if any target crashes. Crash inputs land in
fuzz/artifacts/<target>/; turn each into a regression test.
Targets: frame_decoder handshake proto_messages server_channel
client_channel config_file http_api
";

struct Options {
    minutes: f64,
    jobs: u32,
    only: Option<Vec<String>>,
}

/// Parses the options and runs.
pub(crate) fn command(args: &[String]) -> ExitCode {
    let mut options = Options {
        minutes: 1.0,
        jobs: 1,
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let parsed = match arg.as_str() {
            "--minutes" => value("--minutes").and_then(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|m| *m > 0.0 && *m <= 24.0 * 60.0)
                    .map(|m| options.minutes = m)
                    .ok_or_else(|| {
                        format!("--minutes {v}: a number of minutes above 0, at most a day")
                    })
            }),
            "--jobs" => value("--jobs").and_then(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|j| (1..=64).contains(j))
                    .map(|j| options.jobs = j)
                    .ok_or_else(|| format!("--jobs {v}: 1 to 64"))
            }),
            "--only" => value("--only").and_then(|v| {
                let names: Vec<String> = v.split(',').map(str::to_owned).collect();
                match names.iter().find(|n| !TARGETS.contains(&n.as_str())) {
                    Some(bad) => Err(format!("unknown target `{bad}`")),
                    None => {
                        options.only = Some(names);
                        Ok(())
                    }
                }
            }),
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown option `{other}` for `fuzz`")),
        };
        if let Err(message) = parsed {
            eprintln!("error: {message}\n\n{HELP}");
            return ExitCode::from(2);
        }
    }
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One target's run.
struct Report {
    target: String,
    /// Wall time, the build included.
    seconds: f64,
    /// Time spent fuzzing, from libFuzzer's final line.
    fuzzed: f64,
    runs: u64,
    crashes: Vec<PathBuf>,
    status_ok: bool,
}

fn run(options: &Options) -> Result<bool, String> {
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let targets: Vec<String> = match &options.only {
        Some(names) => names.clone(),
        None => TARGETS.iter().map(|t| (*t).to_owned()).collect(),
    };
    let seconds = (options.minutes * 60.0).round().max(1.0) as u64;
    println!(
        "fuzzing {} targets, {seconds} s each with {} worker(s): {:.1} CPU-minutes in all",
        targets.len(),
        options.jobs,
        (seconds * u64::from(options.jobs) * targets.len() as u64) as f64 / 60.0
    );
    let mut reports = Vec::new();
    for target in &targets {
        reports.push(run_target(&fuzz_dir, target, seconds, options.jobs)?);
    }
    println!(
        "\n| target | fuzzing s | wall s (with build) | workers | runs | crashes |\n|---|---:|---:|---:|---:|---:|"
    );
    let mut ok = true;
    for r in &reports {
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |",
            r.target,
            r.fuzzed,
            r.seconds,
            options.jobs,
            r.runs,
            r.crashes.len()
        );
        ok &= r.crashes.is_empty() && r.status_ok;
    }
    for r in &reports {
        for crash in &r.crashes {
            println!("crash of {}: {}", r.target, crash.display());
        }
        if !r.status_ok && r.crashes.is_empty() {
            println!(
                "{} failed without a crash file (see its output above)",
                r.target
            );
        }
    }
    Ok(ok)
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64, jobs: u32) -> Result<Report, String> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let before = crash_files(&artifacts);
    println!("\n=== {target}: {seconds} s");
    #[allow(clippy::disallowed_methods)] // the wall time of a child process, only reported
    let started = Instant::now();
    let mut command = Command::new("cargo");
    command
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target])
        .arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command.arg("--").args([
        format!("-max_total_time={seconds}"),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-rss_limit_mb=4096".to_owned(),
        "-timeout=10".to_owned(),
        "-print_final_stats=1".to_owned(),
    ]);
    if jobs > 1 {
        command.arg(format!("-fork={jobs}"));
    }
    let output = command
        .output()
        .map_err(|e| format!("running cargo fuzz for {target}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // libFuzzer's final statistics, also in fork mode.
    let runs = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum();
    // "Done 530149 runs in 61 second(s)": the fuzzing time, without the build.
    let fuzzed = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Done "))
        .filter_map(|l| l.split(" runs in ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .fold(0.0, |total, s| total + s);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    for line in tail.iter().rev() {
        println!("  {line}");
    }
    let crashes = crash_files(&artifacts)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    Ok(Report {
        target: target.to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        fuzzed,
        runs,
        crashes,
        status_ok: output.status.success(),
    })
}

fn crash_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        ["crash-", "oom-", "timeout-", "leak-"]
                            .iter()
                            .any(|k| n.starts_with(k))
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    println!("installing cargo-fuzz {CARGO_FUZZ_VERSION} (once)");
    let status = Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .status()
        .map_err(|e| format!("cargo install cargo-fuzz: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("cargo install cargo-fuzz failed".to_owned())
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
