//! The stamp at the start of every payload of a rate sweep: when the
//! message was *scheduled* (nanoseconds after the generator's epoch, on
//! its monotonic clock, so only the generator compares clocks), the
//! number of its step and the generator run's id (a rate search runs one
//! generator per probe on the same server, and an overloaded probe's
//! backlog still arrives during the next one, with scheduled times of
//! another epoch: only the run id tells them apart).
//!
//! Fixed width ASCII digits, so receivers read it with a few byte
//! comparisons and no allocation: 20 digits of nanoseconds, 4 digits of
//! step, 6 digits of run, then padding up to the payload size. ASCII, so
//! it travels as the HTTP API's UTF-8 `payload`.
//!
//! The padding is pseudo-random letters and digits, not a repeated byte:
//! the Pike tunnel compresses frames of 1 KiB and more (LZ4), and a batch
//! of `....` payloads would shrink to almost nothing on the wire, which
//! the MQTT and NATS peers never get to do. LZ4 finds no matches in
//! random text, so the gateway sends what the payload size says.

/// Digits of the scheduled time.
const NS_DIGITS: usize = 20;
/// Digits of the step number.
const STEP_DIGITS: usize = 4;
/// Digits of the run id.
const RUN_DIGITS: usize = 6;
/// Bytes of the stamp; payloads are at least this long.
pub(crate) const STAMP_LEN: usize = NS_DIGITS + STEP_DIGITS + RUN_DIGITS;
/// Run ids are below this.
pub(crate) const RUNS: u32 = 1_000_000;
/// The padding's characters (64, so six random bits pick one).
const PAD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// The largest step number a stamp holds.
pub(crate) const MAX_STEP: u32 = 9_999;

/// What a payload says about itself.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct SweepStamp {
    /// The generator run that sent it (below [`RUNS`]).
    pub(crate) run: u32,
    /// The step (1-based) the message belongs to.
    pub(crate) step: u32,
    /// When it was scheduled, nanoseconds after the generator's epoch.
    pub(crate) scheduled_ns: u64,
}

impl SweepStamp {
    /// The payload: the stamp padded with pseudo-random letters and
    /// digits (seeded by the stamp) to `size` bytes (just the stamp when
    /// `size` is smaller). Steps above [`MAX_STEP`] are clamped.
    pub(crate) fn encode(self, size: usize) -> String {
        let mut text = format!(
            "{:0ns$}{:0step$}{:0run$}",
            self.scheduled_ns,
            self.step.min(MAX_STEP),
            self.run % RUNS,
            ns = NS_DIGITS,
            step = STEP_DIGITS,
            run = RUN_DIGITS
        );
        let pad = size.saturating_sub(text.len());
        // xorshift64*: cheap, and never zero with a non-zero seed.
        let mut state = (self.scheduled_ns ^ (u64::from(self.step) << 48)) | 1;
        text.extend((0..pad).map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 58;
            char::from(PAD_ALPHABET[usize::try_from(r).unwrap_or(0)])
        }));
        text
    }

    /// Reads the stamp at the start of `payload`; `None` for a payload
    /// without one.
    pub(crate) fn decode(payload: &[u8]) -> Option<Self> {
        let head = payload.get(..STAMP_LEN)?;
        let (ns, rest) = head.split_at(NS_DIGITS);
        let (step, run) = rest.split_at(STEP_DIGITS);
        Some(Self {
            run: u32::try_from(digits(run)?).ok()?,
            scheduled_ns: digits(ns)?,
            step: u32::try_from(digits(step)?).ok()?,
        })
    }
}

/// A run id for this generator: from the clock, so two generators
/// started one after the other differ.
pub(crate) fn run_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_micros() % RUNS)
}

/// The value of a run of ASCII digits (`None` on anything else or on
/// overflow).
fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |value, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let stamp = SweepStamp {
            run: 42,
            step: 3,
            scheduled_ns: 12_345_678_901,
        };
        let payload = stamp.encode(64);
        assert_eq!(payload.len(), 64);
        assert!(payload.starts_with("000000000123456789010003000042"));
        // Padding: letters, digits, `-` and `_`, and not one repeated byte.
        let pad = &payload.as_bytes()[STAMP_LEN..];
        assert!(pad.iter().all(|b| PAD_ALPHABET.contains(b)));
        let distinct: std::collections::BTreeSet<u8> = pad.iter().copied().collect();
        assert!(distinct.len() > 10, "{payload}");
        // Deterministic for a stamp, different for another.
        assert_eq!(stamp.encode(64), payload);
        let other = SweepStamp {
            run: 42,
            step: 3,
            scheduled_ns: 12_345_678_902,
        };
        assert_ne!(other.encode(64)[STAMP_LEN..], payload[STAMP_LEN..]);
        assert_eq!(SweepStamp::decode(payload.as_bytes()), Some(stamp));
        // Too small a size keeps the stamp whole.
        let short = stamp.encode(8);
        assert_eq!(short.len(), STAMP_LEN);
        assert_eq!(SweepStamp::decode(short.as_bytes()), Some(stamp));
    }

    #[test]
    fn extremes() {
        let stamp = SweepStamp {
            run: RUNS - 1,
            step: MAX_STEP,
            scheduled_ns: u64::MAX,
        };
        assert_eq!(SweepStamp::decode(stamp.encode(0).as_bytes()), Some(stamp));
        let clamped = SweepStamp {
            run: 0,
            step: MAX_STEP + 5,
            scheduled_ns: 1,
        }
        .encode(0);
        assert_eq!(
            SweepStamp::decode(clamped.as_bytes()).map(|s| s.step),
            Some(MAX_STEP)
        );
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(SweepStamp::decode(b""), None);
        assert_eq!(
            SweepStamp::decode(b"pb1 42 1234567 ......................"),
            None
        );
        assert_eq!(SweepStamp::decode(b"00000000000000000001000100000"), None); // 29 bytes
        assert_eq!(SweepStamp::decode(b"0000000000000000000x0001000000"), None);
        assert_eq!(SweepStamp::decode(b"000000000000000000010001x00000"), None);
        // 20 nines overflow u64.
        assert_eq!(SweepStamp::decode(b"999999999999999999990001000000"), None);
        assert_eq!(SweepStamp::decode(&[0xff; 30]), None);
    }
}
