//! A fixed set of engines (recogniser decoders, ONNX sessions) lent out one at a time.
//!
//! Each engine holds state that cannot be shared while it runs (a decoder's buffers, a session's
//! arena), so a backend loads as many as it may run at once and lends them out: a caller waits
//! for a free one ([`LeasePool::lease`]), takes one only if one is free now
//! ([`LeasePool::try_lease`], for speculative work that must not queue behind real work), and
//! gets it back on drop, even if the work panicked.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::BackendError;

/// Engines of one kind, lent out one at a time.
pub struct LeasePool<T> {
    name: &'static str,
    free: Mutex<Vec<T>>,
    /// One permit per engine in `free`: holding a permit guarantees one is there.
    permits: Arc<Semaphore>,
}

/// An engine borrowed from a [`LeasePool`]; back in the pool when dropped.
pub struct Lease<T> {
    item: Option<T>,
    pool: Arc<LeasePool<T>>,
    // dropped after `drop` has put the engine back, so a waiter always finds one
    _permit: OwnedSemaphorePermit,
}

impl<T> LeasePool<T> {
    /// A pool lending `items`; `name` is said in its errors.
    pub fn new(name: &'static str, items: Vec<T>) -> Arc<Self> {
        Arc::new(Self {
            name,
            permits: Arc::new(Semaphore::new(items.len())),
            free: Mutex::new(items),
        })
    }

    /// An engine, waiting for one to be free.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease<T>, BackendError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BackendError::Unavailable(format!("{}: pool closed", self.name)))?;
        self.take(permit)
    }

    /// An engine only if one is free now.
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease<T>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.take(permit).ok()
    }

    fn take(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Result<Lease<T>, BackendError> {
        let item = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match item {
            Some(item) => Ok(Lease {
                item: Some(item),
                pool: self.clone(),
                _permit: permit,
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
