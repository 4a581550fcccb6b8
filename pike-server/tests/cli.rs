//! End-to-end tests of the `pike` CLI: every subcommand runs as a child
//! process (`CARGO_BIN_EXE_pike`) against a real `pike-server` child
//! process (`CARGO_BIN_EXE_pike-server`, listeners on `127.0.0.1:0`, a
//! temporary data dir) over real sockets, TLS and QUIC, checking the
//! documented output lines and exit statuses (0 done, 1 refused or failed,
//! 2 usage, 3 unreachable or no answer in time, 4 to 10 refused for good by
//! the gateway, one per class of close code), error paths included.
//!
//! Every wait is bounded by [`LIMIT`]; children are killed when their
//! guard drops. `pike listen` and `pike room join` run until stopped: their
//! lines are read with a timeout and they are stopped with SIGTERM.

// Not every helper of the e2e support is used here.
#[allow(unused_imports)]
#[path = "e2e/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Backends, LIMIT, Server, app, biz, biz_with_webhooks, config, poll_until, within};
use tokio::sync::mpsc;

/// The variables the CLI reads: removed from every child so the caller's
/// environment never changes a test.
const PIKE_ENV: &[&str] = &[
    "PIKE_DATA_DIR",
    "PIKE_APP",
    "PIKE_ALIAS",
    "PIKE_DEVICE",
    "PIKE_TRANSPORT",
    "PIKE_SERVER",
    "PIKE_TOKEN",
    "PIKE_TOKEN_SECRET",
    "PIKE_CA",
    "PIKE_API",
    "PIKE_API_KEY",
];

/// The README, whose documented lines the CLI must print.
const README: &str = include_str!("../../README.md");

// ---------------------------------------------------------------------------
// Running the CLI

/// A `pike` command with a clean environment, run in `cwd`.
fn pike_in(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pike"));
    for name in PIKE_ENV {
        command.env_remove(name);
    }
    command
        .env("NO_COLOR", "1")
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// What a finished command printed and how it ended.
#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts the exit status `code`; returns `self` for more checks.
    #[track_caller]
    fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that stderr contains every one of `parts`.
    #[track_caller]
    fn says(&self, parts: &[&str]) -> &Self {
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// The single stdout line as JSON.
    #[track_caller]
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one stdout line expected:\n{}", self.stdout);
        serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Kills the child when dropped (a failed test leaves nothing behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `pipe` to its end on a thread.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits (polling every 20 ms, at most [`LIMIT`]) for `child` to exit.
async fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    within(what, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
        }
    })
    .await
}

