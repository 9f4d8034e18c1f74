//! All I/O: HTTP routes (carrier webhooks, media WebSocket, recruiter API), the per-call driver.

pub mod api;
pub mod auth;
pub mod carriers;
pub mod dashboard;
pub mod drain;
pub mod driver;
pub mod error;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod persist;
pub mod socket;
pub mod threads;

/// Twilio's HTTP side, where it was before the other carriers came.
pub use carriers::twilio;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::backends::{Backends, PromptCache};
use crate::config::ServeConfig;
use crate::recording::Recorder;
use crate::store::Store;

/// Shared by every route. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServeConfig>,
    pub backends: Backends,
    /// The language model the dialogue consults (`--llm`), if any.
    pub llm: Option<crate::backends::llm::LanguageModel>,
    /// What the agent says, translated for callers in other languages (multilingual mode).
    pub translations: crate::backends::llm::Translations,
    /// Each custom context's sentences by meaning (with a sentence encoder), computed once.
    pub context_meanings: ContextMeaningsCache,
    pub prompts: PromptCache,
    pub recorder: Recorder,
    pub calls: Arc<CallSlots>,
    /// `GET /metrics`: calls, turn latencies, dropped frames, backend errors.
    pub metrics: Arc<metrics::Metrics>,
    /// Wakes the outbox worker: `notify_one()` after committing outbox rows so they go out at
    /// once rather than at the worker's next 1 s poll.
    pub outbox_notify: Arc<tokio::sync::Notify>,
    /// Call records the database did not take yet (`persist.rs`).
    pub journal: Arc<persist::Journal>,
    /// Every call's events, gathered into one transaction (`persist.rs`).
    pub events: persist::EventWriter,
    /// The runtime a call's database work runs on (the server's main, multi-threaded one), not
    /// the connection thread its audio runs on: a busy connection thread holds back its wake-ups
    /// (`threads.rs`), which added up to 20 ms to every statement of a transaction awaited there,
    /// and SQLite's one writer was held that long (see [`AppState::on_background`]).
    pub background: tokio::runtime::Handle,
}

impl AppState {
    pub fn new(store: Store, config: ServeConfig, backends: Backends) -> Self {
        let prompts = PromptCache::new(backends.tts.clone());
        let max = config.max_calls();
        let metrics = Arc::new(metrics::Metrics::new());
        let journal = Arc::new(persist::Journal::new(
            config.journal_dir(),
            metrics.journal_bytes(),
            metrics.journal_calls(),
        ));
        let events = persist::EventWriter::start(store.clone());
        let recorder = Recorder::start_slowed(
            config.recorder_queue.max(1),
            (config.recorder_delay_ms > 0)
                .then(|| std::time::Duration::from_millis(config.recorder_delay_ms)),
        );
        Self {
            store,
            config: Arc::new(config),
            backends,
            llm: None,
            translations: Default::default(),
            context_meanings: Default::default(),
            prompts,
            recorder,
            calls: Arc::new(CallSlots::new(max)),
            journal,
            events,
            metrics,
            outbox_notify: Arc::new(tokio::sync::Notify::new()),
            background: tokio::runtime::Handle::current(),
        }
    }

