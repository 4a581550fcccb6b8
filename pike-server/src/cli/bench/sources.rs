//! Where the generator's connections come from: source addresses in
//! `127.0.0.0/8`, and the process's open-file limit.

use std::net::{IpAddr, Ipv4Addr};

/// File descriptors kept free for everything that is not a device
/// connection (runtime, stdio, HTTP clients, the store of nobody).
pub(crate) const FD_HEADROOM: u64 = 100;

/// The source addresses `NET.1 ..= NET.count` for `net` = `"127.x.y"`;
/// empty for `count` 0. Only loopback (`127.0.0.0/8`) is accepted.
pub(crate) fn source_ips(net: &str, count: u8) -> Result<Vec<IpAddr>, String> {
    let octets: Vec<&str> = net.split('.').collect();
    let parsed: Option<Vec<u8>> = octets.iter().map(|o| o.parse::<u8>().ok()).collect();
    let [a, b, c] = parsed.as_deref().unwrap_or_default() else {
        return Err(format!(
            "--source-net must be three octets like 127.0.1, got {net:?}"
        ));
    };
    if *a != 127 {
        return Err(format!(
            "--source-net must be in 127.0.0.0/8 (loopback), got {net:?}"
        ));
    }
    Ok((1..=count)
        .map(|d| IpAddr::V4(Ipv4Addr::new(*a, *b, *c, d)))
        .collect())
}

/// The soft limit on open files of this process, from `/proc/self/limits`
/// (`None` where that file does not exist or says "unlimited").
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Refuses a connection count this process cannot hold.
pub(crate) fn check_fd_budget(connections: usize, limit: Option<u64>) -> Result<(), String> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let wanted = connections as u64 + FD_HEADROOM;
    if wanted > limit {
        return Err(format!(
            "{connections} connections need about {wanted} open files, but this process may open {limit}: \
             run several `pike bench` processes with distinct --first-alias and --source-net"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_span_the_net() {
        let ips = source_ips("127.0.3", 3).unwrap();
        assert_eq!(
            ips,
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 3, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 3, 3)),
            ]
        );
        assert!(source_ips("127.0.3", 0).unwrap().is_empty());
        assert_eq!(source_ips("127.1.2", 255).unwrap().len(), 255);
    }

    #[test]
    fn source_ips_stay_on_loopback() {
        assert!(source_ips("10.0.0", 3).is_err());
        assert!(source_ips("127.0", 3).is_err());
        assert!(source_ips("127.0.0.1", 3).is_err());
        assert!(source_ips("127.0.x", 3).is_err());
        assert!(source_ips("127.0.256", 3).is_err());
    }

    #[test]
    fn open_file_limit_parses_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_file_limit(text), Some(20_000));
        assert_eq!(
            parse_open_file_limit("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[test]
    fn fd_budget_keeps_headroom() {
        assert!(check_fd_budget(19_900, Some(20_000)).is_ok());
        assert!(check_fd_budget(19_901, Some(20_000)).is_err());
        assert!(check_fd_budget(1_000_000, None).is_ok());
    }
}
