//! Routing through every exchange type, as a lapin user observes it.
//!
//! Publishes go through a confirm-mode channel, so once a publish is confirmed the message has
//! been routed and enqueued; `basic.get` then tells exactly which queues received it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    assert_exception, channel, close, confirm_channel, connect, drain, exclusive_queue, publish,
    publish_with, unique, within, TestBroker,
};
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

async fn declare_exchange(ch: &Channel, kind: ExchangeKind, prefix: &str) -> String {
    let name = unique(prefix);
    within(
        "exchange.declare",
        ch.exchange_declare(
            &name,
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.declare-ok");
    name
}

async fn delete_exchange(ch: &Channel, name: &str) {
    within(
        "exchange.delete",
        ch.exchange_delete(name, ExchangeDeleteOptions::default()),
    )
    .await
    .expect("exchange.delete-ok");
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        "queue.bind",
        ch.queue_bind(queue, exchange, key, QueueBindOptions::default(), args),
    )
    .await
    .expect("queue.bind-ok");
}

fn table(entries: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), AMQPValue::LongString((*value).into()));
    }
    table
}

fn headers(entries: &[(&str, &str)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(entries))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exchange_routes_by_exact_key() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let exchange = declare_exchange(&ch, ExchangeKind::Direct, "direct").await;
    let q1 = exclusive_queue(&ch, "direct-q1").await;
    let q2 = exclusive_queue(&ch, "direct-q2").await;
    bind(&ch, &q1, &exchange, "k1", FieldTable::default()).await;
    bind(&ch, &q2, &exchange, "k2", FieldTable::default()).await;
    // Two bindings of one queue with two keys: a message routed by either arrives once.
    bind(&ch, &q2, &exchange, "both", FieldTable::default()).await;
    bind(&ch, &q1, &exchange, "both", FieldTable::default()).await;

    publish(&ch, &exchange, "k1", b"one").await;
    publish(&ch, &exchange, "k2", b"two").await;
    publish(&ch, &exchange, "k3", b"nobody").await;
    publish(&ch, &exchange, "K1", b"case matters").await;
    publish(&ch, &exchange, "both", b"both").await;

    assert_eq!(drain(&ch, &q1).await, ["one", "both"]);
    assert_eq!(drain(&ch, &q2).await, ["two", "both"]);
    delete_exchange(&ch, &exchange).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_exchange_copies_to_every_bound_queue_ignoring_the_key() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let exchange = declare_exchange(&ch, ExchangeKind::Fanout, "fanout").await;
    let queues = [
        exclusive_queue(&ch, "fanout-q1").await,
        exclusive_queue(&ch, "fanout-q2").await,
        exclusive_queue(&ch, "fanout-q3").await,
    ];
    for (i, queue) in queues.iter().enumerate() {
        bind(
            &ch,
            queue,
            &exchange,
            &format!("ignored-{i}"),
            FieldTable::default(),
        )
        .await;
    }
    let unbound = exclusive_queue(&ch, "fanout-unbound").await;

    publish(&ch, &exchange, "any.key", b"m1").await;
    publish(&ch, &exchange, "", b"m2").await;

    for queue in &queues {
        assert_eq!(drain(&ch, queue).await, ["m1", "m2"], "queue {queue}");
    }
    assert!(drain(&ch, &unbound).await.is_empty());
    delete_exchange(&ch, &exchange).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_exchange_star_matches_one_word_and_hash_zero_or_more() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let exchange = declare_exchange(&ch, ExchangeKind::Topic, "topic").await;
    let patterns = [
        "a.*",
        "a.#",
        "#.z",
        "*.b.*",
        "#",
        "a.*.c",
        "a.#.c",
        "exact.key",
    ];
    let mut queues = Vec::new();
    for pattern in patterns {
        let queue = exclusive_queue(&ch, "topic-q").await;
        bind(&ch, &queue, &exchange, pattern, FieldTable::default()).await;
        queues.push(queue);
    }
    let keys = [
        "a",
        "a.b",
        "a.b.c",
        "a.c",
        "a.x.y.c",
        "z",
        "x.y.z",
        "x.b.y",
        "b",
        "exact.key",
        "",
    ];
    for key in keys {
        publish(&ch, &exchange, key, key.as_bytes()).await;
    }

    let expected: [(&str, &[&str]); 8] = [
        ("a.*", &["a.b", "a.c"]),
        // `#` matches zero words: `a.#` matches `a`.
        ("a.#", &["a", "a.b", "a.b.c", "a.c", "a.x.y.c"]),
        ("#.z", &["z", "x.y.z"]),
        ("*.b.*", &["a.b.c", "x.b.y"]),
        ("#", &keys),
        ("a.*.c", &["a.b.c"]),
        ("a.#.c", &["a.b.c", "a.c", "a.x.y.c"]),
        ("exact.key", &["exact.key"]),
    ];
    for ((pattern, want), queue) in expected.iter().zip(&queues) {
        assert_eq!(
            &drain(&ch, queue).await,
            want,
            "binding pattern {pattern:?}"
        );
    }
    delete_exchange(&ch, &exchange).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_exchange_all_any_and_with_x_variants() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let exchange = declare_exchange(&ch, ExchangeKind::Headers, "headers").await;
    let bindings: [(&str, &[(&str, &str)]); 6] = [
        ("all", &[("x-match", "all"), ("h1", "v1"), ("h2", "v2")]),
        ("any", &[("x-match", "any"), ("h1", "v1"), ("h2", "v2")]),
        // Plain all/any ignore binding arguments starting with `x-`: an `all` binding with only
        // `x-` arguments matches everything, an `any` binding with only `x-` arguments nothing.
        ("all-only-x", &[("x-match", "all"), ("x-tenant", "t1")]),
        ("any-only-x", &[("x-match", "any"), ("x-tenant", "t1")]),
        // The -with-x variants (RabbitMQ 3.10+) compare `x-` headers too.
        (
            "all-with-x",
            &[("x-match", "all-with-x"), ("x-tenant", "t1"), ("h1", "v1")],
        ),
        (
            "any-with-x",
            &[("x-match", "any-with-x"), ("x-tenant", "t1")],
        ),
    ];
    let mut queues = Vec::new();
    for (label, args) in bindings {
        let queue = exclusive_queue(&ch, label).await;
        bind(&ch, &queue, &exchange, "ignored", table(args)).await;
        queues.push(queue);
    }
    // No `x-match` at all defaults to `all`.
    let default_all = exclusive_queue(&ch, "default-all").await;
    bind(&ch, &default_all, &exchange, "", table(&[("h1", "v1")])).await;

    let messages: [(&str, &[(&str, &str)]); 6] = [
        ("h1h2", &[("h1", "v1"), ("h2", "v2")]),
        ("h1", &[("h1", "v1")]),
        ("h1-wrong-h2", &[("h1", "v1"), ("h2", "other")]),
        ("none", &[]),
        ("tenant", &[("x-tenant", "t1")]),
        ("tenant-h1", &[("x-tenant", "t1"), ("h1", "v1")]),
    ];
    for (body, hs) in messages {
        publish_with(&ch, &exchange, "rk", body.as_bytes(), headers(hs)).await;
    }

    let expected: [(&str, &[&str]); 6] = [
        ("all", &["h1h2"]),
        ("any", &["h1h2", "h1", "h1-wrong-h2", "tenant-h1"]),
        (
            "all-only-x",
            &["h1h2", "h1", "h1-wrong-h2", "none", "tenant", "tenant-h1"],
        ),
        ("any-only-x", &[]),
        ("all-with-x", &["tenant-h1"]),
        ("any-with-x", &["tenant", "tenant-h1"]),
    ];
    for ((label, want), queue) in expected.iter().zip(&queues) {
        assert_eq!(&drain(&ch, queue).await, want, "binding {label}");
    }
    assert_eq!(
        drain(&ch, &default_all).await,
        ["h1h2", "h1", "h1-wrong-h2", "tenant-h1"]
    );
    delete_exchange(&ch, &exchange).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_routes_to_the_queue_named_by_the_key() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let q1 = exclusive_queue(&ch, "default-q1").await;
    let q2 = exclusive_queue(&ch, "default-q2").await;

    publish(&ch, "", &q1, b"to q1").await;
    publish(&ch, "", &q2, b"to q2").await;
    publish(&ch, "", &unique("no-such-queue"), b"dropped").await;

    assert_eq!(drain(&ch, &q1).await, ["to q1"]);
    assert_eq!(drain(&ch, &q2).await, ["to q2"]);

    // Binding to the default exchange is refused, as RabbitMQ does:
    // 403 "ACCESS_REFUSED - operation not permitted on the default exchange".
    let refused = within(
        "queue.bind to the default exchange",
        ch.queue_bind(
            &q1,
            "",
            "other",
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(refused, 403, "ACCESS_REFUSED - ");
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amq_exchanges_exist_with_their_types() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        within(
            "passive exchange.declare",
            ch.exchange_declare(
                name,
                kind,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} exists: {e}"));
    }

    // They route like their type.
    let queue = exclusive_queue(&ch, "amq").await;
    let key = unique("key");
    bind(&ch, &queue, "amq.direct", &key, FieldTable::default()).await;
    bind(
        &ch,
        &queue,
        "amq.topic",
        &format!("{key}.#"),
        FieldTable::default(),
    )
    .await;
    bind(
        &ch,
        &queue,
        "amq.match",
        "",
        table(&[("x-match", "all"), ("test-key", &key)]),
    )
    .await;
    publish(&ch, "amq.direct", &key, b"direct").await;
    publish(&ch, "amq.topic", &format!("{key}.x.y"), b"topic").await;
    publish_with(
        &ch,
        "amq.match",
        "",
        b"match",
        headers(&[("test-key", &key)]),
    )
    .await;
    assert_eq!(drain(&ch, &queue).await, ["direct", "topic", "match"]);

    // An equivalent redeclare of a built-in exchange (durable, same type) is fine …
    within(
        "exchange.declare amq.direct",
        ch.exchange_declare(
            "amq.direct",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("equivalent redeclare of amq.direct");
    // … but creating a new exchange with the reserved prefix is refused:
    // 403 "ACCESS_REFUSED - exchange name 'amq.<x>' contains reserved prefix 'amq.*'".
    let ch2 = channel(&conn).await;
    let name = format!("amq.{}", unique("reserved"));
    let reserved = within(
        "exchange.declare amq.*",
        ch2.exchange_declare(
            &name,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(
        reserved,
        403,
        &format!("ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"),
    );
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_binding_routes_through_both() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let source = declare_exchange(&ch, ExchangeKind::Topic, "e2e-source").await;
    let destination = declare_exchange(&ch, ExchangeKind::Direct, "e2e-destination").await;
    let queue = exclusive_queue(&ch, "e2e-q").await;
    bind(&ch, &queue, &destination, "x.y", FieldTable::default()).await;
    bind(&ch, &queue, &destination, "x.z", FieldTable::default()).await;
    within(
        "exchange.bind",
        ch.exchange_bind(
            &destination,
            &source,
            "x.*",
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.bind-ok");

    // The source's binding key filters (topic), then the destination routes by the original
    // routing key (direct).
    publish(&ch, &source, "x.y", b"through").await;
    publish(&ch, &source, "x.q", b"source matches, destination does not").await;
    publish(&ch, &source, "w.y", b"source does not match").await;
    assert_eq!(drain(&ch, &queue).await, ["through"]);

    within(
        "exchange.unbind",
        ch.exchange_unbind(
            &destination,
            &source,
            "x.*",
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.unbind-ok");
    publish(&ch, &source, "x.z", b"after unbind").await;
    publish(&ch, &destination, "x.z", b"direct to destination").await;
    assert_eq!(drain(&ch, &queue).await, ["direct to destination"]);

    delete_exchange(&ch, &source).await;
    delete_exchange(&ch, &destination).await;
    close(conn).await;
    broker.shutdown().await;
}
