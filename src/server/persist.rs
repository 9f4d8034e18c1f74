//! A call's records on their way to the database: its events in order, then its end and the
//! after-call work. Nothing here is ever dropped.
//!
//! Each call has a persister task ([`persist_call`]) fed by the driver through a channel the driver
//! never waits on (unbounded: a call makes a few records per turn, for at most the maximum call
//! length). The driver hands its events over once a second, every call at the same moment, and
//! its last ones with the call's end ([`HandOver`]). The persister hands what it has to the
//! server's one [`EventWriter`], which gathers every call's events for [`GROUP_WINDOW`] into one
//! transaction of a few statements (multi-row inserts): a handful of database round trips a
//! second however many calls are in progress, where a transaction per call and burst took about
//! seven round trips each, every one waking SQLite's worker thread and a runtime worker (at 10
//! calls, 150 of the server's 310 context switches a second, `/proc/PID/task/*/status`). Each
//! attempt is bounded by [`ATTEMPT_TIMEOUT`], so the channel always drains and the call never
//! waits on the database. When an attempt fails or times out, the records go to the call's
//! **journal** instead
//! (`DATA_DIR/journal/CALL_ID.jsonl`: one JSON record per line, appended and synced on the
//! blocking pool, never on the connection thread), and from then on every later record of that
//! call goes there too, so their order is kept. The persister replays the journal
//! into the database with backoff (0.25 s doubling to 5 s) for as long as it takes, then deletes
//! it. A server stopped (or killed) while journals remain replays them at the next start, before
//! anything else ([`replay_all`]).
//!
//! Every write is idempotent, so a record written twice (an attempt that timed out after its commit,
//! a replay cut short) is stored once: events are keyed by `(call_id, seq)`, the end of a call only
//! moves a call that has not ended, and the after-call work runs once per call.
//!
//! Why journal at the first failure rather than after an in-memory bound: a server killed during an
//! outage keeps what it journaled, and a journal costs nothing while the database is healthy (no
//! file is written then).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use super::AppState;
use crate::model::{CallEvent, EndReason};
use crate::store::{EventBatch, Store, StoreResult};

/// How long one database write may take before its records go to the journal.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every call's events are gathered this long into one transaction (a call's last events are
/// written at once, see [`EventWriter::append`]). Measured at 10 calls (`scripts/thread-cpu`
/// during `receptionist loadgen --calls 10 --line-noise-dbfs -50`, three runs each): from 250 ms
/// to 1 s, SQLite's workers 40 → 17 switches and 1.2 → 0.6 ms of CPU a second, the main runtime's
/// worker 35 → 18 and 0.93 → 0.51 ms. Since the drivers hand their events over together
/// ([`HAND_OVER_INTERVAL`]), one window a second takes every call's events, and the write comes
/// just after the next hand-over (5-60 ms after it by `strace -tt` at 10 calls): events reach the
/// database at most about two seconds after they happened.
pub const GROUP_WINDOW: Duration = Duration::from_millis(1000);
/// How often a call's driver hands its events to its persister ([`HandOver`]): every call
/// holds the events of one interval and hands them over in the first wake-up of its thread after
/// the interval's end, which is the same moment for every call (the intervals are counted from
/// the process's start), so the persisters on the main runtime are woken together once a second
/// instead of once per burst of each call. A call's end hands over what it holds at once.
pub const HAND_OVER_INTERVAL: Duration = Duration::from_millis(1000);
/// Most events a call hands the writer at once.
const MAX_BATCH: usize = 256;
/// Most calls in one transaction of the writer (the rest wait for the next).
const MAX_CALLS_PER_WRITE: usize = 500;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the driver hands its persister.
///
/// Boxed events keep the call's channel small: it keeps a block of 32 slots for the whole call
/// (88 → 24 bytes a slot, 2.8 → 0.8 KiB a call).
pub enum Persist {
    Event(Box<CallEvent>),
    Finish {
        ended_at_ms: i64,
        duration_ms: i64,
        reason: EndReason,
    },
    /// The recorder could not write all of the call's recording (a full or failing disk).
    RecordingIncomplete,
}

