//! Harness for the black-box MQTT tests (and the MQTT ⇄ AMQP cross-protocol tests).
//!
//! The MQTT tests start their broker with
//! `TestBroker::options().external(External::Mqtt).start()` (see `common::broker`): warren
//! in-process on 127.0.0.1 with port 0 for both listeners and a temporary data directory. When
//! `WARREN_TEST_EXTERNAL_MQTT=host:port` is set it starts nothing and points the tests at that
//! broker instead (anonymous connects; Mosquitto and RabbitMQ's MQTT plugin
//! both accept them), which is how the tests are checked against real brokers. The
//! cross-protocol tests also need `WARREN_TEST_EXTERNAL_AMQP=host:port` in that mode (guest/guest,
//! vhost `/`).
//!
//! Against a shared broker every client id and topic comes from [`unique_id`] / [`unique_topic`],
//! so tests run in parallel without seeing each other's traffic, and persistent sessions and
//! retained messages a test creates are cleaned up by the test.
//!
//! Every await that could hang is wrapped in [`within`] (10 s per step), so a broken broker
//! fails a test in seconds instead of hanging CI.
//!
//! Clients: [`Client3`] (MQTT 3.1.1) and [`Client5`] (MQTT 5.0) wrap rumqttc's event loops in a
//! task that stops at the first connection error (rumqttc would otherwise reconnect on the next
//! poll, which would spoil take-over and will tests), and [`raw`] is a hand-rolled client for
//! what no library sends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod python;
pub(crate) mod raw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The AMQP helpers, time limits and names every harness shares.
#[path = "../common/mod.rs"]
pub(crate) mod common;
#[allow(unused_imports)] // A facade: each test binary uses a different part.
pub(crate) use common::{
    within, within_for, External, TestBroker, EXTERNAL_AMQP, EXTERNAL_MQTT, STEP,
};

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:08x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client id no other test (or earlier run against a shared broker) uses. Only letters,
/// digits and `-`.
pub(crate) fn unique_id(prefix: &str) -> String {
    format!("wt-{prefix}-{}", unique_suffix())
}

/// A topic prefix (several levels, no wildcards, no `.` so the AMQP mapping is 1:1) no other
/// test uses.
pub(crate) fn unique_topic(prefix: &str) -> String {
    format!("warren-test/{prefix}/{}", unique_suffix())
}

