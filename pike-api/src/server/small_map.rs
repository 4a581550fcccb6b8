//! [`SmallMap`]: a map for the few keys a connection holds (its logins).

use std::collections::BTreeMap;

/// Keys at most kept in a sorted `Vec` before the map becomes a `BTreeMap`
/// (inserting into a sorted `Vec` moves its tail).
const FEW: usize = 8;

/// A map sized for one or a few entries: a sorted, exactly sized `Vec`
/// (one login costs one entry, not a hash table's four buckets or a B-tree
/// leaf's eleven slots), a `BTreeMap` past [`FEW`] entries.
#[derive(Debug)]
pub(crate) enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    Many(BTreeMap<K, V>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Ord + Copy, V> SmallMap<K, V> {
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match self {
            Self::Few(v) => v
                .binary_search_by_key(key, |(k, _)| *k)
                .ok()
                .map(|i| &v[i].1),
            Self::Many(m) => m.get(key),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            Self::Few(v) => match v.binary_search_by_key(key, |(k, _)| *k) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Self::Many(m) => m.get_mut(key),
        }
    }

    /// Inserts or replaces the value of `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self {
            Self::Few(v) => match v.binary_search_by_key(&key, |(k, _)| *k) {
                Ok(i) => v[i].1 = value,
                Err(_) if v.len() >= FEW => {
                    let mut map: BTreeMap<K, V> = std::mem::take(v).into_iter().collect();
                    map.insert(key, value);
                    *self = Self::Many(map);
                }
                Err(i) => {
                    v.reserve_exact(1);
                    v.insert(i, (key, value));
                }
            },
            Self::Many(m) => {
                m.insert(key, value);
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Self::Few(v) => {
                let i = v.binary_search_by_key(key, |(k, _)| *k).ok()?;
                let (_, value) = v.remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(value)
            }
            Self::Many(m) => m.remove(key),
        }
    }

    /// Calls `each` with every value, in key order.
    pub(crate) fn for_each_value_mut(&mut self, mut each: impl FnMut(&mut V)) {
        match self {
            Self::Few(v) => v.iter_mut().for_each(|(_, value)| each(value)),
            Self::Many(m) => m.values_mut().for_each(each),
        }
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match self {
            Self::Few(v) => Iter::Few(v.iter()),
            Self::Many(m) => Iter::Many(m.iter()),
        }
    }
}

/// The entries of a [`SmallMap`] in key order.
pub(crate) enum Iter<'a, K, V> {
    Few(std::slice::Iter<'a, (K, V)>),
    Many(std::collections::btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(i) => i.next().map(|(k, v)| (k, v)),
            Self::Many(i) => i.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_across_the_switch_to_a_map() {
        let mut map = SmallMap::default();
        let keys = [5u32, 1, 9, 3, 7, 2, 8, 4, 6, 10, 0];
        for (n, key) in keys.iter().enumerate() {
            map.insert(*key, n);
            assert_eq!(matches!(map, SmallMap::Few(_)), n < FEW);
            let seen: Vec<u32> = map.iter().map(|(k, _)| *k).collect();
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            assert_eq!(seen, sorted);
            assert_eq!(seen.len(), n + 1);
        }
        map.insert(7, 70);
        assert_eq!(map.get(&7), Some(&70));
        assert_eq!(map.remove(&7), Some(70));
        assert_eq!(map.get(&7), None);
        *map.get_mut(&8).unwrap() = 80;
        assert_eq!(map.get(&8), Some(&80));
    }

    #[test]
    fn one_entry_is_exactly_sized_and_freed_when_removed() {
        let mut map = SmallMap::default();
        map.insert(1u32, [0u8; 100]);
        let SmallMap::Few(v) = &map else {
            panic!("one entry is few");
        };
        assert_eq!(v.capacity(), 1);
        assert!(map.remove(&1).is_some());
        let SmallMap::Few(v) = &map else {
            panic!("still few");
        };
        assert_eq!(v.capacity(), 0);
    }
}
