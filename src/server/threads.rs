//! Connection threads: the runtime shape for many tiny, periodic tasks.
//!
//! A call's work arrives as a small message every 20 ms (40 ms once the receive low-water mark is
//! raised, see `socket.rs`), and handling one takes microseconds: most of what a call costs is
//! waking a thread for it. On tokio's work-stealing runtime each wake-up of one worker tends to
//! wake the other too (to steal), and each socket becoming readable wakes a parked worker on its
//! own. Measured at 10 calls (`receptionist loadgen --calls 10`): about 50 context switches per
//! call-second, a fifth of the server's CPU in the kernel switching threads.
//!
//! So every accepted connection (HTTP requests and the media WebSockets they upgrade to) is served
//! on one of a few **connection threads**, each a single-threaded tokio runtime (no stealing, no
//! waking a second worker), and a thread that serves many calls **coalesces its wake-ups**: when
//! it runs out of work it first waits out the rest of [`WAKE_INTERVAL`] since it last woke, then
//! polls for everything that became ready meanwhile. It then wakes about 12 times a second
//! however many calls it serves, each wake-up handling every call that has something to do. It
//! does so only with at least [`COALESCE_FROM_CALLS`] calls (with one or two, each socket is
//! readable only every 40 ms, so a wait would often be followed by a second sleep in `epoll_wait`:
//! two switches where there was one) and never while an HTTP request is in progress (a request waits
//! on the database several times, and each wait would add up to an interval: 50 ms per API
//! request when measured), nor while a caller waits on a backend ([`WaitOnThread`]: the language
//! model, synthesis, a final transcript; the model's answer took 41 ms instead of 1 ms from a local
//! stand-in at 100 calls before this) or talks over the agent (each frame of that talk may be the
//! one that stops the agent), nor while a call is being set up (its `start` and the lookups after
//! it, until the greeting goes out), and it wakes by the time a caller quiet mid-turn will have
//! been quiet long enough to end the turn ([`DueOnThread`]), so the frame that ends a turn is
//! handled when it comes. The cost is at most one interval of added delay on a caller's other
//! frames or a mark echo (measured: the caller's reply latency did not move; the agent's audio
//! goes out seconds ahead in bursts, see the engine's pacing); a busy thread never waits (it only
//! waits when it would otherwise sleep).
//!
//! Connections are **packed**: a new one goes to the first thread serving fewer than
//! [`PACK_CONNECTIONS`] calls and connections, so a small deployment runs on one thread (one set
//! of wake-ups), and only once every thread has that many are they spread (to the least loaded).
//! Each connection stays on its thread for its lifetime (its socket is moved to that thread's
//! reactor when it is accepted).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::socket::PeerSocket;

/// The default shortest time between two wake-ups of a connection thread: five media frames. Not
/// longer than the moments a call must be handled at once: a caller talking over the agent and
/// a call being set up are not held back at all (the driver holds a [`WaitOnThread`]), and a
/// caller quiet mid-turn is handled when the frame that may end the turn arrives (the driver's
/// [`DueOnThread`]). Measured (README, performance, stop 50), at 10 calls against 40 ms: the
/// server's CPU 28 % less (exact per-thread CPU), the replies as soon (p99 860 → 842 ms), the
/// greeting sooner (42 → 2 ms, with the set-up's hold), the barge-in's `clear` and the playout
/// gaps unchanged. 100 ms since stop 51, the most `Config::wake_interval` allows: about a tenth
/// less CPU than 80 at 10, 100 and 500 calls, replies and gaps the same. (40 ms before stop 50,
/// a fifth less than 20 ms in issue 9's fourteenth round; 80 ms without the due times delayed
/// the slowest replies by about 35 ms.)
pub const WAKE_INTERVAL: Duration = Duration::from_millis(100);

/// Calls and open connections a thread takes before the next thread is used (see the module
/// docs). At the measured cost of a call on a busy thread (under 0.1 % of a core, `loadgen
/// --calls 500`) this is about a quarter of one core.
pub const PACK_CONNECTIONS: usize = 250;

