//! Finding the peers, and installing them from Debian packages when
//! missing: `apt-cache policy` first (is there a candidate?), `apt-get
//! update` once only if the package lists lack them, then `apt-get install
//! -y mosquitto nats-server` (non-interactive). Debian's postinst does not
//! start the services in a container; the harness starts its own instances
//! anyway, on their own ports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The Debian packages, with the binary each provides.
pub(crate) const PACKAGES: [(&str, &str); 2] =
    [("mosquitto", "mosquitto"), ("nats-server", "nats-server")];

/// Time one apt command may take.
const APT_TIMEOUT: Duration = Duration::from_secs(300);

/// Looks for `name` in `PATH` and the sbin directories (mosquitto lives in
/// `/usr/sbin`).
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `apt-cache policy` output offers a candidate version.
pub(crate) fn has_candidate(policy: &str) -> bool {
    policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .any(|v| {
            let v = v.trim();
            !v.is_empty() && v != "(none)"
        })
}

/// Installs the missing peers. Returns what it did, for the log.
pub(crate) async fn ensure_installed() -> Result<Vec<String>, String> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, bin)| find_binary(bin).is_none())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut log = Vec::new();
    let policy = apt(&["apt-cache", "policy"], &missing).await?;
    if !missing.iter().all(|p| has_candidate(&section(&policy, p))) {
        log.push("no candidate in the package lists: ran apt-get update".to_owned());
        apt(&["apt-get", "update"], &[]).await?;
    }
    apt(
        &["apt-get", "install", "-y", "--no-install-recommends"],
        &missing,
    )
    .await?;
    log.push(format!("installed {}", missing.join(" ")));
    for (_, bin) in PACKAGES {
        if find_binary(bin).is_none() {
            return Err(format!("{bin} is still missing after apt-get install"));
        }
    }
    Ok(log)
}

/// The part of `apt-cache policy a b` output about package `name`.
fn section(policy: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in policy.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end_matches(':') == name;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn apt(command: &[&str], packages: &[&str]) -> Result<String, String> {
    let text = format!("{} {}", command.join(" "), packages.join(" "));
    eprintln!("xtask bench: {text}");
    let output = tokio::time::timeout(
        APT_TIMEOUT,
        Command::new(command[0])
            .args(&command[1..])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`{text}` took longer than {APT_TIMEOUT:?}"))?
    .map_err(|e| format!("cannot run `{text}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{text}` failed ({}): {} (install mosquitto and nats-server, or run as root)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "mosquitto:\n  Installed: (none)\n  Candidate: 2.0.11-1.2+deb12u2\n  Version table:\n     2.0.11-1.2+deb12u2 500\nnats-server:\n  Installed: (none)\n  Candidate: (none)\n";

    #[test]
    fn candidates_per_package() {
        assert!(has_candidate(&section(POLICY, "mosquitto")));
        assert!(!has_candidate(&section(POLICY, "nats-server")));
        assert!(!has_candidate(&section(POLICY, "redis-server")));
    }

    #[test]
    fn finds_a_shell() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("surely-not-a-binary-name").is_none());
    }
}
