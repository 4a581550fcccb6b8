//! What the harness reads from `/proc`: a process's resident memory and CPU
//! time, the kernel's slab memory, the open-file limit.

use std::io;

/// Resident memory of `pid`, KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_field_kib(&status, "VmRSS:")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
}

/// Peak resident memory of `pid`, KiB (`VmHWM` of `/proc/<pid>/status`).
pub(crate) fn hwm_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_field_kib(&status, "VmHWM:")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in status"))
}

/// Threads of `pid` (`Threads` of `/proc/<pid>/status`).
pub(crate) fn threads(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_field_kib(&status, "Threads:")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads in status"))
}

/// Open file descriptors of `pid` (entries of `/proc/<pid>/fd`).
pub(crate) fn open_fds(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// User plus system CPU time of `pid`, in clock ticks (`utime` + `stime`
/// of `/proc/<pid>/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/stat"))
}

/// The kernel's slab memory, KiB (`Slab` of `/proc/meminfo`).
pub(crate) fn slab_kib() -> io::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    status_field_kib(&meminfo, "Slab:")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Slab in meminfo"))
}

/// The slab caches a socket is made of: the protocol's socket (`TCP`,
/// `UDP` for QUIC), its inode and its open file.
pub(crate) const SOCKET_CACHES: [&str; 4] = ["TCP", "UDP", "sock_inode_cache", "filp"];

/// Bytes held by the slab caches `names`, from `/proc/slabinfo`
/// (`active_objs × objsize`; root only).
pub(crate) fn slab_caches_bytes(names: &[&str]) -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo")?;
    Ok(parse_slabinfo(&text, names))
}

fn parse_slabinfo(text: &str, names: &[&str]) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            if !names.contains(&name) {
                return None;
            }
            let active: u64 = words.next()?.parse().ok()?;
            let _total = words.next()?;
            let size: u64 = words.next()?.parse().ok()?;
            Some(active * size)
        })
        .sum()
}

/// The soft open-file limit of this process (children inherit it).
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut words = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([words.next()??, words.next()??, words.next()??])
}

/// A `Name:   value [kB]` field as a number.
fn status_field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted after the
/// last `)`: state is field 3, utime field 14, stime field 15.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let status = "Name:\tmosquitto\nVmHWM:\t   12000 kB\nVmRSS:\t    9876 kB\nThreads:\t1\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(9876));
        assert_eq!(status_field_kib(status, "Threads:"), Some(1));
        assert_eq!(status_field_kib(status, "VmSwap:"), None);
        let meminfo = "MemTotal:       24000000 kB\nSlab:             123456 kB\n";
        assert_eq!(status_field_kib(meminfo, "Slab:"), Some(123_456));
    }

    #[test]
    fn slabinfo_sums_the_named_caches() {
        let text = "slabinfo - version: 2.1\n# name <active_objs> ...\nTCP 4004 4004 2368 13 8 : tunables 0 0 0 : slabdata 308 308 0\nsock_inode_cache 10 19 832 19 4 : tunables 0 0 0 : slabdata 1 1 0\ndentry 5 5 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n";
        assert_eq!(
            parse_slabinfo(text, &["TCP", "sock_inode_cache"]),
            4004 * 2368 + 10 * 832
        );
        assert_eq!(parse_slabinfo(text, &["UDP"]), 0);
        assert_eq!(parse_slabinfo("garbage\nTCP x y z", &["TCP"]), 0);
    }

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 3 0 12345 1000000 250 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(42));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(hwm_kib(pid).unwrap() >= rss_kib(pid).unwrap() / 2);
        assert!(threads(pid).unwrap() >= 1);
        assert!(open_fds(pid).unwrap() >= 3);
        cpu_ticks(pid).unwrap();
        assert!(slab_kib().unwrap() > 0);
        assert!(open_file_limit().unwrap_or(1) > 0);
        assert!(load_average().is_some());
    }
}