/// Calls a thread serves before it holds back its wake-ups. Measured (`loadgen --calls N`, scripted
/// backends, the thread's on-CPU time from `/proc/PID/task/TID/schedstat`): a wake-up of a thread
/// costs this 2-core VM about 50-80 µs, so fewer pay even at low concurrency. At 10 calls the thread
/// switched 150 → 57 times a second and the server's CPU per call-second fell 18 % (0.0023 →
/// 0.0019, two runs each); at 3 calls 100 → 52 switches a second, conn-0's CPU 10 % less; at
/// 100 calls it saved 13 %. (An earlier measurement at 10 calls, before the receive low-water
/// mark, saw no gain; with it, a lone call's socket is readable only every 40 ms.)
pub const COALESCE_FROM_CALLS: usize = 3;

/// How long after a call's due time ([`DueOnThread`]) the thread keeps from batching its wake-ups
/// while that frame has not come (a little network delay); after it, the due time is ignored.
const DUE_GRACE: Duration = Duration::from_millis(60);

/// How long a graceful stop waits for HTTP requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The connection threads of a server. Dropping it stops them (and every task on them).
pub struct ConnectionThreads {
    threads: Vec<Thread>,
}

struct Thread {
    handle: tokio::runtime::Handle,
    load: Arc<Load>,
    /// Dropped to stop the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one) whose wake-ups are at least `wake_interval` apart
    /// (`Duration::ZERO`: wake at once, as a plain runtime does).
    pub fn start(count: usize, wake_interval: Duration) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let load = Arc::new(Load::default());
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            coalesce_wake_ups(&mut builder, wake_interval, load.clone());
            let runtime = builder.build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let mine = load.clone();
            std::thread::Builder::new()
                .name(format!("conn-{index}"))
                .spawn(move || {
                    THREAD_LOAD.set(Some(mine));
                    // runs the thread's tasks until the server drops its threads
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push(Thread {
                handle,
                load,
                _stop: stop,
            });
        }
        Ok(Self { threads })
    }

    /// What each thread serves now: open connections plus calls (a call's media WebSocket is no
    /// longer an HTTP connection once upgraded; it counts through [`CallOnThread`]).
    pub fn load(&self) -> Vec<usize> {
        self.threads.iter().map(|t| t.load.weight()).collect()
    }

    /// The thread for a new connection: see [`pick`].
    fn pick(&self) -> &Thread {
        &self.threads[pick(&self.load(), PACK_CONNECTIONS)]
    }

