//! Runs `tests/python/test_paho.py` (paho-mqtt, MQTT 3.1.1 and 5.0) against the broker.
//!
//! paho-mqtt is required, not optional: if the test interpreter (`.venv/bin/python`, made by
//! `scripts/test.sh`, or `$WARREN_TEST_PYTHON`) cannot import paho.mqtt, this test fails and
//! says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use mqtt_support::{External, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_client_works_against_the_broker() {
    mqtt_support::python::require_modules(&["paho.mqtt"]).await;
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    // The script takes the AMQP address too (for symmetry with test_cross.py); it does not use it.
    let amqp = if broker.is_external() {
        std::env::var(mqtt_support::EXTERNAL_AMQP).unwrap_or_else(|_| "unused:0".to_string())
    } else {
        broker.amqp_addr().to_string()
    };
    mqtt_support::python::run_script("test_paho.py", &amqp, &broker.mqtt_addr().to_string()).await;
    broker.shutdown().await;
}