/// A call's events held by its driver until the end of the current [`HAND_OVER_INTERVAL`]
/// (the driver runs on a connection thread, its persister on the main runtime: each hand-over
/// wakes that runtime from another thread, and calls handing over as their events came woke it
/// about once a second per call). Events are handed over in order, and before the call's end.
#[derive(Default)]
pub struct HandOver {
    held: Vec<Persist>,
    /// The end of the interval the first held event came in.
    due: Option<std::time::Instant>,
}

/// The process's start, which the hand-over intervals are counted from.
static INTERVALS_FROM: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn interval_of(at: std::time::Instant) -> u32 {
    let since = at.saturating_duration_since(*INTERVALS_FROM);
    (since.as_millis() / HAND_OVER_INTERVAL.as_millis()) as u32
}

/// When the interval `at` is in ends.
fn interval_end(at: std::time::Instant) -> std::time::Instant {
    *INTERVALS_FROM + HAND_OVER_INTERVAL * (interval_of(at) + 1)
}

impl HandOver {
    /// Hold `event`, which came `now`.
    pub fn hold(&mut self, now: std::time::Instant, event: Box<CallEvent>) {
        if self.held.is_empty() {
            self.due = Some(interval_end(now));
        }
        self.held.push(Persist::Event(event));
    }

    /// Hand over what is held when its interval is over (`now`); else when it will be.
    pub fn poll(
        &mut self,
        now: std::time::Instant,
        to: &mpsc::UnboundedSender<Persist>,
    ) -> Option<std::time::Instant> {
        let due = self.due?;
        if now < due {
            return Some(due);
        }
        self.hand_over(to);
        None
    }

    /// Hand over everything held now (the call is ending).
    pub fn hand_over(&mut self, to: &mpsc::UnboundedSender<Persist>) {
        self.due = None;
        for p in self.held.drain(..) {
            // (the persister outlives the call: it is gone only when the runtime is)
            let _ = to.send(p);
        }
    }
}

/// One journal line: a call's records, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// Events numbered from `first_seq`.
    Events {
        first_seq: i64,
        events: Vec<CallEvent>,
    },
    /// The end of the call, then its after-call work.
    Finish {
        ended_at_ms: i64,
        duration_ms: i64,
        reason: EndReason,
    },
    /// `calls.recording_incomplete`.
    RecordingIncomplete,
}

/// The server's one writer of call events: every call's events handed to it within
/// [`GROUP_WINDOW`] go into one transaction ([`Store::append_events_batch`]). Cheap to clone.
#[derive(Clone)]
pub struct EventWriter {
    store: Store,
    tx: mpsc::UnboundedSender<Pending>,
    /// Cuts the writer's gathering short: a call's last events are waiting.
    hurry: Arc<Notify>,
}

/// One call's events waiting for the writer, and where their outcome goes.
struct Pending {
    call_id: String,
    first_seq: i64,
    events: Vec<CallEvent>,
    done: oneshot::Sender<StoreResult<()>>,
}

impl EventWriter {
    /// Starts the writer on the current runtime; it stops when every clone is dropped.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hurry = Arc::new(Notify::new());
        tokio::spawn(write_events(store.clone(), rx, hurry.clone()));
        Self { store, tx, hurry }
    }

    /// Store `events` of `call_id`, numbered from `first_seq`, with whatever other calls hand
    /// over meanwhile (as [`Store::append_events`]: idempotent, all of them or none). `last`:
    /// the call has ended and its end waits for these, so they are written without waiting out
    /// the rest of [`GROUP_WINDOW`] (with what the other calls handed over so far).
    pub async fn append(
        &self,
        call_id: &str,
        first_seq: i64,
        events: Vec<CallEvent>,
        last: bool,
    ) -> StoreResult<()> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            call_id: call_id.to_string(),
            first_seq,
            events,
            done,
        };
        if let Err(mpsc::error::SendError(p)) = self.tx.send(pending) {
            // the writer is gone (the runtime is shutting down): write them alone
            return self
                .store
                .append_events(call_id, p.first_seq, &p.events)
                .await;
        }
        if last {
            self.hurry.notify_one();
        }
        match outcome.await {
            Ok(result) => result,
            // the writer stopped (the runtime is shutting down) with them unwritten: a failed
            // attempt, so the persister journals them
            Err(_) => Err(sqlx::Error::PoolClosed.into()),
        }
    }
}

