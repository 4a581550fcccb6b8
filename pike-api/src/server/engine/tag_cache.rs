//! The embedded engine's memory of tag members: a push to a tag reads the
//! tag's aliases from the store once, then from memory until a binding of
//! that tag changes.
//!
//! One node is the only writer of its store, so every change of a tag goes
//! through [`TagCache::changed`] (called after the store answered an update
//! of the tag). A read that raced an update is not kept: every update bumps
//! a generation, and a read stores what it found only if no update ended
//! while it was reading ([`TagCache::keep`]).
//!
//! Bounded: at most [`MAX_CACHED_ALIASES`] aliases over all tags, and a tag
//! with more than [`MAX_ALIASES_PER_TAG`] is never kept (its pushes read
//! the store each time). When a new tag would not fit, the cache forgets
//! every tag and starts over (pushes then read the store again once per
//! tag).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most aliases kept over all tags (about 10 MB with short aliases).
pub(crate) const MAX_CACHED_ALIASES: usize = 262_144;

/// Most aliases of one tag kept; larger tags are read from the store at
/// every push.
pub(crate) const MAX_ALIASES_PER_TAG: usize = 65_536;

/// The members of one tag as last read.
#[derive(Debug)]
struct Members {
    aliases: Arc<[String]>,
    /// The read asked for at most this many: fewer means the list is
    /// complete.
    limit: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped at the end of every update.
    generation: u64,
    tags: HashMap<String, Members>,
    /// Aliases held over all tags.
    held: usize,
}

/// What [`TagCache::get`] found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The first `limit` members, from memory.
    Hit(Vec<String>),
    /// Not known: read the store, then [`TagCache::keep`] with this
    /// generation.
    Miss {
        /// The generation before the read.
        generation: u64,
    },
}

/// Tag members by `app`, `biz` and tag (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TagCache {
    inner: Mutex<Inner>,
}

/// The map key of a tag: the three ids, each length-prefixed (ids may hold
/// any character).
fn key(app: &str, biz: &str, tag: &str) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(app.len() + biz.len() + tag.len() + 30);
    for part in [app, biz, tag] {
        // Writing to a String cannot fail.
        let _ = write!(key, "{}:{part}", part.len());
    }
    key
}

