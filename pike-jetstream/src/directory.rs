//! Tags and known aliases in the KV bucket `PIKE_DIRECTORY` (one key per
//! fact, listed by a batched direct get over a key prefix, never by a
//! consumer):
//!
//! - `t.<app>.<biz>.<tag>.<alias>`: `alias` is bound to `tag` (value: the
//!   alias);
//! - `g.<app>.<biz>.<alias>.<tag>`: the same binding seen from the alias
//!   (value: the tag), for the alias's own tag list;
//! - `a.<app>.<biz>.<alias>`: the alias logged in once (value: the alias).
//!
//! Every id is a [`tok`] token; values keep the ids as given, so hashed
//! (long) tokens list correctly.

use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::direct_get::{self, MAX_BATCH};
use crate::error::{Error, Result};
use crate::keys::{DIRECTORY_BUCKET, MAX_ID_BYTES};
use crate::tok::tok;

/// Most keys one listing reads (the caller's `limit` is capped here too).
pub const MAX_LISTING: usize = 100_000;

fn check(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(Error::Invalid(format!(
            "{what} must be 1..={MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Cluster {
    /// Binds and unbinds tags of an alias; returns the alias's tags after
    /// (at most `limit`).
    pub async fn update_tags(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        bind: &[String],
        unbind: &[String],
        limit: usize,
    ) -> Result<Vec<String>> {
        self.ensure_ready()?;
        for id in [app, biz, alias] {
            check("an id", id)?;
        }
        let store = self.directory_kv();
        let deadline = Instant::now() + self.config().append_timeout;
        let (app_t, biz_t, alias_t) = (tok(app), tok(biz), tok(alias));
        for tag in bind {
            check("a tag", tag)?;
            let tag_t = tok(tag);
            let forward = format!("t.{app_t}.{biz_t}.{tag_t}.{alias_t}");
            let back = format!("g.{app_t}.{biz_t}.{alias_t}.{tag_t}");
            for (key, value) in [(forward, alias), (back, tag.as_str())] {
                tokio::time::timeout_at(deadline, store.put(&key, Bytes::from(value.to_owned())))
                    .await
                    .map_err(|_| Error::Unavailable("tags: timed out".into()))?
                    .map_err(|e| Error::from_nats("tags", &e))?;
            }
        }
        for tag in unbind {
            check("a tag", tag)?;
            let tag_t = tok(tag);
            let forward = format!("t.{app_t}.{biz_t}.{tag_t}.{alias_t}");
            let back = format!("g.{app_t}.{biz_t}.{alias_t}.{tag_t}");
            for key in [forward, back] {
                tokio::time::timeout_at(deadline, store.delete(&key))
                    .await
                    .map_err(|_| Error::Unavailable("tags: timed out".into()))?
                    .map_err(|e| Error::from_nats("tags", &e))?;
            }
        }
        self.list(&format!("g.{app_t}.{biz_t}.{alias_t}.*"), limit)
            .await
    }

    /// The aliases bound to `tag` (at most `limit`).
    pub async fn tag_members(
        &self,
        app: &str,
        biz: &str,
        tag: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.ensure_ready()?;
        self.list(
            &format!("t.{}.{}.{}.*", tok(app), tok(biz), tok(tag)),
            limit,
        )
        .await
    }

    /// Remembers that `alias` exists in `biz` (it logged in).
    pub async fn touch_alias(&self, app: &str, biz: &str, alias: &str) -> Result<()> {
        self.ensure_ready()?;
        for id in [app, biz, alias] {
            check("an id", id)?;
        }
        let key = format!("a.{}.{}.{}", tok(app), tok(biz), tok(alias));
        let store = self.directory_kv();
        // `create` fails on an existing key: one write per alias ever, not
        // per login.
        match tokio::time::timeout(
            self.config().request_timeout,
            store.create(&key, Bytes::from(alias.to_owned())),
        )
        .await
        {
            Err(_) => Err(Error::Unavailable("touch alias: timed out".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Ok(())
            }
            Ok(Err(e)) => Err(Error::from_nats("touch alias", &e)),
        }
    }

    /// The aliases that ever logged in to `biz` (at most `limit`).
    pub async fn aliases(&self, app: &str, biz: &str, limit: usize) -> Result<Vec<String>> {
        self.ensure_ready()?;
        self.list(&format!("a.{}.{}.*", tok(app), tok(biz)), limit)
            .await
    }

    /// The values of the live keys under `pattern` (deleted keys skipped),
    /// in stream order, at most `limit`.
    async fn list(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let limit = limit.min(MAX_LISTING);
        let stream = format!("KV_{DIRECTORY_BUCKET}");
        let subject = format!("$KV.{DIRECTORY_BUCKET}.{pattern}");
        let mut out = Vec::new();
        let mut from = 1;
        while out.len() < limit {
            let batch = direct_get::next_by_subject(
                self.client(),
                &stream,
                &subject,
                from,
                MAX_BATCH,
                self.config().request_timeout,
            )
            .await?;
            let Some(last) = batch.messages.last().map(|m| m.cursor) else {
                break;
            };
            for message in batch.messages {
                if is_tombstone(&message.headers) {
                    continue;
                }
                if let Ok(value) = String::from_utf8(message.payload.to_vec()) {
                    out.push(value);
                }
                if out.len() == limit {
                    break;
                }
            }
            if batch.pending == 0 {
                break;
            }
            from = last + 1;
        }
        Ok(out)
    }
}

/// A delete or purge marker of a KV key.
fn is_tombstone(headers: &HeaderMap) -> bool {
    headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}