    /// Runs `work` (database work for a call) on [`AppState::background`] and waits for it; the
    /// calling connection thread counts as waiting ([`threads::WaitOnThread`]) meanwhile, so it
    /// takes the result at once.
    ///
    /// The work is spawned when this is called, not when the result is first polled, so the
    /// caller's future holds only the task's handle, never the work itself (a database future
    /// can be kilobytes, kept for the whole of a call otherwise).
    pub fn on_background<T, F>(&self, work: F) -> impl std::future::Future<Output = T> + use<T, F>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let waiting = threads::WaitOnThread::enter();
        let task = self.background.spawn(work);
        async move {
            let _waiting = waiting;
            match task.await {
                Ok(out) => out,
                // the task is never aborted; a panic in it is the caller's own
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
}

impl AppState {
    /// Synthesise a receptionist's fixed prompts in the background, so its calls start speaking
    /// at once.
    pub fn warm_prompts_for(&self, settings: &crate::model::ReceptionistSettings) {
        let state = self.clone();
        let settings = settings.clone();
        tokio::spawn(async move { state.warm_receptionist_prompts(&settings).await });
    }

    /// Synthesise (or find cached) every fixed prompt of a receptionist, the apology and
    /// goodbyes included.
    async fn warm_receptionist_prompts(&self, settings: &crate::model::ReceptionistSettings) {
        let texts = crate::engine::dialogue::Dialogue::fixed_prompts(settings);
        self.prompts.warm(&settings.voice, &texts).await;
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (router, _document) = routes().split_for_parts();
    router
        // the recruiters' page and its files: served here, not part of the documented API
        .merge(dashboard::router())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
        .with_state(state)
}

/// Every route with its OpenAPI operation (see `openapi.rs`): registering a handler with
/// `routes!` both serves it and documents it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(drain::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json))
        .merge(carriers::router())
        .routes(routes!(media::web_call))
        .merge(api::routes())
}

/// Liveness: answers `ok` while the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "The server is up", content_type = "text/plain", body = String, example = "ok")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Concurrent call accounting for this node: a slot is taken when the webhook accepts a call and
/// given back when its media session ends, or when the carrier never connects. Also where the
/// drain (`drain.rs`) closes the node to new calls and tells calls in progress to end.
pub struct CallSlots {
    max: usize,
    active: AtomicUsize,
    held: Mutex<HashMap<String, SlotGuard>>,
    /// Draining: no new slots (a slot already held for an accepted call can still be claimed).
    closed: AtomicBool,
    /// Set when the drain period is over: calls in progress say goodbye and end.
    end_calls: tokio::sync::watch::Sender<bool>,
    /// Calls whose audio has ended and whose records are still on their way to the database or
    /// the journal: they no longer hold a slot, but the drain waits for them.
    storing: AtomicUsize,
    /// Notified whenever a slot is given back or a call's records are stored.
    returned: tokio::sync::Notify,
}

impl CallSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            active: AtomicUsize::new(0),
            held: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            end_calls: tokio::sync::watch::Sender::new(false),
            storing: AtomicUsize::new(0),
            returned: tokio::sync::Notify::new(),
        }
    }

    /// Calls in progress, and calls accepted whose stream has not connected yet.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Take no new calls (the drain): the webhooks answer busy, new streams are refused.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether a slot is held for `call_id`: accepted here, its stream not connected yet.
    pub fn is_held(&self, call_id: &str) -> bool {
        self.held().contains_key(call_id)
    }

    /// Whether any accepted call has yet to connect its stream.
    pub fn any_held(&self) -> bool {
        !self.held().is_empty()
    }

    /// Tell every call in progress (and any that starts from now on) to say goodbye and end.
    pub fn end_calls(&self) {
        self.end_calls.send_replace(true);
    }

    /// Becomes `true` when calls must end ([`Self::end_calls`]).
    pub fn ending(&self) -> tokio::sync::watch::Receiver<bool> {
        self.end_calls.subscribe()
    }

    /// Trade a call's slot, once its audio has ended, for a place among the calls whose records
    /// are being stored: a new call can take the slot at once (hundreds of calls ending together
    /// no longer make the next ones busy while their records are written), and the drain still
    /// waits for the records.
    pub fn storing(self: &Arc<Self>, slot: SlotGuard) -> Storing {
        self.storing.fetch_add(1, Ordering::SeqCst);
        drop(slot);
        Storing {
            slots: self.clone(),
        }
    }

    /// Until every slot is given back and every ended call's records are stored.
    pub async fn wait_idle(&self) {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // registered before the count is read, so a slot given back in between still wakes it
            returned.as_mut().enable();
            if self.active() == 0 && self.storing.load(Ordering::SeqCst) == 0 {
                return;
            }
            returned.await;
        }
    }

    /// A slot, unless the node is at its limit or closed.
    pub fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        let mut cur = self.active.load(Ordering::SeqCst);
        loop {
            if cur >= self.max || self.is_closed() {
                return None;
            }
            match self
                .active
                .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(SlotGuard {
                        slots: self.clone(),
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, SlotGuard>> {
        // a poisoned map only means a panic elsewhere while holding it; the map is still valid
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep an accepted call's slot until its stream connects (or 60 s pass).
    pub fn hold(self: &Arc<Self>, call_id: String, slot: SlotGuard) {
        self.held().insert(call_id.clone(), slot);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if me.held().remove(&call_id).is_some() {
                tracing::info!(call = %call_id, "accepted call never connected its stream");
            }
        });
    }

    /// The slot held for `call_id` by its webhook; on another node (or after the hold expired),
    /// a fresh one if any is free.
    pub fn claim(self: &Arc<Self>, call_id: &str) -> Option<SlotGuard> {
        let held = self.held().remove(call_id);
        held.or_else(|| self.try_acquire())
    }
}

/// An ended call whose records are being stored ([`CallSlots::storing`]), until dropped.
pub struct Storing {
    slots: Arc<CallSlots>,
}

impl Drop for Storing {
    fn drop(&mut self) {
        self.slots.storing.fetch_sub(1, Ordering::SeqCst);
        self.slots.returned.notify_waiters();
    }
}

/// Returns its slot when dropped.
pub struct SlotGuard {
    slots: Arc<CallSlots>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.active.fetch_sub(1, Ordering::SeqCst);
        self.slots.returned.notify_waiters();
    }
}

