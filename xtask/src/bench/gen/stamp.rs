//! The stamp every generated payload starts with, and how a receiver sorts
//! what it reads.
//!
//! 20 bytes: the magic `PKb2`, the generator run's id (u32), the step
//! number (u32) and the message's *scheduled* send time in nanoseconds
//! since the generator's epoch (u64), all little endian. Only this process
//! reads it back, so its own monotonic clock is the only one compared; the
//! run id tells its messages from those of an earlier generator on the
//! same server (a rate search runs one generator per probe, and an
//! overloaded probe's backlog still arrives during the next one, with
//! scheduled times of another epoch). The rest of the payload is `.`
//! padding up to `--size`.

/// Bytes of a stamp (the smallest payload).
pub(crate) const STAMP_LEN: usize = 20;

const MAGIC: [u8; 4] = *b"PKb2";

/// Appends the stamp of message scheduled at `scheduled_ns` in `step` of
/// generator run `run`.
pub(crate) fn put(out: &mut Vec<u8>, run: u32, step: u32, scheduled_ns: u64) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&run.to_le_bytes());
    out.extend_from_slice(&step.to_le_bytes());
    out.extend_from_slice(&scheduled_ns.to_le_bytes());
}

/// Reads a stamp back: `(run, step, scheduled_ns)`.
pub(crate) fn read(payload: &[u8]) -> Option<(u32, u32, u64)> {
    let head = payload.get(..STAMP_LEN)?;
    if head[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&head[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&head[12..20]);
    Some((word(4), word(8), u64::from_le_bytes(ns)))
}

/// A run id for this process: the clock's nanoseconds, so two generators
/// started one after the other differ.
pub(crate) fn run_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)
        })
}

/// The measured window of the current step.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) struct Window {
    /// This generator's run id (stamps of other runs are stale).
    pub(crate) run: u32,
    /// The step's number (stamps of other steps are stale).
    pub(crate) step: u32,
    /// Scheduled times in `start_ns..end_ns` are measured.
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
}

/// What a received payload is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Seen {
    /// Of the current step, scheduled inside the window: its latency (ns).
    Measured(u64),
    /// Of the current step but scheduled outside the window (warm-up).
    Outside,
    /// Of another step (late arrival).
    Stale,
    /// No stamp.
    Foreign,
}

impl Window {
    /// Sorts `payload`, received at `now_ns`.
    #[inline]
    pub(crate) fn classify(&self, payload: &[u8], now_ns: u64) -> Seen {
        match read(payload) {
            None => Seen::Foreign,
            Some((run, step, _)) if run != self.run || step != self.step => Seen::Stale,
            Some((_, _, at)) if at < self.start_ns || at >= self.end_ns => Seen::Outside,
            Some((_, _, at)) => Seen::Measured(now_ns.saturating_sub(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let mut out = Vec::new();
        put(&mut out, 9, 3, 0x0102_0304_0506_0708);
        assert_eq!(out.len(), STAMP_LEN);
        assert_eq!(&out[..4], b"PKb2");
        assert_eq!(&out[4..8], &[9, 0, 0, 0]);
        assert_eq!(&out[8..12], &[3, 0, 0, 0]);
        assert_eq!(out[12], 0x08, "little endian");
        out.extend_from_slice(b"....");
        assert_eq!(read(&out), Some((9, 3, 0x0102_0304_0506_0708)));
        assert_eq!(read(&out[..19]), None, "too short");
        assert_eq!(read(b"PKb1................"), None, "wrong magic");
    }

    #[test]
    fn classifies_by_step_and_window() {
        let window = Window {
            run: 7,
            step: 2,
            start_ns: 1_000,
            end_ns: 2_000,
        };
        let stamp = |step, at| {
            let mut out = Vec::new();
            put(&mut out, 7, step, at);
            out
        };
        // An earlier generator's message: same step, a time in the window.
        let mut other_run = Vec::new();
        put(&mut other_run, 6, 2, 1_500);
        assert_eq!(window.classify(&other_run, 1_600), Seen::Stale);
        assert_eq!(
            window.classify(&stamp(2, 1_000), 1_500),
            Seen::Measured(500)
        );
        assert_eq!(window.classify(&stamp(2, 1_999), 1_000), Seen::Measured(0));
        assert_eq!(window.classify(&stamp(2, 999), 5_000), Seen::Outside);
        assert_eq!(window.classify(&stamp(2, 2_000), 5_000), Seen::Outside);
        assert_eq!(window.classify(&stamp(1, 1_500), 5_000), Seen::Stale);
        assert_eq!(window.classify(b"hello", 5_000), Seen::Foreign);
    }
}