/// The writer's loop: the first call's events wake it; it waits out [`GROUP_WINDOW`] (handing
/// events over meanwhile wakes nothing) or until a call's last events come, then writes
/// everything that came in one transaction.
async fn write_events(store: Store, mut rx: mpsc::UnboundedReceiver<Pending>, hurry: Arc<Notify>) {
    while let Some(first) = rx.recv().await {
        tokio::select! {
            () = tokio::time::sleep(GROUP_WINDOW) => {}
            () = hurry.notified() => {}
        }
        let mut batch = vec![first];
        while batch.len() < MAX_CALLS_PER_WRITE {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        write_batch(&store, batch).await;
    }
}

/// One transaction for `batch`; when it is refused, each call's events alone, so that one call's
/// fault (a call deleted meanwhile) does not hold back the others. Events whose persister gave
/// up waiting (it journaled them, see [`ATTEMPT_TIMEOUT`]) are not written here.
async fn write_batch(store: &Store, mut batch: Vec<Pending>) {
    batch.retain(|p| !p.done.is_closed());
    if batch.is_empty() {
        return;
    }
    let all: Vec<EventBatch<'_>> = batch
        .iter()
        .map(|p| EventBatch {
            call_id: &p.call_id,
            first_seq: p.first_seq,
            events: &p.events,
        })
        .collect();
    let together = store.append_events_batch(&all).await;
    match together {
        Ok(()) => {
            for p in batch {
                let _ = p.done.send(Ok(()));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(p) = batch.pop() {
                let _ = p.done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, calls = batch.len(), "a batch of call events was refused: writing each call's alone");
            for p in batch {
                if p.done.is_closed() {
                    continue;
                }
                let alone = store
                    .append_events(&p.call_id, p.first_seq, &p.events)
                    .await;
                let _ = p.done.send(alone);
            }
        }
    }
}

/// Write one record to the database (idempotent: see the module's documentation).
/// Events go through `writer` when given (the healthy path), else straight to the store (a
/// journal's replay, which must not queue behind a writer stuck on an unresponsive database).
/// `last`: the call's end follows (see [`EventWriter::append`]).
pub async fn apply(
    store: &Store,
    writer: Option<&EventWriter>,
    call_id: &str,
    record: &Record,
    can_text: bool,
    last: bool,
) -> StoreResult<()> {
    match record {
        Record::Events { first_seq, events } => match writer {
            Some(w) => w.append(call_id, *first_seq, events.clone(), last).await,
            None => store.append_events(call_id, *first_seq, events).await,
        },
        Record::Finish {
            ended_at_ms,
            duration_ms,
            reason,
        } => {
            store
                .finish_call(call_id, *ended_at_ms, *duration_ms, *reason)
                .await?;
            // the confirmation text, the call.ended event...: queued once, delivered by the
            // outbox worker
            crate::pipeline::after_call(store, call_id, can_text)
                .await
                .map(|_| ())
        }
        Record::RecordingIncomplete => store.mark_recording_incomplete(call_id).await,
    }
}

/// Apply `records` in order, each bounded by `limit` when given, stopping at the first that does
/// not go in: how many went in, and why the next did not.
async fn apply_in_order(
    store: &Store,
    writer: Option<&EventWriter>,
    call_id: &str,
    records: &[Record],
    can_text: bool,
    limit: Option<Duration>,
) -> (usize, Option<String>) {
    for (i, record) in records.iter().enumerate() {
        let last = records[i..]
            .iter()
            .any(|r| matches!(r, Record::Finish { .. }));
        let write = apply(store, writer, call_id, record, can_text, last);
        let refused = match limit {
            Some(limit) => match tokio::time::timeout(limit, write).await {
                Ok(result) => result.err().map(|e| e.to_string()),
                Err(_) => Some(format!("timed out after {limit:?}")),
            },
            None => write.await.err().map(|e| e.to_string()),
        };
        if refused.is_some() {
            return (i, refused);
        }
    }
    (records.len(), None)
}

/// The journal directory: one file per call whose records are not all in the database yet.
pub struct Journal {
    dir: PathBuf,
    /// Bytes in journal files (`receptionist_journal_bytes`).
    bytes: Gauge,
    /// Calls with a journal file (`receptionist_journal_calls`).
    calls: Gauge,
}

impl Journal {
    pub fn new(dir: PathBuf, bytes: Gauge, calls: Gauge) -> Self {
        Self { dir, bytes, calls }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, call_id: &str) -> PathBuf {
        journal_path(&self.dir, call_id)
    }

    /// Append `records` to the call's journal and sync it (on the blocking pool).
    pub async fn append(&self, call_id: &str, records: &[Record]) -> std::io::Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let path = self.path(call_id);
        let dir = self.dir.clone();
        let len = text.len() as i64;
        let created = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let created = f.metadata()?.len() == 0;
            // one write per append: a crash leaves at most a torn last line
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            Ok(created)
        })
        .await?;
        if created {
            self.calls.inc();
        }
        self.bytes.inc_by(len);
        Ok(())
    }

    /// The call's journaled records, in order (a torn last line is left out).
    pub async fn read(&self, call_id: &str) -> std::io::Result<Vec<Record>> {
        let path = self.path(call_id);
        blocking(move || read_journal(&path)).await
    }

    /// The call's journal is all in the database: remove it.
    pub async fn remove(&self, call_id: &str) -> std::io::Result<()> {
        let path = self.path(call_id);
        let len = blocking(move || {
            let len = std::fs::metadata(&path)?.len();
            std::fs::remove_file(&path)?;
            Ok(len)
        })
        .await?;
        self.calls.dec();
        self.bytes.dec_by(len as i64);
        Ok(())
    }

    /// Count what is already there (at start-up).
    pub fn count_existing(&self) {
        for (_, path) in pending_journals(&self.dir) {
            if let Ok(m) = std::fs::metadata(path) {
                self.calls.inc();
                self.bytes.inc_by(m.len() as i64);
            }
        }
    }
}

