//! `pike-server`: the reference Pike gateway.
//!
//! With no arguments it serves the zero-config gateway on loopback (plain
//! TCP 9300, TLS 9301, QUIC 9302, HTTP 9380, data in `./pike-data`, dev app
//! `demo`). `pike-server --config pike.toml` for everything else
//! (`docs/config.md`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pike_server::cli::{Invocation, try_commands};
use pike_server::config::Config;
use pike_server::data_dir::DEV_APP_FILE;
use pike_server::{Started, run};

/// jemalloc, not the system allocator: under the soak's mixed load
/// (small allocations freed on other threads) the gateway holds about 11 %
/// less memory at minute 12 (99.8 against 112.2 MiB) and uses less CPU
/// (docs/reliability.md, "Soak").
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Pike gateway.
#[derive(Debug, Parser)]
#[command(
    name = "pike-server",
    version,
    about = "The Pike long-connection gateway"
)]
struct Args {
    /// Configuration file (TOML, see docs/config.md); none: zero-config
    /// defaults on loopback.
    #[arg(long, short, env = "PIKE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir` of the configuration).
    #[arg(long, env = "PIKE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // One process-wide crypto provider: ring (the HTTP client uses it).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("pike-server: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::zero_config(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pike-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match pike_server::metric_families::install() {
        Ok(handle) => Some(handle),
        Err(e) => {
            eprintln!("pike-server: metrics are off: {e}");
            None
        }
    };
    match runtime.block_on(run(config, metrics, banner, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pike-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the operator where everything is, and (serving the dev app) the
/// API key as an `export` line and `pike` commands that work as written
/// from this directory.
fn banner(started: &Started) {
    println!("pike-server {} ready", env!("CARGO_PKG_VERSION"));
    for (name, addr) in &started.listening {
        println!("  {name:<5} {addr}");
    }
    println!("  data  {}", started.data_dir.display());
    if let Some(fingerprint) = &started.fingerprint {
        println!("  tls certificate sha256 {fingerprint}");
    }
    if let Some(dev) = &started.dev_app {
        println!(
            "dev app {:?} (kept in {}):",
            dev.app,
            started.data_dir.join(DEV_APP_FILE).display()
        );
        println!("  api key       {}", dev.api_key);
        println!("  token secret  {}", dev.token_secret);
        for line in try_commands(started, &Invocation::detect()) {
            println!("{line}");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
