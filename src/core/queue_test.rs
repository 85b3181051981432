//! Unit tests of queue dispatch, acknowledgement, expiry and deletion.
use super::*;
use bytes::Bytes;

fn queue() -> Arc<Queue> {
    Arc::new(Queue::new(
        QueueSpec {
            name: "q".into(),
            ..QueueSpec::default()
        },
        Arc::new(MemoryGauge::new(u64::MAX)),
        QueueStorage::default(),
    ))
}

fn message(body: &'static str) -> Arc<Message> {
    Arc::new(Message {
        exchange: "".into(),
        routing_key: "q".into(),
        properties: Default::default(),
        body: Bytes::from_static(body.as_bytes()),
        wire_cache: None,
        origin: None,
    })
}

fn consumer(id: u64, prefetch: u32, no_ack: bool) -> (ConsumerSpec, ConsumerEvents) {
    let mut events = ConsumerEvents::default();
    let sink = events.sink();
    let spec = ConsumerSpec {
        id: ConsumerId(id),
        tag: format!("c{id}"),
        no_ack,
        exclusive: false,
        prefetch,
        owner: ConnectionId(1),
        sink,
        priority: 0,
        channel: None,
    };
    (spec, events)
}

fn deliveries(events: &mut ConsumerEvents) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(ConsumerEvent::Deliver(d)) = events.try_recv() {
        out.push(d);
    }
    out
}

#[test]
fn round_robin_respects_prefetch() {
    let q = queue();
    let (a, mut a_events) = consumer(1, 1, false);
    let (b, mut b_events) = consumer(2, 1, false);
    q.add_consumer(a).unwrap();
    q.add_consumer(b).unwrap();
    for body in ["1", "2", "3"] {
        q.enqueue(message(body), None);
    }
    let a1 = deliveries(&mut a_events);
    let b1 = deliveries(&mut b_events);
    assert_eq!((a1.len(), b1.len()), (1, 1));
    assert_eq!(q.counts().ready, 1);
    q.ack([a1[0].seq]);
    let a2 = deliveries(&mut a_events);
    assert_eq!(&a2[0].message.body[..], b"3");
}

#[test]
fn requeue_restores_order_and_marks_redelivered() {
    let q = queue();
    for body in ["1", "2", "3"] {
        q.enqueue(message(body), None);
    }
    let first = q.get(false).unwrap();
    let second = q.get(false).unwrap();
    q.requeue([second.seq, first.seq]);
    let again = q.get(true).unwrap();
    assert_eq!(&again.message.body[..], b"1");
    assert!(again.redelivered);
    assert_eq!(again.remaining, 2);
}

#[test]
fn delivery_window_limits_no_ack_consumers() {
    let q = queue();
    let (spec, mut events) = consumer(1, 0, true);
    q.add_consumer(spec).unwrap();
    for _ in 0..(DELIVERY_WINDOW + 10) {
        q.enqueue(message("x"), None);
    }
    assert_eq!(deliveries(&mut events).len(), DELIVERY_WINDOW as usize);
    assert_eq!(q.counts().ready, 10);
    q.grant_window(ConsumerId(1), 5, 5 * 1024);
    assert_eq!(deliveries(&mut events).len(), 5);
}

#[test]
fn expired_messages_are_dropped_at_the_head() {
    let q = queue();
    let mut short = (*message("short")).clone();
    short.properties.expiration = Some("0".into());
    q.enqueue(Arc::new(short), None);
    q.enqueue(message("kept"), None);
    let got = q.get(true).unwrap();
    assert_eq!(&got.message.body[..], b"kept");
    assert!(q.get(true).is_none());
}

