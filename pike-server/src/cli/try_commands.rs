//! The `pike` commands the gateway's startup banner suggests: they must
//! work as written, pasted into another terminal in the directory the
//! gateway runs in. How `pike` is invoked depends on how the gateway was
//! started (`cargo run`, an installed binary, a path), and the flags depend
//! on where it listens and keeps its data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::run::Started;

/// The data dir the CLI looks in when given no `--data-dir`.
const CLI_DATA_DIR: &str = "./pike-data";

/// How the `pike` binary can be run from the gateway's directory.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Invocation {
    /// `pike` on `PATH` is the one next to this gateway (installed with
    /// `cargo install --path pike-server`).
    OnPath,
    /// The gateway was started by `cargo run` from the workspace: the CLI
    /// runs the same way, with the same profile.
    Cargo {
        /// Built with `--release`.
        release: bool,
    },
    /// A `pike` binary next to the gateway, not on `PATH`.
    Path(PathBuf),
    /// No `pike` binary found: suggest installing it.
    Missing,
}

impl Invocation {
    /// Finds out how this process was started.
    pub fn detect() -> Self {
        let pike = std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name(format!("pike{}", std::env::consts::EXE_SUFFIX)));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let on_path = std::env::split_paths(&path)
            .map(|dir| dir.join(format!("pike{}", std::env::consts::EXE_SUFFIX)))
            .find(|candidate| candidate.is_file());
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        match (pike, on_path) {
            (Some(pike), Some(found)) if same(&pike, &found) => Self::OnPath,
            // `cargo run` sets the package's manifest dir for the program.
            _ if std::env::var_os("CARGO_MANIFEST_DIR").is_some() => Self::Cargo {
                release: !cfg!(debug_assertions),
            },
            (Some(pike), _) if pike.is_file() => Self::Path(pike),
            _ => Self::Missing,
        }
    }

    /// The words that run `pike` (before its subcommand).
    fn program(&self) -> String {
        match self {
            Self::OnPath | Self::Missing => "pike".to_owned(),
            Self::Cargo { release: true } => {
                "cargo run --release -p pike-server --bin pike --".to_owned()
            }
            Self::Cargo { release: false } => "cargo run -p pike-server --bin pike --".to_owned(),
            Self::Path(path) => shell_word(&path.to_string_lossy()),
        }
    }
}

/// The banner's lines after the dev app's credentials: the API key as an
/// `export` line, then `listen` and `push` commands for another terminal
/// in this directory, then how to install the CLI when it is not on `PATH`.
pub fn try_commands(started: &Started, invocation: &Invocation) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(dev) = &started.dev_app {
        lines.push("for curl and scripts (docs/http-api.md), in your shell:".to_owned());
        lines.push(format!(
            "  export PIKE_API_KEY={}",
            shell_word(&dev.api_key)
        ));
    }
    let program = invocation.program();
    let mut data_dir = String::new();
    if started.data_dir != Path::new(CLI_DATA_DIR) {
        data_dir = format!(
            " --data-dir {}",
            shell_word(&started.data_dir.to_string_lossy())
        );
    }
    let listener = |name: &str| {
        started
            .listening
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, addr)| dialable(*addr))
    };
    let device = [("tcp", 9300), ("tls", 9301), ("quic", 9302)]
        .into_iter()
        .find_map(|(name, port)| Some((name, port, listener(name)?)));
    lines.push("try, in another terminal in this directory:".to_owned());
    if let Some((transport, port, addr)) = device {
        let mut flags = String::new();
        if transport != "tcp" {
            flags.push_str(&format!(" --transport {transport}"));
        }
        if addr != SocketAddr::from((Ipv4Addr::LOCALHOST, port)) {
            flags.push_str(&format!(" --server {addr}"));
        }
        lines.push(format!(
            "  {program} listen --alias chat:u42{flags}{data_dir}"
        ));
    }
    if let Some(addr) = listener("http") {
        let mut flags = String::new();
        if addr != SocketAddr::from((Ipv4Addr::LOCALHOST, 9380)) {
            flags.push_str(&format!(" --api http://{addr}"));
        }
        lines.push(format!(
            "  {program} push --alias chat:u42{flags}{data_dir} hello"
        ));
    }
    match invocation {
        Invocation::OnPath => {}
        Invocation::Missing => lines.push(
            "`pike` is not built: `cargo install --path pike-server` (from the repository root) installs `pike` and `pike-server` on your PATH".to_owned(),
        ),
        Invocation::Cargo { .. } | Invocation::Path(_) => lines.push(
            "or `cargo install --path pike-server` (from the repository root) installs `pike` and `pike-server` on your PATH".to_owned(),
        ),
    }
    lines
}

