//! A fixed set of engines (recogniser decoders, ONNX sessions) lent out one at a time.
//!
//! Each engine holds state that cannot be shared while it runs (a decoder's buffers, a session's
//! arena), so a backend loads as many as it may run at once and lends them out: a caller waits
//! for a free one ([`LeasePool::lease`]), takes one only if one is free now
//! ([`LeasePool::try_lease`], for speculative work that must not queue behind real work), and
//! gets it back on drop, even if the work panicked.
//!
//! Work done ahead of need (warming the prompt cache when a receptionist is saved, preparing a
//! goodbye) runs [`in_background`]: it holds at most all but one of a pool's engines, so a live
//! call's reply finds an engine at once instead of queueing behind a batch of prompts. (Measured cause:
//! a new receptionist's prompts, warmed two at a time on the Piper voice's two sessions, held
//! both while a call's first reply waited past its synthesis deadline.)

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::BackendError;

tokio::task_local! {
    static BACKGROUND: ();
}

/// Runs `work` as background work: every engine it leases (at any depth, on this task) is one
/// that leaves another free for live work; see the module docs.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// The current task runs [`in_background`].
pub fn is_background() -> bool {
    BACKGROUND.try_with(|_| ()).is_ok()
}

/// Engines of one kind, lent out one at a time.
pub struct LeasePool<T> {
    name: &'static str,
    free: Mutex<Vec<T>>,
    /// One permit per engine in `free`: holding a permit guarantees one is there.
    permits: Arc<Semaphore>,
    /// Background work holds one of these as well: one fewer than the engines (at least one, so a
    /// pool of one still serves it), so the last engine stays free for live work.
    background: Arc<Semaphore>,
}

/// An engine borrowed from a [`LeasePool`]; back in the pool when dropped.
pub struct Lease<T> {
    item: Option<T>,
    pool: Arc<LeasePool<T>>,
    // dropped after `drop` has put the engine back, so a waiter always finds one
    _permit: OwnedSemaphorePermit,
    _background: Option<OwnedSemaphorePermit>,
}

impl<T> LeasePool<T> {
    /// A pool lending `items`; `name` is said in its errors.
    pub fn new(name: &'static str, items: Vec<T>) -> Arc<Self> {
        Arc::new(Self {
            name,
            permits: Arc::new(Semaphore::new(items.len())),
            background: Arc::new(Semaphore::new(items.len().saturating_sub(1).max(1))),
            free: Mutex::new(items),
        })
    }

    /// An engine, waiting for one to be free (background work: one that is not the last free).
    pub async fn lease(self: &Arc<Self>) -> Result<Lease<T>, BackendError> {
        let closed = || BackendError::Unavailable(format!("{}: pool closed", self.name));
        let background = match is_background() {
            true => Some(
                self.background
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| closed())?,
            ),
            false => None,
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        self.take(permit, background)
    }

    /// An engine only if one is free now (background work: and it is not the last free).
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease<T>> {
        let background = match is_background() {
            true => Some(self.background.clone().try_acquire_owned().ok()?),
            false => None,
        };
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.take(permit, background).ok()
    }

    fn take(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        background: Option<OwnedSemaphorePermit>,
    ) -> Result<Lease<T>, BackendError> {
        let item = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match item {
            Some(item) => Ok(Lease {
                item: Some(item),
                pool: self.clone(),
                _permit: permit,
                _background: background,
            }),
            // unreachable while permits match engines; fail the work, not the process
            None => Err(BackendError::Failed(format!(
                "{}: no free engine",
                self.name
            ))),
        }
    }

    /// Run `f` with an engine on a blocking thread (never on the async workers), waiting for a
    /// free engine first.
    pub async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R, BackendError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&mut T) -> Result<R, BackendError> + Send + 'static,
    {
        let lease = self.lease().await?;
        lease.run(f).await
    }
}

impl<T> Lease<T> {
    /// Run `f` with this engine on a blocking thread; the engine goes back when it is done.
    pub async fn run<R, F>(mut self, f: F) -> Result<R, BackendError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&mut T) -> Result<R, BackendError> + Send + 'static,
    {
        let name = self.pool.name;
        tokio::task::spawn_blocking(move || f(&mut self))
            .await
            .map_err(|e| BackendError::Failed(format!("{name}: {e}")))?
    }
}

impl<T> Deref for Lease<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item
            .as_ref()
            .expect("a lease holds its engine until dropped")
    }
}

impl<T> DerefMut for Lease<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_mut()
            .expect("a lease holds its engine until dropped")
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lends_each_engine_once_and_takes_it_back_on_drop() {
        let pool = LeasePool::new("test", vec![1, 2]);
        let a = pool.lease().await.unwrap();
        let b = pool.try_lease().unwrap();
        assert_ne!(*a, *b);
        assert!(pool.try_lease().is_none(), "both are lent");
        let seen = *a;
        drop(a);
        let c = pool.try_lease().expect("the dropped one is back");
        assert_eq!(*c, seen);
        drop((b, c));
        let both = (pool.try_lease(), pool.try_lease());
        assert!(both.0.is_some() && both.1.is_some(), "both came back");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_engine_when_it_is_returned() {
        let pool = LeasePool::new("test", vec![String::from("only")]);
        let held = pool.lease().await.unwrap();
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.lease().await.map(|l| l.clone()) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), "only");
    }

    #[tokio::test]
    async fn background_work_leaves_an_engine_for_live_work() {
        let pool = LeasePool::new("test", vec![1, 2, 3]);
        let (a, b) = in_background(async { (pool.lease().await, pool.try_lease()) }).await;
        let (a, b) = (a.unwrap(), b.expect("two of three are background work's"));
        assert!(
            in_background(async { pool.try_lease() }).await.is_none(),
            "the third is left for live work"
        );
        let p = pool.clone();
        let waiter = tokio::spawn(in_background(async move { p.lease().await.map(|l| *l) }));
        tokio::task::yield_now().await;
        let live = pool
            .try_lease()
            .expect("live work takes the engine that was left");
        drop(live);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a free engine is not background work's while it holds two"
        );
        let given_back = *a;
        drop(a);
        assert_eq!(waiter.await.unwrap().unwrap(), given_back);
        drop(b);
        assert!(!is_background(), "only inside in_background");
        let one = LeasePool::new("test", vec![7]);
        let got = in_background(async { one.lease().await.map(|l| *l) }).await;
        assert_eq!(
            got.unwrap(),
            7,
            "a pool of one still serves background work"
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_work_returns_the_engine() {
        let pool = LeasePool::new("test", vec![0u32]);
        let failed = pool
            .run(|_: &mut u32| -> Result<(), BackendError> { panic!("decoder blew up") })
            .await;
        assert!(matches!(failed, Err(BackendError::Failed(_))), "{failed:?}");
        let n = pool.run(|n| Ok(*n + 1)).await.unwrap();
        assert_eq!(n, 1, "the engine came back after the panic");
    }
}
