//! Who is connected: connections by id and token, logins by alias stream,
//! connections by device. Lookups for push routing and presence.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use pike_channel::StreamId;
use proto::tunnel::{ErrorCode, ReconnectAdvice};

use super::conn_index::{ConnIndex, IndexKeys};
use super::engine::LoginId;
use super::store::{StoredMessage, StreamKey};
use super::trace::{ClosedTraces, SharedTrace};

/// Gateway-local id of a connection.
pub(crate) type ConnId = u64;

/// What other tasks hand to one connection task, and the one wake-up for
/// all of it: reliable-push notifications, coalesced per stream (never
/// dropped, never blocking the pusher, bounded by the number of streams the
/// connection is logged in to), room wake-ups and the command queue.
///
/// Held by every connection for its whole life, so kept small (112 bytes,
/// a 128-byte allocation with its reference counts): the wake-up is a flag
/// and a waker rather than a `tokio::sync::Notify` (whose `Notified`
/// future also took ≈ 60 bytes of the connection's future), and the
/// pending notifications a vector (one stream is the common case).
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// The newest stored message per stream, at most one entry per stream
    /// the connection is logged in to.
    reliable: Mutex<Vec<(StreamKey, Arc<StoredMessage>)>>,
    commands: Mutex<Commands>,
    /// Commands the queue holds at most.
    command_capacity: u32,
    /// A room the connection joined released a batch.
    rooms_ready: AtomicBool,
    /// Something was handed over since the connection task last looked.
    woken: AtomicBool,
    /// The connection task, woken by [`wake`](Self::wake).
    waker: AtomicWaker,
}

/// A connection's command queue: unallocated while empty (an idle
/// connection holds no queue block, unlike a tokio channel).
#[derive(Debug, Default)]
struct Commands {
    queue: VecDeque<ConnCommand>,
    /// The connection task is gone: commands are refused.
    closed: bool,
}

