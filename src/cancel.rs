//! Cancelling runs from outside: [`CancelHandle`], and the [`Cancelled`]
//! error that ends a cancelled guest.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cancels runs from any thread or task: [`CancelHandle::cancel`] ends every
/// run given this handle promptly, whether the guest is computing (it stops
/// at the next epoch tick, within milliseconds) or blocked in a host call
/// (sleeping, waiting on stdin or a socket: the call is abandoned at once).
/// Cancelled runs end with [`Status::Cancelled`](crate::Status::Cancelled),
/// and a run started with an already cancelled handle does not run the
/// guest at all.
///
/// `CancelHandle` is `Send + Sync`; clones share one cancellation.
///
/// # Example
///
/// ```
/// use wasmcell::CancelHandle;
///
/// let handle = CancelHandle::new();
/// let for_the_watchdog = handle.clone();
/// assert!(!handle.is_cancelled());
/// for_the_watchdog.cancel();
/// assert!(handle.is_cancelled());
/// ```
///
/// See [`Sandbox::run_with`](crate::Sandbox::run_with) for a cancelled run.
#[derive(Clone, Default)]
pub struct CancelHandle {
    inner: Arc<CancelState>,
}

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelHandle {
    /// A handle that has not been cancelled.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Cancels every run given this handle, now and later. Idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`CancelHandle::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the handle is cancelled.
    pub(crate) async fn cancelled(&self) {
        loop {
            // Registered before the flag is checked, so a `cancel` between
            // the check and the await still wakes this waiter.
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The error that ends a guest whose run was cancelled, classified as
/// [`Status::Cancelled`](crate::Status::Cancelled).
#[derive(Debug)]
pub(crate) struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the run was cancelled by the host")
    }
}

impl std::error::Error for Cancelled {}
