//! Publisher confirms, mandatory returns and transactions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    assert_exception, channel, close, confirm_channel, connect, drain, exclusive_queue, get_body,
    publish, queue_counts, unique, within, TestBroker,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel};

async fn publish_mandatory(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> Confirmation {
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            exchange,
            key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            BasicProperties::default().with_correlation_id("c-1".into()),
        ),
    )
    .await
    .unwrap();
    within("publisher confirm", confirm).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_publish_is_returned_with_no_route() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let key = unique("nobody-listens");

    // Through amq.direct with no binding for the key. RabbitMQ sends basic.return before the
    // basic.ack for the same message, which is how lapin attaches the return to the confirm.
    let confirmation = publish_mandatory(&ch, "amq.direct", &key, b"bounce").await;
    assert!(
        confirmation.is_ack(),
        "unroutable is still acked: {confirmation:?}"
    );
    let returned = confirmation.take_message().expect("basic.return");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(returned.delivery.routing_key.as_str(), key);
    assert_eq!(returned.delivery.data, b"bounce");
    assert_eq!(
        returned
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("c-1")
    );

    // Through the default exchange to a queue that does not exist.
    let confirmation = publish_mandatory(&ch, "", &key, b"bounce again").await;
    let returned = confirmation.take_message().expect("basic.return");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.delivery.exchange.as_str(), "");
    assert_eq!(returned.delivery.data, b"bounce again");

    // Routable mandatory: acked, nothing returned, delivered.
    let queue = exclusive_queue(&ch, "mandatory-ok").await;
    let confirmation = publish_mandatory(&ch, "", &queue, b"lands").await;
    assert_eq!(confirmation, Confirmation::Ack(None));
    assert_eq!(get_body(&ch, &queue).await.as_deref(), Some(&b"lands"[..]));

    // Unroutable without mandatory: silently dropped, still acked.
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            "amq.direct",
            &key,
            BasicPublishOptions::default(),
            b"dropped",
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        within("publisher confirm", confirm).await.unwrap(),
        Confirmation::Ack(None)
    );
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_confirmed_publishes_are_all_acked() {
    const COUNT: u32 = 10_000;
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let queue = exclusive_queue(&ch, "confirms").await;

    let mut pending = Vec::with_capacity(COUNT as usize);
    for i in 0..COUNT {
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                format!("message {i}").as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        pending.push(confirm);
    }
    let mut acked = 0;
    for (i, confirm) in pending.into_iter().enumerate() {
        let confirmation = within("publisher confirm", confirm).await.unwrap();
        assert_eq!(confirmation, Confirmation::Ack(None), "message {i}");
        acked += 1;
    }
    assert_eq!(acked, COUNT);
    // Nothing outstanding, and every acked message is in the queue.
    let returned = within("wait_for_confirms", ch.wait_for_confirms())
        .await
        .unwrap();
    assert!(returned.is_empty());
    assert_eq!(queue_counts(&ch, &queue).await, (COUNT, 0));
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_makes_publishes_visible_only_after_commit() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let observer = channel(&conn).await;
    let queue = exclusive_queue(&observer, "tx-commit").await;
    let tx = channel(&conn).await;
    within("tx.select", tx.tx_select()).await.unwrap();

    for body in ["t1", "t2", "t3"] {
        within(
            "basic.publish",
            tx.basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
    }
    // A synchronous call on the tx channel proves the broker has read the publishes.
    assert_eq!(
        queue_counts(&tx, &queue).await.0,
        0,
        "nothing before commit"
    );
    assert_eq!(get_body(&observer, &queue).await, None);

    within("tx.commit", tx.tx_commit()).await.unwrap();
    assert_eq!(queue_counts(&observer, &queue).await.0, 3);
    assert_eq!(drain(&observer, &queue).await, ["t1", "t2", "t3"]);

    // The channel stays transactional: the next batch also waits for its commit.
    within(
        "basic.publish",
        tx.basic_publish(
            "",
            &queue,
            BasicPublishOptions::default(),
            b"t4",
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(queue_counts(&tx, &queue).await.0, 0);
    within("tx.commit", tx.tx_commit()).await.unwrap();
    assert_eq!(drain(&observer, &queue).await, ["t4"]);
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_discards_publishes() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;
    let observer = channel(&conn).await;
    let queue = exclusive_queue(&observer, "tx-rollback").await;
    let tx = channel(&conn).await;
    within("tx.select", tx.tx_select()).await.unwrap();

    for body in ["r1", "r2"] {
        within(
            "basic.publish",
            tx.basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
    }
    within("tx.rollback", tx.tx_rollback()).await.unwrap();
    assert_eq!(queue_counts(&observer, &queue).await.0, 0);

    within(
        "basic.publish",
        tx.basic_publish(
            "",
            &queue,
            BasicPublishOptions::default(),
            b"kept",
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap();
    within("tx.commit", tx.tx_commit()).await.unwrap();
    assert_eq!(drain(&observer, &queue).await, ["kept"]);
    close(conn).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_and_confirm_modes_exclude_each_other() {
    let broker = TestBroker::start().await;
    let conn = connect(&broker).await;

    // "PRECONDITION_FAILED - channel is not transactional"
    let ch = channel(&conn).await;
    assert_exception(
        within("tx.commit", ch.tx_commit()).await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );

    // "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    let ch = channel(&conn).await;
    within("tx.select", ch.tx_select()).await.unwrap();
    assert_exception(
        within(
            "confirm.select",
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    );

    // "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    let ch = confirm_channel(&conn).await;
    assert_exception(
        within("tx.select", ch.tx_select()).await,
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    );

    // The connection is unaffected.
    let ch = confirm_channel(&conn).await;
    let queue = exclusive_queue(&ch, "tx-confirm").await;
    publish(&ch, "", &queue, b"fine").await;
    assert_eq!(get_body(&ch, &queue).await.as_deref(), Some(&b"fine"[..]));
    close(conn).await;
    broker.shutdown().await;
}
