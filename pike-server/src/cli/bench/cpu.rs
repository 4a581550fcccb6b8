//! The generator's own CPU time (utime + stime from `/proc/self/stat`), so
//! a harness can tell a step the generator could not keep up with.

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux architecture this tool runs on; the kernel keeps it fixed for
/// the ABI whatever its internal tick rate).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) this process used so far; `None` where
/// `/proc/self/stat` is missing or unreadable.
pub(crate) fn process_cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&text).map(|ticks| ticks as f64 / USER_HZ)
}

/// utime + stime (fields 14 and 15 of stat(5)) of one stat line.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces or `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is the 12th word.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat =
            "4242 (pike bench) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 31 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        // A name with a parenthesis and spaces.
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_cpu_ticks(odd), Some(11));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_secs().is_some_and(|s| s >= 0.0));
        }
    }
}
