//! Message ids of transient pushes: their own range, unique across the
//! nodes of a cluster and across a node's runs (`docs/receipts.md`,
//! "Transient message ids").
//!
//! ```text
//!  63  62  61 ............ 42  41 ........................... 0
//! | 0 | 1 |  node (20 bits)   |      sequence (42 bits)        |
//! ```
//!
//! - Bit 62 set, bit 63 clear: at or above [`TRANSIENT_ID_MIN`], where no
//!   store or engine hands out reliable ids (the cluster engine's are
//!   random below it, the embedded stores count from 1).
//! - **node**: [`transient_node_part`] of the node's cluster name
//!   ([`Router::node_name`](super::engine::Router::node_name)); 0 on a
//!   single node. Two nodes of a cluster never share an id unless their
//!   names fold to the same 20 bits (about one pair in a million).
//! - **sequence**: starts at the gateway's start time in unix milliseconds
//!   times 1,024 (modulo 2^42) and counts one per transient push, wrapping
//!   within its 42 bits (never into the node bits). A later run of the
//!   same node starts past the ids of an earlier one as long as that run
//!   averaged under 1,024 transient pushes per millisecond; ids repeat
//!   after 2^32 ms (about 49.7 days).

use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest transient message id (bit 62): reliable ids are below it.
pub const TRANSIENT_ID_MIN: u64 = 1 << 62;

/// Bits of a transient id that name the node.
pub const TRANSIENT_NODE_BITS: u32 = 20;

/// Bits of a transient id counted by the node.
const SEQUENCE_BITS: u32 = 62 - TRANSIENT_NODE_BITS;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const NODE_MASK: u64 = (1 << TRANSIENT_NODE_BITS) - 1;
/// Sequence numbers a run may use per millisecond of its life before a
/// later run's start can reach them.
const PER_MS: u64 = 1 << 10;

/// Whether `message_id` is in the transient range (bit 62 set, bit 63
/// clear).
pub fn is_transient_id(message_id: u64) -> bool {
    message_id >> 62 == 1
}

/// The node part of the transient ids of the cluster node named `node`
/// (`None`: a single node, 0): FNV-1a (64 bits) of the name, folded to
/// [`TRANSIENT_NODE_BITS`] bits. The same name gives the same part on
/// every node and every version.
pub fn transient_node_part(node: Option<&str>) -> u64 {
    let Some(name) = node else {
        return 0;
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut folded = 0;
    while hash != 0 {
        folded ^= hash & NODE_MASK;
        hash >>= TRANSIENT_NODE_BITS;
    }
    folded
}

/// Hands out a node's transient ids.
#[derive(Debug)]
pub(crate) struct TransientIds {
    /// Bit 62 and the node part.
    prefix: u64,
    /// The next sequence (only its low 42 bits are used).
    next: AtomicU64,
}

impl TransientIds {
    /// The ids of the node whose part is `node_part`, for a run started
    /// at `start_ms` (unix milliseconds).
    pub(crate) fn new(node_part: u64, start_ms: u64) -> Self {
        Self {
            prefix: TRANSIENT_ID_MIN | ((node_part & NODE_MASK) << SEQUENCE_BITS),
            next: AtomicU64::new(start_ms.wrapping_mul(PER_MS) & SEQUENCE_MASK),
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> u64 {
        self.prefix | (self.next.fetch_add(1, Ordering::Relaxed) & SEQUENCE_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transient_and_carry_the_node() {
        let node = transient_node_part(Some("gwa"));
        assert!(node <= NODE_MASK);
        assert_eq!(node, transient_node_part(Some("gwa")), "stable");
        let ids = TransientIds::new(node, 1_767_312_000_123);
        let (a, b) = (ids.next(), ids.next());
        assert_eq!(b, a + 1);
        for id in [a, b] {
            assert!(is_transient_id(id) && id >= TRANSIENT_ID_MIN);
            assert_eq!((id >> SEQUENCE_BITS) & NODE_MASK, node);
        }
        assert!(!is_transient_id(TRANSIENT_ID_MIN - 1));
        assert!(!is_transient_id(u64::MAX));
    }

    #[test]
    fn two_nodes_started_at_once_never_share_an_id() {
        // Before node parts, both would have handed out the same ids.
        let start = 1_767_312_000_000;
        let names = [
            "gwa", "gwb", "pike-1", "pike-2", "node-1", "node-2", "node-3",
        ];
        let parts: Vec<u64> = names.iter().map(|n| transient_node_part(Some(n))).collect();
        let mut seen = std::collections::HashSet::new();
        for part in &parts {
            let ids = TransientIds::new(*part, start);
            for _ in 0..70_000 {
                assert!(seen.insert(ids.next()), "ids of two nodes collided");
            }
        }
        // A single node's part is 0.
        assert_eq!(transient_node_part(None), 0);
    }

    #[test]
    fn the_sequence_wraps_within_its_bits() {
        let ids = TransientIds::new(NODE_MASK, 0);
        ids.next.store(SEQUENCE_MASK, Ordering::Relaxed);
        let last = ids.next();
        let first = ids.next();
        assert_eq!(last & SEQUENCE_MASK, SEQUENCE_MASK);
        assert_eq!(first & SEQUENCE_MASK, 0);
        for id in [last, first] {
            assert!(is_transient_id(id));
            assert_eq!((id >> SEQUENCE_BITS) & NODE_MASK, NODE_MASK);
        }
    }

    #[test]
    fn a_later_run_starts_past_an_earlier_one() {
        let earlier = TransientIds::new(5, 1_000_000);
        // 1,000 ms at the full rate.
        let mut last = 0;
        for _ in 0..1_000 * PER_MS {
            last = earlier.next();
        }
        let later = TransientIds::new(5, 1_001_001);
        assert!(later.next() > last);
    }
}
