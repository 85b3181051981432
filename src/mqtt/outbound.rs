//! Delivery to the client: consumer events, PUBLISH to the client with QoS, topic aliases
//! and packet ids, and delivery window grants.

use std::sync::Arc;

use warren_mqtt::{Packet, Publish, QoS};

use super::connection::{active, MqttConnection, Outbound};
use super::translate::{
    publish_properties, published_qos, published_retained, routing_key_to_topic,
};
use crate::core::{ConsumerEvent, Delivery, Message, Queue};

impl MqttConnection {
    /// Shows the session's kind and subscription count to the metrics.
    pub(super) fn note_session(&self) {
        let stats = self.registration.stats();
        stats
            .persistent_session
            .store(self.persistent, std::sync::atomic::Ordering::Relaxed);
        stats.subscriptions.store(
            u32::try_from(self.session.subscriptions.len()).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Shows the connection's consumer count to the metrics.
    pub(super) fn note_consumers(&self) {
        let count = self.delivering.as_ref().map_or(0, |d| d.consumers.len());
        self.registration.stats().consumers.store(
            u32::try_from(count).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub(super) fn handle_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(delivery) => self.handle_delivery(delivery),
            ConsumerEvent::Cancelled { consumer } => {
                active(&mut self.delivering).consumers.remove(&consumer);
                self.note_consumers();
            }
        }
    }

    fn handle_delivery(&mut self, delivery: Delivery) {
        let Some(source) = active(&mut self.delivering)
            .consumers
            .get(&delivery.consumer)
        else {
            delivery.queue.requeue([delivery.seq]);
            return;
        };
        if delivery
            .expires_at
            .is_some_and(|at| at <= std::time::Instant::now())
        {
            // Expired while waiting for this connection: onward delivery has not started, so
            // the copy is dropped, never sent late [MQTT-3.3.2-5].
            delivery.queue.ack([delivery.seq]);
            self.note_delivery(&delivery);
            return;
        }
        let topic: crate::core::ShortString = routing_key_to_topic(&delivery.message.routing_key);
        // Which of this session's subscriptions the message matches decides its QoS and
        // identifiers; none matching (e.g. `#` versus a `$SYS` topic) means it is not for us.
        let mut granted: Option<QoS> = None;
        let mut identifiers = Vec::new();
        let mut retain_as_published = false;
        let own = delivery.message.origin == Some(self.id);
        for (full, subscription) in &self.session.subscriptions {
            if own && subscription.no_local {
                // [MQTT-3.8.3-3]: not sent back to the connection that published it.
                continue;
            }
            let relevant = match (&source.shared, &subscription.group) {
                (None, None) => true,
                (Some(shared), Some(_)) => shared == full,
                _ => false,
            };
            if relevant && warren_mqtt::topic::matches(&subscription.filter, &topic) {
                granted = Some(granted.map_or(subscription.qos, |g| g.max(subscription.qos)));
                identifiers.extend(subscription.identifier);
                retain_as_published |= subscription.retain_as_published;
            }
        }
        let Some(granted) = granted else {
            delivery.queue.ack([delivery.seq]);
            self.note_delivery(&delivery);
            return;
        };
        let qos = published_qos(&delivery.message).min(granted);
        // Forwarded messages have RETAIN cleared unless a matching subscription asked for it
        // as published [MQTT-3.3.1-12], [MQTT-3.3.1-13] (3.1.1 clears it always).
        let retain = self.v5() && retain_as_published && published_retained(&delivery.message);
        let source = Some((delivery.queue.clone(), delivery.seq));
        self.deliver(
            &topic,
            &delivery.message,
            qos,
            retain,
            delivery.redelivered,
            delivery.expires_at,
            identifiers,
            source,
        );
        self.note_delivery(&delivery);
    }

    fn note_delivery(&mut self, delivery: &Delivery) {
        active(&mut self.delivering).window_grants.note(delivery);
    }

    /// Sends one PUBLISH to the client and tracks it until acknowledged.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        topic: &str,
        message: &Message,
        qos: QoS,
        retain: bool,
        dup: bool,
        expires_at: Option<std::time::Instant>,
        identifiers: Vec<u32>,
        source: Option<(Arc<Queue>, u64)>,
    ) {
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            match self.allocate_packet_id() {
                Some(id) => id,
                None => {
                    if let Some((queue, seq)) = source {
                        queue.requeue([seq]);
                    }
                    return;
                }
            }
        };
        let mut properties = if self.v5() {
            publish_properties(message, expires_at, identifiers)
        } else {
            Default::default()
        };
        let mut topic_out = topic.to_string();
        if self.v5() && self.client_topic_alias_maximum > 0 {
            let aliases = self.aliases.get_or_insert_with(Box::default);
            match aliases.outbound.get(topic) {
                Some(alias) => {
                    properties.topic_alias = Some(*alias);
                    topic_out.clear();
                }
                None => {
                    let next = aliases.outbound.len() + 1;
                    if let Ok(alias) = u16::try_from(next) {
                        if alias <= self.client_topic_alias_maximum {
                            aliases.outbound.insert(topic.to_string(), alias);
                            properties.topic_alias = Some(alias);
                        }
                    }
                }
            }
        }
        let publish = Packet::Publish(Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: topic_out,
            packet_id,
            payload: message.body.clone(),
            properties,
        });
        if let Err(error) = self.codec.encode(&publish, &mut self.out) {
            // Too large for the client's Maximum Packet Size: dropped, as the spec says.
            tracing::debug!(client_id = %self.client_id, %error, "delivery dropped");
            if let Some((queue, seq)) = source {
                queue.ack([seq]);
            }
            return;
        }
        let counters = &self.registration.stats().messages();
        match qos {
            QoS::AtMostOnce => counters.delivered_consume_auto_ack.bump(),
            QoS::AtLeastOnce => counters.delivered_consume_manual_ack.bump(),
            QoS::ExactlyOnce => {
                counters.delivered_consume_manual_ack.bump();
                counters.delivered_qos2.bump();
            }
        }
        if dup && qos != QoS::AtMostOnce {
            counters.redelivered.bump();
        }
        if qos == QoS::AtMostOnce {
            if let Some((queue, seq)) = source {
                queue.ack([seq]);
            }
        } else {
            active(&mut self.delivering)
                .outbound
                .insert(packet_id, Outbound { source });
        }
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !active(&mut self.delivering).outbound.contains_key(&id)
                && !self.session.pending_pubrel.contains(&id)
            {
                return Some(id);
            }
        }
        None
    }
}
