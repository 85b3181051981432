//! One thread that wakes queues at their deadlines: the head message's TTL (so expired
//! messages leave the counts, and are dead-lettered, without waiting for a consumer to look)
//! and `x-expires` (an unused queue is deleted).
//!
//! A single sleeping thread with a heap of deadlines rather than a timer per queue: queues
//! without TTLs cost nothing, and a queue with one holds at most one entry here at a time
//! (it reschedules only for an earlier deadline).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Something the timer thread wakes (a queue).
pub(super) trait TimerTarget: Send + Sync {
    /// Called at (or soon after) a scheduled deadline.
    fn on_timer(self: Arc<Self>);
}

struct Deadline {
    at: Instant,
    order: u64,
    queue: Weak<dyn TimerTarget>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Default)]
struct Heap {
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_order: u64,
}

/// The broker-wide timer thread's shared state.
struct Timers {
    heap: Mutex<Heap>,
    wake: Condvar,
}

fn timers() -> &'static Arc<Timers> {
    static TIMERS: OnceLock<Arc<Timers>> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers = Arc::new(Timers {
            heap: Mutex::new(Heap::default()),
            wake: Condvar::new(),
        });
        let shared = timers.clone();
        let spawned = std::thread::Builder::new()
            .name("warren-timers".into())
            .spawn(move || run(&shared));
        if let Err(error) = spawned {
            // Expiry then happens only when a consumer or basic.get looks at the queue.
            tracing::error!(%error, "cannot start the queue timer thread");
        }
        timers
    })
}

/// Asks for `queue.on_timer()` to run at `at` (or soon after).
pub(super) fn schedule(at: Instant, queue: Weak<dyn TimerTarget>) {
    let timers = timers();
    let mut heap = timers.heap.lock();
    let order = heap.next_order;
    heap.next_order += 1;
    let earliest = heap
        .deadlines
        .peek()
        .is_none_or(|Reverse(first)| at < first.at);
    heap.deadlines.push(Reverse(Deadline { at, order, queue }));
    drop(heap);
    if earliest {
        timers.wake.notify_one();
    }
}

fn run(timers: &Timers) {
    let mut due = Vec::new();
    loop {
        {
            let mut heap = timers.heap.lock();
            loop {
                let now = Instant::now();
                while heap
                    .deadlines
                    .peek()
                    .is_some_and(|Reverse(first)| first.at <= now)
                {
                    if let Some(Reverse(deadline)) = heap.deadlines.pop() {
                        due.push(deadline.queue);
                    }
                }
                if !due.is_empty() {
                    break;
                }
                match heap.deadlines.peek().map(|Reverse(first)| first.at) {
                    Some(at) => {
                        timers.wake.wait_until(&mut heap, at);
                    }
                    None => timers.wake.wait(&mut heap),
                }
            }
        }
        for queue in due.drain(..) {
            if let Some(queue) = queue.upgrade() {
                queue.on_timer();
            }
        }
    }
}