/// `DIR/CALL_ID.jsonl`.
pub fn journal_path(dir: &Path, call_id: &str) -> PathBuf {
    dir.join(format!("{call_id}.jsonl"))
}

/// Every journal file in `dir`: (call id, path), sorted by call id.
pub fn pending_journals(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let id = path
                .file_name()?
                .to_str()?
                .strip_suffix(".jsonl")?
                .to_string();
            Some((id, path))
        })
        .collect();
    out.sort();
    out
}

/// A journal file's records. A last line without its newline (the process died mid-write) is
/// left out; any other unreadable line is an error (the file is kept for a person to look at).
pub fn read_journal(path: &Path) -> std::io::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: line {}: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Replay `call_id`'s journal into the database, each record bounded by [`ATTEMPT_TIMEOUT`];
/// removes it when every record is in. `Ok(false)`: the database is still not taking them.
async fn replay(state: &AppState, call_id: &str) -> std::io::Result<bool> {
    let records = state.journal.read(call_id).await?;
    let can_text = state.config.can_text();
    let limit = Some(ATTEMPT_TIMEOUT);
    let (_, refused) = apply_in_order(&state.store, None, call_id, &records, can_text, limit).await;
    if let Some(error) = refused {
        tracing::debug!(call = %call_id, error, "journal replay: the database refused a record");
        return Ok(false);
    }
    state.journal.remove(call_id).await?;
    if records.iter().any(|r| matches!(r, Record::Finish { .. })) {
        state.outbox_notify.notify_one();
    }
    Ok(true)
}

/// At start-up, before calls are marked interrupted: every journal a previous run left, replayed.
/// A journal that cannot be replayed (the database refuses it) is kept and reported.
pub async fn replay_all(store: &Store, journal_dir: &Path, can_text: bool) -> usize {
    let mut replayed = 0;
    for (call_id, path) in pending_journals(journal_dir) {
        let records = match read_journal(&path) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(call = %call_id, error = %e, "unreadable call journal kept");
                continue;
            }
        };
        let (_, refused) = apply_in_order(store, None, &call_id, &records, can_text, None).await;
        if let Some(error) = &refused {
            tracing::error!(call = %call_id, error, "call journal not replayed: kept for the next start");
        }
        if refused.is_none() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    replayed += 1;
                    tracing::info!(call = %call_id, records = records.len(), "call journal replayed into the database");
                }
                Err(e) => {
                    tracing::error!(call = %call_id, error = %e, "cannot remove a replayed journal")
                }
            }
        }
    }
    replayed
}