/// Runs `command` to its end (at most [`LIMIT`]).
async fn run(mut command: Command) -> Output {
    let what = format!("{command:?} exits");
    let mut guard = Guard(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pike"),
    );
    let stdout = read_all(guard.0.stdout.take().expect("stdout"));
    let stderr = read_all(guard.0.stderr.take().expect("stderr"));
    let status = wait_exit(&mut guard.0, &what).await;
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Pipe {
    Stdout,
    Stderr,
}

/// A long-running command (`listen`, `room join`), read line by line.
struct Running {
    guard: Guard,
    lines: mpsc::UnboundedReceiver<(Pipe, String)>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pike");
        let (tx, lines) = mpsc::unbounded_channel();
        for (pipe, reader) in [
            (
                Pipe::Stdout,
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            ),
            (
                Pipe::Stderr,
                Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
            ),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((pipe, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            guard: Guard(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line of `pipe` (lines of the other pipe are kept in
    /// `seen`), at most [`LIMIT`] away.
    async fn next(&mut self, pipe: Pipe) -> String {
        let waited = tokio::time::timeout(LIMIT, async {
            while let Some((from, line)) = self.lines.recv().await {
                self.seen.push(format!("{from:?}: {line}"));
                if from == pipe {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match waited {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the command ended before a {pipe:?} line (status {:?}); output:\n{}",
                self.guard.0.try_wait(),
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "no {pipe:?} line within {LIMIT:?}; output:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Reads stderr up to a line containing `part`.
    async fn stderr_until(&mut self, part: &str) -> String {
        loop {
            let line = self.next(Pipe::Stderr).await;
            if line.contains(part) {
                return line;
            }
        }
    }

    /// The next stdout line as JSON.
    async fn json(&mut self) -> Value {
        let line = self.next(Pipe::Stdout).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = i32::try_from(self.guard.0.id()).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// Waits for the exit (at most [`LIMIT`]).
    async fn exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.guard.0, "pike exits").await
    }
}

// ---------------------------------------------------------------------------
// A gateway to talk to

/// A `pike-server` child and an empty working directory for the CLI.
struct Gateway {
    server: Server,
    cwd: tempfile::TempDir,
}

impl Gateway {
    /// A gateway serving the dev app (no apps configured): the CLI finds
    /// its credentials in the data dir, as next to a zero-config gateway.
    async fn dev() -> Self {
        Self::with(Server::start(config(Vec::new())).await)
    }

    fn with(server: Server) -> Self {
        Self {
            server,
            cwd: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn data_dir(&self) -> String {
        self.server.data_dir().to_string_lossy().into_owned()
    }

    /// `pike --data-dir <the gateway's> args...`, in the empty directory.
    fn pike(&self, args: &[&str]) -> Command {
        let data_dir = self.data_dir();
        let mut all = vec!["--data-dir", data_dir.as_str()];
        all.extend_from_slice(args);
        pike_in(self.cwd.path(), &all)
    }

    /// The device port of `transport`.
    fn server(&self, transport: &str) -> String {
        let addrs = self.server.addrs();
        match transport {
            "tcp" => addrs.tcp,
            "tls" => addrs.tls,
            "quic" => addrs.quic,
            other => panic!("no transport {other}"),
        }
        .to_string()
    }

    /// The HTTP API's URL.
    fn api(&self) -> String {
        format!("http://{}", self.server.addrs().http)
    }

    /// The dev app's API key, as the gateway wrote it.
    fn dev_api_key(&self) -> String {
        let path = self.server.data_dir().join("dev-app.json");
        let json: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("dev-app.json")).expect("JSON");
        json["api_key"].as_str().expect("api_key").to_owned()
    }

    /// `pike push --api <the gateway's> args...`.
    async fn push(&self, args: &[&str]) -> Output {
        let api = self.api();
        let mut all = vec!["push", "--api", api.as_str()];
        all.extend_from_slice(args);
        run(self.pike(&all)).await
    }

    /// `pike listen --server <tcp> args...`, running.
    fn listen(&self, args: &[&str]) -> Running {
        let server = self.server("tcp");
        let mut all = vec!["listen", "--server", server.as_str()];
        all.extend_from_slice(args);
        Running::spawn(self.pike(&all))
    }
}

/// An address nothing listens on (bound, then closed).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

// ---------------------------------------------------------------------------
// pike listen + pike push

#[tokio::test]
async fn listen_prints_each_push_as_the_documented_json_line() {
    let gateway = Gateway::dev().await;
    let mut listen = gateway.listen(&["--alias", "chat:u42"]);
    let logged_in = listen.stderr_until("logged in").await;
    assert_eq!(logged_in, "pike: logged in as chat:u42 on app demo");

    let pushed = gateway.push(&["--alias", "chat:u42", "hello"]).await;
    let answer = pushed.code(0).json();
    assert_eq!(answer["stored"], 1, "{answer}");
    assert_eq!(answer["online"], 1, "{answer}");
    assert!(answer["message_id"].is_string(), "{answer}");

    let line = listen.next(Pipe::Stdout).await;
    let documented =
        r#"{"alias":"u42","biz":"chat","payload":"hello","priority":0,"seq":1,"transient":false}"#;
    assert_eq!(line, documented);
    assert!(README.contains(documented), "README.md shows this line");

    let transient = gateway
        .push(&[
            "--transient",
            "--priority",
            "3",
            "--alias",
            "chat:u42",
            "hi",
            "there",
        ])
        .await;
    assert_eq!(transient.code(0).json()["stored"], 0);
    let line = listen.json().await;
    assert_eq!(line["payload"], "hi there", "{line}");
    assert_eq!(line["transient"], true, "{line}");
    assert_eq!(line["priority"], 3, "{line}");
    assert!(line["message_id"].is_string(), "{line}");

    // Runs until stopped: SIGTERM ends it with status 0.
    listen.terminate();
    assert_eq!(listen.exit().await.code(), Some(0));
}

#[tokio::test]
async fn push_receipt_prints_delivered_and_acked_then_exits_0() {
    let gateway = Gateway::dev().await;
    let mut listen = gateway.listen(&["--alias", "chat:u42"]);
    listen.stderr_until("logged in").await;

    let pushed = gateway
        .push(&["--receipt", "--alias", "chat:u42", "hello"])
        .await;
    pushed.code(0);
    let lines: Vec<Value> = pushed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The push's answer, then one line per device event.
    assert_eq!(lines.len(), 3, "stdout:\n{}", pushed.stdout);
    let id = lines[0]["message_id"].as_str().expect("message id");
    assert_eq!(lines[0]["online"], 1, "{}", lines[0]);
    let events: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(events, ["delivered", "acked"], "stdout:\n{}", pushed.stdout);
    for line in &lines[1..] {
        assert_eq!(line["message_id"], id, "{line}");
        assert_eq!(line["app"], "demo", "{line}");
        assert_eq!(line["biz"], "chat", "{line}");
        assert_eq!(line["alias"], "u42", "{line}");
        assert!(line["at"].as_u64().is_some_and(|at| at > 0), "{line}");
    }
    assert_eq!(lines[1]["device"], lines[2]["device"]);
    assert!(lines[1]["device"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(lines[1]["at"].as_u64() <= lines[2]["at"].as_u64());
    assert_eq!(listen.json().await["payload"], "hello");

    listen.terminate();
    assert_eq!(listen.exit().await.code(), Some(0));
}

#[tokio::test]
async fn push_receipt_with_no_device_ends_at_its_timeout_with_status_11() {
    let gateway = Gateway::dev().await;
    let started = tokio::time::Instant::now();
    let pushed = gateway
        .push(&[
            "--receipt",
            "--receipt-timeout",
            "1",
            "--alias",
            "chat:nobody",
            "hello",
        ])
        .await;
    pushed
        .code(11)
        .says(&["no device known for it yet after 1 s (--receipt-timeout)"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Only the push's answer: no receipts.
    assert_eq!(pushed.stdout.lines().count(), 1, "{}", pushed.stdout);
    // --receipt-timeout means nothing without --receipt; bounded.
    gateway
        .push(&["--receipt-timeout", "5", "--alias", "chat:u42", "hello"])
        .await
        .code(2)
        .says(&["--receipt"]);
    gateway
        .push(&[
            "--receipt",
            "--receipt-timeout",
            "0",
            "--alias",
            "chat:u42",
            "hi",
        ])
        .await
        .code(2)
        .says(&["1 to 86400"]);
}

#[tokio::test]
async fn listen_over_tls_and_quic_binds_tags_and_stops_after_count() {
    let gateway = Gateway::dev().await;
    for transport in ["tls", "quic"] {
        let server = gateway.server(transport);
        let alias = format!("chat:{transport}-user");
        let mut listen = Running::spawn(gateway.pike(&[
            "listen",
            "--transport",
            transport,
            "--server",
            &server,
            "--alias",
            &alias,
            "--tag",
            "vip",
            "--count",
            "1",
        ]));
        assert_eq!(
            listen.stderr_until("tags bound").await,
            "pike: tags bound: vip"
        );
        gateway
            .push(&["--tag", "chat:vip", "--transient", "over", transport])
            .await
            .code(0);
        let line = listen.json().await;
        assert_eq!(line["payload"], format!("over {transport}"), "{line}");
        assert_eq!(line["alias"], format!("{transport}-user"), "{line}");
        assert_eq!(listen.exit().await.code(), Some(0), "--count 1 reached");
    }
}

#[tokio::test]
async fn listen_error_paths_have_clear_messages_and_statuses() {
    let gateway = Gateway::dev().await;
    let tcp = gateway.server("tcp");

    run(gateway.pike(&["listen", "--alias", "nocolon"]))
        .await
        .code(2)
        .says(&["--alias must look like BIZ:NAME (e.g. chat:u42), got \"nocolon\""]);

    run(gateway.pike(&[
        "listen", "--server", &tcp, "--alias", "chat:u42", "--token", "garbage",
    ]))
    .await
    .code(5)
    .says(&[
        "refused the login (ERROR_CODE_AUTH_FAILED)",
        "malformed credential",
    ]);

    // A credential of another alias is refused too.
    let other = run(gateway.pike(&["token", "--alias", "chat:someone-else"])).await;
    let other = other.code(0).stdout.trim().to_owned();
    run(gateway.pike(&[
        "listen", "--server", &tcp, "--alias", "chat:u42", "--token", &other,
    ]))
    .await
    .code(7)
    .says(&["refused the login (ERROR_CODE_FORBIDDEN)"]);

    // Nothing listens: status 3 once --connect-timeout passes.
    let closed = closed_port().to_string();
    run(gateway.pike(&[
        "listen",
        "--server",
        &closed,
        "--alias",
        "chat:u42",
        "--connect-timeout",
        "1",
    ]))
    .await
    .code(3)
    .says(&["no login within 1 s", &closed, "is it running?"]);

    run(gateway.pike(&[
        "listen",
        "--transport",
        "tls",
        "--ca",
        "/nonexistent/ca.pem",
        "--alias",
        "chat:u42",
    ]))
    .await
    .code(2)
    .says(&["TLS trust from /nonexistent/ca.pem", "(pass --ca)"]);

    for bad in ["0", "86401", "soon"] {
        run(gateway.pike(&["listen", "--alias", "chat:u42", "--connect-timeout", bad]))
            .await
            .code(2)
            .says(&["--connect-timeout"]);
    }
    run(gateway.pike(&["listen", "--alias", "chat:u42", "--transport", "udp"]))
        .await
        .code(2)
        .says(&["invalid value 'udp'"]);
}

/// A gateway stand-in on `127.0.0.1:0` that runs the real tunnel handshake
/// (`tntunnel::accept`) and refuses every hello with `code`, as a gateway
/// of another protocol version (or one overloaded) does. Returns its
/// address; it serves until the test ends.
async fn refusing_gateway(code: proto::tunnel::ErrorCode, reason: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let config = tntunnel::TunnelConfig::default();
                if let Ok(incoming) = tntunnel::accept(socket, &config).await {
                    let _ = incoming.reject(code, reason).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn every_non_retryable_refusal_ends_at_once_with_its_reason_and_status() {
    use proto::tunnel::ErrorCode;

    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let gateway = Gateway::with(server);
    let tcp = gateway.server("tcp");
    let secret = support::token_secret("shop");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expired = pike_server::token::mint(
        &pike_server::token::Claims::new("shop", "chat", "u1", now - 7_200, 60),
        secret.as_bytes(),
    );
    let of_another = pike_server::token::mint(
        &pike_server::token::Claims::new("shop", "chat", "someone-else", now, 600),
        secret.as_bytes(),
    );
    let long_device = "d".repeat(300);
    // Each command would retry until --connect-timeout (60 s, longer than
    // the test's LIMIT) if it took the refusal for a network failure: it
    // must end at once, with the server's code and reason.
    let device = |app: &str, more: &[&str]| {
        let mut args = vec![
            "--app",
            app,
            "listen",
            "--server",
            tcp.as_str(),
            "--alias",
            "chat:u1",
            "--connect-timeout",
            "60",
        ];
        args.extend_from_slice(more);
        gateway.pike(&args)
    };
    let cases: Vec<(ErrorCode, Command, i32, &str)> = vec![
        (
            ErrorCode::UnknownApp,
            device("no-such-app", &["--token-secret", "x"]),
            4,
            "unknown app \"no-such-app\"",
        ),
        (
            ErrorCode::AuthFailed,
            device("shop", &["--token", "garbage"]),
            5,
            "malformed credential",
        ),
        (
            ErrorCode::AuthFailed,
            device("shop", &["--token-secret", "not-the-secret"]),
            5,
            "signature is invalid",
        ),
        (
            ErrorCode::TokenExpired,
            device("shop", &["--token", &expired]),
            6,
            "expired",
        ),
        (
            ErrorCode::Forbidden,
            device("shop", &["--token", &of_another]),
            7,
            "credential is for alias \"someone-else\", not \"u1\"",
        ),
        (
            ErrorCode::InvalidArgument,
            device(
                "shop",
                &["--token-secret", &secret, "--device", &long_device],
            ),
            9,
            "device_id has 300 bytes, more than the limit of 128",
        ),
    ];
    for (code, command, status, reason) in cases {
        let what = format!("{command:?}");
        let out = run(command).await;
        out.code(status).says(&[
            &format!(
                "pike: the gateway refused the login ({})",
                code.as_str_name()
            ),
            reason,
        ]);
        assert!(
            !out.stderr.contains("retrying"),
            "{what} retried a refusal for good:\n{}",
            out.stderr
        );
    }

    // UNSUPPORTED_VERSION: only a gateway of another protocol version says
    // it; a stand-in refuses the hello so, over the real handshake.
    let other_version = refusing_gateway(
        ErrorCode::UnsupportedVersion,
        "no common protocol version: peer offers [1], we speak [2]",
    )
    .await
    .to_string();
    for sub in [
        vec!["listen"],
        vec!["send", "hello"],
        vec!["room", "pull", "live:1"],
        vec!["room", "join", "live:1"],
    ] {
        let mut args = vec!["--app", "shop", sub[0]];
        if sub[0] == "room" {
            args.push(sub[1]);
        }
        args.extend([
            "--token-secret",
            secret.as_str(),
            "--server",
            other_version.as_str(),
            "--alias",
            "chat:u1",
            "--connect-timeout",
            "60",
        ]);
        args.extend(sub.iter().skip(if sub[0] == "room" { 2 } else { 1 }));
        let out = run(gateway.pike(&args)).await;
        out.code(8).says(&[
            "pike: the gateway refused the login (ERROR_CODE_UNSUPPORTED_VERSION)",
            "we speak [2]",
        ]);
    }

    // A refusal worth retrying (OVERLOADED) is retried: said on stderr,
    // status 3 once --connect-timeout passes.
    let overloaded = refusing_gateway(ErrorCode::Overloaded, "connection limit reached")
        .await
        .to_string();
    run(gateway.pike(&[
        "--app",
        "shop",
        "listen",
        "--token-secret",
        &secret,
        "--server",
        &overloaded,
        "--alias",
        "chat:u1",
        "--connect-timeout",
        "1",
    ]))
    .await
    .code(3)
    .says(&[
        "cannot reach the gateway",
        "retrying",
        "no login within 1 s",
    ]);
}

#[tokio::test]
async fn run_in_the_wrong_directory_the_cli_says_so_and_writes_nothing() {
    // No --data-dir and no ./pike-data: a newcomer in another directory.
    let cwd = tempfile::tempdir().expect("tempdir");
    run(pike_in(cwd.path(), &["listen", "--alias", "chat:u42"]))
        .await
        .code(2)
        .says(&[
            "no token secret for app \"demo\"",
            "pass --token-secret (or PIKE_TOKEN_SECRET)",
            "./pike-data",
        ]);
    assert!(
        !cwd.path().join("pike-data").exists(),
        "the CLI created ./pike-data although it could not log in"
    );
    run(pike_in(
        cwd.path(),
        &["push", "--alias", "chat:u42", "hello"],
    ))
    .await
    .code(2)
    .says(&[
        "no API key for app \"demo\"",
        "pass --api-key (or PIKE_API_KEY)",
    ]);
    run(pike_in(cwd.path(), &["room", "publish", "live:1", "hi"]))
        .await
        .code(2)
        .says(&["no API key for app \"demo\""]);
    assert!(!cwd.path().join("pike-data").exists());

    // A corrupt dev-app.json is named, with the way out.
    std::fs::create_dir(cwd.path().join("pike-data")).expect("mkdir");
    std::fs::write(cwd.path().join("pike-data/dev-app.json"), "{").expect("write");
    run(pike_in(cwd.path(), &["token", "--alias", "chat:u42"]))
        .await
        .code(1)
        .says(&["dev-app.json is corrupt", "remove it to regenerate"]);
}

#[tokio::test]
async fn push_error_paths_have_clear_messages_and_statuses() {
    let gateway = Gateway::dev().await;

    gateway
        .push(&["--alias", "nocolon", "hello"])
        .await
        .code(2)
        .says(&["--alias must look like BIZ:NAME"]);
    gateway
        .push(&["--tag", "vip", "hello"])
        .await
        .code(2)
        .says(&["--tag must look like BIZ:NAME"]);
    // No target, or no message: clap's usage errors.
    gateway.push(&["hello"]).await.code(2).says(&["required"]);
    gateway
        .push(&["--alias", "chat:u42"])
        .await
        .code(2)
        .says(&["<MESSAGE>"]);
    gateway
        .push(&["--alias", "chat:u42", "--all", "chat", "hello"])
        .await
        .code(2)
        .says(&["cannot be used with"]);

    let refused = gateway
        .push(&["--api-key", "pk_wrong", "--alias", "chat:u42", "hello"])
        .await;
    refused
        .code(1)
        .says(&["push refused (401 Unauthorized)", "unknown API key"]);
    assert!(refused.stdout.is_empty());
    // Another app has no credentials in the data dir.
    run(gateway.pike(&["--app", "other", "push", "--alias", "chat:u42", "hello"]))
        .await
        .code(2)
        .says(&["no API key for app \"other\""]);
    // The API validates what the CLI passes through.
    gateway
        .push(&["--ttl", "0", "--alias", "chat:u42", "hello"])
        .await
        .code(1)
        .says(&["push refused (400 Bad Request)"]);

    // Nothing listens: status 3.
    let closed = format!("http://{}", closed_port());
    run(gateway.pike(&["push", "--api", &closed, "--alias", "chat:u42", "hello"]))
        .await
        .code(3)
        .says(&["cannot reach the HTTP API", "is the gateway running?"]);
    run(gateway.pike(&["push", "--api", "not a url", "--alias", "chat:u42", "hello"]))
        .await
        .code(2)
        .says(&["bad HTTP API address"]);

    // A server that accepts and never answers: status 3 after --timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_api = format!("http://{}", silent.local_addr().expect("address"));
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    run(gateway.pike(&[
        "push",
        "--api",
        &silent_api,
        "--timeout",
        "1",
        "--alias",
        "chat:u42",
        "hello",
    ]))
    .await
    .code(3)
    .says(&["no answer from the HTTP API", "within 1 s"]);
    holder.abort();
}

#[tokio::test]
async fn pushes_to_a_biz_the_app_does_not_have_are_404_naming_it() {
    let server = Server::start(config(vec![app("shop", vec![biz("chat")])])).await;
    let gateway = Gateway::with(server);
    let api = gateway.api();
    let key = support::api_key("shop");

    // The CLI (POST /v1/push): status 1 with the API's message.
    run(gateway.pike(&[
        "--app",
        "shop",
        "push",
        "--api",
        &api,
        "--api-key",
        &key,
        "--alias",
        "nope:u1",
        "hello",
    ]))
    .await
    .code(1)
    .says(&[
        "push refused (404 Not Found)",
        "app \"shop\" has no biz \"nope\"",
    ]);

    // Every form of push, raw: 404 not_found naming the biz, nothing
    // stored; the app's own biz still takes the same pushes.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let request = http
            .post(format!("{api}{path}"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("HTTP");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            (status, answer)
        }
    };
    let refused = |answer: &Value| {
        assert_eq!(answer["error"]["code"], "not_found", "{answer}");
        assert_eq!(answer["error"]["field"], "biz", "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("app \"shop\" has no biz \"nope\""),
            "{answer}"
        );
    };
    for target in [
        json!({"alias": "u1"}),
        json!({"aliases": ["u1", "u2"]}),
        json!({"tag": "vip"}),
        json!({"all": true}),
        json!({"alias": "u1", "reliable": false}),
    ] {
        let mut body = target.clone();
        body["biz"] = "nope".into();
        body["payload"] = "hi".into();
        let (status, answer) = within("push", post("/v1/push", body.clone())).await;
        assert_eq!(status, 404, "{target}: {answer}");
        refused(&answer);

        body["biz"] = "chat".into();
        let (status, answer) = within("push", post("/v1/push", body)).await;
        assert_eq!(status, 200, "{target}: {answer}");
    }
    let (status, answer) = within(
        "batch",
        post(
            "/v1/push/batch",
            json!({"pushes": [
                {"biz": "nope", "alias": "u1", "payload": "a"},
                {"biz": "chat", "alias": "u1", "payload": "b"},
            ]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    refused(&answer["results"][0]);
    assert_eq!(answer["results"][1]["stored"], 1, "{answer}");

    // Nothing was stored for "nope": a device of the app cannot log in to
    // it anyway (refused, as before).
    let tcp = gateway.server("tcp");
    let secret = support::token_secret("shop");
    run(gateway.pike(&[
        "--app",
        "shop",
        "listen",
        "--server",
        &tcp,
        "--token-secret",
        &secret,
        "--alias",
        "nope:u1",
    ]))
    .await
    .code(7)
    .says(&["unknown biz \"nope\""]);
}

// ---------------------------------------------------------------------------
// pike token

#[tokio::test]
async fn token_mints_credentials_the_gateway_accepts_and_refuses_bad_args() {
    let gateway = Gateway::dev().await;
    let tcp = gateway.server("tcp");

    let minted = run(gateway.pike(&["token", "--alias", "chat:u42", "--ttl", "600"])).await;
    let token = minted.code(0).stdout.trim().to_owned();
    assert_eq!(minted.stdout.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    run(gateway.pike(&[
        "listen", "--server", &tcp, "--alias", "chat:u42", "--token", &token, "--count", "0",
    ]))
    .await
    .code(0)
    .says(&["pike: logged in as chat:u42 on app demo"]);

    // Signed with the wrong secret: minted, then refused at login.
    let forged = run(gateway.pike(&[
        "token",
        "--alias",
        "chat:u42",
        "--token-secret",
        "not-the-secret",
    ]))
    .await;
    let forged = forged.code(0).stdout.trim().to_owned();
    run(gateway.pike(&[
        "listen", "--server", &tcp, "--alias", "chat:u42", "--token", &forged,
    ]))
    .await
    .code(5)
    .says(&["refused the login (ERROR_CODE_AUTH_FAILED)"]);

    run(gateway.pike(&["token", "--alias", "bad"]))
        .await
        .code(2)
        .says(&["--alias must look like BIZ:NAME"]);
    for ttl in ["0", "315360001", "abc", "-5"] {
        let ttl = format!("--ttl={ttl}");
        run(gateway.pike(&["token", "--alias", "chat:u42", &ttl]))
            .await
            .code(2)
            .says(&["--ttl"]);
    }
    run(gateway.pike(&["token"]))
        .await
        .code(2)
        .says(&["--alias <ALIAS>"]);
    run(gateway.pike(&["--app", "other", "token", "--alias", "chat:u42"]))
        .await
        .code(2)
        .says(&["no token secret for app \"other\""]);
}

// ---------------------------------------------------------------------------
// pike send

#[tokio::test]
async fn send_delivers_uplink_to_the_backend_and_reports_its_answer() {
    let backends = Backends::start(1, Duration::ZERO).await;
    let slow = Backends::start(1, Duration::from_secs(60)).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![
            biz_with_webhooks("chat", backends.urls(), 5_000),
            biz_with_webhooks("slow", slow.urls(), 30_000),
            biz("quiet"),
        ],
    )]))
    .await;
    let gateway = Gateway::with(server);
    let tcp = gateway.server("tcp");
    let secret = support::token_secret("shop");
    let device = |biz_alias: &'static str| {
        vec![
            "--app",
            "shop",
            "send",
            "--server",
            tcp.as_str(),
            "--token-secret",
            secret.as_str(),
            "--alias",
            biz_alias,
        ]
    };

    let mut args = device("chat:u1");
    args.extend(["--key", "order-1", "hello", "world"]);
    let sent = run(gateway.pike(&args)).await;
    assert_eq!(
        sent.code(0).json(),
        serde_json::json!({"status": "accepted", "key": "order-1"})
    );
    let records = backends.records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].payload, "hello world");
    assert_eq!(records[0].key, "order-1");
    assert_eq!(records[0].alias, "u1");

    // No backend for the business: refused, status 1.
    let mut args = device("quiet:u1");
    args.push("hello");
    run(gateway.pike(&args))
        .await
        .code(1)
        .says(&["send failed", "no uplink backend for biz \"quiet\""]);

    // A backend slower than --timeout: status 3, with the key to retry.
    let mut args = device("slow:u1");
    args.extend(["--timeout", "1", "--key", "slow-1", "hello"]);
    run(gateway.pike(&args))
        .await
        .code(3)
        .says(&["no answer from the backend within 1 s (key slow-1)"]);

    let mut args = device("chat:u1");
    args.extend(["--timeout", "0", "hello"]);
    run(gateway.pike(&args)).await.code(2).says(&["--timeout"]);
    run(gateway.pike(&device("chat:u1")))
        .await
        .code(2)
        .says(&["<MESSAGE>"]);
}

#[tokio::test]
async fn send_is_send_only_and_keeps_its_route_between_runs() {
    let backends = Backends::start(2, Duration::ZERO).await;
    let server = Server::start(config(vec![app(
        "shop",
        vec![biz_with_webhooks("chat", backends.urls(), 5_000)],
    )]))
    .await;
    let api = server.api("shop");
    // The alias has a reliable backlog waiting for its real device.
    for i in 1..=3 {
        api.push_alias("chat", "u1", &format!("m{i}")).await;
    }
    let gateway = Gateway::with(server);
    let tcp = gateway.server("tcp");
    let secret = support::token_secret("shop");
    let send = |key: &str| {
        gateway.pike(&[
            "--app",
            "shop",
            "send",
            "--server",
            &tcp,
            "--token-secret",
            &secret,
            "--alias",
            "chat:u1",
            "--key",
            key,
            "hello",
        ])
    };
    let before = api.metrics().await;
    for i in 0..4 {
        let out = run(send(&format!("k{i}"))).await;
        out.code(0);
        assert!(!out.stderr.contains("route moved"), "{}", out.stderr);
    }
    // Send-only: none of the backlog was sent to `pike send` (the
    // downlink success rate counts only real recipients).
    let after = api.metrics().await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(delta("pike_logins_total", &[("result", "ok")]), 4.0);
    assert_eq!(
        delta("pike_downlink_sent_total", &[("kind", "reliable")]),
        0.0
    );
    // The route id is kept between runs: every message reached the same
    // backend (the first run's pick), over the same route.
    let records = backends.records().await;
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.backend == records[0].backend && r.route == records[0].route),
        "{records:?}"
    );
    let routes = gateway.server.data_dir().join("cli-routes.json");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&routes).expect("routes file")).expect("JSON");
    assert_eq!(saved["routes"][0]["route_id"], records[0].route.as_str());

    // A saved route the gateway no longer has: the route moved, and says so.
    std::fs::write(
        &routes,
        json!({"routes": [{"app": "shop", "biz": "chat", "alias": "u1", "route_id": "r9"}]})
            .to_string(),
    )
    .expect("write");
    let out = run(send("k-moved")).await;
    out.code(0).says(&["pike: route moved from r9 to r"]);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&routes).expect("routes file")).expect("JSON");
    assert_ne!(saved["routes"][0]["route_id"], "r9", "{saved}");

    // The real device still gets the whole backlog, and acks it.
    let mut listen = Running::spawn(gateway.pike(&[
        "--app",
        "shop",
        "listen",
        "--server",
        &tcp,
        "--token-secret",
        &secret,
        "--alias",
        "chat:u1",
        "--count",
        "3",
    ]));
    for i in 1..=3 {
        assert_eq!(listen.json().await["payload"], format!("m{i}"));
    }
    assert_eq!(listen.exit().await.code(), Some(0));
}

#[tokio::test]
async fn send_without_a_backend_on_the_dev_gateway_is_refused() {
    let gateway = Gateway::dev().await;
    let tcp = gateway.server("tcp");
    run(gateway.pike(&["send", "--server", &tcp, "--alias", "chat:u42", "hello"]))
        .await
        .code(1)
        .says(&[
            "pike: logged in as chat:u42 on app demo",
            "send failed",
            "no uplink backend for biz \"chat\"",
        ]);
}

// ---------------------------------------------------------------------------
// pike room

#[tokio::test]
async fn room_publish_pull_join_and_stats() {
    let gateway = Gateway::dev().await;
    let tcp = gateway.server("tcp");
    let api = gateway.api();
    let room = |args: &[&str]| {
        let mut all = vec!["room"];
        all.extend_from_slice(args);
        gateway.pike(&all)
    };

    let first = run(room(&["publish", "--api", &api, "live:1", "nice", "shot"])).await;
    let first = first.code(0).json()["offset"].as_u64().expect("offset");
    let second = run(room(&[
        "publish",
        "--api",
        &api,
        "--reliable",
        "live:1",
        "lottery:",
        "u42",
        "wins",
    ]))
    .await;
    let second = second.code(0).json()["offset"].as_u64().expect("offset");
    assert!(second > first);

    // Pull from the oldest: one batch, both messages, as documented.
    let pulled = run(room(&[
        "pull", "--server", &tcp, "--alias", "chat:u42", "--from", "0", "live:1",
    ]))
    .await;
    let batch = pulled.code(0).json();
    assert_eq!(batch["room"], "live:1");
    assert_eq!(batch["missed"], 0);
    assert_eq!(
        batch["messages"],
        serde_json::json!([
            {"offset": first, "class": "droppable", "priority": 0, "payload": "nice shot"},
            {"offset": second, "class": "reliable", "priority": 0, "payload": "lottery: u42 wins"},
        ])
    );

    // Join from the tail: live messages only, one JSON line per batch.
    let mut join = Running::spawn(room(&[
        "join", "--server", &tcp, "--alias", "chat:u9", "--count", "1", "live:1",
    ]));
    let joined = join.stderr_until("joined room").await;
    assert!(
        joined.starts_with("pike: joined room \"live:1\" (head "),
        "{joined}"
    );
    run(room(&[
        "publish",
        "--api",
        &api,
        "--priority",
        "2",
        "live:1",
        "live",
        "now",
    ]))
    .await
    .code(0);
    let batch = join.json().await;
    assert_eq!(batch["room"], "live:1");
    assert_eq!(batch["messages"][0]["payload"], "live now", "{batch}");
    assert_eq!(batch["messages"][0]["priority"], 2, "{batch}");
    assert_eq!(join.exit().await.code(), Some(0), "--count 1 reached");

    let stats = run(room(&["stats", "--api", &api, "live:1"])).await;
    let stats = stats.code(0).json();
    assert_eq!(stats["room"], "live:1");
    assert_eq!(stats["published"]["reliable"], 1, "{stats}");
    assert_eq!(stats["published"]["droppable"], 2, "{stats}");
    let all = run(room(&["stats", "--api", &api])).await;
    let all = all.code(0).json();
    assert!(
        all["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["room"] == "live:1"),
        "{all}"
    );
}

#[tokio::test]
async fn room_error_paths_have_clear_messages_and_statuses() {
    let gateway = Gateway::dev().await;
    let tcp = gateway.server("tcp");
    let api = gateway.api();
    let room = |args: &[&str]| {
        let mut all = vec!["room"];
        all.extend_from_slice(args);
        gateway.pike(&all)
    };

    // Bad room names: refused by the API (status 1, its message).
    let long = "r".repeat(129);
    for name in ["", long.as_str()] {
        run(room(&["publish", "--api", &api, name, "hi"]))
            .await
            .code(1)
            .says(&[
                "publish refused (400 Bad Request)",
                "a room name has 1 to 128 bytes",
            ]);
    }
    run(room(&["join", "--server", &tcp, "--alias", "chat:u42", ""]))
        .await
        .code(1)
        .says(&[
            "joining \"\"",
            "ERROR_CODE_INVALID_ARGUMENT",
            "room must not be empty",
        ]);
    run(room(&[
        "publish",
        "--api",
        &api,
        "--api-key",
        "pk_wrong",
        "live:1",
        "hi",
    ]))
    .await
    .code(1)
    .says(&["publish refused (401 Unauthorized)"]);
    run(room(&["stats", "--api", &api, "no-such-room"]))
        .await
        .code(1)
        .says(&["room query refused (404 Not Found)"]);
    let closed = format!("http://{}", closed_port());
    run(room(&["stats", "--api", &closed]))
        .await
        .code(3)
        .says(&["cannot reach the HTTP API"]);
    run(room(&["publish", "--api", &api, "live:1"]))
        .await
        .code(2)
        .says(&["<MESSAGE>"]);
    run(room(&["join", "--alias", "nocolon", "live:1"]))
        .await
        .code(2)
        .says(&["--alias must look like BIZ:NAME"]);
    run(room(&["dance"])).await.code(2);

    // Nothing at the offset within --wait: said on stderr, status 0.
    let pulled = run(room(&[
        "pull",
        "--server",
        &tcp,
        "--alias",
        "chat:u42",
        "--wait",
        "1",
        "empty:room",
    ]))
    .await;
    pulled
        .code(0)
        .says(&["nothing at or after offset 0 within 1 s"]);
    assert!(pulled.stdout.is_empty());
}

// ---------------------------------------------------------------------------
// Help, and the banner's commands

#[tokio::test]
async fn help_documents_exit_statuses_and_usage_errors_exit_2() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let help = run(pike_in(cwd.path(), &["--help"])).await;
    help.code(0);
    for line in [
        "Exit status:",
        "  0  done",
        "  1  the gateway, a backend or the HTTP API refused",
        "  2  usage",
        "  3  the gateway or the HTTP API could not be reached",
        "  4  unknown or disabled app",
        "  5  credential refused",
        "  6  credential expired",
        "  7  forbidden",
        "  8  the gateway speaks no protocol version",
        "  9  the gateway refused a value",
    ] {
        assert!(
            help.stdout.contains(line),
            "{line:?} missing:\n{}",
            help.stdout
        );
    }
    for sub in ["listen", "send", "push", "token", "room"] {
        run(pike_in(cwd.path(), &[sub, "--help"])).await.code(0);
    }
    run(pike_in(cwd.path(), &[])).await.code(2).says(&["Usage"]);
    run(pike_in(cwd.path(), &["frobnicate"]))
        .await
        .code(2)
        .says(&["unrecognized subcommand"]);
}

/// The banner's lines from `prefix` on (waiting for them to be printed).
async fn banner_line(server: &Server, prefix: &str) -> String {
    poll_until("the banner's line", || async {
        server.output().lines().any(|l| l.starts_with(prefix))
    })
    .await;
    server
        .output()
        .lines()
        .find(|l| l.starts_with(prefix))
        .expect("line")
        .to_owned()
}

/// `sh -c script` in `cwd` with `path` as PATH.
fn sh(cwd: &Path, path: &str, script: &str) -> Command {
    let mut command = Command::new("sh");
    for name in PIKE_ENV {
        command.env_remove(name);
    }
    command
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .current_dir(cwd)
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn the_banners_commands_work_as_written() {
    // `pike` on PATH, as after `cargo install --path pike-server`.
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_pike"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH")
    .to_string_lossy()
    .into_owned();
    let server = Server::start_with_env(
        config(Vec::new()),
        vec![
            ("PATH".into(), Some(path.clone())),
            ("CARGO_MANIFEST_DIR".into(), None),
        ],
    )
    .await;
    let gateway = Gateway::with(server);
    let key = gateway.dev_api_key();

    let export = banner_line(&gateway.server, "  export PIKE_API_KEY=").await;
    assert_eq!(export.trim(), format!("export PIKE_API_KEY={key}"));
    let echoed = run(sh(
        gateway.cwd.path(),
        &path,
        &format!("{}; printf '%s' \"$PIKE_API_KEY\"", export.trim()),
    ))
    .await;
    assert_eq!(echoed.code(0).stdout, key);

    let listen = banner_line(&gateway.server, "  pike listen ").await;
    let push = banner_line(&gateway.server, "  pike push ").await;
    let tcp = gateway.server("tcp");
    assert!(listen.contains(&format!("--server {tcp}")), "{listen}");
    assert!(listen.contains("--alias chat:u42"), "{listen}");
    assert!(push.ends_with(" hello"), "{push}");

    // Pasted into a shell in another directory, as printed.
    // `exec`: the guard's kill reaches `pike`, not just the shell.
    let mut listening = Running::spawn(sh(
        gateway.cwd.path(),
        &path,
        &format!("exec {}", listen.trim()),
    ));
    listening.stderr_until("logged in as chat:u42").await;
    let pushed = run(sh(gateway.cwd.path(), &path, push.trim())).await;
    assert_eq!(pushed.code(0).json()["online"], 1);
    let line = listening.json().await;
    assert_eq!(line["payload"], "hello", "{line}");
}

#[tokio::test]
async fn the_readmes_api_key_one_liner_reads_the_dev_key() {
    let gateway = Gateway::dev().await;
    let key = gateway.dev_api_key();
    let one_liner = README
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("export PIKE_API_KEY="))
        .expect("README.md shows how to set PIKE_API_KEY");
    // The README's command reads ./pike-data, next to the gateway.
    std::fs::create_dir(gateway.cwd.path().join("pike-data")).expect("mkdir");
    std::fs::copy(
        gateway.server.data_dir().join("dev-app.json"),
        gateway.cwd.path().join("pike-data/dev-app.json"),
    )
    .expect("copy");
    let path = std::env::var("PATH").unwrap_or_default();
    let echoed = run(sh(
        gateway.cwd.path(),
        &path,
        &format!("{one_liner}; printf '%s' \"$PIKE_API_KEY\""),
    ))
    .await;
    assert_eq!(echoed.code(0).stdout, key);
    assert!(key.starts_with("pk_"));
}