impl ConnShared {
    /// Shared state for a connection whose command queue holds at most
    /// `command_capacity` commands.
    pub(crate) fn new(command_capacity: usize) -> Self {
        Self {
            reliable: Mutex::default(),
            commands: Mutex::default(),
            command_capacity: u32::try_from(command_capacity).unwrap_or(u32::MAX),
            rooms_ready: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Wakes the connection task (its [`poll_woken`](Self::poll_woken)
    /// answers `Ready` once for any number of wake-ups before it looks).
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// `Ready` when something was handed over since the last `Ready`;
    /// otherwise registers the task's waker.
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake between the swap and the registration found no waker.
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Queues a command; gives it back when the queue is full or the
    /// connection is gone. A [`ConnCommand::Close`] (or `Replace`) has one slot beyond the
    /// capacity, so that a full queue of transient messages cannot keep a
    /// connection from being closed (the queue holds at most
    /// `command_capacity + 1` commands).
    pub(crate) fn send(&self, command: ConnCommand) -> Result<(), ConnCommand> {
        {
            let mut commands = mutex(&self.commands);
            let capacity = self.command_capacity as usize + usize::from(command.is_close());
            if commands.closed || commands.queue.len() >= capacity {
                return Err(command);
            }
            commands.queue.push_back(command);
        }
        self.wake();
        Ok(())
    }

    /// The next command and how many are still queued after it. The queue
    /// keeps its memory while the connection is busy (freeing it at each
    /// drain cost an allocation and a free per delivery);
    /// [`release_idle_commands`](Self::release_idle_commands) gives it back.
    pub(crate) fn next_command(&self) -> Option<(ConnCommand, usize)> {
        let mut commands = mutex(&self.commands);
        commands
            .queue
            .pop_front()
            .map(|command| (command, commands.queue.len()))
    }

    /// Gives the command queue's memory back if it is empty (at an idle
    /// connection's heartbeat, as the codec's buffers).
    pub(crate) fn release_idle_commands(&self) {
        let mut commands = mutex(&self.commands);
        if commands.queue.is_empty() && commands.queue.capacity() != 0 {
            commands.queue = VecDeque::new();
        }
    }

    /// The connection task is ending: refuses further commands and drops
    /// the queued ones.
    pub(crate) fn close_commands(&self) {
        let mut commands = mutex(&self.commands);
        commands.closed = true;
        commands.queue = VecDeque::new();
    }

    /// Notes that `message` (the newest so far) was stored in `stream`.
    pub(crate) fn stored(&self, stream: &StreamKey, message: &Arc<StoredMessage>) {
        {
            let mut pending = mutex(&self.reliable);
            match pending.iter_mut().find(|(key, _)| key == stream) {
                Some((_, newest)) if newest.seq >= message.seq => {}
                Some((_, newest)) => *newest = message.clone(),
                None => pending.push((stream.clone(), message.clone())),
            }
        }
        self.wake();
    }

    /// Takes the pending notifications.
    pub(crate) fn take(&self) -> Vec<(StreamKey, Arc<StoredMessage>)> {
        std::mem::take(&mut *mutex(&self.reliable))
    }

    /// Notes that a joined room released a batch.
    pub(crate) fn wake_rooms(&self) {
        self.rooms_ready.store(true, Ordering::Release);
        self.wake();
    }

    /// Whether a joined room released a batch since the last call.
    pub(crate) fn take_rooms_ready(&self) -> bool {
        self.rooms_ready.swap(false, Ordering::AcqRel)
    }
}

/// Sends commands to a connection task (through its [`ConnShared`]: no
/// channel of its own per connection).
#[derive(Clone, Debug)]
pub(crate) struct CommandSender(Arc<ConnShared>);

impl CommandSender {
    /// Queues `command`; gives it back when the connection's queue is full
    /// or the connection is gone.
    pub(crate) fn try_send(&self, command: ConnCommand) -> Result<(), ConnCommand> {
        self.0.send(command)
    }
}

/// What other tasks ask of a connection task.
#[derive(Debug)]
pub(crate) enum ConnCommand {
    /// A transient message for the logins of `biz` as `alias` (any alias
    /// when `None`, for a push to a device).
    Transient {
        biz: String,
        alias: Option<String>,
        message_id: u64,
        priority: u32,
        payload: Bytes,
        /// The push asked for receipts.
        receipt: bool,
    },
    /// Ask the client to reconnect elsewhere, then close.
    GoAway { advice: ReconnectAdvice },
    /// Close now.
    Close { code: ErrorCode, message: String },
    /// A newer connection of the same device took the login of `biz` as
    /// `alias`: end that login (`REPLACED`), and close the connection if it
    /// holds no other.
    Replace {
        biz: String,
        alias: String,
        message: String,
    },
}

impl ConnCommand {
    /// Commands that end something (a close, a replaced login): they get
    /// the queue's spare slot.
    fn is_close(&self) -> bool {
        matches!(self, Self::Close { .. } | Self::Replace { .. })
    }
}

/// A login on a connection (boxed strings: 64 bytes, not 88 in a 96-byte
/// allocation).
#[derive(Clone, Debug)]
pub(crate) struct LoginInfo {
    pub(crate) stream: StreamId,
    pub(crate) biz: Box<str>,
    pub(crate) alias: Box<str>,
    pub(crate) route_id: Box<str>,
    pub(crate) since_ms: u64,
    /// The login's credential proves the connection's device id.
    pub(crate) device_verified: bool,
}

/// A live connection.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) app: String,
    pub(crate) device_id: String,
    /// Shared with the connection (one allocation); 16 bytes here: the
    /// entry is 160 bytes, not 168 in a 176-byte allocation.
    pub(crate) token: Arc<str>,
    pub(crate) transport: &'static str,
    pub(crate) peer: SocketAddr,
    pub(crate) connected_at_ms: u64,
    pub(crate) shared: Arc<ConnShared>,
    pub(crate) logins: Vec<LoginInfo>,
    pub(crate) trace: SharedTrace,
}

impl ConnEntry {
    fn sender(&self) -> CommandSender {
        CommandSender(self.shared.clone())
    }
}

/// What the presence and connection-list APIs show of a connection.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ConnectionInfo {
    /// The connection token.
    pub token: String,
    /// App id.
    pub app: String,
    /// Device id.
    pub device_id: String,
    /// `tcp`, `tls` or `quic`.
    pub transport: &'static str,
    /// The client's address.
    pub peer: SocketAddr,
    /// When it connected, unix milliseconds.
    pub connected_at_ms: u64,
    /// Its business logins.
    pub logins: Vec<LoginView>,
}

/// A login as the APIs show it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoginView {
    /// Business id.
    pub biz: String,
    /// Alias.
    pub alias: String,
    /// Route id of its uplink backend.
    pub route_id: String,
    /// When it logged in, unix milliseconds.
    pub since_ms: u64,
    /// Its credential proves the connection's device id (it receives the
    /// pushes addressed to the device).
    pub device_verified: bool,
}

