//! Routing MQTT-originated messages into the core, shared by client publishes (`inbound`)
//! and wills (published when a connection ends, or after its will delay).

use std::sync::Arc;

use warren_mqtt::Will;

use super::retained::Retained;
use super::translate::{mark_retained, message_from_publish};
use super::Shared;
use crate::core::{Message, RouteTargets, Routed, Vhost};
use crate::store::Ticket;

/// Publishes a will message (and keeps it as the topic's retained message if asked).
pub(super) fn publish_will(shared: &Shared, vhost: &Vhost, will: Box<Will>) {
    let mut message = message_from_publish(
        &shared.settings.exchange,
        &will.topic,
        will.qos,
        will.payload.clone(),
        &will.properties,
    );
    if will.retain {
        mark_retained(&mut message);
        let retained = (!message.body.is_empty()).then(|| Retained {
            message: Arc::new(message.clone()),
            qos: will.qos,
            expires_at: None,
        });
        shared.retained.set(&vhost.name, &will.topic, retained);
        shared.persistence.retained_changed();
    }
    publish_to_core(shared, vhost, message, &mut RouteTargets::default());
    shared
        .stats
        .mqtt_wills_published
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What routing an MQTT-originated message did.
pub(super) struct Published {
    /// The store ticket when it was persisted.
    pub(super) ticket: Option<Ticket>,
    /// Whether no queue took it.
    pub(super) unroutable: bool,
    /// Whether a queue at its length limit refused it (`x-overflow` `reject-publish`).
    pub(super) rejected: bool,
}

/// Routes an MQTT-originated message through the configured exchange.
pub(super) fn publish_to_core(
    shared: &Shared,
    vhost: &Vhost,
    message: Message,
    targets: &mut RouteTargets,
) -> Published {
    let dropped = Published {
        ticket: None,
        unroutable: true,
        rejected: false,
    };
    match vhost.exchange(&shared.settings.exchange) {
        Ok(exchange) => match vhost.publish(&exchange, std::sync::Arc::new(message), targets) {
            Ok(Routed::Queued {
                ticket, rejected, ..
            }) => Published {
                ticket,
                unroutable: false,
                rejected,
            },
            Ok(Routed::Unroutable(_)) => dropped,
            Err(error) => {
                tracing::warn!(%error, "MQTT publish refused by the core");
                dropped
            }
        },
        Err(_) => {
            tracing::warn!(exchange = %shared.settings.exchange, "MQTT exchange missing; message dropped");
            dropped
        }
    }
}
