//! An index of connections by a key's keyed hash, for the registry's
//! lookups by token, device and alias stream.
//!
//! The index stores no copy of its keys: a key (a token, an app and device
//! id, an app, business and alias) is hashed with the registry's random
//! keys, and the ids under a hash are those of the connections whose key
//! hashed to it. Callers check each candidate's key on its registry entry,
//! so a collision costs a comparison, never a wrong answer; with SipHash's
//! random keys a client cannot choose ids that collide. A key with one id
//! (the common case) takes 16 bytes, its hash and the id.
//!
//! Per idle logged-in connection this saved the key copies (three strings
//! of the stream key, two of the device key, the token) and a one-id `Vec`
//! per key, and shrank each index's slots from 32-96 bytes to 16.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

use super::registry::ConnId;

/// Connection ids by the keyed hash of their key: a table of
/// `(hash, id)` pairs, 16 bytes each; a hash with several ids (a stream
/// several connections are logged in to) keeps them in `many`, so that
/// many ids under one hash never crowd the table's probing.
#[derive(Debug, Default)]
pub(crate) struct ConnIndex {
    table: HashTable<(u64, ConnId)>,
    many: HashMap<u64, Vec<ConnId>>,
}

/// In the table, in place of an id: the ids are in `many`. Connection ids
/// count up from 1 and never reach it.
const MANY: ConnId = ConnId::MAX;

/// The random keys of a registry's hashes.
#[derive(Debug, Default)]
pub(crate) struct IndexKeys(RandomState);

impl IndexKeys {
    /// The hash of `key` under these keys.
    pub(crate) fn hash(&self, key: impl Hash) -> u64 {
        self.0.hash_one(key)
    }
}

impl ConnIndex {
    /// Adds `id` under `hash` (once).
    pub(crate) fn add(&mut self, hash: u64, id: ConnId) {
        let Some(entry) = self.table.find_mut(hash, |e| e.0 == hash) else {
            self.table.insert_unique(hash, (hash, id), |e| e.0);
            return;
        };
        match entry.1 {
            one if one == id => {}
            MANY => {
                let ids = self.many.entry(hash).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            one => {
                self.many.insert(hash, vec![one, id]);
                entry.1 = MANY;
            }
        }
    }

    /// Removes `id` from under `hash`.
    pub(crate) fn remove(&mut self, hash: u64, id: ConnId) {
        let Ok(mut entry) = self.table.find_entry(hash, |e| e.0 == hash) else {
            return;
        };
        match entry.get().1 {
            MANY => {
                let Some(ids) = self.many.get_mut(&hash) else {
                    return;
                };
                ids.retain(|x| *x != id);
                if let [last] = ids.as_slice() {
                    entry.get_mut().1 = *last;
                    self.many.remove(&hash);
                }
            }
            one if one == id => {
                entry.remove();
            }
            _ => {}
        }
        // A table that emptied out gives its memory back (a busy one keeps
        // its slots).
        if self.table.is_empty() && self.table.capacity() != 0 {
            self.table = HashTable::new();
        }
    }

    /// The ids under `hash`: candidates, whose keys the caller checks.
    pub(crate) fn get(&self, hash: u64) -> impl Iterator<Item = ConnId> + '_ {
        let (one, many) = match self.table.find(hash, |e| e.0 == hash) {
            Some(&(_, MANY)) => (None, self.many.get(&hash).map_or(&[][..], Vec::as_slice)),
            Some(&(_, one)) => (Some(one), &[][..]),
            None => (None, &[][..]),
        };
        one.into_iter().chain(many.iter().copied())
    }

    /// Hashes held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(index: &ConnIndex, hash: u64) -> Vec<ConnId> {
        index.get(hash).collect()
    }

    #[test]
    fn ids_are_added_once_and_the_key_goes_with_the_last() {
        let mut index = ConnIndex::default();
        index.add(7, 1);
        index.add(7, 1);
        assert_eq!(ids(&index, 7), [1]);
        index.add(7, 2);
        index.add(7, 3);
        index.add(7, 2);
        assert_eq!(ids(&index, 7), [1, 2, 3]);
        index.remove(7, 2);
        assert_eq!(ids(&index, 7), [1, 3]);
        index.remove(7, 1);
        assert_eq!(ids(&index, 7), [3]);
        index.remove(7, 9);
        assert_eq!(ids(&index, 7), [3], "an unknown id changes nothing");
        index.remove(7, 3);
        assert_eq!(ids(&index, 7), Vec::<ConnId>::new());
        assert_eq!(index.len(), 0, "nothing is kept");
        assert!(index.many.is_empty());
        // Two hashes side by side.
        index.add(1, 10);
        index.add(2, 20);
        index.add(2, 21);
        assert_eq!((ids(&index, 1), ids(&index, 2)), (vec![10], vec![20, 21]));
        index.remove(2, 20);
        assert_eq!((ids(&index, 1), ids(&index, 2)), (vec![10], vec![21]));
        assert!(index.many.is_empty(), "back to one id in the table");
        index.remove(8, 1);
        assert_eq!(index.len(), 2, "an unknown hash changes nothing");
        index.remove(1, 10);
        index.remove(2, 21);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn keys_hash_apart_and_the_same_key_hashes_alike() {
        let keys = IndexKeys::default();
        assert_eq!(keys.hash(("a", "b", "c")), keys.hash(("a", "b", "c")));
        // A separator between the parts: moving a byte across changes it.
        assert_ne!(keys.hash(("ab", "c")), keys.hash(("a", "bc")));
        // Two registries hash with different keys.
        let other = IndexKeys::default();
        assert_ne!(keys.hash("token"), other.hash("token"));
    }
}