/// One page of an app's connections, oldest first
/// ([`PushHandle::connections_page`](super::PushHandle::connections_page)).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ConnectionPage {
    /// Open connections of the app (all pages).
    pub total: usize,
    /// The connections of this page, oldest first.
    pub connections: Vec<ConnectionInfo>,
    /// Where the next page starts (pass it as `after`), when connections
    /// remain after this page. Opaque; valid as long as the gateway runs.
    pub next: Option<u64>,
}

/// The registry.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Boxed entries: the table holds 16 bytes per slot instead of 184,
    /// and a hash table keeps up to twice the slots it has entries.
    conns: RwLock<HashMap<ConnId, Box<ConnEntry>>>,
    /// Connection ids of each app, in connection order: pages of an app's
    /// connections without scanning (or sorting) the others; and the app's
    /// count per transport.
    by_app: RwLock<HashMap<String, AppConns>>,
    /// The indexes below hold hashes of their keys, under these random
    /// keys ([`ConnIndex`]: no key copies; each candidate is checked on its
    /// entry).
    keys: IndexKeys,
    /// Connections by token.
    tokens: RwLock<ConnIndex>,
    /// Connections logged in to an alias stream (app, business, alias).
    streams: RwLock<ConnIndex>,
    /// Connections by app and device id.
    devices: RwLock<ConnIndex>,
    closed: Mutex<ClosedTraces>,
}

/// Most alias streams [`Registry::for_each_stream_sender`] visits under
/// one taking of the locks.
const STREAMS_PER_LOCK: usize = 256;

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn mutex<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One app's connections: their ids, in connection order, and how many
/// each transport carries (at most one entry per transport name the
/// gateway's listeners have: a handful).
#[derive(Debug, Default)]
struct AppConns {
    ids: BTreeSet<ConnId>,
    transports: Vec<(&'static str, usize)>,
}

impl AppConns {
    fn insert(&mut self, id: ConnId, transport: &'static str) {
        if !self.ids.insert(id) {
            return;
        }
        match self.transports.iter_mut().find(|(t, _)| *t == transport) {
            Some((_, n)) => *n += 1,
            None => self.transports.push((transport, 1)),
        }
    }

    fn remove(&mut self, id: ConnId, transport: &'static str) {
        if !self.ids.remove(&id) {
            return;
        }
        if let Some(at) = self.transports.iter().position(|(t, _)| *t == transport) {
            self.transports[at].1 -= 1;
            if self.transports[at].1 == 0 {
                self.transports.swap_remove(at);
            }
        }
    }
}

impl Registry {
    /// The open connections of `app` on this node per transport name
    /// (`tcp`, `tls`, `quic`, a handed listener's name such as `ws`),
    /// sorted by name; transports without connections are left out. O(1)
    /// in the number of connections: kept up to date at insert and remove.
    pub(crate) fn transport_counts(&self, app: &str) -> Vec<(&'static str, usize)> {
        let mut counts = read(&self.by_app)
            .get(app)
            .map(|conns| conns.transports.clone())
            .unwrap_or_default();
        counts.sort_unstable();
        counts
    }

    fn token_hash(&self, token: &str) -> u64 {
        self.keys.hash(token)
    }

    fn device_hash(&self, app: &str, device: &str) -> u64 {
        self.keys.hash((app, device))
    }

    fn stream_hash(&self, app: &str, biz: &str, alias: &str) -> u64 {
        self.keys.hash((app, biz, alias))
    }

