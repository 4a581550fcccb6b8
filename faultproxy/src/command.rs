//! The line-oriented control language of the `faultproxy` binary, and the
//! duration and size syntax its flags share.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::faults::{Action, Direction};

/// Longest control line accepted, in bytes.
pub const MAX_LINE: usize = 256;

/// Parses one control line into an [`Action`].
///
/// ```text
/// latency <dir> <duration> [<jitter>]     latency up 50ms 10ms
/// bandwidth <dir> <size>|off               bandwidth down 64KiB
/// slice <dir> <bytes>|off                  slice both 7
/// drop <dir> <rate>                        drop up 0.1      (UDP)
/// blackhole <dir> on|off                   blackhole both on
/// refuse on|off
/// halfclose <dir>
/// reset
/// heal
/// ```
///
/// `<dir>` is `up` (client → upstream), `down` or `both`; durations are a
/// number with `us`, `ms`, `s` or `m`; sizes a number with an optional `B`,
/// `KiB`, `MiB`, `KB` or `MB`. The error says what is wrong.
pub fn parse_action(line: &str) -> Result<Action, String> {
    if line.len() > MAX_LINE {
        return Err(format!("line longer than {MAX_LINE} bytes"));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let arg = |i: usize| -> Result<&str, String> {
        words
            .get(i)
            .copied()
            .ok_or_else(|| format!("`{}` needs more arguments", words[0]))
    };
    let Some(&verb) = words.first() else {
        return Err("empty line".into());
    };
    let action = match verb {
        "latency" => Action::Latency {
            dir: parse_direction(arg(1)?)?,
            latency: parse_duration(arg(2)?)?,
            jitter: words
                .get(3)
                .map_or(Ok(Duration::ZERO), |w| parse_duration(w))?,
        },
        "bandwidth" => Action::Bandwidth {
            dir: parse_direction(arg(1)?)?,
            bytes_per_sec: off_or(arg(2)?, parse_size)?,
        },
        "slice" => Action::Slice {
            dir: parse_direction(arg(1)?)?,
            max: off_or(arg(2)?, |w| {
                parse_size(w).and_then(|n| {
                    usize::try_from(n)
                        .ok()
                        .and_then(NonZeroUsize::new)
                        .ok_or_else(|| format!("bad slice `{w}`"))
                })
            })?,
        },
        "drop" => Action::DropRate {
            dir: parse_direction(arg(1)?)?,
            rate: arg(2)?
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| "drop rate must be in 0..=1".to_string())?,
        },
        "blackhole" => Action::Blackhole {
            dir: parse_direction(arg(1)?)?,
            on: parse_switch(arg(2)?)?,
        },
        "refuse" => Action::Refuse(parse_switch(arg(1)?)?),
        "halfclose" => Action::HalfClose(parse_direction(arg(1)?)?),
        "reset" => Action::Reset,
        "heal" => Action::Heal,
        other => return Err(format!("unknown command `{other}`")),
    };
    Ok(action)
}

/// `off` or a value.
fn off_or<T>(word: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if word == "off" {
        Ok(None)
    } else {
        parse(word).map(Some)
    }
}

/// `up`, `down` or `both`.
pub fn parse_direction(word: &str) -> Result<Direction, String> {
    match word {
        "up" => Ok(Direction::Up),
        "down" => Ok(Direction::Down),
        "both" => Ok(Direction::Both),
        other => Err(format!("direction `{other}` is not up, down or both")),
    }
}

/// `on` or `off`.
fn parse_switch(word: &str) -> Result<bool, String> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("`{other}` is not on or off")),
    }
}

/// Splits `12ms` into (12, "ms").
fn split_unit(word: &str) -> Result<(u64, &str), String> {
    let end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let number = word[..end]
        .parse::<u64>()
        .map_err(|_| format!("`{word}` does not start with a number"))?;
    Ok((number, &word[end..]))
}

/// A duration: `250us`, `50ms`, `2s`, `1m`.
pub fn parse_duration(word: &str) -> Result<Duration, String> {
    let (n, unit) = split_unit(word)?;
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("`{word}`: the unit must be us, ms, s or m")),
    }
}

/// A byte count: `100`, `100B`, `64KiB`, `1MiB`, `64KB`, `1MB`.
pub fn parse_size(word: &str) -> Result<u64, String> {
    let (n, unit) = split_unit(word)?;
    let factor = match unit {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "KB" => 1000,
        "MB" => 1_000_000,
        _ => return Err(format!("`{word}`: the unit must be B, KiB, MiB, KB or MB")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{word}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        assert_eq!(
            parse_action("latency up 50ms 10ms"),
            Ok(Action::Latency {
                dir: Direction::Up,
                latency: Duration::from_millis(50),
                jitter: Duration::from_millis(10),
            })
        );
        assert_eq!(
            parse_action("bandwidth both 64KiB"),
            Ok(Action::Bandwidth {
                dir: Direction::Both,
                bytes_per_sec: Some(65_536),
            })
        );
        assert_eq!(
            parse_action("slice down off"),
            Ok(Action::Slice {
                dir: Direction::Down,
                max: None,
            })
        );
        assert_eq!(
            parse_action("blackhole both on"),
            Ok(Action::Blackhole {
                dir: Direction::Both,
                on: true,
            })
        );
        assert_eq!(parse_action("refuse off"), Ok(Action::Refuse(false)));
        assert_eq!(
            parse_action("halfclose down"),
            Ok(Action::HalfClose(Direction::Down))
        );
        assert_eq!(parse_action(" reset "), Ok(Action::Reset));
        assert_eq!(parse_action("heal"), Ok(Action::Heal));
    }

    #[test]
    fn refuses_bad_lines() {
        for line in [
            "",
            "latency",
            "latency sideways 5ms",
            "latency up 5",
            "slice up 0",
            "drop up 1.5",
            "blackhole up maybe",
            "bandwidth up 99999999999999999999",
            "bandwidth up 10GiB",
            "explode",
        ] {
            assert!(parse_action(line).is_err(), "{line:?}");
        }
        assert!(parse_action(&"reset ".repeat(100)).is_err());
    }
}
