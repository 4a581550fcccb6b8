//! Table definitions (the layout is documented in `docs/storage.md`).

use redb::TableDefinition;

/// Store-wide counters and the format version, by name.
pub(crate) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
/// Encoded [`StreamKey`](super::StreamKey) -> stream id.
pub(crate) const STREAM_IDS: TableDefinition<'static, &[u8], u64> =
    TableDefinition::new("stream_ids");
/// Stream id -> encoded `StreamMeta`.
pub(crate) const STREAMS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("streams");
/// (stream id, seq) -> encoded message.
pub(crate) const MESSAGES: TableDefinition<'static, (u64, u64), &[u8]> =
    TableDefinition::new("messages");
/// (expires_at_ms, stream id, seq) -> (): the sweep index of `messages`.
pub(crate) const MESSAGE_EXPIRY: TableDefinition<'static, (u64, u64, u64), ()> =
    TableDefinition::new("message_expiry");
/// (stream id, device id) -> highest acked seq.
pub(crate) const POSITIONS: TableDefinition<'static, (u64, &str), u64> =
    TableDefinition::new("positions");
/// scope(app, biz) ++ alias -> (): known aliases.
pub(crate) const ALIASES: TableDefinition<'static, &[u8], ()> = TableDefinition::new("aliases");
/// scope(app, biz, alias) ++ tag -> (): tags of an alias.
pub(crate) const ALIAS_TAGS: TableDefinition<'static, &[u8], ()> =
    TableDefinition::new("alias_tags");
/// scope(app, biz, tag) ++ alias -> (): members of a tag.
pub(crate) const TAG_MEMBERS: TableDefinition<'static, &[u8], ()> =
    TableDefinition::new("tag_members");
/// scope(app, biz, alias, idempotency key) -> encoded outcome.
pub(crate) const UPLINKS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("uplinks");
/// (expires_at_ms, `uplinks` key) -> (): the sweep index of `uplinks`.
pub(crate) const UPLINK_EXPIRY: TableDefinition<'static, (u64, &[u8]), ()> =
    TableDefinition::new("uplink_expiry");

/// `meta` key: the store format version.
pub(crate) const META_FORMAT: &str = "format";
/// `meta` key: the next stream id to assign.
pub(crate) const META_NEXT_STREAM_ID: &str = "next_stream_id";
/// `meta` key: the epoch of this store's log (random, nonzero, written
/// once; a new file is a new log).
pub(crate) const META_EPOCH: &str = "epoch";
/// `meta` key: every message id below this has been handed out.
pub(crate) const META_NEXT_MESSAGE_ID: &str = "next_message_id";

/// Store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u64 = 1;
