//! Channel exceptions as a lapin user sees them: the failing call returns
//! the reply code, the channel is closed, and the connection and its other channels carry on.
//!
//! Reply texts asserted here are RabbitMQ's (3.10); only the stable `NAME - ` prefix and the
//! fixed wording RabbitMQ users grep for are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    assert_connection_works, assert_exception, channel, close, confirm_channel, connect,
    delete_queue, exclusive_queue, get_body, publish, shared_queue, unique, within, TestBroker,
};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

/// The channel is closed and refuses further use.
async fn assert_channel_closed(ch: &Channel) {
    assert!(
        !ch.status().connected(),
        "channel is closed after the exception"
    );
    let again = within(
        "a call on a closed channel",
        ch.queue_declare("", QueueDeclareOptions::default(), FieldTable::default()),
    )
    .await;
    assert!(
        matches!(again, Err(lapin::Error::InvalidChannelState(_))),
        "calls on the closed channel fail: {again:?}"
    );
}

fn ttl(ms: i32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ms));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_to_its_connection() {
    let broker = TestBroker::start().await;
    let owner = connect(&broker).await;
    let owner_ch = confirm_channel(&owner).await;
    let queue = exclusive_queue(&owner_ch, "exclusive").await;
    let intruder = connect(&broker).await;

    // "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '<q>' in vhost '/'. It
    // could be originally declared on another connection or the exclusive property value does
    // not match that of the original declaration."
    let ch = channel(&intruder).await;
    let declared = within(
        "queue.declare",
        ch.queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(
        declared,
        405,
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue ",
    );
    assert_channel_closed(&ch).await;

    let ch = channel(&intruder).await;
    let exclusive_too = within(
        "queue.declare",
        ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(exclusive_too, 405, "RESOURCE_LOCKED - ");
    assert_channel_closed(&ch).await;

    let ch = channel(&intruder).await;
    let consumed = within(
        "basic.consume",
        ch.basic_consume(
            &queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(consumed, 405, "RESOURCE_LOCKED - ");
    assert_channel_closed(&ch).await;

    let ch = channel(&intruder).await;
    let got = within(
        "basic.get",
        ch.basic_get(&queue, BasicGetOptions::default()),
    )
    .await;
    assert_exception(got, 405, "RESOURCE_LOCKED - ");
    assert_channel_closed(&ch).await;

    // The intruder's connection is fine, and the owner still uses its queue.
    assert_connection_works(&intruder).await;
    publish(&owner_ch, "", &queue, b"mine").await;
    assert_eq!(
        get_body(&owner_ch, &queue).await.as_deref(),
        Some(&b"mine"[..])
    );

    // Once the owner goes, so does the queue.
    close(owner).await;
    let ch = channel(&intruder).await;
    let passive = within(
        "passive queue.declare",
        ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(passive, 404, "NOT_FOUND - no queue ");
    close(intruder).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redeclare_with_a_different_durable_flag_is_precondition_failed() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = channel(&conn).await;
    let queue = shared_queue(&ch, "redeclare-durable").await;

    let again = channel(&conn).await;
    let result = within(
        "queue.declare",
        again.queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    // "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '<q>' in vhost '/':
    // received 'true' but current is 'false'"
    assert_exception(
        result,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue ",
    );
    assert_channel_closed(&again).await;

    // The other channel is untouched and the queue unchanged: an equivalent redeclare works.
    within(
        "queue.declare",
        ch.queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("equivalent redeclare is fine");
    delete_queue(&ch, &queue).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redeclare_with_a_different_message_ttl_is_precondition_failed() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = channel(&conn).await;
    let queue = unique("redeclare-ttl");
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    within(
        "queue.declare",
        ch.queue_declare(&queue, options, ttl(60_000)),
    )
    .await
    .unwrap();

    let again = channel(&conn).await;
    let result = within(
        "queue.declare",
        again.queue_declare(&queue, options, ttl(30_000)),
    )
    .await;
    // "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '<q>' in vhost '/':
    // received '30000' but current is '60000'"
    assert_exception(
        result,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue ",
    );
    assert_channel_closed(&again).await;

    let missing = channel(&conn).await;
    let result = within(
        "queue.declare",
        missing.queue_declare(&queue, options, FieldTable::default()),
    )
    .await;
    // Leaving the argument out is inequivalent too ("received none but current is …").
    assert_exception(
        result,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl'",
    );
    assert_channel_closed(&missing).await;

    within(
        "queue.declare",
        ch.queue_declare(&queue, options, ttl(60_000)),
    )
    .await
    .expect("equivalent redeclare is fine");
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_redeclare_with_a_different_type_is_precondition_failed() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = channel(&conn).await;
    let exchange = unique("redeclare-exchange");
    within(
        "exchange.declare",
        ch.exchange_declare(
            &exchange,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let again = channel(&conn).await;
    let result = within(
        "exchange.declare",
        again.exchange_declare(
            &exchange,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    // "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '<e>' in vhost '/':
    // received 'fanout' but current is 'direct'"
    assert_exception(
        result,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange ",
    );
    assert_channel_closed(&again).await;
    within(
        "exchange.delete",
        ch.exchange_delete(&exchange, ExchangeDeleteOptions::default()),
    )
    .await
    .unwrap();
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_missing_exchange_closes_the_channel_not_the_connection() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let missing = unique("no-such-exchange");
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            &missing,
            "key",
            BasicPublishOptions::default(),
            b"lost",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish is sent (the error comes back asynchronously)");
    // The channel.close arrives instead of a confirm:
    // 404 "NOT_FOUND - no exchange '<e>' in vhost '/'".
    let result = within("channel.close after publish", confirm).await;
    assert_exception(
        result,
        404,
        &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
    );
    assert_channel_closed(&ch).await;
    assert!(conn.status().connected());
    assert_connection_works(&conn).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_missing_exchange_without_confirms_fails_the_next_call() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = channel(&conn).await;
    let missing = unique("no-such-exchange");
    within(
        "basic.publish",
        ch.basic_publish(
            &missing,
            "key",
            BasicPublishOptions::default(),
            b"lost",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish is sent");
    // The next synchronous call on that channel sees the channel exception.
    let next = within(
        "queue.declare",
        ch.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    match next {
        Err(lapin::Error::ProtocolError(e)) => assert_eq!(e.get_id(), 404),
        Err(lapin::Error::InvalidChannelState(_)) => {}
        other => panic!("expected the channel to be closed by 404, got {other:?}"),
    }
    assert_channel_closed(&ch).await;
    assert_connection_works(&conn).await;
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_queue_or_exchange_is_not_found() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let missing = unique("missing");

    let ch = channel(&conn).await;
    let passive = within(
        "passive queue.declare",
        ch.queue_declare(
            &missing,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(
        passive,
        404,
        &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
    );
    assert_channel_closed(&ch).await;

    let ch = channel(&conn).await;
    let consume = within(
        "basic.consume",
        ch.basic_consume(
            &missing,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(consume, 404, "NOT_FOUND - no queue ");
    assert_channel_closed(&ch).await;

    let ch = channel(&conn).await;
    let get = within(
        "basic.get",
        ch.basic_get(&missing, BasicGetOptions::default()),
    )
    .await;
    assert_exception(get, 404, "NOT_FOUND - no queue ");

    let ch = channel(&conn).await;
    let passive = within(
        "passive exchange.declare",
        ch.exchange_declare(
            &missing,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(
        passive,
        404,
        &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
    );

    let ch = channel(&conn).await;
    let queue = exclusive_queue(&ch, "bind-missing").await;
    let bind = within(
        "queue.bind",
        ch.queue_bind(
            &queue,
            &missing,
            "k",
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_exception(bind, 404, "NOT_FOUND - no exchange ");

    // Deleting a missing queue is not an error in RabbitMQ 3.10 (delete-ok, count 0).
    let ch = channel(&conn).await;
    let deleted = within(
        "queue.delete",
        ch.queue_delete(&missing, QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete of a missing queue is ok");
    assert_eq!(deleted, 0);

    assert_connection_works(&conn).await;
    close(conn).await;
    broker.shutdown().await;
}