/// The address a client on this machine dials to reach a listener bound
/// to `addr` (a wildcard address becomes loopback).
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// `word` as one POSIX shell word: unchanged when it holds only safe
/// characters, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_dir::DevApp;

    fn started(data_dir: &str, listening: Vec<(&'static str, &str)>) -> Started {
        Started {
            listening: listening
                .into_iter()
                .map(|(name, addr)| (name, addr.parse().unwrap()))
                .collect(),
            dev_app: Some(DevApp {
                app: "demo".into(),
                api_key: "pk_abc123".into(),
                token_secret: "s3cret".into(),
            }),
            fingerprint: None,
            data_dir: PathBuf::from(data_dir),
        }
    }

    fn defaults() -> Started {
        started(
            "./pike-data",
            vec![
                ("tcp", "127.0.0.1:9300"),
                ("tls", "127.0.0.1:9301"),
                ("quic", "127.0.0.1:9302"),
                ("http", "127.0.0.1:9380"),
            ],
        )
    }

    #[test]
    fn cargo_run_release_gets_the_readme_commands() {
        let lines = try_commands(&defaults(), &Invocation::Cargo { release: true });
        assert_eq!(
            lines,
            [
                "for curl and scripts (docs/http-api.md), in your shell:",
                "  export PIKE_API_KEY=pk_abc123",
                "try, in another terminal in this directory:",
                "  cargo run --release -p pike-server --bin pike -- listen --alias chat:u42",
                "  cargo run --release -p pike-server --bin pike -- push --alias chat:u42 hello",
                "or `cargo install --path pike-server` (from the repository root) installs `pike` and `pike-server` on your PATH",
            ]
        );
        // The same commands as the README's, so both stay right together.
        let readme = include_str!("../../../README.md");
        for line in &lines[3..5] {
            assert!(readme.contains(line.trim()), "README.md lacks {line:?}");
        }
    }

    #[test]
    fn a_debug_build_suggests_a_debug_build() {
        let lines = try_commands(&defaults(), &Invocation::Cargo { release: false });
        assert!(lines.contains(
            &"  cargo run -p pike-server --bin pike -- listen --alias chat:u42".to_owned()
        ));
    }

    #[test]
    fn installed_pike_needs_no_install_hint() {
        let lines = try_commands(&defaults(), &Invocation::OnPath);
        assert_eq!(lines[3], "  pike listen --alias chat:u42");
        assert_eq!(lines[4], "  pike push --alias chat:u42 hello");
        assert_eq!(lines.len(), 5);
        let missing = try_commands(&defaults(), &Invocation::Missing);
        assert!(missing[5].contains("cargo install --path pike-server"));
    }

    #[test]
    fn other_addresses_and_data_dirs_become_flags() {
        let started = started(
            "/var/lib/my pike",
            vec![
                ("tls", "0.0.0.0:7001"),
                ("quic", "127.0.0.1:7002"),
                ("http", "[::]:7080"),
            ],
        );
        let path = Invocation::Path(PathBuf::from("/opt/pike/bin/pike"));
        let lines = try_commands(&started, &path);
        assert_eq!(
            lines[3],
            "  /opt/pike/bin/pike listen --alias chat:u42 --transport tls --server 127.0.0.1:7001 --data-dir '/var/lib/my pike'"
        );
        assert_eq!(
            lines[4],
            "  /opt/pike/bin/pike push --alias chat:u42 --api http://[::1]:7080 --data-dir '/var/lib/my pike' hello"
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