#[test]
fn delete_cancels_consumers_and_frees_memory() {
    let gauge = Arc::new(MemoryGauge::new(u64::MAX));
    let q = Arc::new(Queue::new(
        QueueSpec {
            name: "q".into(),
            ..QueueSpec::default()
        },
        gauge.clone(),
        QueueStorage::default(),
    ));
    let (spec, mut events) = consumer(7, 1, false);
    q.add_consumer(spec).unwrap();
    q.enqueue(message("a"), None);
    q.enqueue(message("b"), None);
    assert!(gauge.used() > 0);
    assert_eq!(q.delete(), 1);
    assert_eq!(gauge.used(), 0);
    let mut cancelled = false;
    while let Some(event) = events.try_recv() {
        cancelled |= matches!(
            event,
            ConsumerEvent::Cancelled {
                consumer: ConsumerId(7)
            }
        );
    }
    assert!(cancelled, "the consumer must be told its queue is gone");
    assert!(q.is_deleted());
}

#[test]
fn a_consumer_whose_connection_is_gone_is_skipped_and_undelivered_events_come_back() {
    let q = queue();
    let (a, a_events) = consumer(1, 10, false);
    let (b, mut b_events) = consumer(2, 10, false);
    q.add_consumer(a).unwrap();
    q.add_consumer(b).unwrap();
    // The first connection goes away without cancelling: its consumer is dropped on the next
    // delivery attempt and every message reaches the other one.
    drop(a_events);
    for body in ["1", "2", "3"] {
        q.enqueue(message(body), None);
    }
    let got: Vec<_> = deliveries(&mut b_events)
        .iter()
        .map(|d| d.message.body.clone())
        .collect();
    assert_eq!(
        got,
        ["1", "2", "3"].map(|b| Bytes::from_static(b.as_bytes()))
    );
    assert_eq!(q.counts().consumers, 1);

    // Closing hands back what was sent but not yet taken, for requeueing.
    q.enqueue(message("4"), None);
    let left = b_events.close();
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].message.body[..], b"4");
}

#[test]
fn a_backlog_is_congested_while_consumers_drain_it_not_while_they_are_stuck() {
    let q = queue();
    // A no-ack consumer whose connection never writes: it gets one window and then no more.
    let (spec, mut events) = consumer(1, 0, true);
    q.add_consumer(spec).unwrap();
    let over = DELIVERY_WINDOW as usize + FLOW_HIGH_MESSAGES + 1;
    let mut congested = false;
    for _ in 0..over {
        congested = q.enqueue(message("x"), None);
    }
    assert!(
        congested,
        "a backlog over the threshold starts out congested"
    );
    assert_eq!(deliveries(&mut events).len(), DELIVERY_WINDOW as usize);

    // Nothing taken for FLOW_STUCK_AFTER: the next publish finds the consumer stuck and
    // publishers go on.
    std::thread::sleep(FLOW_STUCK_AFTER + Duration::from_millis(20));
    assert!(
        !q.enqueue(message("x"), None),
        "a stuck consumer keeps the queue congested"
    );
    assert!(!q.congested());

    // The consumer writes again and takes more: it drains, slower than the queue fills, so
    // publishers pause again.
    q.grant_window(ConsumerId(1), 10, 10 * 1024);
    assert_eq!(deliveries(&mut events).len(), 10);
    assert!(q.congested(), "a draining backlog is not congested");

    // A consumer out of prefetch whose acks stopped is stuck too.
    let q = queue();
    let (spec, mut events) = consumer(2, 1, false);
    q.add_consumer(spec).unwrap();
    for _ in 0..=FLOW_HIGH_MESSAGES + 1 {
        q.enqueue(message("x"), None);
    }
    assert!(q.congested());
    std::thread::sleep(FLOW_STUCK_AFTER + Duration::from_millis(20));
    assert!(
        !q.enqueue(message("x"), None),
        "a consumer that stopped acking keeps the queue congested"
    );
    let delivered = deliveries(&mut events);
    q.ack([delivered[0].seq]);
    assert!(
        q.congested(),
        "an ack that lets the consumer take more is progress"
    );

    // Consumers that keep taking, however slowly, are draining: a publish after a pause as
    // long as FLOW_STUCK_AFTER still finds the queue congested if something was taken since.
    let delivered = deliveries(&mut events);
    std::thread::sleep(FLOW_STUCK_AFTER + Duration::from_millis(20));
    q.ack([delivered[0].seq]);
    assert!(
        q.enqueue(message("x"), None),
        "a slow consumer counts as stuck"
    );
}
