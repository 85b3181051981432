//! Telling one connection to end from outside: MQTT session take-over, broker shutdown, an
//! operator closing it through the management API, its vhost being deleted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

/// Tells one connection to end.
///
/// Lighter than a child `CancellationToken` (one small allocation, and an 8-byte future in
/// the connection's select loop instead of 72 bytes), which matters because every idle
/// connection holds one.
#[derive(Clone, Default)]
pub struct Kick(Arc<KickState>);

impl std::fmt::Debug for Kick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kick")
            .field("kicked", &self.is_kicked())
            .finish()
    }
}

#[derive(Default)]
struct KickState {
    kicked: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// Why an operator closed the connection (management API, vhost deletion).
    reason: Mutex<Option<String>>,
}

impl Kick {
    /// Ends the connection: its [`Kick::kicked`] future completes.
    pub fn kick(&self) {
        self.0.kicked.store(true, Ordering::Release);
        if let Some(waker) = self.0.waker.lock().take() {
            waker.wake();
        }
    }

    /// Ends the connection on an operator's request, saying why.
    pub fn kick_because(&self, reason: impl Into<String>) {
        *self.0.reason.lock() = Some(reason.into());
        self.kick();
    }

    /// The operator's reason, when [`Kick::kick_because`] ended the connection.
    pub fn reason(&self) -> Option<String> {
        self.0.reason.lock().clone()
    }

    /// Whether the connection was told to end.
    pub fn is_kicked(&self) -> bool {
        self.0.kicked.load(Ordering::Acquire)
    }

    /// Completes once [`Kick::kick`] was called.
    pub fn kicked(&self) -> Kicked<'_> {
        Kicked(&self.0)
    }
}

/// The future of [`Kick::kicked`].
pub struct Kicked<'a>(&'a KickState);

impl Future for Kicked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0.kicked.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut waker = self.0.waker.lock();
        match waker.as_mut() {
            Some(stored) if stored.will_wake(context.waker()) => {}
            _ => *waker = Some(context.waker().clone()),
        }
        drop(waker);
        // A kick between the first check and storing the waker found no waker to wake.
        if self.0.kicked.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
