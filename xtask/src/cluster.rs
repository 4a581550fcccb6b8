//! `cargo xtask cluster`: a local cluster on loopback, three nats-server
//! JetStream nodes (pinned 2.15.1, from `.ci/nats.sh`) and three
//! pike-server gateways that share them, until Ctrl-C.
//!
//! Everything lives under `target/pike-cluster/`: the NATS configs, data
//! and logs (`nats/`), one data dir and configuration per gateway
//! (`gw1/`..`gw3/`, logs in `gwN/pike-server.log`). The three gateways
//! share one dev app (its credentials are written into each data dir), so
//! a credential minted for one is good on every node and the `pike` CLI
//! finds them with `--data-dir target/pike-cluster/gw1`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// Client port of NATS node 1 (nodes 2 and 3 take the next two).
const NATS_PORT: u16 = 14222;
/// Gateway N listens on TCP `9300 + 10 N` (TLS +1, QUIC +2) and HTTP
/// `9390 + N - 1`.
const GATEWAYS: u16 = 3;
/// Bound on a gateway's start (cluster join included).
const START_LIMIT: Duration = Duration::from_secs(60);

const USAGE: &str = "\
Usage: cargo xtask cluster [--debug]

Starts 3 nats-server JetStream nodes (clients on 127.0.0.1:14222-14224) and
3 pike-server gateways on loopback that form one cluster, prints their
endpoints and the dev credentials, and stops everything on Ctrl-C.

Options:
  --debug      Use a debug build of pike-server (default: release)
  -h, --help   Print this help
";