/// The AMQP routing key an MQTT topic maps onto (RabbitMQ's rule: `/` → `.`, `+` → `*`).
pub(crate) fn amqp_key(topic: &str) -> String {
    topic.replace('/', ".").replace('+', "*")
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1 client (rumqttc v4)
// ---------------------------------------------------------------------------------------------

/// rumqttc 3.1.1 options for `addr` with a keep-alive long enough never to matter.
pub(crate) fn options3(addr: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

type Control3 = Result<rumqttc::Event, rumqttc::ConnectionError>;

/// A connected MQTT 3.1.1 client: rumqttc's `AsyncClient` plus its event loop driven by a task
/// that routes incoming PUBLISHes to one channel and every other event (and the first error,
/// after which it stops) to another.
pub(crate) struct Client3 {
    pub(crate) client: rumqttc::AsyncClient,
    /// The CONNACK the broker answered with.
    pub(crate) connack: rumqttc::ConnAck,
    publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    control: mpsc::UnboundedReceiver<Control3>,
    task: JoinHandle<()>,
}

impl Client3 {
    /// Connects with default options (clean session, keep-alive 30 s).
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str) -> Client3 {
        Client3::connect_with(options3(addr, client_id)).await
    }

    /// Connects with `options`; panics unless the broker accepts the connection.
    pub(crate) async fn connect_with(options: rumqttc::MqttOptions) -> Client3 {
        let id = options.client_id();
        Client3::try_connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("MQTT 3.1.1 connect of {id:?} failed: {e:?}"))
    }

    /// Connects with `options`, returning the connection error instead of panicking.
    pub(crate) async fn try_connect_with(
        options: rumqttc::MqttOptions,
    ) -> Result<Client3, rumqttc::ConnectionError> {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (ctl_tx, mut control) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                        let _ = pub_tx.send(publish);
                    }
                    Ok(event) => {
                        let _ = ctl_tx.send(Ok(event));
                    }
                    Err(error) => {
                        let _ = ctl_tx.send(Err(error));
                        break;
                    }
                }
            }
        });
        let first = within("MQTT 3.1.1 CONNACK", control.recv())
            .await
            .expect("event loop task ended without an event");
        match first {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack))) => Ok(Client3 {
                client,
                connack,
                publishes,
                control,
                task,
            }),
            Ok(other) => panic!("expected CONNACK first, got {other:?}"),
            Err(error) => {
                task.abort();
                Err(error)
            }
        }
    }

    /// The next control event (anything but an incoming PUBLISH); panics on a connection error.
    async fn next_control(&mut self, what: &str) -> rumqttc::Event {
        match within(what, self.control.recv()).await {
            Some(Ok(event)) => event,
            Some(Err(error)) => panic!("connection failed while waiting for {what}: {error:?}"),
            None => panic!("event loop ended while waiting for {what}"),
        }
    }

    /// Subscribes and waits for the SUBACK; returns the return codes.
    pub(crate) async fn subscribe_raw(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        within("subscribe request", self.client.subscribe(filter, qos))
            .await
            .expect("subscribe request queued");
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(suback)) =
                self.next_control("SUBACK").await
            {
                return suback.return_codes;
            }
        }
    }

    /// Subscribes, waits for the SUBACK and asserts the broker granted `qos`.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        let codes = self.subscribe_raw(filter, qos).await;
        assert_eq!(
            codes,
            vec![rumqttc::SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter:?} at {qos:?}"
        );
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub(crate) async fn unsubscribe(&mut self, filter: &str) {
        within("unsubscribe request", self.client.unsubscribe(filter))
            .await
            .expect("unsubscribe request queued");
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::UnsubAck(_)) =
                self.next_control("UNSUBACK").await
            {
                return;
            }
        }
    }

    /// Publishes and waits until the protocol exchange for `qos` is complete: sent (QoS 0),
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2). Publishes one at a time, so the ack is this one's.
    pub(crate) async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        within(
            "publish request",
            self.client.publish(topic, qos, retain, payload.into()),
        )
        .await
        .expect("publish request queued");
        loop {
            let event = self.next_control("publish acknowledgement").await;
            let done = matches!(
                (qos, &event),
                (
                    rumqttc::QoS::AtMostOnce,
                    rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_)),
                ) | (
                    rumqttc::QoS::AtLeastOnce,
                    rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)),
                ) | (
                    rumqttc::QoS::ExactlyOnce,
                    rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_)),
                )
            );
            if done {
                return;
            }
        }
    }

    /// The next PUBLISH the broker delivers.
    pub(crate) async fn recv(&mut self) -> rumqttc::Publish {
        within("an incoming PUBLISH", self.publishes.recv())
            .await
            .expect("event loop ended while waiting for a PUBLISH")
    }

    /// A PUBLISH already received and not yet taken, if any (does not wait).
    pub(crate) fn try_recv(&mut self) -> Option<rumqttc::Publish> {
        self.publishes.try_recv().ok()
    }

    /// Sends DISCONNECT and waits for the broker to close the connection.
    pub(crate) async fn disconnect(mut self) {
        within("disconnect request", self.client.disconnect())
            .await
            .expect("disconnect request queued");
        while let Some(Ok(_)) =
            within("connection close after DISCONNECT", self.control.recv()).await
        {}
        self.task.abort();
    }

    /// Drops the TCP connection without DISCONNECT (as a crashed device would).
    pub(crate) async fn kill(mut self) {
        self.task.abort();
        let _ = within("event loop task to stop", &mut self.task).await;
    }

    /// Waits until the connection ends (the broker closed it) and returns the error rumqttc
    /// reported.
    pub(crate) async fn closed(&mut self) -> rumqttc::ConnectionError {
        loop {
            match within("the connection to close", self.control.recv()).await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return error,
                None => panic!("event loop ended without an error"),
            }
        }
    }
}

impl Drop for Client3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Payload as a string, for assertions.
pub(crate) fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

