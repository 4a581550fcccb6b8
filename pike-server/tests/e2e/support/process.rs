//! The `pike-server` binary as a child process.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pike_api::tntunnel::tls::Fingerprint;
use pike_server::config::Config;
use tokio::sync::mpsc;

use super::{Api, BoxConnector, ChannelProxy, ClientConfig, LIMIT, Tail, Wire, api_key, connector};

/// Where a running server listens, as its banner says.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub tcp: SocketAddr,
    pub tls: SocketAddr,
    pub quic: SocketAddr,
    pub http: SocketAddr,
}

/// A `pike-server` process serving a config written into its own temporary
/// directory (data dir included). Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: Config,
    addrs: Addrs,
    fingerprint: Fingerprint,
    tail: Arc<Mutex<Tail>>,
    /// Environment changes for the process (`None` removes the variable).
    env: Vec<(String, Option<String>)>,
}

impl Server {
    /// Starts the binary with `config` (listeners as given, usually
    /// `127.0.0.1:0`; the data dir is set to a fresh temporary directory)
    /// and waits for its banner.
    pub async fn start(config: Config) -> Self {
        Self::start_with_env(config, Vec::new()).await
    }

    /// [`start`](Self::start) with environment changes for the process:
    /// `(name, Some(value))` sets a variable, `(name, None)` removes it.
    pub async fn start_with_env(mut config: Config, env: Vec<(String, Option<String>)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        config.data_dir = dir.path().join("data");
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (child, addrs, fingerprint) =
            spawn(&dir.path().join("pike.toml"), &config, &tail, &env)
                .await
                .unwrap_or_else(|e| panic!("pike-server did not start: {e}"));
        // Restarts reuse the ports the first start got.
        config.listen.tcp = Some(addrs.tcp);
        config.listen.tls = Some(addrs.tls);
        config.listen.quic = Some(addrs.quic);
        config.listen.http = Some(addrs.http);
        Self {
            child: Some(child),
            dir,
            config,
            addrs,
            fingerprint,
            tail,
            env,
        }
    }

    /// The listener addresses.
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    /// The TLS certificate fingerprint the server printed.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The HTTP API as app `app`.
    pub fn api(&self, app: &str) -> Api {
        Api::new(self.addrs.http, &api_key(app))
    }

    /// A connector of `app`/`device` over `wire`.
    pub fn connector(&self, wire: Wire, app: &str, device: &str) -> BoxConnector {
        let addr = match wire {
            Wire::Tcp => self.addrs.tcp,
            Wire::Tls => self.addrs.tls,
            Wire::Quic => self.addrs.quic,
        };
        connector(wire, addr, self.fingerprint, app, device)
    }

    /// A channel proxy of `app`/`device` over `wire` with `config`.
    pub fn proxy_with(
        &self,
        wire: Wire,
        app: &str,
        device: &str,
        config: ClientConfig,
    ) -> ChannelProxy {
        ChannelProxy::builder(self.connector(wire, app, device))
            .channel_config(config)
            .build()
    }

    /// A channel proxy of `app`/`device` over `wire`, reconnecting fast.
    pub fn proxy(&self, wire: Wire, app: &str, device: &str) -> ChannelProxy {
        self.proxy_with(wire, app, device, super::fast_reconnect())
    }

    /// Kills the process like a crash (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let pid = i32::try_from(self.pid()).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// Waits (polling every 20 ms, at most `limit`) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("server running");
        let waited = tokio::time::timeout(limit, async {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if let Some(status) = child.try_wait().expect("try_wait") {
                    return status;
                }
            }
        })
        .await;
        match waited {
            Ok(status) => {
                self.child = None;
                status
            }
            Err(_) => panic!(
                "pike-server did not exit within {limit:?}; output:\n{}",
                self.output()
            ),
        }
    }

    /// Starts the binary again on the same ports and data dir (after
    /// [`kill`](Self::kill) or an exit), retrying every 50 ms while a port
    /// is not free yet.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let path = self.dir.path().join("pike.toml");
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            match spawn(&path, &self.config, &self.tail, &self.env).await {
                Ok((child, addrs, fingerprint)) => {
                    assert_eq!(fingerprint, self.fingerprint, "the TLS identity is kept");
                    assert_eq!(addrs.tcp, self.addrs.tcp);
                    assert_eq!(addrs.http, self.addrs.http);
                    self.child = Some(child);
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline && e.contains("cannot listen") => {
                }
                Err(e) => panic!("pike-server did not restart: {e}"),
            }
        }
    }

    /// The newest lines the process printed (stdout and stderr).
    pub fn output(&self) -> String {
        self.tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dump()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `config` to `path`, starts the binary and reads its banner.
async fn spawn(
    path: &std::path::Path,
    config: &Config,
    tail: &Arc<Mutex<Tail>>,
    env: &[(String, Option<String>)],
) -> Result<(Child, Addrs, Fingerprint), String> {
    std::fs::write(path, toml::to_string(config).expect("config to TOML")).expect("write config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pike-server"));
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .arg("--config")
        .arg(path)
        .env(
            "RUST_LOG",
            std::env::var("PIKE_E2E_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pike-server");
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    let readers = [
        drain(
            child.stdout.take().expect("stdout"),
            tail.clone(),
            Some(lines_tx),
        ),
        drain(child.stderr.take().expect("stderr"), tail.clone(), None),
    ];

    let banner = tokio::time::timeout(LIMIT, async {
        let (mut tcp, mut tls, mut quic, mut http, mut fingerprint) =
            (None, None, None, None, None);
        let mut ready = false;
        while let Some(line) = lines.recv().await {
            if line.starts_with("pike-server ") && line.ends_with(" ready") {
                ready = true;
                continue;
            }
            if !ready || !line.starts_with("  ") {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let addr = || words[1].parse::<SocketAddr>().ok();
            match words.as_slice() {
                ["tcp", _] => tcp = addr(),
                ["tls", _] => tls = addr(),
                ["quic", _] => quic = addr(),
                ["http", _] => http = addr(),
                ["tls", "certificate", "sha256", hex] => {
                    fingerprint = hex.parse::<Fingerprint>().ok();
                    break;
                }
                _ => {}
            }
        }
        Some((
            Addrs {
                tcp: tcp?,
                tls: tls?,
                quic: quic?,
                http: http?,
            },
            fingerprint?,
        ))
    })
    .await;
    match banner {
        Ok(Some((addrs, fingerprint))) => Ok((child, addrs, fingerprint)),
        failed => {
            let _ = child.kill();
            let status = child.wait();
            // The readers end with the pipes, right after the process.
            for reader in readers {
                let _ = reader.join();
            }
            let output = tail.lock().unwrap_or_else(PoisonError::into_inner).dump();
            Err(format!(
                "{} (status {status:?}); output:\n{output}",
                if failed.is_err() {
                    "no banner in time"
                } else {
                    "incomplete banner"
                }
            ))
        }
    }
}

/// Reads `pipe` line by line on a thread (so the child never blocks on a
/// full pipe), keeping the newest lines and forwarding them to `lines`.
fn drain(
    pipe: impl Read + Send + 'static,
    tail: Arc<Mutex<Tail>>,
    lines: Option<mpsc::UnboundedSender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &lines {
                let _ = tx.send(line.clone());
            }
            tail.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    })
}
