//! Crash safety: a message whose publisher confirm was sent survives a `kill -9`.
//!
//! The `warren` binary runs as a child process on ephemeral ports with a temporary data
//! directory. Each cycle declares a new durable queue, publishes numbered persistent messages
//! into it at full speed with publisher confirms (recording which were confirmed), kills the
//! broker with SIGKILL after a random 200–1500 ms, restarts it on the same data directory and
//! consumes (and acks) everything in the queue. Every confirmed message must be there exactly
//! once; messages that were published but not confirmed may or may not be there (counted as
//! "unconfirmed but recovered"), and duplicates are tolerated only for unconfirmed ones (counted
//! and printed). Messages come back in publish order and none is marked redelivered (none was
//! delivered before the crash). The queues of earlier cycles, emptied and acked before the
//! kill, must still exist and stay empty. After the last cycle the broker is stopped with
//! SIGTERM and restarted once more, and every queue must be there and empty.
//!
//! `CRASH_CYCLES` (default 3) sets the number of kill cycles; `scripts/crash_soak.sh` runs 50
//! or more and prints the totals line (`crash totals: ...`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durable_support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::BasicPublishOptions;
use lapin::Channel;
use parking_lot::Mutex;
use rand::Rng;

use durable_support::*;

/// What the publisher knows about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handed to the client library; no answer (yet).
    Sent,
    /// The broker acked it: it must survive.
    Confirmed,
    /// The broker nacked it.
    Nacked,
    /// The publish or its confirm failed (the broker died).
    Failed,
}

/// Messages the publisher may have ahead of their confirms.
const WINDOW: usize = 1000;

fn body(cycle: usize, seq: usize) -> String {
    format!("crash-{cycle}-{seq}")
}

fn parse_body(cycle: usize, data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    text.strip_prefix(&format!("crash-{cycle}-"))
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("cycle {cycle}: a recovered message has a foreign body {text:?}"))
}

/// Publishes `crash-<cycle>-<n>` for n = 0, 1, ... until the connection fails, recording every
/// outcome in `ledger` as it happens (so nothing is lost if this task has to be aborted).
async fn publish_until_failure(
    ch: Channel,
    queue: String,
    cycle: usize,
    ledger: Arc<Mutex<Vec<Outcome>>>,
) {
    let record = |seq: usize, result: lapin::Result<lapin::publisher_confirm::Confirmation>| {
        ledger.lock()[seq] = match result {
            Ok(confirmation) if confirmation.is_ack() => Outcome::Confirmed,
            Ok(_) => Outcome::Nacked,
            Err(_) => Outcome::Failed,
        };
    };
    let mut in_flight = FuturesUnordered::new();
    let mut seq = 0usize;
    loop {
        while let Some(Some((done, result))) = in_flight.next().now_or_never() {
            record(done, result);
        }
        if in_flight.len() >= WINDOW {
            if let Some((done, result)) = in_flight.next().await {
                record(done, result);
            }
            continue;
        }
        ledger.lock().push(Outcome::Sent);
        let payload = body(cycle, seq);
        let publish = ch
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                payload.as_bytes(),
                persistent(),
            )
            .await;
        match publish {
            Ok(confirm) => {
                let this = seq;
                in_flight.push(async move { (this, confirm.await) });
            }
            Err(_) => {
                ledger.lock()[seq] = Outcome::Failed;
                break;
            }
        }
        seq += 1;
    }
    while let Some((done, result)) = in_flight.next().await {
        record(done, result);
    }
}

