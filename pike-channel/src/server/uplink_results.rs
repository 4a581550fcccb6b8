//! The results of a login's recently acked uplink messages, kept to answer
//! a resend with the same result instead of delivering it again.

use std::collections::VecDeque;

use proto::tunnel::ErrorCode;

/// The newest results of one login by sequence number, at most the
/// configured `uplink_dedup_memory` of them.
///
/// One sorted ring of 32-byte entries (a failure's text boxed beside it;
/// a success has none): 8 KiB for the default 256 results by size
/// arithmetic, where a `BTreeMap` of `(ErrorCode, String)` came to about
/// three times that by the same estimate (not measured apart). It
/// fills at the rate of the login's uplink and stays at its bound.
#[derive(Debug, Default)]
pub(super) struct UplinkResults {
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    code: ErrorCode,
    /// The result's text; `None` when empty.
    message: Option<Box<str>>,
}

impl UplinkResults {
    /// Remembers the result of `seq`, forgetting the oldest (lowest
    /// sequence) beyond `memory` results.
    pub(super) fn insert(&mut self, seq: u64, code: ErrorCode, message: String, memory: usize) {
        let entry = Entry {
            seq,
            code,
            message: (!message.is_empty()).then(|| message.into_boxed_str()),
        };
        let newest = self.entries.back().is_none_or(|last| last.seq < seq);
        if newest {
            // Make room first: the ring never grows past its bound.
            while self.entries.len() >= memory.max(1) {
                self.entries.pop_front();
            }
            self.entries.push_back(entry);
            return;
        }
        match self.entries.binary_search_by_key(&seq, |e| e.seq) {
            Ok(i) => self.entries[i] = entry,
            Err(i) => {
                self.entries.insert(i, entry);
                while self.entries.len() > memory.max(1) {
                    self.entries.pop_front();
                }
            }
        }
    }

    /// The remembered result of `seq`.
    pub(super) fn get(&self, seq: u64) -> Option<(ErrorCode, String)> {
        let i = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        let entry = &self.entries[i];
        Some((
            entry.code,
            entry.message.as_deref().unwrap_or_default().to_owned(),
        ))
    }

    /// Results remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_results_are_kept_up_to_the_bound() {
        let mut results = UplinkResults::default();
        for seq in 1..=300 {
            results.insert(seq, ErrorCode::Unspecified, String::new(), 256);
        }
        assert_eq!(results.len(), 256);
        assert_eq!(results.get(44), None, "the oldest are forgotten");
        assert_eq!(
            results.get(45),
            Some((ErrorCode::Unspecified, String::new()))
        );
        assert_eq!(
            results.get(300),
            Some((ErrorCode::Unspecified, String::new()))
        );
        assert!(
            results.entries.capacity() <= 256,
            "the ring stays at its bound: {}",
            results.entries.capacity()
        );
    }

    #[test]
    fn a_failure_keeps_its_text_and_out_of_order_results_are_sorted_in() {
        let mut results = UplinkResults::default();
        results.insert(5, ErrorCode::Unspecified, String::new(), 4);
        results.insert(2, ErrorCode::BackendUnavailable, "refused: 422".into(), 4);
        results.insert(9, ErrorCode::Unspecified, String::new(), 4);
        results.insert(7, ErrorCode::RateLimited, "later".into(), 4);
        assert_eq!(
            results.get(2),
            Some((ErrorCode::BackendUnavailable, "refused: 422".into()))
        );
        assert_eq!(
            results.get(7),
            Some((ErrorCode::RateLimited, "later".into()))
        );
        // A fifth result pushes out the lowest sequence, also when it is
        // sorted in rather than appended.
        results.insert(6, ErrorCode::Unspecified, String::new(), 4);
        assert_eq!(results.get(2), None);
        assert_eq!(results.len(), 4);
        let seqs: Vec<u64> = results.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [5, 6, 7, 9]);
        // The same sequence again replaces its result.
        results.insert(9, ErrorCode::Internal, "x".into(), 4);
        assert_eq!(results.get(9), Some((ErrorCode::Internal, "x".into())));
        assert_eq!(results.len(), 4);
    }
}
