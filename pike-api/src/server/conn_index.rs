//! An index of connections by a key's keyed hash, for the registry's
//! lookups by token, device and alias stream.
//!
//! The index stores no copy of its keys: a key (a token, an app and device
//! id, an app, business and alias) is hashed with the registry's random
//! keys, and the ids under a hash are those of the connections whose key
//! hashed to it. Callers check each candidate's key on its registry entry,
//! so a collision costs a comparison, never a wrong answer; with SipHash's
//! random keys a client cannot choose ids that collide. One id per key is
//! the common case and takes no allocation.
//!
//! Per idle logged-in connection this saved the key copies (three strings
//! of the stream key, two of the device key, the token) and the `Vec` of
//! one id of each map, and shrank each map's slots to 32 bytes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use super::registry::ConnId;

/// Connection ids by the keyed hash of their key.
#[derive(Debug, Default)]
pub(crate) struct ConnIndex {
    map: HashMap<u64, ConnIds>,
}

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
        match self.map.get_mut(&hash) {
            Some(ids) => ids.add(id),
            None => {
                self.map.insert(hash, ConnIds::One(id));
            }
        }
    }

    /// Removes `id` from under `hash`; the key goes with its last id.
    pub(crate) fn remove(&mut self, hash: u64, id: ConnId) {
        if let Some(ids) = self.map.get_mut(&hash)
            && ids.remove(id)
        {
            self.map.remove(&hash);
        }
    }

    /// The ids under `hash`: candidates, whose keys the caller checks.
    pub(crate) fn get(&self, hash: u64) -> impl Iterator<Item = ConnId> + '_ {
        self.map.get(&hash).into_iter().flat_map(ConnIds::iter)
    }

    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The ids under one hash: one, inline, is the common case.
#[derive(Clone, Debug)]
enum ConnIds {
    One(ConnId),
    Many(Vec<ConnId>),
}

impl ConnIds {
    fn add(&mut self, id: ConnId) {
        match self {
            Self::One(one) if *one == id => {}
            Self::One(one) => *self = Self::Many(vec![*one, id]),
            Self::Many(ids) => {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }

    /// Removes `id`; whether none is left.
    fn remove(&mut self, id: ConnId) -> bool {
        match self {
            Self::One(one) => *one == id,
            Self::Many(ids) => {
                ids.retain(|x| *x != id);
                match ids.as_slice() {
                    [] => true,
                    [last] => {
                        *self = Self::One(*last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = ConnId> + '_ {
        let (one, many) = match self {
            Self::One(id) => (Some(*id), &[][..]),
            Self::Many(ids) => (None, ids.as_slice()),
        };
        one.into_iter().chain(many.iter().copied())
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
        assert_eq!(index.len(), 0, "no empty key is kept");
        index.remove(8, 1);
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