/// `cargo xtask cluster [--debug]`.
pub(crate) fn command(args: &[String]) -> ExitCode {
    let mut release = true;
    for arg in args {
        match arg.as_str() {
            "--debug" => release = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown option `{other}` for `cluster`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(release)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs `bash .ci/nats.sh <args>` with the cluster's directory and ports.
pub(crate) fn nats(root: &Path, dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("bash")
        .arg(root.join(".ci/nats.sh"))
        .args(args)
        .env("PIKE_NATS_DIR", dir)
        .env("PIKE_NATS_PORT", NATS_PORT.to_string())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash .ci/nats.sh {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "bash .ci/nats.sh {} failed ({})",
            args.join(" "),
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// 24 random bytes as hex, from the kernel.
fn random_hex(len: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; len];
    let mut file = std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut file, &mut bytes).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The shared dev app (`dev-app.json`, as pike-server writes it), made
/// once and kept across runs.
fn dev_app(base: &Path) -> Result<serde_json::Value, String> {
    let path = base.join("dev-app.json");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(app) = serde_json::from_slice(&bytes)
    {
        return Ok(app);
    }
    let app = serde_json::json!({
        "app": "demo",
        "api_key": format!("pk_{}", random_hex(24)?),
        "token_secret": random_hex(32)?,
    });
    std::fs::write(&path, app.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(app)
}

struct Gateway {
    name: String,
    child: std::process::Child,
    tcp: u16,
    http: u16,
    dir: PathBuf,
}

fn config(n: u16, dir: &Path, nats_urls: &[String]) -> String {
    let tcp = 9300 + 10 * n;
    let urls: Vec<String> = nats_urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "data_dir = {dir:?}\n\n[listen]\ntcp = \"127.0.0.1:{tcp}\"\ntls = \"127.0.0.1:{tls}\"\nquic = \"127.0.0.1:{quic}\"\nhttp = \"127.0.0.1:{http}\"\n\n[cluster]\nnats = [{urls}]\nnode = \"gw{n}\"\nreplicas = 3\n",
        dir = dir.display().to_string(),
        tls = tcp + 1,
        quic = tcp + 2,
        http = 9390 + n - 1,
        urls = urls.join(", "),
    )
}

/// Whether `127.0.0.1:port` answers `GET /healthz` with 200 (bounded:
/// 500 ms to connect, 2 s to read).
pub(crate) fn healthz(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

async fn run(release: bool) -> Result<(), String> {
    let root = workspace_root();
    let base = root.join("target/pike-cluster");
    let nats_dir = base.join("nats");
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;

    println!("installing nats-server (pinned, once)...");
    nats(&root, &nats_dir, &["install"])?;
    println!("building pike-server...");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(&root)
        .args(["build", "-p", "pike-server", "--bins"]);
    if release {
        build.arg("--release");
    }
    if !build
        .status()
        .map_err(|e| format!("cargo build: {e}"))?
        .success()
    {
        return Err("cargo build -p pike-server failed".into());
    }
    let binary = root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("pike-server");

    println!("starting 3 nats-server nodes...");
    nats(&root, &nats_dir, &["start"])?;
    let urls: Vec<String> = nats(&root, &nats_dir, &["urls"])?
        .split(',')
        .map(str::to_owned)
        .collect();
    let result = run_gateways(&base, &binary, &urls).await;
    println!("stopping nats-server...");
    let stopped = nats(&root, &nats_dir, &["stop"]);
    result.and_then(|()| stopped.map(drop))
}

async fn run_gateways(base: &Path, binary: &Path, urls: &[String]) -> Result<(), String> {
    let app = dev_app(base)?;
    let mut gateways = Vec::new();
    let started = start_gateways(base, binary, urls, &app, &mut gateways).await;
    if started.is_ok() {
        print_banner(&gateways, &app, urls);
        wait_for_exit(&mut gateways).await;
    }
    for gateway in &mut gateways {
        stop(gateway).await;
    }
    started
}

async fn start_gateways(
    base: &Path,
    binary: &Path,
    urls: &[String],
    app: &serde_json::Value,
    gateways: &mut Vec<Gateway>,
) -> Result<(), String> {
    for n in 1..=GATEWAYS {
        let dir = base.join(format!("gw{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("dev-app.json"), app.to_string())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let config_path = dir.join("pike.toml");
        std::fs::write(&config_path, config(n, &dir, urls))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("pike-server.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        gateways.push(Gateway {
            name: format!("gw{n}"),
            child,
            tcp: 9300 + 10 * n,
            http: 9390 + n - 1,
            dir,
        });
    }
    let deadline = Instant::now() + START_LIMIT;
    for gateway in gateways.iter_mut() {
        while !healthz(gateway.http) {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}); see {}",
                    gateway.name,
                    gateway.dir.join("pike-server.log").display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer /healthz within {} s; see {}",
                    gateway.name,
                    START_LIMIT.as_secs(),
                    gateway.dir.join("pike-server.log").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn print_banner(gateways: &[Gateway], app: &serde_json::Value, urls: &[String]) {
    let api_key = app["api_key"].as_str().unwrap_or_default();
    let tcp: Vec<String> = gateways
        .iter()
        .map(|g| format!("127.0.0.1:{}", g.tcp))
        .collect();
    println!(
        "\npike cluster ready: {} gateways on NATS {}",
        gateways.len(),
        urls.join(",")
    );
    for g in gateways {
        println!(
            "  {}: tcp 127.0.0.1:{} tls :{} quic :{} http http://127.0.0.1:{}  (log {})",
            g.name,
            g.tcp,
            g.tcp + 1,
            g.tcp + 2,
            g.http,
            g.dir.join("pike-server.log").display()
        );
    }
    let data_dir = gateways
        .first()
        .map(|g| g.dir.display().to_string())
        .unwrap_or_default();
    println!("\ndev app `demo`, the same on every node:");
    println!("  export PIKE_API_KEY={api_key}");
    println!("\nlisten through any gateway (the client races them), push through another:");
    println!(
        "  cargo run --release -p pike-server --bin pike -- listen --data-dir {data_dir} --server {} --alias chat:u42",
        tcp.join(",")
    );
    if let Some(last) = gateways.last() {
        println!(
            "  curl -s -H \"Authorization: Bearer $PIKE_API_KEY\" -H 'content-type: application/json' \\\n       -d '{{\"biz\":\"chat\",\"alias\":\"u42\",\"payload\":\"hello\"}}' http://127.0.0.1:{}/v1/push",
            last.http
        );
    }
    println!("\nCtrl-C stops the gateways and NATS.");
}

/// Blocks until Ctrl-C (SIGINT) or SIGTERM, or until a gateway exits.
async fn wait_for_exit(gateways: &mut [Gateway]) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("error: SIGTERM handler: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = tick.tick() => {
                for g in gateways.iter_mut() {
                    if let Ok(Some(status)) = g.child.try_wait() {
                        eprintln!("{} exited ({status}); stopping the cluster", g.name);
                        return;
                    }
                }
            }
        }
    }
}

/// SIGTERM, then SIGKILL after 15 s.
async fn stop(gateway: &mut Gateway) {
    if let Ok(Some(_)) = gateway.child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = gateway.child.try_wait() {
            println!("{} stopped", gateway.name);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = gateway.child.kill();
    let _ = gateway.child.wait();
    println!("{} killed after 15 s", gateway.name);
}
