//! Durable storage owned by the broker, in the data directory.
//!
//! - Messages: append-only segment files (`msgs/*.seg`) of checksummed records written by
//!   one writer thread. Callers encode records on their own thread and hand them over; the
//!   writer batches whatever has arrived into one write and, if any record in the batch needs
//!   it, one `fdatasync` (group commit). A persistent publish gets a ticket; its confirm may
//!   leave once [`Store::synced`] reaches the ticket.
//! - Acks and deliveries are records too (not waited for): acknowledged messages do not come
//!   back after a restart, delivered-but-unacknowledged ones come back marked redelivered.
//! - Segments are deleted, oldest first, once every message in them and in all older
//!   segments has left its queues (older segments go first so that an ack record is never
//!   deleted while the message it cancels still exists).
//! - Metadata documents (definitions, MQTT sessions, retained messages) are written
//!   atomically: temporary file, fsync, rename, fsync of the directory.
//! - [`message`] and [`table`] hold the message model (message, properties, header values)
//!   that the store persists and the core routes; the store is the lower layer, so it owns
//!   them and imports nothing from the core.

pub mod message;
mod record;
mod segment;
pub mod stats;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;

use message::Message;
pub use stats::{StoreSnapshot, StoreStats, FSYNC_BUCKETS};

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A position in the write order: a publish is durable once [`Store::synced`] reaches it.
pub type Ticket = u64;

/// A message recovered from the log for one queue.
#[derive(Debug)]
pub struct RecoveredMessage {
    /// Its id in the store (for later acks).
    pub msg_id: u64,
    /// The message, or None when recovery left its body on disk (beyond
    /// [`RECOVERY_MEMORY_BUDGET`]); it is read back with [`Store::read_message`].
    pub message: Option<Arc<Message>>,
    /// Its memory size when loaded.
    pub size: u64,
    /// Its body length.
    pub body_len: u64,
    /// Its expiration property, kept even when the body is left on disk.
    pub expiration: Option<String>,
    /// Whether it had been delivered before the restart.
    pub delivered: bool,
}

/// Memory recovery may fill with message bodies; the rest stay on disk until needed.
pub const RECOVERY_MEMORY_BUDGET: u64 = 32 * 1024 * 1024;

/// A message during recovery, before its queues are known.
struct Recovering {
    message: Option<Arc<Message>>,
    size: u64,
    body_len: u64,
    expiration: Option<String>,
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live messages per queue key, in publish order.
    pub queues: HashMap<String, Vec<RecoveredMessage>>,
}

enum Command {
    Write {
        ticket: Ticket,
        bytes: BytesMut,
        sync: bool,
        effect: Effect,
    },
    Flush(mpsc::Sender<()>),
}

/// What a written record changes in the writer's bookkeeping of live messages.
enum Effect {
    None,
    /// A message now referenced by this many queues.
    Publish {
        msg_id: u64,
        refs: u32,
    },
    /// One queue dropped its reference.
    Release {
        msg_id: u64,
    },
}

/// The message store.
pub struct Store {
    dir: PathBuf,
    sender: Mutex<(Ticket, mpsc::Sender<Command>)>,
    synced: watch::Receiver<Ticket>,
    next_msg_id: AtomicU64,
    documents: Mutex<()>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where every live message record is, shared with the writer (which fills it).
    index: Arc<Mutex<HashMap<u64, Location>>>,
    msgs: PathBuf,
    backlog: Arc<Backlog>,
    stats: Arc<StoreStats>,
}

/// Bytes handed to the writer and not yet written, shared with the writer thread.
#[derive(Default)]
struct Backlog {
    bytes: Mutex<u64>,
    drained: parking_lot::Condvar,
    closed: std::sync::atomic::AtomicBool,
}

/// Most bytes waiting for the writer before submitters are held back.
const MAX_BACKLOG: u64 = 16 * 1024 * 1024;

/// Where a message record is on disk, and how many queues still hold it.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    length: u64,
    refs: u32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Resolves when the synced ticket moves; never when there is nothing to wait for. Listeners