/// A call's persister: writes what the driver sends, in order, to the database or its journal.
/// `durable` fires once the call's end (and everything before it) is in one or the other; the task
/// goes on replaying a journal after that, for as long as the database takes to come back.
pub async fn persist_call(
    state: AppState,
    call_id: String,
    mut rx: mpsc::UnboundedReceiver<Persist>,
    durable: oneshot::Sender<()>,
) {
    let mut durable = Some(durable);
    let mut seq: i64 = 0;
    // empty until events come: a call waits with nothing allocated here (a turn's burst is a
    // handful of events)
    let mut batch: Vec<CallEvent> = Vec::new();
    let mut finish: Option<Record> = None;
    let mut flag = false;
    // records of this call are in the journal and not yet all in the database
    let mut journaled = false;
    let mut backoff = FIRST_BACKOFF;
    let mut replay_at = tokio::time::Instant::now();
    let mut open = true;
    let push = |p: Persist,
                batch: &mut Vec<CallEvent>,
                finish: &mut Option<Record>,
                flag: &mut bool| match p {
        Persist::Event(e) => batch.push(*e),
        Persist::Finish {
            ended_at_ms,
            duration_ms,
            reason,
        } => {
            *finish = Some(Record::Finish {
                ended_at_ms,
                duration_ms,
                reason,
            })
        }
        Persist::RecordingIncomplete => *flag = true,
    };
    loop {
        if open {
            let first = if journaled {
                tokio::select! {
                    p = rx.recv() => p.map(Some),
                    () = tokio::time::sleep_until(replay_at) => Some(None),
                }
            } else {
                rx.recv().await.map(Some)
            };
            match first {
                None => open = false,
                Some(None) => {}
                Some(Some(first)) => {
                    // events come in bursts (a turn's transcript lines, latency, answers), sent
                    // in one go by the driver: take what is here; the writer gathers every
                    // call's for a moment, and what arrives meanwhile goes with the next
                    push(first, &mut batch, &mut finish, &mut flag);
                    while batch.len() < MAX_BATCH && finish.is_none() {
                        match rx.try_recv() {
                            Ok(p) => push(p, &mut batch, &mut finish, &mut flag),
                            Err(_) => break,
                        }
                    }
                }
            }
        } else if journaled {
            tokio::time::sleep_until(replay_at).await;
        } else {
            break;
        }

        let mut records = Vec::with_capacity(2);
        if !batch.is_empty() {
            let events = std::mem::take(&mut batch);
            let n = events.len() as i64;
            records.push(Record::Events {
                first_seq: seq,
                events,
            });
            seq += n;
        }
        let ends = finish.is_some();
        records.extend(finish.take());
        if std::mem::take(&mut flag) {
            records.push(Record::RecordingIncomplete);
        }

        let mut written = 0;
        if !journaled {
            let can_text = state.config.can_text();
            let limit = Some(ATTEMPT_TIMEOUT);
            let refused;
            // (boxed, as the journal's work below: the persister waits at `recv` for most of
            // the call, and its future would otherwise keep room for the writes the whole time)
            (written, refused) = Box::pin(apply_in_order(
                &state.store,
                Some(&state.events),
                &call_id,
                &records,
                can_text,
                limit,
            ))
            .await;
            if let Some(error) = refused {
                tracing::warn!(call = %call_id, error, "database write failed or timed out: the call's records go to its journal until it is back");
            }
            if ends && written == records.len() {
                state.outbox_notify.notify_one();
            }
        }
        if written < records.len() {
            Box::pin(journal_until_written(&state, &call_id, &records[written..])).await;
            if !journaled {
                journaled = true;
                backoff = FIRST_BACKOFF;
                replay_at = tokio::time::Instant::now() + backoff;
            }
        }
        if ends && let Some(tx) = durable.take() {
            let _ = tx.send(());
        }
        if journaled && tokio::time::Instant::now() >= replay_at {
            match Box::pin(replay(&state, &call_id)).await {
                Ok(true) => {
                    journaled = false;
                    tracing::info!(call = %call_id, "the database is back: the call's journal is replayed");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(call = %call_id, error = %e, "cannot read the call's journal back")
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            replay_at = tokio::time::Instant::now() + backoff;
        }
    }
    if let Some(tx) = durable.take() {
        let _ = tx.send(());
    }
}

/// Journal `records`, retrying until the disk takes them: a record is never dropped. A disk that
/// refuses (full, read-only) is logged loudly each time; the database may come back first, in
/// which case the replay takes the journal and these records in order (they are appended first).
async fn journal_until_written(state: &AppState, call_id: &str, records: &[Record]) {
    let mut delay = FIRST_BACKOFF;
    loop {
        match state.journal.append(call_id, records).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(call = %call_id, error = %e, dir = %state.journal.dir().display(), "cannot write the call journal (is the disk full?): retrying; the call's records are held in memory");
                state.metrics.journal_write_failed();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Speaker, TranscriptLine};

    fn line(text: &str) -> CallEvent {
        CallEvent::Transcript(TranscriptLine {
            speaker: Speaker::Caller,
            text: text.into(),
            start_ms: 1,
            end_ms: 2,
            interrupted: false,
            dtmf: false,
        })
    }

    fn texts(rx: &mut mpsc::UnboundedReceiver<Persist>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(p) = rx.try_recv() {
            match p {
                Persist::Event(e) => match *e {
                    CallEvent::Transcript(l) => out.push(l.text),
                    other => panic!("unexpected event {other:?}"),
                },
                _ => panic!("only events are held"),
            }
        }
        out
    }

    #[test]
    fn a_call_hands_its_events_over_once_an_interval_in_order_and_all_at_its_end() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut events = HandOver::default();
        // nothing held: nothing due
        let t0 = std::time::Instant::now();
        assert_eq!(events.poll(t0, &tx), None);
        let boundary = interval_end(t0);

        events.hold(t0, Box::new(line("one")));
        events.hold(t0, Box::new(line("two")));
        // held until the interval they came in is over, and due then
        assert_eq!(events.poll(t0, &tx), Some(boundary));
        let just_before = boundary - Duration::from_millis(1);
        assert_eq!(events.poll(just_before.max(t0), &tx), Some(boundary));
        assert!(texts(&mut rx).is_empty());
        // the first look after it hands them all over, in order
        assert_eq!(events.poll(boundary, &tx), None);
        assert_eq!(texts(&mut rx), ["one", "two"]);
        assert_eq!(events.poll(boundary, &tx), None);

        // an event in the next interval waits for that one's end, counted from when it came
        let later = boundary + HAND_OVER_INTERVAL / 2;
        events.hold(later, Box::new(line("three")));
        assert_eq!(events.poll(later, &tx), Some(boundary + HAND_OVER_INTERVAL));
        // the call ends: what is held goes at once
        events.hand_over(&tx);
        assert_eq!(texts(&mut rx), ["three"]);
        assert_eq!(events.poll(later, &tx), None);
    }

    #[tokio::test]
    async fn a_journal_keeps_records_in_order_and_drops_only_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = Gauge::default();
        let calls = Gauge::default();
        let j = Journal::new(dir.path().join("journal"), bytes.clone(), calls.clone());
        let a = Record::Events {
            first_seq: 0,
            events: vec![line("one"), line("two")],
        };
        let b = Record::Finish {
            ended_at_ms: 5,
            duration_ms: 4,
            reason: EndReason::Completed,
        };
        j.append("c1", std::slice::from_ref(&a)).await.unwrap();
        j.append("c1", std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(j.read("c1").await.unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(calls.get(), 1);
        let path = journal_path(j.dir(), "c1");
        assert_eq!(bytes.get(), std::fs::metadata(&path).unwrap().len() as i64);
        assert_eq!(
            pending_journals(j.dir()),
            vec![("c1".to_string(), path.clone())]
        );

        // a crash mid-write: the torn line is not a record
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"record\":\"eve")
            .unwrap();
        assert_eq!(read_journal(&path).unwrap(), vec![a, b]);
        // a damaged line in the middle is an error, not a silent loss
        std::fs::write(&path, "{\"record\":\"nonsense\"}\n{}\n").unwrap();
        assert!(read_journal(&path).is_err());

        j.remove("c1").await.unwrap();
        assert!(pending_journals(j.dir()).is_empty());
        assert_eq!(calls.get(), 0);
    }
}