/// Start the server: connect the database, repair what a crash left, listen.
pub async fn serve(mut config: ServeConfig) -> anyhow::Result<()> {
    // every backend choice is checked before anything starts: a missing key fails here
    let plan = crate::backends::select::plan(&config).map_err(anyhow::Error::msg)?;
    if config.telnyx_stream_codec == crate::config::TelnyxStreamCodec::Opus
        && !cfg!(feature = "opus")
    {
        anyhow::bail!("TELNYX_STREAM_CODEC=OPUS needs a build with the `opus` feature");
    }
    std::fs::create_dir_all(&config.data_dir)?;
    std::fs::create_dir_all(config.recordings_dir())?;
    let store = Store::connect(&config.database_url()).await?;
    // what a previous run journaled while its database was away goes in first, so that calls it
    // ended are stored as they ended rather than as interrupted
    persist::replay_all(&store, &config.journal_dir(), config.can_text()).await;
    recover(&store, &config).await?;
    let (backends, llm) = crate::backends::select::build(&plan)?;
    let (stt_model, tts_model, llm_model) = plan.models();
    config.settle_max_calls(plan.speech_models_here());
    let max_calls = config.max_calls();
    tracing::info!(
        stt = plan.stt_name(),
        tts = plan.tts_name(),
        llm = if llm.is_some() { "openai" } else { "none" },
        end_of_turn = if backends.end_of_turn.is_some() {
            "smart"
        } else {
            "silence"
        },
        // how caller questions find their answer in the custom context
        context_answers = if backends.meaning.is_some() {
            "meaning"
        } else {
            "words"
        },
        stt_model,
        tts_model,
        llm_model,
        max_calls,
        "speech backends"
    );
    let listen = config.listen;
    let drain_period = config.drain_period();
    let worker = crate::delivery::Worker::new(store.clone(), &config, &config.node_id)?;
    let mut state = AppState::new(store.clone(), config, backends);
    state.journal.count_existing();
    state.llm = llm.map(crate::backends::llm::LanguageModel::new);
    // Deliveries run in their own task: a slow or dead receiver never holds up a call or a request.
    let outbox = worker
        .with_metrics(state.metrics.clone())
        .spawn(state.outbox_notify.clone());
    // synthesise every live receptionist's fixed prompts and the shared ones before taking calls
    warm_prompts(&state).await;
    let threads = threads::ConnectionThreads::start(
        state.config.connection_threads(),
        state.config.wake_interval(),
    )?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        public_url = %state.config.public_url(),
        backends = state.backends.name,
        connection_threads = state.config.connection_threads(),
        wake_interval_ms = state.config.wake_interval().as_millis() as u64,
        "listening"
    );
    // each connection is served on a connection thread, its socket recorded so that a media
    // upgrade can tune it (`socket.rs`); on SIGTERM or SIGINT the server drains (`drain.rs`) while
    // it goes on answering requests, then stops accepting connections
    let draining = state.clone();
    threads
        .serve(listener, router(state), async move {
            drain::signal().await;
            drain::drain(&draining, drain_period).await;
        })
        .await?;
    drop(threads);
    // Rows in flight keep their lease and are retried after it expires (at-least-once).
    outbox.abort();
    store.close().await;
    Ok(())
}