/// select on this while confirms wait for the disk.
pub async fn synced_changed(synced: Option<&mut watch::Receiver<Ticket>>) {
    match synced {
        // Boxed: this future sits in every connection's idle select; unboxed, the watch
        // future's size would be paid by idle connections that never wait for the store.
        Some(synced) => {
            if Box::pin(synced.changed()).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Encodes messages with string tags as a self-checking document (for snapshots such as
/// retained messages), in the same record format as the log.
pub fn encode_tagged_messages<'a>(
    items: impl IntoIterator<Item = (Vec<&'a str>, &'a Message)>,
) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut payload = BytesMut::new();
    for (tags, message) in items {
        payload.clear();
        record::encode_publish(0, &tags, message, &mut payload);
        segment::frame(&payload, &mut out);
    }
    out.to_vec()
}

/// Decodes what [`encode_tagged_messages`] wrote, skipping damaged entries.
pub fn decode_tagged_messages(bytes: Vec<u8>) -> Vec<(Vec<String>, Message)> {
    let scan = segment::scan(Bytes::from(bytes));
    for what in &scan.damage {
        tracing::warn!("snapshot damaged: {what}");
    }
    scan.records
        .into_iter()
        .filter_map(|(_, payload)| match record::decode(payload) {
            Ok(record::Record::Publish {
                queues, message, ..
            }) => Some((queues, *message)),
            _ => None,
        })
        .collect()
}

/// Builds the key a queue's records carry.
pub fn queue_key(vhost: &str, queue: &str) -> String {
    format!("{vhost}\u{0}{queue}")
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, recovers its messages, and starts the
    /// writer thread.
    pub fn open(dir: &Path) -> Result<(Arc<Store>, Recovered), StoreError> {
        let started = Instant::now();
        let msgs = dir.join("msgs");
        fs::create_dir_all(&msgs).map_err(io_error("create", &msgs))?;
        let numbers = segment::list(&msgs).map_err(io_error("list", &msgs))?;

        // msg_id → (segment, queues still holding it); per-queue order of live ids.
        // Bodies beyond the budget stay on disk: recovery memory follows the budget, not the
        // backlog.
        let mut kept_bytes = 0u64;
        let mut messages: HashMap<u64, (Location, Recovering, Vec<String>)> = HashMap::new();
        let mut delivered: HashMap<(String, u64), ()> = HashMap::new();
        let mut max_id = 0u64;
        let mut records = 0u64;
        for &number in &numbers {
            let path = segment::path(&msgs, number);
            let data = fs::read(&path).map_err(io_error("read", &path))?;
            let length = data.len() as u64;
            let scan = segment::scan(Bytes::from(data));
            for what in &scan.damage {
                tracing::warn!(segment = %path.display(), "store recovery: {what}");
            }
            if scan.valid_end < length && number == numbers.last().copied().unwrap_or(0) {
                // Cut the torn tail so nothing valid is ever appended after garbage.
                if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                    let _ = file.set_len(scan.valid_end);
                    let _ = file.sync_all();
                }
            }
            for (offset, payload) in scan.records {
                records += 1;
                let length = (payload.len() + segment::FRAME_HEADER) as u64;
                match record::decode(payload) {
                    Ok(record::Record::Publish {
                        msg_id,
                        queues,
                        message,
                    }) => {
                        max_id = max_id.max(msg_id);
                        let location = Location {
                            segment: number,
                            offset,
                            length,
                            refs: u32::try_from(queues.len()).unwrap_or(u32::MAX),
                        };
                        let size = message.memory_size();
                        let message_body_len = message.body.len() as u64;
                        let expiration = message.properties.expiration.clone();
                        let body = if kept_bytes + size <= RECOVERY_MEMORY_BUDGET {
                            kept_bytes += size;
                            Some(Arc::from(message))
                        } else {
                            None
                        };
                        let recovering = Recovering {
                            body_len: message_body_len,
                            message: body,
                            size,
                            expiration,
                        };
                        messages.insert(msg_id, (location, recovering, queues));
                    }
                    Ok(record::Record::Ack { msg_id, queue }) => {
                        if let Some((_, _, queues)) = messages.get_mut(&msg_id) {
                            queues.retain(|q| *q != queue);
                            if queues.is_empty() {
                                messages.remove(&msg_id);
                            }
                        }
                        delivered.remove(&(queue, msg_id));
                    }
                    Ok(record::Record::Deliver { msg_id, queue }) => {
                        delivered.insert((queue, msg_id), ());
                    }
                    Err(error) => {
                        tracing::warn!(segment = %path.display(), %error, "store recovery: record dropped");
                    }
                }
            }
        }

        let mut ids: Vec<u64> = messages.keys().copied().collect();
        ids.sort_unstable();
        let mut recovered = Recovered::default();
        let mut live_per_segment: BTreeMap<u64, u64> = numbers.iter().map(|n| (*n, 0)).collect();
        let mut refs: HashMap<u64, Location> = HashMap::with_capacity(ids.len());
        for id in ids {
            let Some((mut location, message, queues)) = messages.remove(&id) else {
                continue;
            };
            *live_per_segment.entry(location.segment).or_default() += 1;
            location.refs = u32::try_from(queues.len()).unwrap_or(u32::MAX);
            refs.insert(id, location);
            for queue in queues {
                let was_delivered = delivered.contains_key(&(queue.clone(), id));
                recovered
                    .queues
                    .entry(queue)
                    .or_default()
                    .push(RecoveredMessage {
                        msg_id: id,
                        message: message.message.clone(),
                        size: message.size,
                        body_len: message.body_len,
                        expiration: message.expiration.clone(),
                        delivered: was_delivered,
                    });
            }
        }
        let live: usize = refs.len();
        tracing::info!(
            segments = numbers.len(),
            records,
            live_messages = live,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "message store recovered"
        );

        let active = numbers.last().map_or(1, |n| n + 1);
        let index = Arc::new(Mutex::new(refs));
        let backlog = Arc::new(Backlog::default());
        let stats = Arc::new(StoreStats::default());
        let writer_state = Writer::start(
            msgs.clone(),
            active,
            live_per_segment,
            index.clone(),
            backlog.clone(),
            stats.clone(),
        )?;
        let (synced_tx, synced_rx) = watch::channel(0);
        let (sender, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("warren-store".into())
            .spawn(move || writer_state.run(receiver, synced_tx))
            .map_err(io_error("start the writer thread for", &msgs))?;
        let store = Arc::new(Store {
            dir: dir.to_path_buf(),
            sender: Mutex::new((0, sender)),
            synced: synced_rx,
            next_msg_id: AtomicU64::new(max_id + 1),
            index,
            msgs,
            backlog,
            stats,
            documents: Mutex::new(()),
            writer: Mutex::new(Some(handle)),
        });
        Ok((store, recovered))
    }

    fn submit(&self, bytes: BytesMut, sync: bool, effect: Effect) -> Ticket {
        // Back pressure: when the disk falls behind, callers wait here instead of queueing
        // unbounded bytes for the writer.
        let length = bytes.len() as u64;
        {
            let mut pending = self.backlog.bytes.lock();
            while *pending > MAX_BACKLOG && !self.backlog.closed.load(Ordering::Acquire) {
                self.backlog
                    .drained
                    .wait_for(&mut pending, std::time::Duration::from_millis(100));
            }
            *pending += length;
        }
        let mut sender = self.sender.lock();
        sender.0 += 1;
        let ticket = sender.0;
        // A send fails only after the writer stopped (shutdown); nothing more is durable then.
        let _ = sender.1.send(Command::Write {
            ticket,
            bytes,
            sync,
            effect,
        });
        ticket
    }

    /// Records a persistent message routed to the durable queues `queues` (keys from
    /// [`queue_key`]). Returns its id and the ticket to wait for before confirming.
    pub fn persist_publish(&self, queues: &[&str], message: &Message) -> (u64, Ticket) {
        let msg_id = self.next_msg_id.fetch_add(1, Ordering::Relaxed);
        let mut payload = BytesMut::with_capacity(64 + message.body.len());
        record::encode_publish(msg_id, queues, message, &mut payload);
        let mut framed = BytesMut::with_capacity(payload.len() + segment::FRAME_HEADER);
        segment::frame(&payload, &mut framed);
        let refs = u32::try_from(queues.len()).unwrap_or(u32::MAX);
        let ticket = self.submit(framed, true, Effect::Publish { msg_id, refs });
        (msg_id, ticket)
    }

    /// Reads a message back from disk (for queues that paged its body out). None when the
    /// record is not written yet or is unreadable.
    pub fn read_message(&self, msg_id: u64) -> Option<Message> {
        use std::os::unix::fs::FileExt;
        let location = *self.index.lock().get(&msg_id)?;
        let path = segment::path(&self.msgs, location.segment);
        let file = File::open(&path).ok()?;
        let mut frame = vec![0u8; usize::try_from(location.length).ok()?];
        file.read_exact_at(&mut frame, location.offset).ok()?;
        let scan = segment::scan(Bytes::from(frame));
        let (_, payload) = scan.records.into_iter().next()?;
        match record::decode(payload) {
            Ok(record::Record::Publish { message, .. }) => Some(*message),
            _ => None,
        }
    }

    /// Whether the record of `msg_id` has been written (so its body may be dropped from
    /// memory and read back later).
    pub fn is_written(&self, msg_id: u64) -> bool {
        self.index.lock().contains_key(&msg_id)
    }

    /// Records that `queue` is done with message `msg_id` (ack, drop, expiry, purge, delete).
    pub fn record_ack(&self, queue: &str, msg_id: u64) {
        let mut payload = BytesMut::with_capacity(16 + queue.len());
        record::encode_marker(record::ACK, msg_id, queue, &mut payload);
        let mut framed = BytesMut::with_capacity(payload.len() + segment::FRAME_HEADER);
        segment::frame(&payload, &mut framed);
        self.submit(framed, false, Effect::Release { msg_id });
    }

    /// Records that message `msg_id` of `queue` was delivered.
    pub fn record_delivery(&self, queue: &str, msg_id: u64) {
        let mut payload = BytesMut::with_capacity(16 + queue.len());
        record::encode_marker(record::DELIVER, msg_id, queue, &mut payload);
        let mut framed = BytesMut::with_capacity(payload.len() + segment::FRAME_HEADER);
        segment::frame(&payload, &mut framed);
        self.submit(framed, false, Effect::None);
    }

    /// The store's counters for the metrics (fsync latency, writes, size on disk).
    pub fn stats(&self) -> StoreSnapshot {
        self.stats.snapshot()
    }

    /// The directory the store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The highest ticket known to be on disk; `changed()` wakes when it moves.
    pub fn synced(&self) -> watch::Receiver<Ticket> {
        self.synced.clone()
    }

    /// Whether `ticket` is on disk.
    pub fn is_synced(&self, ticket: Ticket) -> bool {
        *self.synced.borrow() >= ticket
    }

    /// Writes and syncs everything submitted so far, then stops the writer thread.
    pub fn close(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        {
            let sender = self.sender.lock();
            let _ = sender.1.send(Command::Flush(done_tx));
        }
        let _ = done_rx.recv();
        // Dropping the sender ends the writer's loop; a replacement channel keeps later
        // (post-shutdown) submissions harmless.
        {
            let mut sender = self.sender.lock();
            let (replacement, _) = mpsc::channel();
            sender.1 = replacement;
        }
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }

    /// Atomically replaces the document `name` in the data directory.
    pub fn save_document(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        self.write_document(name, contents, 0o644)
    }

    /// [`Store::save_document`] for a document only the broker's user may read (password
    /// hashes).
    pub fn save_private_document(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        self.write_document(name, contents, 0o600)
    }

    fn write_document(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let _guard = self.documents.lock();
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        // A leftover from a crash keeps its old mode when truncated: start from nothing.
        let _ = fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(io_error("create", &temporary))?;
        file.write_all(contents)
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("sync", &temporary))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(io_error("rename", &path))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Deletes the document `name` (nothing to do when it does not exist).
    pub fn delete_document(&self, name: &str) -> Result<(), StoreError> {
        let _guard = self.documents.lock();
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error("delete", &path)(error)),
        }
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The document `name`, if it exists.
    pub fn load_document(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join(name)).ok()
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    active: u64,
    file: File,
    size: u64,
    /// Live (not fully acknowledged) messages per segment.
    live: BTreeMap<u64, u64>,
    /// msg_id → where it is and how many queues still hold it.
    index: Arc<Mutex<HashMap<u64, Location>>>,
    backlog: Arc<Backlog>,
    stats: Arc<StoreStats>,
}

impl Writer {
    fn start(
        dir: PathBuf,
        active: u64,
        mut live: BTreeMap<u64, u64>,
        index: Arc<Mutex<HashMap<u64, Location>>>,
        backlog: Arc<Backlog>,
        stats: Arc<StoreStats>,
    ) -> Result<Writer, StoreError> {
        let path = segment::path(&dir, active);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        live.entry(active).or_insert(0);
        let mut writer = Writer {
            dir,
            active,
            file,
            size: 0,
            live,
            index,
            backlog,
            stats,
        };
        writer.reclaim();
        let on_disk: u64 = writer
            .live
            .keys()
            .filter_map(|&number| fs::metadata(segment::path(&writer.dir, number)).ok())
            .map(|metadata| metadata.len())
            .sum();
        writer.stats.set_disk(writer.live.len() as u64, on_disk);
        Ok(writer)
    }

    fn run(mut self, commands: mpsc::Receiver<Command>, synced: watch::Sender<Ticket>) {
        let mut batch = BytesMut::new();
        let mut flushes = Vec::new();
        // Applied only once the batch is written: a message is "written" (and may be read
        // back by a paging queue) only when its bytes are in the file.
        let mut effects = Vec::new();
        while let Ok(first) = commands.recv() {
            let mut last_ticket = None;
            let mut needs_sync = false;
            let mut pending = Some(first);
            // Take everything that is already waiting: one write, one sync for all of it.
            loop {
                let command = match pending.take() {
                    Some(command) => command,
                    None => match commands.try_recv() {
                        Ok(command) => command,
                        Err(_) => break,
                    },
                };
                match command {
                    Command::Write {
                        ticket,
                        bytes,
                        sync,
                        effect,
                    } => {
                        let offset = self.size + batch.len() as u64;
                        batch.extend_from_slice(&bytes);
                        needs_sync |= sync;
                        last_ticket = Some(ticket);
                        effects.push((effect, offset, bytes.len() as u64));
                    }
                    Command::Flush(done) => {
                        needs_sync = true;
                        flushes.push(done);
                    }
                }
                if batch.len() > 8 * 1024 * 1024 {
                    break;
                }
            }
            if !batch.is_empty() {
                if let Err(error) = self.file.write_all(&batch) {
                    tracing::error!(%error, "message store write failed");
                }
                self.stats.wrote(batch.len() as u64);
                self.size += batch.len() as u64;
                {
                    let mut pending = self.backlog.bytes.lock();
                    *pending = pending.saturating_sub(batch.len() as u64);
                }
                self.backlog.drained.notify_all();
                batch.clear();
            }
            for (effect, offset, length) in effects.drain(..) {
                self.apply(effect, offset, length);
            }
            if needs_sync {
                let started = Instant::now();
                if let Err(error) = self.file.sync_data() {
                    tracing::error!(%error, "message store fsync failed");
                }
                self.stats.fsynced(started.elapsed());
                if let Some(ticket) = last_ticket {
                    synced.send_replace(ticket);
                }
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if self.size >= segment::SEGMENT_TARGET_SIZE {
                self.roll();
            }
            self.reclaim();
        }
        let _ = self.file.sync_data();
        self.backlog.closed.store(true, Ordering::Release);
        self.backlog.drained.notify_all();
    }

    fn apply(&mut self, effect: Effect, offset: u64, length: u64) {
        match effect {
            Effect::None => {}
            Effect::Publish { msg_id, refs } => {
                self.index.lock().insert(
                    msg_id,
                    Location {
                        segment: self.active,
                        offset,
                        length,
                        refs,
                    },
                );
                *self.live.entry(self.active).or_default() += 1;
            }
            Effect::Release { msg_id } => {
                let mut index = self.index.lock();
                let Some(location) = index.get_mut(&msg_id) else {
                    return;
                };
                location.refs = location.refs.saturating_sub(1);
                if location.refs == 0 {
                    let segment = location.segment;
                    index.remove(&msg_id);
                    if let Some(count) = self.live.get_mut(&segment) {
                        *count = count.saturating_sub(1);
                    }
                }
            }
        }
    }

    fn roll(&mut self) {
        let _ = self.file.sync_data();
        let next = self.active + 1;
        let path = segment::path(&self.dir, next);
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                self.file = file;
                self.active = next;
                self.size = 0;
                self.stats.segment_changed(true, 0);
                self.live.entry(next).or_insert(0);
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot start a new segment")
            }
        }
    }

    /// Deletes the oldest segments while they hold no live message.
    fn reclaim(&mut self) {
        while let Some((&oldest, &count)) = self.live.iter().next() {
            if oldest >= self.active || count > 0 {
                return;
            }
            let path = segment::path(&self.dir, oldest);
            let bytes = fs::metadata(&path).map_or(0, |metadata| metadata.len());
            if let Err(error) = fs::remove_file(&path) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(%error, path = %path.display(), "cannot delete a reclaimed segment");
                    return;
                }
            }
            self.live.remove(&oldest);
            self.stats.segment_changed(false, bytes);
        }
    }
}