/// Totals over all cycles.
#[derive(Debug, Default)]
struct Totals {
    published: usize,
    confirmed: usize,
    recovered: usize,
    unconfirmed_recovered: usize,
    lost: usize,
    duplicates: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_confirmed_message() {
    let cycles = env_u64("CRASH_CYCLES", 3) as usize;
    let dir = tempfile::tempdir().expect("create a temporary data directory");
    let mut broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let mut queues: Vec<String> = Vec::new();
    let mut totals = Totals::default();
    let mut rng = rand::thread_rng();

    for cycle in 0..cycles {
        let queue = unique(&format!("crash-{cycle}"));
        let connection = connect(broker.amqp_addr()).await;
        let ch = confirm_channel(&connection).await;
        declare_queue(&ch, &queue, true).await;
        queues.push(queue.clone());

        let ledger = Arc::new(Mutex::new(Vec::new()));
        let mut publisher = tokio::spawn(publish_until_failure(
            ch,
            queue.clone(),
            cycle,
            ledger.clone(),
        ));
        let delay = Duration::from_millis(rng.gen_range(200..=1500));
        // The crash point: a random moment while the publisher runs at full speed.
        tokio::time::sleep(delay).await;
        let crash_log = broker.kill().await;
        // Confirms already in the client's socket buffer still count; then the publisher sees
        // the connection fail. A publisher the client library leaves hanging is stopped:
        // whatever it had not heard back about is unconfirmed.
        let stopped = tokio::time::timeout(STEP, &mut publisher).await;
        if stopped.is_err() {
            publisher.abort();
            println!("cycle {cycle}: publisher did not notice the crash within {STEP:?}; stopped");
        }
        drop(connection);
        let outcomes = ledger.lock().clone();
        let confirmed = outcomes
            .iter()
            .filter(|o| **o == Outcome::Confirmed)
            .count();
        let nacked = outcomes.iter().filter(|o| **o == Outcome::Nacked).count();
        assert!(
            confirmed > 0,
            "cycle {cycle}: nothing was confirmed in {delay:?} before the kill; broker log:\n{}",
            crash_log.text()
        );
        assert_eq!(
            nacked, 0,
            "cycle {cycle}: the broker nacked {nacked} messages"
        );

        broker = TestBroker::options()
            .data_dir(dir.path())
            .process()
            .start()
            .await;
        let connection = connect(broker.amqp_addr()).await;
        let ch = channel(&connection).await;
        // Earlier cycles' queues were emptied (acked) before this cycle's confirmed publishes,
        // which the store wrote after those acks.
        for (earlier, name) in queues[..cycle].iter().enumerate() {
            assert!(
                queue_exists(&connection, name).await,
                "cycle {cycle}: the durable queue of cycle {earlier} is gone after the crash"
            );
            assert_eq!(
                queue_count(&ch, name).await,
                0,
                "cycle {cycle}: acked messages of cycle {earlier} came back after the crash"
            );
        }
        assert!(
            queue_exists(&connection, &queue).await,
            "cycle {cycle}: the durable queue (declared before publishing) is gone after the \
             crash"
        );
        let count = queue_count(&ch, &queue).await as usize;
        let deliveries = consume_all(&connection, &queue, count).await;
        assert_eq!(
            queue_count(&ch, &queue).await,
            0,
            "cycle {cycle}: left over"
        );
        close(connection).await;

        let mut copies = vec![0u32; outcomes.len()];
        let mut order_breaks = Vec::new();
        let mut last_first_seen: Option<usize> = None;
        let mut redelivered = 0usize;
        for delivery in &deliveries {
            let seq = parse_body(cycle, &delivery.data);
            assert!(
                seq < outcomes.len(),
                "cycle {cycle}: recovered message {seq} was never published (published {})",
                outcomes.len()
            );
            if copies[seq] == 0 {
                if last_first_seen.is_some_and(|last| seq < last) {
                    order_breaks.push((last_first_seen, seq));
                }
                last_first_seen = Some(seq);
            }
            copies[seq] += 1;
            redelivered += usize::from(delivery.redelivered);
        }
        let lost: Vec<usize> = (0..outcomes.len())
            .filter(|s| outcomes[*s] == Outcome::Confirmed && copies[*s] == 0)
            .collect();
        let confirmed_twice: Vec<usize> = (0..outcomes.len())
            .filter(|s| outcomes[*s] == Outcome::Confirmed && copies[*s] > 1)
            .collect();
        let duplicates: usize = copies.iter().map(|c| c.saturating_sub(1) as usize).sum();
        let unconfirmed_recovered = (0..outcomes.len())
            .filter(|s| outcomes[*s] != Outcome::Confirmed && copies[*s] > 0)
            .count();
        println!(
            "cycle {}/{cycles}: killed after {delay:?}; published {}, confirmed {confirmed}, \
             recovered {} (unconfirmed but recovered {unconfirmed_recovered}), lost {}, \
             duplicates {duplicates}",
            cycle + 1,
            outcomes.len(),
            deliveries.len(),
            lost.len(),
        );
        totals.published += outcomes.len();
        totals.confirmed += confirmed;
        totals.recovered += deliveries.len();
        totals.unconfirmed_recovered += unconfirmed_recovered;
        totals.lost += lost.len();
        totals.duplicates += duplicates;

        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} confirmed messages lost by kill -9 (of {confirmed}), first: {:?}; \
             recovered {} messages; broker log after restart:\n{}",
            lost.len(),
            &lost[..lost.len().min(20)],
            deliveries.len(),
            broker.log().text()
        );
        assert!(
            confirmed_twice.is_empty(),
            "cycle {cycle}: confirmed messages recovered more than once: {:?}",
            &confirmed_twice[..confirmed_twice.len().min(20)]
        );
        assert!(
            order_breaks.is_empty(),
            "cycle {cycle}: recovered messages out of publish order (previous, next): {:?}",
            &order_breaks[..order_breaks.len().min(20)]
        );
        assert_eq!(
            redelivered, 0,
            "cycle {cycle}: never-delivered messages came back marked redelivered"
        );
    }

    println!(
        "crash totals: cycles {cycles}, published {}, confirmed {}, recovered {} (unconfirmed \
         but recovered {}), lost {}, duplicates {}",
        totals.published,
        totals.confirmed,
        totals.recovered,
        totals.unconfirmed_recovered,
        totals.lost,
        totals.duplicates
    );

    // A graceful stop and one more start: every queue is still there, and empty.
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "warren exits successfully on SIGTERM, got {status}; log:\n{}",
        log.text()
    );
    let broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = channel(&connection).await;
    for (cycle, name) in queues.iter().enumerate() {
        assert!(
            queue_exists(&connection, name).await,
            "the queue of cycle {cycle} is gone after the final restart"
        );
        assert_eq!(
            queue_count(&ch, name).await,
            0,
            "acked messages of cycle {cycle} came back after the final restart"
        );
    }
    close(connection).await;
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        log.text()
    );
}