    /// The connection with `token`, among those the `conns` lock shows.
    fn by_token<'a>(
        &self,
        conns: &'a HashMap<ConnId, Box<ConnEntry>>,
        token: &str,
    ) -> Option<&'a ConnEntry> {
        read(&self.tokens)
            .get(self.token_hash(token))
            .filter_map(|id| conns.get(&id))
            .find(|entry| *entry.token == *token)
            .map(|entry| &**entry)
    }

    pub(crate) fn insert(&self, id: ConnId, entry: ConnEntry) {
        write(&self.tokens).add(self.token_hash(&entry.token), id);
        write(&self.devices).add(self.device_hash(&entry.app, &entry.device_id), id);
        write(&self.by_app)
            .entry(entry.app.clone())
            .or_default()
            .insert(id, entry.transport);
        write(&self.conns).insert(id, Box::new(entry));
    }

    /// Removes connection `id`; its transport name, if it was registered.
    pub(crate) fn remove(&self, id: ConnId) -> Option<&'static str> {
        let entry = write(&self.conns).remove(&id)?;
        let transport = entry.transport;
        write(&self.tokens).remove(self.token_hash(&entry.token), id);
        {
            let mut by_app = write(&self.by_app);
            if let Some(conns) = by_app.get_mut(&entry.app) {
                conns.remove(id, entry.transport);
                if conns.ids.is_empty() {
                    by_app.remove(&entry.app);
                }
            }
        }
        write(&self.devices).remove(self.device_hash(&entry.app, &entry.device_id), id);
        {
            let mut streams = write(&self.streams);
            for login in &entry.logins {
                streams.remove(self.stream_hash(&entry.app, &login.biz, &login.alias), id);
            }
        }
        mutex(&self.closed).insert(entry.token.to_string(), entry.app, entry.trace);
        Some(transport)
    }

    /// Registers a granted login. With `takeover`, the node's other
    /// connections of the same app and device logged in to the same alias
    /// stream are replaced by this one: their senders are returned, for
    /// the caller to close them (`REPLACED`). Under the stream index's lock,
    /// so that of two logins racing, the later replaces the earlier.
    pub(crate) fn add_login(
        &self,
        id: ConnId,
        login: LoginInfo,
        takeover: bool,
    ) -> Vec<CommandSender> {
        let key = {
            let mut conns = write(&self.conns);
            let Some(entry) = conns.get_mut(&id) else {
                return Vec::new();
            };
            let key = StreamKey::new(&*entry.app, &*login.biz, &*login.alias);
            // Exactly sized: one login is the common case (a growing `Vec`
            // would take four slots).
            entry.logins.reserve_exact(1);
            entry.logins.push(login);
            key
        };
        let hash = self.stream_hash(&key.app, &key.biz, &key.alias);
        let mut streams = write(&self.streams);
        let replaced = if takeover {
            let conns = read(&self.conns);
            match conns.get(&id) {
                Some(this) => streams
                    .get(hash)
                    .filter(|other| *other != id)
                    .filter_map(|other| conns.get(&other))
                    .filter(|other| other.device_id == this.device_id && logged_in_to(other, &key))
                    .map(|entry| entry.sender())
                    .collect(),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        streams.add(hash, id);
        replaced
    }

    /// The sender of connection `token` if it is logged in as `login`.
    pub(crate) fn sender_for_login(&self, login: &LoginId, token: &str) -> Option<CommandSender> {
        let conns = read(&self.conns);
        self.by_token(&conns, token)
            .filter(|e| {
                e.app == login.stream.app
                    && e.device_id == login.device
                    && e.logins
                        .iter()
                        .any(|l| *l.biz == *login.stream.biz && *l.alias == *login.stream.alias)
            })
            .map(|entry| entry.sender())
    }

    pub(crate) fn remove_login(&self, id: ConnId, stream: StreamId) {
        let key = {
            let mut conns = write(&self.conns);
            let Some(entry) = conns.get_mut(&id) else {
                return;
            };
            let Some(pos) = entry.logins.iter().position(|l| l.stream == stream) else {
                return;
            };
            let login = entry.logins.remove(pos);
            if entry.logins.is_empty() {
                entry.logins = Vec::new();
            }
            let still = entry
                .logins
                .iter()
                .any(|l| l.biz == login.biz && l.alias == login.alias);
            (!still).then(|| self.stream_hash(&entry.app, &login.biz, &login.alias))
        };
        if let Some(hash) = key {
            write(&self.streams).remove(hash, id);
        }
    }

    pub(crate) fn set_route(&self, id: ConnId, stream: StreamId, route_id: &str) {
        if let Some(entry) = write(&self.conns).get_mut(&id)
            && let Some(login) = entry.logins.iter_mut().find(|l| l.stream == stream)
        {
            login.route_id = route_id.into();
        }
    }

    /// Tells every connection logged in to `stream` that `message` was
    /// stored; returns how many were told.
    pub(crate) fn notify_stored(&self, stream: &StreamKey, message: &Arc<StoredMessage>) -> usize {
        self.stream_entries(stream, |entries| {
            entries.map(|e| e.shared.stored(stream, message)).count()
        })
    }

    /// Senders of the connections logged in to `stream`.
    pub(crate) fn senders_for_stream(&self, stream: &StreamKey) -> Vec<CommandSender> {
        self.stream_entries(stream, |entries| entries.map(ConnEntry::sender).collect())
    }

    /// Calls `with` with the entries of the connections logged in to
    /// `stream`, under the locks (index, then table).
    fn stream_entries<T>(
        &self,
        stream: &StreamKey,
        with: impl FnOnce(&mut dyn Iterator<Item = &ConnEntry>) -> T,
    ) -> T {
        let streams = read(&self.streams);
        let conns = read(&self.conns);
        with(&mut self.logged_in(&streams, &conns, stream))
    }

    /// The entries of the connections logged in to `stream`: the stream
    /// index's candidates, checked on their entries (the caller holds both
    /// locks).
    fn logged_in<'a>(
        &self,
        streams: &'a ConnIndex,
        conns: &'a HashMap<ConnId, Box<ConnEntry>>,
        stream: &'a StreamKey,
    ) -> impl Iterator<Item = &'a ConnEntry> + use<'a> {
        streams
            .get(self.stream_hash(&stream.app, &stream.biz, &stream.alias))
            .filter_map(|id| conns.get(&id))
            .map(|entry| &**entry)
            .filter(|entry| logged_in_to(entry, stream))
    }

    /// Calls `each` with every connection sender of each of `streams`
    /// (with its stream), under one read of the registry's maps: a push
    /// to many aliases takes the locks once, not once per alias. The
    /// connections' command queues do not block, so holding the read locks
    /// across `each` costs no waiting.
    pub(crate) fn for_each_stream_sender(
        &self,
        streams: &[&StreamKey],
        mut each: impl FnMut(&StreamKey, &ConnShared),
    ) {
        // In chunks, so that a tag of many members does not hold logins
        // (which take the stream index for writing) for long.
        for chunk in streams.chunks(STREAMS_PER_LOCK) {
            let ids = read(&self.streams);
            let conns = read(&self.conns);
            for &stream in chunk {
                for entry in self.logged_in(&ids, &conns, stream) {
                    each(stream, &entry.shared);
                }
            }
        }
    }

    /// Senders of the connections of `device` in `app` that have a login
    /// of `biz` whose credential proves the device id: a device id claimed
    /// in a hello alone reaches nothing.
    pub(crate) fn senders_for_device(
        &self,
        app: &str,
        biz: &str,
        device: &str,
    ) -> Vec<CommandSender> {
        self.device_entries(app, device, |entries| {
            entries
                .filter(|e| e.logins.iter().any(|l| l.device_verified && *l.biz == *biz))
                .map(ConnEntry::sender)
                .collect()
        })
    }

    /// Senders of every connection of `app` whose hello names `device`,
    /// verified or not (for disconnecting a device id).
    pub(crate) fn senders_of_device(&self, app: &str, device: &str) -> Vec<CommandSender> {
        self.device_entries(app, device, |entries| {
            entries.map(ConnEntry::sender).collect()
        })
    }

    /// Calls `with` with the entries of the connections of `device` in
    /// `app`, under the locks (index, then table).
    fn device_entries<T>(
        &self,
        app: &str,
        device: &str,
        with: impl FnOnce(&mut dyn Iterator<Item = &ConnEntry>) -> T,
    ) -> T {
        let devices = read(&self.devices);
        let conns = read(&self.conns);
        let mut entries = devices
            .get(self.device_hash(app, device))
            .filter_map(|id| conns.get(&id))
            .map(|entry| &**entry)
            .filter(|entry| entry.app == app && entry.device_id == device);
        with(&mut entries)
    }

    /// Senders of every connection (for shutdown).
    pub(crate) fn all_senders(&self) -> Vec<CommandSender> {
        read(&self.conns)
            .values()
            .map(|entry| entry.sender())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.conns).len()
    }

    /// Connections logged in as `alias` of `biz` in `app`.
    pub(crate) fn presence(&self, stream: &StreamKey) -> Vec<ConnectionInfo> {
        self.stream_entries(stream, |entries| entries.map(info).collect())
    }

    /// Up to `limit` connections of `app` after the connection `after`
    /// (from the start when `None`), oldest first. The app's index lock is
    /// held to pick `limit` ids, the connection table's to describe them:
    /// neither for longer than `limit` steps, whatever the number of
    /// connections.
    pub(crate) fn connections_page(
        &self,
        app: &str,
        after: Option<ConnId>,
        limit: usize,
    ) -> ConnectionPage {
        let (total, numbered, more) = self.connections_after(app, after, limit);
        let next = if more {
            numbered.last().map(|(id, _)| *id)
        } else {
            None
        };
        ConnectionPage {
            total,
            connections: numbered.into_iter().map(|(_, c)| c).collect(),
            next,
        }
    }

    /// [`connections_page`](Self::connections_page) with each connection's
    /// number: the app's connection count, up to `limit` connections after
    /// `after`, and whether more follow.
    pub(crate) fn connections_after(
        &self,
        app: &str,
        after: Option<ConnId>,
        limit: usize,
    ) -> (usize, Vec<(ConnId, ConnectionInfo)>, bool) {
        let (total, ids, more) = {
            let by_app = read(&self.by_app);
            let Some(AppConns { ids: set, .. }) = by_app.get(app) else {
                return (0, Vec::new(), false);
            };
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut range = set.range((start, Bound::Unbounded));
            let ids: Vec<ConnId> = range.by_ref().take(limit).copied().collect();
            (set.len(), ids, range.next().is_some())
        };
        let connections = {
            let conns = read(&self.conns);
            ids.iter()
                .filter_map(|id| conns.get(id).map(|e| (*id, info(e))))
                .collect()
        };
        (total, connections, more)
    }

    /// The sender of the connection with `token`, if it belongs to `app`.
    pub(crate) fn sender_for_token(&self, app: &str, token: &str) -> Option<CommandSender> {
        let conns = read(&self.conns);
        self.by_token(&conns, token)
            .filter(|e| e.app == app)
            .map(ConnEntry::sender)
    }

    /// The trace of the connection with `token`, live or recently closed,
    /// if it belongs to `app` (compared whole: app `demo` never sees a
    /// trace of app `demo2`).
    pub(crate) fn trace(&self, app: &str, token: &str) -> Option<SharedTrace> {
        {
            let conns = read(&self.conns);
            if let Some(entry) = self.by_token(&conns, token) {
                return (entry.app == app).then(|| entry.trace.clone());
            }
        }
        mutex(&self.closed)
            .get(token)
            .and_then(|(owner, trace)| (*owner == *app).then_some(trace))
    }
}