    /// Accepts connections until `shutdown` completes, serving each with `router` on a connection
    /// thread; then waits (up to 10 s) for HTTP requests in progress. Media WebSockets already
    /// upgraded are not waited for.
    pub async fn serve(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        // each connection task holds a sender: all dropped once every connection has ended
        let (open, mut all_closed) = mpsc::channel::<()>(1);
        let (stopping, stop) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // out of descriptors, or a connection reset before it was accepted: the
                    // listener itself is fine; back off a little on the former
                    tracing::debug!(error = %e, "accept failed");
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
            // small paced media frames: Nagle's algorithm would hold each back until the
            // previous one is acknowledged (up to the 40 ms delayed ACK)
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let peer = PeerSocket::of(&tcp);
            // move the socket from this runtime's reactor to the chosen thread's
            let tcp = match tcp.into_std() {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand a connection over");
                    continue;
                }
            };
            let thread = self.pick();
            let tcp = {
                let _entered = thread.handle.enter();
                match tokio::net::TcpStream::from_std(tcp) {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register a connection");
                        continue;
                    }
                }
            };
            let router = router.clone();
            let load = thread.load.clone();
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(ConnectInfo(peer));
                // the thread does not hold back its wake-ups while a request is in progress
                let in_progress = Counted::new(&load, |l| &l.requests);
                let response = tower::ServiceExt::oneshot(router.clone(), req);
                async move {
                    let response = response.await;
                    drop(in_progress);
                    response
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let live = Counted::new(&thread.load, |l| &l.connections);
            let (open, mut stop) = (open.clone(), stop.clone());
            thread.handle.spawn(async move {
                let _live = live;
                let _open = open;
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = connection.as_mut() => ended,
                    _ = async { stop.wait_for(|&s| s).await.map(|_| ()) } => {
                        // finish the request in progress, take no more
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = stopping.send(true);
        drop(open);
        if tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("requests still in progress at shutdown");
        }
        Ok(())
    }
}

/// The thread for a new connection, from the connections each serves: the first serving fewer
/// than `pack`, else the least loaded (the first of equals).
pub fn pick(load: &[usize], pack: usize) -> usize {
    if let Some(i) = load.iter().position(|&n| n < pack) {
        return i;
    }
    load.iter()
        .enumerate()
        .min_by_key(|&(_, &n)| n)
        .map_or(0, |(i, _)| i)
}

/// What one connection thread serves.
#[derive(Debug, Default)]
struct Load {
    /// Open HTTP connections (a media WebSocket leaves hyper when it is upgraded).
    connections: AtomicUsize,
    /// Calls in progress on the thread.
    calls: AtomicUsize,
    /// HTTP requests in progress (their handlers are waiting on the database, say).
    requests: AtomicUsize,
    /// When each call that registered one ([`DueOnThread`]) has a decision due: a caller quiet
    /// mid-turn whose silence will then be long enough to end the turn (`None`: nothing due).
    /// Only the thread itself touches it (its calls and its park hook), so the lock is never
    /// contended.
    dues: Mutex<Dues>,
}

/// The calls' due times on one thread, a slot per call that has one.
#[derive(Debug, Default)]
struct Dues {
    slots: Vec<Option<Instant>>,
    free: Vec<usize>,
}

impl Dues {
    /// A slot for a new call (a freed one if there is one), with nothing due.
    fn claim(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        })
    }

    fn set(&mut self, slot: usize, due: Option<Instant>) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = due;
        }
    }

    /// The call of `slot` has ended: nothing due, and the slot free for the next call.
    fn release(&mut self, slot: usize) {
        self.set(slot, None);
        self.free.push(slot);
    }

    /// The earliest due time not more than [`DUE_GRACE`] before `now` (an older one is a call
    /// that has not been woken since: its frame is late, and waiting on it would stop the
    /// batching).
    fn earliest(&self, now: Instant) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter(|&&due| now.saturating_duration_since(due) <= DUE_GRACE)
            .min()
            .copied()
    }
}

impl Load {
    fn weight(&self) -> usize {
        self.connections.load(Ordering::Relaxed) + self.calls.load(Ordering::Relaxed)
    }

    /// Whether the thread holds back its wake-ups: only with enough calls for batching to pay
    /// ([`COALESCE_FROM_CALLS`]) and no HTTP request in progress (a request waits on the
    /// database several times; each wait would add up to an interval).
    /// Its calls' due times (a call that panicked while holding them left them whole: each
    /// change is one assignment).
    fn dues(&self) -> std::sync::MutexGuard<'_, Dues> {
        self.dues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn coalesces(&self) -> bool {
        self.requests.load(Ordering::Relaxed) == 0
            && self.calls.load(Ordering::Relaxed) >= COALESCE_FROM_CALLS
    }
}

/// Counts one thing in a counter while it lives.
struct Counted(Arc<Load>, fn(&Load) -> &AtomicUsize);