// ---------------------------------------------------------------------------------------------
// MQTT 5.0 client (rumqttc v5)
// ---------------------------------------------------------------------------------------------

pub(crate) use rumqttc::v5::mqttbytes::v5 as p5;
pub(crate) use rumqttc::v5::mqttbytes::QoS as QoS5;

/// rumqttc 5.0 options for `addr` with a keep-alive long enough never to matter.
pub(crate) fn options5(addr: SocketAddr, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

type Control5 = Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>;

/// A connected MQTT 5.0 client; see [`Client3`].
pub(crate) struct Client5 {
    pub(crate) client: rumqttc::v5::AsyncClient,
    /// The CONNACK the broker answered with.
    pub(crate) connack: p5::ConnAck,
    publishes: mpsc::UnboundedReceiver<p5::Publish>,
    control: mpsc::UnboundedReceiver<Control5>,
    task: JoinHandle<()>,
}

impl Client5 {
    /// Connects with default options (clean start, keep-alive 30 s).
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str) -> Client5 {
        Client5::connect_with(options5(addr, client_id)).await
    }

    /// Connects with `options`; panics unless the broker accepts the connection.
    pub(crate) async fn connect_with(options: rumqttc::v5::MqttOptions) -> Client5 {
        let id = options.client_id();
        Client5::try_connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("MQTT 5 connect of {id:?} failed: {e:?}"))
    }

    /// Connects with `options`, returning the connection error instead of panicking.
    pub(crate) async fn try_connect_with(
        options: rumqttc::v5::MqttOptions,
    ) -> Result<Client5, rumqttc::v5::ConnectionError> {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 1000);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (ctl_tx, mut control) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(p5::Packet::Publish(publish))) => {
                        let _ = pub_tx.send(publish);
                    }
                    Ok(event) => {
                        let _ = ctl_tx.send(Ok(event));
                    }
                    Err(error) => {
                        let _ = ctl_tx.send(Err(error));
                        break;
                    }
                }
            }
        });
        let first = within("MQTT 5 CONNACK", control.recv())
            .await
            .expect("event loop task ended without an event");
        match first {
            Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(connack))) => Ok(Client5 {
                client,
                connack,
                publishes,
                control,
                task,
            }),
            Ok(other) => panic!("expected CONNACK first, got {other:?}"),
            Err(error) => {
                task.abort();
                Err(error)
            }
        }
    }

    async fn next_control(&mut self, what: &str) -> rumqttc::v5::Event {
        match within(what, self.control.recv()).await {
            Some(Ok(event)) => event,
            Some(Err(error)) => panic!("connection failed while waiting for {what}: {error:?}"),
            None => panic!("event loop ended while waiting for {what}"),
        }
    }

    /// Subscribes and waits for the SUBACK; returns its reason codes.
    pub(crate) async fn subscribe_raw(
        &mut self,
        filter: &str,
        qos: QoS5,
    ) -> Vec<p5::SubscribeReasonCode> {
        within("subscribe request", self.client.subscribe(filter, qos))
            .await
            .expect("subscribe request queued");
        loop {
            // rumqttc ends the connection on a refused subscription and reports the code as
            // an error.
            match within("SUBACK", self.control.recv()).await {
                Some(Ok(rumqttc::v5::Event::Incoming(p5::Packet::SubAck(suback)))) => {
                    return suback.return_codes
                }
                Some(Err(rumqttc::v5::ConnectionError::MqttState(
                    rumqttc::v5::StateError::SubFail { reason },
                ))) => return vec![reason],
                Some(Ok(_)) => {}
                other => panic!("connection failed while waiting for SUBACK: {other:?}"),
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason, whatever it is.
    pub(crate) async fn publish_qos1_raw(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> p5::PubAckReason {
        let payload: Vec<u8> = payload.into();
        self.client
            .publish(topic, QoS5::AtLeastOnce, false, payload)
            .await
            .expect("publish request queued");
        loop {
            // rumqttc reports a failure reason as an error (and ends the connection).
            match within("PUBACK", self.control.recv()).await {
                Some(Ok(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(ack)))) => {
                    return ack.reason
                }
                Some(Err(rumqttc::v5::ConnectionError::MqttState(
                    rumqttc::v5::StateError::PubAckFail { reason },
                ))) => return reason,
                Some(Ok(_)) => {}
                other => panic!("connection failed while waiting for PUBACK: {other:?}"),
            }
        }
    }

    /// Subscribes, waits for the SUBACK and asserts the broker granted `qos`.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS5) {
        within("subscribe request", self.client.subscribe(filter, qos))
            .await
            .expect("subscribe request queued");
        loop {
            if let rumqttc::v5::Event::Incoming(p5::Packet::SubAck(suback)) =
                self.next_control("SUBACK").await
            {
                assert_eq!(
                    suback.return_codes,
                    vec![p5::SubscribeReasonCode::Success(qos)],
                    "SUBACK for {filter:?} at {qos:?}"
                );
                return;
            }
        }
    }

    /// Publishes (with optional properties) and waits until the exchange for `qos` is
    /// complete; see [`Client3::publish`].
    pub(crate) async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS5,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        properties: Option<p5::PublishProperties>,
    ) {
        let payload: Vec<u8> = payload.into();
        let request = match properties {
            Some(properties) => {
                self.client
                    .publish_with_properties(topic, qos, retain, payload, properties)
                    .await
            }
            None => self.client.publish(topic, qos, retain, payload).await,
        };
        request.expect("publish request queued");
        loop {
            let event = self.next_control("publish acknowledgement").await;
            let done = match (qos, &event) {
                (QoS5::AtMostOnce, rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                    true
                }
                (QoS5::AtLeastOnce, rumqttc::v5::Event::Incoming(p5::Packet::PubAck(ack))) => {
                    assert!(
                        matches!(
                            ack.reason,
                            p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
                        ),
                        "PUBACK for {topic:?}: {ack:?}"
                    );
                    true
                }
                (QoS5::ExactlyOnce, rumqttc::v5::Event::Incoming(p5::Packet::PubComp(_))) => true,
                _ => false,
            };
            if done {
                return;
            }
        }
    }

    /// Publishes without properties; see [`Client5::publish_with`].
    pub(crate) async fn publish(
        &mut self,
        topic: &str,
        qos: QoS5,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish_with(topic, qos, retain, payload, None).await;
    }

    /// The next PUBLISH the broker delivers.
    pub(crate) async fn recv(&mut self) -> p5::Publish {
        within("an incoming PUBLISH", self.publishes.recv())
            .await
            .expect("event loop ended while waiting for a PUBLISH")
    }

    /// A PUBLISH already received and not yet taken, if any (does not wait).
    pub(crate) fn try_recv(&mut self) -> Option<p5::Publish> {
        self.publishes.try_recv().ok()
    }

    /// Sends DISCONNECT (normal disconnection) and waits for the broker to close the connection.
    pub(crate) async fn disconnect(mut self) {
        within("disconnect request", self.client.disconnect())
            .await
            .expect("disconnect request queued");
        while let Some(Ok(_)) =
            within("connection close after DISCONNECT", self.control.recv()).await
        {}
        self.task.abort();
    }

    /// Drops the TCP connection without DISCONNECT.
    pub(crate) async fn kill(mut self) {
        self.task.abort();
        let _ = within("event loop task to stop", &mut self.task).await;
    }

    /// Waits until the connection ends and returns the error rumqttc reported (a DISCONNECT
    /// from the server shows up as `MqttState(ServerDisconnect { reason_code, .. })`).
    pub(crate) async fn closed(&mut self) -> rumqttc::v5::ConnectionError {
        loop {
            match within("the connection to close", self.control.recv()).await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return error,
                None => panic!("event loop ended without an error"),
            }
        }
    }
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks that a broker connection still works end to end: a fresh 3.1.1 client subscribes to
/// a unique topic, publishes to it at QoS 1 and receives its own message.
pub(crate) async fn assert_broker_works(addr: SocketAddr) {
    let topic = unique_topic("still-works");
    let mut client = Client3::connect(addr, &unique_id("still-works")).await;
    client.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await;
    client
        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, "still alive")
        .await;
    let publish = client.recv().await;
    assert_eq!(text(&publish.payload), "still alive");
    client.disconnect().await;
}
