//! A consumer that stops reading its socket must not throttle the publishers of its queue
//! (issue 9): pausing them cannot help it catch up, so the queue keeps accepting at full speed
//! and pages bodies to the store, and the broker's memory stays bounded.
//!
//! A test binary of its own: it measures the resident set of its process, which must then be
//! the in-process broker's (plus one client), not other tests' as well. With
//! `WARREN_TEST_EXTERNAL_AMQP` it runs against that broker and only the liveness is checked.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, RawConnection};
use common::within;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use warren::core::queue::QUEUE_MEMORY_BUDGET;

/// The scenario of the report: 4,096 messages of 64 KiB, 256 MiB in all (eight times a
/// queue's in-memory budget, so most of it must be paged out).
const TOTAL: usize = 4096;
const BODY: usize = 64 * 1024;

/// A liveness bound, not a benchmark: with the old rule each publish waited out a 200 ms pause
/// (about 17 messages a second, so 4 minutes for the lot).
const DEADLINE: Duration = Duration::from_secs(60);

/// Most message data the queue may hold in memory: its 32 MiB budget of bodies, plus the
/// bodies whose copies still wait for the store's writer (up to 16 MiB queued for it and an
/// 8 MiB batch being written) and so cannot be dropped yet, plus the index of what it paged.
const QUEUED_LIMIT: u64 = QUEUE_MEMORY_BUDGET + 32 * 1024 * 1024;

/// Most the process may grow while the 256 MiB go through. Besides what the queue holds: the
/// copies waiting for the store's writer, the stuck consumer's 4 MiB delivery window, the
/// socket read buffers the bodies in memory were sliced from (a 64 KiB body keeps a buffer of
/// up to twice that alive) and allocator slack. Measured: 95 to 140 MiB; holding everything
/// would take more than the 256 MiB of bodies alone.
const RSS_GROWTH_LIMIT: u64 = 192 * 1024 * 1024;

/// `VmRSS` of this process in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_does_not_throttle_a_confirming_publisher() {
    let broker = common::TestBroker::start().await;
    let publisher = common::connect(&broker).await;
    let channel = common::confirm_channel(&publisher).await;
    let queue = common::shared_queue(&channel, "stuck-consumer").await;

    // An auto-ack consumer on its own connection that, once subscribed, never reads again:
    // the broker's writes to it stop completing as soon as the socket buffers are full.
    let mut stuck = RawConnection::open(broker.amqp_addr(), 128 * 1024).await;
    stuck.open_channel(1).await;
    stuck.send(&raw::basic_consume(1, &queue, true)).await;
    let consume_ok = stuck.read_frame().await.expect("basic.consume-ok");
    assert_eq!(consume_ok.method_id(), Some((60, 21)), "basic.consume-ok");

    let baseline = rss_bytes().unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(baseline));
    let peak_queued = Arc::new(AtomicU64::new(0));
    let sampling = {
        let peak = peak.clone();
        let peak_queued = peak_queued.clone();
        let broker_memory = broker.memory_gauge();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_bytes() {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                if let Some(gauge) = &broker_memory {
                    peak_queued.fetch_max(gauge.used(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // One publish, one confirm, as pika's BlockingConnection does: every pause the broker
    // imposes shows in full.
    let confirmed = AtomicUsize::new(0);
    let body = vec![0x5a_u8; BODY];
    let started = Instant::now();
    let publishing = async {
        for _ in 0..TOTAL {
            let confirm = channel
                .basic_publish(
                    "",
                    &queue,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish is sent");
            let confirmation = confirm.await.expect("publisher confirm arrives");
            assert!(confirmation.is_ack(), "publish nacked: {confirmation:?}");
            confirmed.fetch_add(1, Ordering::Relaxed);
        }
    };
    if tokio::time::timeout(DEADLINE, publishing).await.is_err() {
        panic!(
            "only {} of {TOTAL} messages of {BODY} bytes were confirmed within {DEADLINE:?}: \
             the stuck consumer throttles the publisher",
            confirmed.load(Ordering::Relaxed)
        );
    }
    let elapsed = started.elapsed();
    sampling.abort();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let queued = peak_queued.load(Ordering::Relaxed);
    println!(
        "{TOTAL} x {BODY} B confirmed in {:.2} s ({:.0} msg/s); RSS grew {} MiB; queues held \
         at most {} MiB in memory",
        elapsed.as_secs_f64(),
        TOTAL as f64 / elapsed.as_secs_f64(),
        grown / (1024 * 1024),
        queued / (1024 * 1024)
    );

    // Nothing was dropped: what the stuck consumer's socket buffers did not absorb is still
    // in the queue.
    let (ready, consumers) = common::queue_counts(&channel, &queue).await;
    assert_eq!(consumers, 1, "the stuck consumer is still attached");
    assert!(
        ready as usize >= TOTAL * 3 / 4,
        "only {ready} of {TOTAL} messages are queued behind the stuck consumer"
    );
    if !broker.is_external() {
        assert!(
            queued <= QUEUED_LIMIT,
            "the queue held {} MiB in memory, over its {} MiB budget: it did not page",
            queued / (1024 * 1024),
            QUEUE_MEMORY_BUDGET / (1024 * 1024)
        );
        assert!(
            grown <= RSS_GROWTH_LIMIT,
            "the broker's RSS grew {} MiB while {} MiB went into a queue whose consumer is \
             stuck: the queue did not page",
            grown / (1024 * 1024),
            TOTAL * BODY / (1024 * 1024)
        );
    }

    stuck.abort();
    common::delete_queue(&channel, &queue).await;
    within("connection close", publisher.close(200, "done"))
        .await
        .expect("connection.close-ok");
    broker.shutdown().await;
}