fn info(e: &ConnEntry) -> ConnectionInfo {
    ConnectionInfo {
        token: e.token.to_string(),
        app: e.app.clone(),
        device_id: e.device_id.clone(),
        transport: e.transport,
        peer: e.peer,
        connected_at_ms: e.connected_at_ms,
        logins: e
            .logins
            .iter()
            .map(|l| LoginView {
                biz: l.biz.to_string(),
                alias: l.alias.to_string(),
                route_id: l.route_id.to_string(),
                since_ms: l.since_ms,
                device_verified: l.device_verified,
            })
            .collect(),
    }
}

/// Whether `entry` is logged in to `stream` (the index's candidates are
/// checked on their entries).
fn logged_in_to(entry: &ConnEntry, stream: &StreamKey) -> bool {
    entry.app == stream.app
        && entry
            .logins
            .iter()
            .any(|l| *l.biz == *stream.biz && *l.alias == *stream.alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(app: &str, id: ConnId) -> ConnEntry {
        ConnEntry {
            app: app.to_owned(),
            device_id: format!("d{id}"),
            token: format!("t{id}").into(),
            transport: "tcp",
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            connected_at_ms: 0,
            shared: Arc::new(ConnShared::new(2)),
            logins: Vec::new(),
            trace: SharedTrace::default(),
        }
    }

    fn tokens(page: &ConnectionPage) -> Vec<String> {
        page.connections.iter().map(|c| c.token.clone()).collect()
    }

    #[test]
    fn pages_cover_an_apps_connections_once_in_order() {
        let registry = Registry::default();
        for id in 1..=25 {
            registry.insert(id, entry(if id % 3 == 0 { "b" } else { "a" }, id));
        }
        let expected: Vec<String> = (1..=25)
            .filter(|id| id % 3 != 0)
            .map(|id| format!("t{id}"))
            .collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = registry.connections_page("a", after, 4);
            assert_eq!(page.total, expected.len());
            assert!(page.connections.len() <= 4);
            assert!(page.connections.iter().all(|c| c.app == "a"));
            seen.extend(tokens(&page));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "every connection once, oldest first");
        assert_eq!(
            registry.connections_page("none", None, 4),
            ConnectionPage::default()
        );
    }

    #[test]
    fn a_page_skips_closed_connections_and_the_index_forgets_them() {
        let registry = Registry::default();
        for id in 1..=6 {
            registry.insert(id, entry("a", id));
        }
        let first = registry.connections_page("a", None, 2);
        assert_eq!(tokens(&first), ["t1", "t2"]);
        registry.remove(3);
        registry.insert(7, entry("a", 7));
        let second = registry.connections_page("a", first.next, 2);
        assert_eq!(tokens(&second), ["t4", "t5"]);
        assert_eq!(second.total, 6);
        let last = registry.connections_page("a", second.next, 2);
        assert_eq!(tokens(&last), ["t6", "t7"]);
        assert_eq!(last.next, None, "nothing after the last page");
        for id in [1, 2, 4, 5, 6, 7] {
            registry.remove(id);
        }
        assert!(read(&registry.by_app).is_empty(), "no empty set is kept");
    }

    #[test]
    fn transport_counts_follow_inserts_and_removes_per_app() {
        let registry = Registry::default();
        let with = |app: &str, id: ConnId, transport: &'static str| ConnEntry {
            transport,
            ..entry(app, id)
        };
        registry.insert(1, with("a", 1, "tcp"));
        registry.insert(2, with("a", 2, "ws"));
        registry.insert(3, with("a", 3, "tcp"));
        registry.insert(4, with("b", 4, "quic"));
        assert_eq!(registry.transport_counts("a"), [("tcp", 2), ("ws", 1)]);
        assert_eq!(registry.transport_counts("b"), [("quic", 1)]);
        assert_eq!(registry.transport_counts("none"), []);
        registry.remove(2);
        registry.remove(2);
        assert_eq!(registry.transport_counts("a"), [("tcp", 2)], "gone, once");
        registry.remove(1);
        registry.remove(3);
        assert_eq!(registry.transport_counts("a"), []);
    }

    fn login(stream: u32, alias: &str) -> LoginInfo {
        LoginInfo {
            stream: StreamId::new(stream),
            biz: "chat".into(),
            alias: alias.into(),
            route_id: "".into(),
            since_ms: 0,
            device_verified: false,
        }
    }

    #[test]
    fn streams_are_visited_once_per_connection_and_unknown_ones_skipped() {
        let registry = Registry::default();
        for id in 1..=3 {
            registry.insert(id, entry("a", id));
        }
        registry.add_login(1, login(1, "x"), false);
        registry.add_login(2, login(1, "x"), false);
        registry.add_login(3, login(1, "y"), false);
        // More streams than one taking of the locks covers.
        let mut keys: Vec<StreamKey> = (0..STREAMS_PER_LOCK + 10)
            .map(|i| StreamKey::new("a", "chat", format!("none{i}")))
            .collect();
        keys.insert(3, StreamKey::new("a", "chat", "x"));
        keys.push(StreamKey::new("a", "chat", "y"));
        keys.push(StreamKey::new("b", "chat", "x"));
        let refs: Vec<&StreamKey> = keys.iter().collect();
        let mut seen = Vec::new();
        registry.for_each_stream_sender(&refs, |key, shared| {
            seen.push(key.alias.clone());
            assert!(
                shared
                    .send(ConnCommand::GoAway {
                        advice: ReconnectAdvice::default(),
                    })
                    .is_ok()
            );
        });
        assert_eq!(seen, ["x", "x", "y"]);
        let queued = |id: ConnId| {
            let shared = read(&registry.conns)[&id].shared.clone();
            std::iter::from_fn(|| shared.next_command()).count()
        };
        assert_eq!((queued(1), queued(2), queued(3)), (1, 1, 1));
    }

    /// The indexes keep hashes, not keys: an id under a key's hash that is
    /// not that key's (a collision, forced here) is never answered.
    #[test]
    fn index_candidates_are_checked_on_their_entries() {
        let registry = Registry::default();
        registry.insert(1, entry("a", 1));
        registry.insert(2, entry("a", 2));
        registry.add_login(1, login(1, "x"), false);
        registry.add_login(2, login(1, "y"), false);
        // Connection 2 under the hashes of connection 1's keys.
        let stream = registry.stream_hash("a", "chat", "x");
        write(&registry.streams).add(stream, 2);
        write(&registry.devices).add(registry.device_hash("a", "d1"), 2);
        write(&registry.tokens).add(registry.token_hash("t1"), 2);

        let x = StreamKey::new("a", "chat", "x");
        let tokens_of = |infos: Vec<ConnectionInfo>| -> Vec<String> {
            infos.into_iter().map(|c| c.token).collect()
        };
        assert_eq!(tokens_of(registry.presence(&x)), ["t1"]);
        assert_eq!(registry.senders_for_stream(&x).len(), 1);
        let mut visited = 0;
        registry.for_each_stream_sender(&[&x], |_, _| visited += 1);
        assert_eq!(visited, 1);
        assert_eq!(registry.senders_of_device("a", "d1").len(), 1);
        assert_eq!(
            registry.senders_of_device("b", "d1").len(),
            0,
            "app checked"
        );
        assert!(registry.sender_for_token("a", "t1").is_some());
        assert!(registry.sender_for_token("a", "t2").is_some());
        assert!(
            registry.sender_for_token("b", "t1").is_none(),
            "app checked"
        );
        assert!(registry.sender_for_token("a", "t9").is_none());

        // A takeover replaces the same device's login of the same stream
        // only: connection 2 (device d2, stream y) sits under x's hash.
        registry.insert(
            3,
            ConnEntry {
                device_id: "d1".into(),
                ..entry("a", 3)
            },
        );
        let replaced = registry.add_login(3, login(1, "x"), true);
        assert_eq!(replaced.len(), 1, "connection 1 only");

        for id in 1..=3 {
            registry.remove(id);
        }
        write(&registry.streams).remove(stream, 2);
        write(&registry.devices).remove(registry.device_hash("a", "d1"), 2);
        write(&registry.tokens).remove(registry.token_hash("t1"), 2);
        assert_eq!(read(&registry.streams).len(), 0, "nothing left behind");
        assert_eq!(read(&registry.devices).len(), 0);
        assert_eq!(read(&registry.tokens).len(), 0);
    }

    #[test]
    fn a_drained_queue_keeps_its_memory_until_released() {
        let shared = ConnShared::new(4);
        let go_away = || ConnCommand::GoAway {
            advice: ReconnectAdvice::default(),
        };
        assert!(shared.send(go_away()).is_ok());
        assert!(shared.next_command().is_some());
        assert!(shared.next_command().is_none());
        assert_ne!(
            mutex(&shared.commands).queue.capacity(),
            0,
            "kept while busy"
        );
        shared.release_idle_commands();
        assert_eq!(mutex(&shared.commands).queue.capacity(), 0, "given back");
        // Not while a command waits.
        assert!(shared.send(go_away()).is_ok());
        shared.release_idle_commands();
        assert!(shared.next_command().is_some());
    }

    #[test]
    fn a_close_gets_through_a_full_command_queue_once() {
        let shared = ConnShared::new(2);
        let transient = || ConnCommand::GoAway {
            advice: ReconnectAdvice::default(),
        };
        let close = || ConnCommand::Close {
            code: ErrorCode::Forbidden,
            message: "bye".into(),
        };
        assert!(shared.send(transient()).is_ok());
        assert!(shared.send(transient()).is_ok());
        assert!(shared.send(transient()).is_err(), "the queue is full");
        assert!(
            shared.send(close()).is_ok(),
            "a close has a slot of its own"
        );
        assert!(shared.send(close()).is_err(), "one slot, not more");
        shared.close_commands();
        assert!(shared.send(close()).is_err(), "the connection is gone");
    }
}