/// Calls this node left unfinished (a crash or a kill) are marked interrupted and their
/// recordings made playable.
pub async fn recover(store: &Store, config: &ServeConfig) -> anyhow::Result<()> {
    let stale = store
        .interrupt_unfinished_calls(&config.node_id, crate::store::now_ms())
        .await?;
    for (call_id, path) in stale {
        if let Some(path) = path {
            let full = config.data_dir.join(&path);
            match crate::recording::repair(&full) {
                Ok(bytes) => {
                    tracing::info!(call = %call_id, bytes, "repaired an interrupted call's recording")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(call = %call_id, error = %e, "cannot repair recording"),
            }
        }
        tracing::info!(call = %call_id, "marked interrupted");
    }
    // after-call work a stop cut short (the calls just interrupted included)
    for call_id in store.calls_awaiting_after_call().await? {
        if let Err(e) = crate::pipeline::after_call(store, &call_id, config.can_text()).await {
            tracing::warn!(call = %call_id, error = %e, "after-call work failed at start-up");
        }
    }
    Ok(())
}

async fn warm_prompts(state: &AppState) {
    match state.store.all_live_receptionists().await {
        Ok(list) => {
            for r in list {
                state.warm_receptionist_prompts(&r.settings).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list receptionists to warm prompts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_call_storing_its_records_frees_its_slot_but_holds_the_drain() {
        let slots = Arc::new(CallSlots::new(1));
        let slot = slots.try_acquire().expect("a free slot");
        assert!(slots.try_acquire().is_none(), "one slot, taken");

        // the call's audio ended: its records are still being stored
        let storing = slots.storing(slot);
        assert_eq!(slots.active(), 0);
        let next = slots
            .try_acquire()
            .expect("the next caller gets the slot at once");
        drop(next);

        // the drain waits for the records, and only for them
        let idle = tokio::spawn({
            let slots = slots.clone();
            async move { slots.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!idle.is_finished(), "records still being stored");
        drop(storing);
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle once the records are stored")
            .unwrap();
    }
}

/// Custom contexts by meaning, computed once each by the sentence encoder (`backends::meaning`)
/// and shared by every call of every receptionist with that context. Bounded: past
/// [`MAX_CONTEXTS`] it starts again (a context is a few sentences; recomputing one costs tens of
/// milliseconds).
#[derive(Clone, Default)]
pub struct ContextMeaningsCache {
    inner: Arc<
        std::sync::Mutex<
            std::collections::HashMap<
                String,
                Arc<crate::engine::dialogue::context::ContextMeanings>,
            >,
        >,
    >,
}

/// Contexts kept by meaning.
pub const MAX_CONTEXTS: usize = 1_024;

impl ContextMeaningsCache {
    /// `context` by meaning: kept from before, or encoded now on the blocking pool. `None` when
    /// there is nothing to match (no encoder, an empty context) or the encoder failed (logged;
    /// the words alone then decide).
    pub async fn get(
        &self,
        encoder: Option<&Arc<crate::backends::meaning::SentenceEncoder>>,
        context: &str,
    ) -> Option<Arc<crate::engine::dialogue::context::ContextMeanings>> {
        let encoder = encoder?.clone();
        if context.trim().is_empty() {
            return None;
        }
        if let Some(hit) = self.lock().get(context) {
            return Some(hit.clone());
        }
        let sentences = crate::engine::dialogue::context::sentences(context);
        let encoded = tokio::task::spawn_blocking(move || {
            let vectors = sentences
                .iter()
                .map(|s| encoder.encode(s))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, crate::backends::BackendError>(
                crate::engine::dialogue::context::ContextMeanings { sentences, vectors },
            )
        })
        .await;
        match encoded {
            Ok(Ok(m)) => {
                let m = Arc::new(m);
                let mut map = self.lock();
                if map.len() >= MAX_CONTEXTS {
                    map.clear();
                }
                map.insert(context.to_string(), m.clone());
                Some(m)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "context not encoded: questions matched by words");
                None
            }
            Err(_) => None,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, Arc<crate::engine::dialogue::context::ContextMeanings>>,
    > {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
