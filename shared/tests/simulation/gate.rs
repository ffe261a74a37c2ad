//! The gate every port call of an actor passes: the call waits until the
//! simulator grants it, so the simulator alone decides which actor moves
//! next, one port call at a time. Killing a step (a crashed Lambda) makes
//! every later call of it, from any task it spawned, wait forever.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// One step of one actor: its calls waiting at the gate, and those in flight.
pub struct Step {
    state: Mutex<State>,
    /// Wakes the simulator when the step reaches the gate or finishes a call.
    sim: Arc<Notify>,
}

#[derive(Default)]
struct State {
    dead: bool,
    next: u64,
    waiting: BTreeMap<u64, Waker>,
    granted: BTreeSet<u64>,
    in_flight: u32,
}

impl Step {
    pub fn new(sim: Arc<Notify>) -> Arc<Step> {
        Arc::new(Step {
            state: Mutex::default(),
            sim,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls waiting for a grant, oldest first.
    pub fn waiting(&self) -> Vec<u64> {
        self.lock().waiting.keys().copied().collect()
    }

    /// A port call has been granted and not yet answered (the store's
    /// writer thread may be working on it).
    pub fn in_flight(&self) -> bool {
        self.lock().in_flight > 0
    }

    /// Let the waiting call `id` go through.
    pub fn grant(&self, id: u64) {
        let mut s = self.lock();
        if let Some(waker) = s.waiting.remove(&id) {
            // In flight from the grant, not from the caller's next poll:
            // the caller may be a task of its own (a detached write) that
            // the runtime polls only after the simulator waits, and a call
            // that is neither waiting nor in flight would let the paused
            // clock run on while the store's thread answers it.
            s.granted.insert(id);
            s.in_flight += 1;
            waker.wake();
        }
    }

    /// The step's process is gone: no call of it goes through any more.
    pub fn kill(&self) {
        let mut s = self.lock();
        s.dead = true;
        s.waiting.clear();
        let granted = s.granted.len() as u32;
        s.in_flight -= granted;
        s.granted.clear();
    }

    /// Wait for the simulator's grant; the guard marks the call in flight.
    pub async fn pass(self: &Arc<Self>) -> InFlight {
        Pass {
            step: self.clone(),
            id: None,
        }
        .await;
        InFlight(self.clone())
    }
}

struct Pass {
    step: Arc<Step>,
    id: Option<u64>,
}

impl Future for Pass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let step = self.step.clone();
        let mut s = step.lock();
        if s.dead {
            return Poll::Pending;
        }
        match self.id {
            None => {
                let id = s.next;
                s.next += 1;
                s.waiting.insert(id, cx.waker().clone());
                self.id = Some(id);
                drop(s);
                step.sim.notify_one();
                Poll::Pending
            }
            Some(id) if s.granted.remove(&id) => {
                self.id = None;
                Poll::Ready(())
            }
            Some(id) => {
                if let Some(w) = s.waiting.get_mut(&id) {
                    w.clone_from(cx.waker());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut s = self.step.lock();
            s.waiting.remove(&id);
            if s.granted.remove(&id) {
                s.in_flight -= 1;
            }
        }
    }
}

/// A granted call until it is answered (or its future dropped).
pub struct InFlight(Arc<Step>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.sim.notify_one();
    }
}