impl Counted {
    fn new(load: &Arc<Load>, counter: fn(&Load) -> &AtomicUsize) -> Self {
        counter(load).fetch_add(1, Ordering::Relaxed);
        Self(load.clone(), counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The load of the connection thread this is (none on other threads).
    static THREAD_LOAD: std::cell::RefCell<Option<Arc<Load>>> = const { std::cell::RefCell::new(None) };
}

/// A call in progress, counted on the connection thread it runs on (nothing elsewhere, e.g. in
/// tests that drive the router without connection threads).
pub struct CallOnThread(#[allow(dead_code)] Option<Counted>);

impl CallOnThread {
    pub fn enter() -> Self {
        Self(THREAD_LOAD.with_borrow(|load| load.as_ref().map(|l| Counted::new(l, |l| &l.calls))))
    }
}

/// A caller waiting on a backend (the language model, synthesis, the final transcript), or
/// talking over the agent (whose frames decide a barge-in), counted as a request in progress
/// while it lives: the thread does not hold back its wake-ups while a caller waits, since each of
/// the request's waits would add up to an interval.
pub struct WaitOnThread(#[allow(dead_code)] Option<Counted>);

impl WaitOnThread {
    pub fn enter() -> Self {
        Self(
            THREAD_LOAD.with_borrow(|load| load.as_ref().map(|l| Counted::new(l, |l| &l.requests))),
        )
    }
}

/// A call's slot for the time its next decision is due (see [`CallEngine::turn_decision_due`]):
/// a thread that batches its wake-ups does not sleep past the earliest of its calls' due times,
/// so the frame that ends a caller's turn is handled when it arrives, not up to an interval
/// later. Nothing on threads that are not connection threads.
///
/// [`CallEngine::turn_decision_due`]: crate::engine::call::CallEngine::turn_decision_due
pub struct DueOnThread(Option<(Arc<Load>, usize)>);

impl DueOnThread {
    pub fn enter() -> Self {
        Self(THREAD_LOAD.with_borrow(|load| load.as_ref().map(|l| (l.clone(), l.dues().claim()))))
    }

    /// The call's next decision is due at `due` (`None`: nothing due).
    pub fn set(&self, due: Option<Instant>) {
        if let Some((load, slot)) = &self.0 {
            load.dues().set(*slot, due);
        }
    }
}

impl Drop for DueOnThread {
    fn drop(&mut self) {
        if let Some((load, slot)) = self.0.take() {
            load.dues().release(slot);
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Makes the thread of `builder` wait, when it runs out of work and `load` says so
/// ([`Load::coalesces`]), until `interval` has passed since it last woke, before it polls for
/// events (see the module docs).
fn coalesce_wake_ups(builder: &mut tokio::runtime::Builder, interval: Duration, load: Arc<Load>) {
    thread_local! {
        static WOKE: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    if interval.is_zero() {
        return;
    }
    builder
        .on_thread_park(move || {
            if !load.coalesces() {
                return;
            }
            let now = Instant::now();
            let due = load.dues().earliest(now);
            if let Some(wait) = wait_before_park(WOKE.get(), now, interval, due) {
                std::thread::sleep(wait);
            }
        })
        .on_thread_unpark(|| WOKE.set(Some(Instant::now())));
}

/// How long a worker that last woke at `woke` waits at `now` before it parks: the rest of the
/// interval, if any, but not past `due` (a call's decision due then; at or after it, no wait).
fn wait_before_park(
    woke: Option<Instant>,
    now: Instant,
    interval: Duration,
    due: Option<Instant>,
) -> Option<Duration> {
    let since = now.saturating_duration_since(woke?);
    let rest = interval.checked_sub(since).filter(|r| !r.is_zero())?;
    match due {
        Some(due) => Some(rest.min(due.checked_duration_since(now)?)).filter(|w| !w.is_zero()),
        None => Some(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_packed_then_spread() {
        assert_eq!(pick(&[0, 0], 100), 0);
        assert_eq!(pick(&[99, 0], 100), 0);
        assert_eq!(pick(&[100, 0], 100), 1);
        assert_eq!(pick(&[100, 100], 100), 0);
        assert_eq!(pick(&[130, 100, 120], 100), 1);
        assert_eq!(pick(&[], 100), 0);
    }

    #[test]
    fn only_a_thread_with_enough_calls_and_no_request_in_progress_holds_back() {
        let load = Arc::new(Load::default());
        let calls: Vec<Counted> = (0..COALESCE_FROM_CALLS - 1)
            .map(|_| Counted::new(&load, |l| &l.calls))
            .collect();
        assert!(!load.coalesces(), "too few calls for batching to pay");
        let last = Counted::new(&load, |l| &l.calls);
        assert!(load.coalesces());
        let request = Counted::new(&load, |l| &l.requests);
        assert!(!load.coalesces(), "a request waiting on the database");
        drop(request);
        assert!(load.coalesces());
        assert_eq!(load.weight(), COALESCE_FROM_CALLS);
        drop((calls, last));
        assert_eq!(load.weight(), 0);
        assert!(CallOnThread::enter().0.is_none(), "not a connection thread");
    }

    #[test]
    fn a_worker_waits_out_the_rest_of_its_interval() {
        let t0 = Instant::now();
        let i = Duration::from_millis(20);
        assert_eq!(
            wait_before_park(None, t0, i, None),
            None,
            "never woken: no wait"
        );
        assert_eq!(
            wait_before_park(Some(t0), t0 + Duration::from_millis(5), i, None),
            Some(Duration::from_millis(15))
        );
        assert_eq!(wait_before_park(Some(t0), t0 + i, i, None), None);
        assert_eq!(
            wait_before_park(Some(t0), t0 + Duration::from_millis(300), i, None),
            None
        );
    }

    #[test]
    fn a_worker_does_not_wait_past_a_calls_due_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let i = ms(80);
        let now = t0 + ms(10);
        assert_eq!(wait_before_park(Some(t0), now, i, None), Some(ms(70)));
        assert_eq!(
            wait_before_park(Some(t0), now, i, Some(t0 + ms(30))),
            Some(ms(20)),
            "woken by the due time"
        );
        assert_eq!(
            wait_before_park(Some(t0), now, i, Some(t0 + ms(200))),
            Some(ms(70)),
            "a due time after the interval changes nothing"
        );
        assert_eq!(
            wait_before_park(Some(t0), now, i, Some(now)),
            None,
            "due now: no wait"
        );
        assert_eq!(
            wait_before_park(Some(t0), now, i, Some(t0)),
            None,
            "due already: the frame is awaited without batching"
        );
    }

    #[test]
    fn the_earliest_due_time_of_the_calls_counts_and_a_stale_one_does_not() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut dues = Dues::default();
        assert_eq!(dues.earliest(t0), None);
        dues.slots = vec![Some(t0 + ms(50)), None, Some(t0 + ms(20))];
        assert_eq!(dues.earliest(t0), Some(t0 + ms(20)));
        // 20 ms late: still awaited; more than the grace late: ignored
        assert_eq!(dues.earliest(t0 + ms(40)), Some(t0 + ms(20)));
        assert_eq!(
            dues.earliest(t0 + ms(20) + DUE_GRACE + ms(1)),
            Some(t0 + ms(50))
        );
    }

    #[test]
    fn a_calls_due_slot_is_freed_with_it() {
        let load = Arc::new(Load::default());
        THREAD_LOAD.set(Some(load.clone()));
        let t0 = Instant::now();
        let a = DueOnThread::enter();
        let b = DueOnThread::enter();
        a.set(Some(t0));
        b.set(Some(t0 + Duration::from_millis(5)));
        assert_eq!(load.dues().earliest(t0), Some(t0));
        drop(a);
        assert_eq!(
            load.dues().earliest(t0),
            Some(t0 + Duration::from_millis(5))
        );
        let c = DueOnThread::enter();
        assert_eq!(load.dues().slots.len(), 2, "the freed slot is reused");
        drop((b, c));
        assert_eq!(load.dues().earliest(t0), None);
        THREAD_LOAD.set(None);
        assert!(DueOnThread::enter().0.is_none(), "not a connection thread");
    }

    #[tokio::test]
    async fn connections_are_served_on_the_threads_and_counted() {
        let threads = ConnectionThreads::start(2, WAKE_INTERVAL).unwrap();
        let router = Router::new().route(
            "/thread",
            axum::routing::get(|ConnectInfo(_peer): ConnectInfo<PeerSocket>| async {
                std::thread::current()
                    .name()
                    .unwrap_or_default()
                    .to_string()
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let threads = Arc::new(threads);
        let serving = tokio::spawn({
            let threads = threads.clone();
            async move {
                threads
                    .serve(listener, router, async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        let client = reqwest::Client::new();
        let body = client
            .get(format!("http://{addr}/thread"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "conn-0", "packed onto the first thread");
        assert_eq!(threads.load(), [1, 0], "the kept-alive connection counts");
        drop(client);
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
    }
}