impl TagCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first `limit` aliases bound to the tag, if memory knows them.
    pub(crate) fn get(&self, app: &str, biz: &str, tag: &str, limit: usize) -> Lookup {
        let inner = self.lock();
        if let Some(members) = inner.tags.get(&key(app, biz, tag)) {
            let complete = members.aliases.len() < members.limit;
            if complete || limit <= members.aliases.len() {
                let n = limit.min(members.aliases.len());
                return Lookup::Hit(members.aliases[..n].to_vec());
            }
        }
        Lookup::Miss {
            generation: inner.generation,
        }
    }

    /// Keeps what a store read of at most `limit` aliases found, unless an
    /// update ended since `generation` or it is too large.
    pub(crate) fn keep(
        &self,
        app: &str,
        biz: &str,
        tag: &str,
        limit: usize,
        aliases: &[String],
        generation: u64,
    ) {
        if aliases.len() > MAX_ALIASES_PER_TAG {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let key = key(app, biz, tag);
        if let Some(old) = inner.tags.remove(&key) {
            inner.held -= old.aliases.len();
        }
        if inner.held + aliases.len() > MAX_CACHED_ALIASES {
            inner.tags.clear();
            inner.held = 0;
        }
        inner.held += aliases.len();
        inner.tags.insert(
            key,
            Members {
                aliases: aliases.into(),
                limit,
            },
        );
    }

    /// The bindings of `tags` changed (the store answered an update, or
    /// failed one that may have been applied): forget them.
    pub(crate) fn changed<'a>(
        &self,
        app: &str,
        biz: &str,
        tags: impl IntoIterator<Item = &'a String>,
    ) {
        let mut inner = self.lock();
        inner.generation += 1;
        for tag in tags {
            if let Some(old) = inner.tags.remove(&key(app, biz, tag)) {
                inner.held -= old.aliases.len();
            }
        }
    }

    /// Aliases held over all tags.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    fn miss(cache: &TagCache, tag: &str, limit: usize) -> u64 {
        match cache.get("app", "biz", tag, limit) {
            Lookup::Miss { generation } => generation,
            Lookup::Hit(found) => panic!("{tag}: a hit {found:?}"),
        }
    }

    fn hit(cache: &TagCache, tag: &str, limit: usize) -> Vec<String> {
        match cache.get("app", "biz", tag, limit) {
            Lookup::Hit(found) => found,
            Lookup::Miss { .. } => panic!("{tag}: a miss"),
        }
    }

    #[test]
    fn a_read_is_kept_until_its_tag_changes() {
        let cache = TagCache::default();
        let generation = miss(&cache, "t", 11);
        cache.keep("app", "biz", "t", 11, &names(3), generation);
        assert_eq!(hit(&cache, "t", 11), names(3));
        // A complete list answers any limit.
        assert_eq!(hit(&cache, "t", 2), names(2));
        assert_eq!(hit(&cache, "t", 1000), names(3));
        // Another tag, or the same name in another business, is not it.
        miss(&cache, "u", 11);
        assert!(matches!(
            cache.get("app", "other", "t", 11),
            Lookup::Miss { .. }
        ));
        cache.changed("app", "biz", &["t".to_owned()]);
        miss(&cache, "t", 11);
        assert_eq!(cache.held(), 0);
    }

    #[test]
    fn a_truncated_read_answers_only_smaller_limits() {
        let cache = TagCache::default();
        let generation = miss(&cache, "t", 3);
        // The read was cut at its limit: more may exist.
        cache.keep("app", "biz", "t", 3, &names(3), generation);
        assert_eq!(hit(&cache, "t", 3), names(3));
        assert_eq!(hit(&cache, "t", 2), names(2));
        miss(&cache, "t", 4);
    }

    #[test]
    fn a_read_that_raced_an_update_is_not_kept() {
        let cache = TagCache::default();
        let generation = miss(&cache, "t", 11);
        // An update of any tag ended while the read was on its way.
        cache.changed("app", "biz", &["other".to_owned()]);
        cache.keep("app", "biz", "t", 11, &names(3), generation);
        let generation = miss(&cache, "t", 11);
        cache.keep("app", "biz", "t", 11, &names(3), generation);
        hit(&cache, "t", 11);
    }

    #[test]
    fn the_bounds_hold() {
        let cache = TagCache::default();
        let generation = miss(&cache, "huge", usize::MAX);
        cache.keep(
            "app",
            "biz",
            "huge",
            usize::MAX,
            &names(MAX_ALIASES_PER_TAG + 1),
            generation,
        );
        miss(&cache, "huge", usize::MAX);
        let per_tag = MAX_ALIASES_PER_TAG;
        let fit = MAX_CACHED_ALIASES / per_tag;
        for i in 0..fit {
            let tag = format!("t{i}");
            let generation = miss(&cache, &tag, usize::MAX);
            cache.keep("app", "biz", &tag, usize::MAX, &names(per_tag), generation);
        }
        assert_eq!(cache.held(), fit * per_tag);
        hit(&cache, "t0", usize::MAX);
        // One more does not fit: everything is forgotten, the new one kept.
        let generation = miss(&cache, "last", usize::MAX);
        cache.keep(
            "app",
            "biz",
            "last",
            usize::MAX,
            &names(per_tag),
            generation,
        );
        assert!(cache.held() <= MAX_CACHED_ALIASES);
        assert_eq!(cache.held(), per_tag);
        miss(&cache, "t0", usize::MAX);
        hit(&cache, "last", usize::MAX);
    }

    #[test]
    fn keys_of_different_ids_differ() {
        assert_ne!(key("a:b", "c", "d"), key("a", "b:c", "d"));
        assert_ne!(key("ab", "", "c"), key("a", "b", "c"));
    }
}
