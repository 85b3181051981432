//! Packets the client publishes: PUBLISH and the QoS 1/2 acknowledgement flows
//! (PUBACK, PUBREC, PUBREL, PUBCOMP), retained messages, and routing into the core.

use std::sync::Arc;
use std::time::Duration;

use warren_mqtt::reason as rc;
use warren_mqtt::{Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS};

use super::connection::{active, Closing, MqttConnection};
use super::retained::Retained;
use super::routing::{publish_to_core, Published};
use super::translate::{mark_retained, message_from_publish};
use crate::core::Message;
use crate::store::Ticket;

/// Counts a publisher acknowledgement (PUBACK or PUBREC) sent.
fn counters_confirmed(connection: &MqttConnection) {
    connection.registration.stats().messages().confirmed.bump();
}

impl MqttConnection {
    /// A publish the user may not make: v5 answers QoS 1/2 with reason 0x87 (and drops QoS
    /// 0); v3 has no way to say it, so the connection closes, as RabbitMQ does.
    fn refuse_publish(
        &mut self,
        publish: &Publish,
        refused: crate::auth::AccessRefused,
    ) -> Result<(), Closing> {
        tracing::warn!(client_id = %self.client_id, %refused, "publish refused");
        if !self.v5() {
            return Err(Closing::new(rc::NOT_AUTHORIZED, refused.0));
        }
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck {
                packet_id: publish.packet_id,
                reason: rc::NOT_AUTHORIZED,
                ..PubAck::default()
            })),
            QoS::ExactlyOnce => self.send(Packet::PubRec(PubRec {
                packet_id: publish.packet_id,
                reason: rc::NOT_AUTHORIZED,
                ..PubRec::default()
            })),
        }
        Ok(())
    }

    pub(super) fn handle_publish(&mut self, mut publish: Publish) -> Result<(), Closing> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.shared.settings.topic_alias_maximum {
                return Err(Closing::new(
                    rc::TOPIC_ALIAS_INVALID,
                    format!("topic alias {alias} out of range"),
                ));
            }
            if publish.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(topic) => publish.topic = topic.clone(),
                    // Mappings never outlive their connection [MQTT-3.3.2-7].
                    None => {
                        return Err(Closing::new(
                            rc::TOPIC_ALIAS_INVALID,
                            format!("unknown topic alias {alias}"),
                        ))
                    }
                }
            } else {
                self.aliases
                    .get_or_insert_with(Box::default)
                    .inbound
                    .insert(alias, publish.topic.clone());
            }
        }
        if !warren_mqtt::topic::valid_topic_name(&publish.topic) {
            return Err(Closing::new(
                rc::TOPIC_NAME_INVALID,
                format!("invalid topic name {:?}", publish.topic),
            ));
        }
        if publish.qos != QoS::AtMostOnce
            && self.inbound_unacknowledged() >= usize::from(self.shared.settings.receive_maximum)
        {
            return Err(Closing::new(
                rc::RECEIVE_MAXIMUM_EXCEEDED,
                "client exceeded the receive maximum",
            ));
        }
        if let Err(refused) = self.may_publish(&publish.topic) {
            return self.refuse_publish(&publish, refused);
        }
        if publish.qos == QoS::ExactlyOnce
            && self.session.incoming_qos2.contains(&publish.packet_id)
        {
            // A resend of a publish already routed: acknowledge again, do not route twice.
            self.send(Packet::PubRec(PubRec {
                packet_id: publish.packet_id,
                ..PubRec::default()
            }));
            return Ok(());
        }
        let mut message = message_from_publish(
            &self.shared.settings.exchange,
            &publish.topic,
            publish.qos,
            publish.payload.clone(),
            &publish.properties,
        );
        message.origin = Some(self.id);
        if publish.retain {
            mark_retained(&mut message);
            self.retain(&publish.topic, publish.qos, &message);
        }
        let body_len = message.body.len();
        let published = self.route(message);
        let ticket = published.ticket;
        let stats = self.registration.stats();
        let counters = stats.messages();
        counters.received(body_len);
        if published.unroutable {
            counters.unroutable_dropped.bump();
        }
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => counters.received_confirm.bump(),
            QoS::ExactlyOnce => {
                counters.received_confirm.bump();
                counters.received_qos2.bump();
            }
        }
        if !stats.publisher.load(std::sync::atomic::Ordering::Relaxed) {
            stats
                .publisher
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // A queue at its length limit refused it: v5 says so (0x97 Quota exceeded); v3 has
        // no word for it.
        let reason = if published.rejected && self.v5() {
            rc::QUOTA_EXCEEDED
        } else {
            rc::SUCCESS
        };
        let ack = match publish.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => Packet::PubAck(PubAck {
                packet_id: publish.packet_id,
                reason,
                ..PubAck::default()
            }),
            QoS::ExactlyOnce => {
                // A PUBREC with a failure reason ends the exchange: no PUBREL follows.
                if reason == rc::SUCCESS {
                    self.session.incoming_qos2.insert(publish.packet_id);
                    self.inbound_inflight += 1;
                }
                Packet::PubRec(PubRec {
                    packet_id: publish.packet_id,
                    reason,
                    ..PubRec::default()
                })
            }
        };
        // The acknowledgement of a message written to disk leaves only after the fsync, and
        // acknowledgements stay in order.
        let queued = self.sync_wait.as_ref().is_some_and(|w| !w.acks.is_empty());
        let is_puback = matches!(ack, Packet::PubAck(_));
        if ticket.is_some() || queued {
            let wait = self.sync_wait.get_or_insert_with(Box::default);
            wait.acks.push_back((ticket.unwrap_or(0), ack));
            if is_puback {
                wait.held_pubacks += 1;
            }
        } else {
            self.send(ack);
            counters_confirmed(self);
            if is_puback {
                if let Some(publishing) = self.publishing.as_mut() {
                    publishing.pubacks_this_burst += 1;
                }
            }
        }
        Ok(())
    }

    /// QoS 1/2 publishes from the client that count against the Receive Maximum
    /// [MQTT-3.3.4-7]: QoS 2 ones until their PUBREL, and (MQTT 5 only, as 3.1.1 has no
    /// Receive Maximum) QoS 1 ones whose PUBACK has not been written yet — held for the
    /// store's fsync, or answered within the current burst of input, which the client cannot
    /// have received before sending what follows in the same burst.
    fn inbound_unacknowledged(&self) -> usize {
        if !self.v5() {
            return self.inbound_inflight;
        }
        let held = self.sync_wait.as_ref().map_or(0, |wait| wait.held_pubacks);
        let this_burst = self
            .publishing
            .as_ref()
            .map_or(0, |publishing| publishing.pubacks_this_burst);
        self.inbound_inflight + held + this_burst
    }

    /// A new burst of client input begins: every acknowledgement produced before it has
    /// been written to the socket.
    pub(super) fn start_input_burst(&mut self) {
        if let Some(publishing) = self.publishing.as_mut() {
            publishing.pubacks_this_burst = 0;
        }
    }

    fn retain(&self, topic: &str, qos: QoS, message: &Message) {
        let retained = (!message.body.is_empty()).then(|| Retained {
            message: Arc::new(message.clone()),
            qos,
            expires_at: message
                .properties
                .expiration
                .as_deref()
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| std::time::Instant::now() + Duration::from_millis(ms)),
        });
        self.shared.retained.set(&self.vhost.name, topic, retained);
        self.shared.persistence.retained_changed();
    }

    /// Routes a message through the MQTT exchange into the core; returns the store ticket
    /// when it was persisted.
    fn route(&mut self, message: Message) -> Published {
        let publishing = self.publishing.get_or_insert_with(Box::default);
        if publishing.last_topic != message.routing_key {
            publishing.last_topic = message.routing_key.clone();
            self.shared
                .recent_topics
                .note(&self.vhost.name, &message.routing_key);
        }
        let published =
            publish_to_core(&self.shared, &self.vhost, message, &mut publishing.targets);
        let consumers = self.delivering.as_ref().map(|d| &d.consumers);
        let paused = crate::listener::start_flow(
            &mut publishing.flow,
            &mut publishing.targets.congested,
            |queue| {
                consumers.is_some_and(|consumers| {
                    consumers
                        .values()
                        .any(|source| std::ptr::eq(Arc::as_ptr(&source.queue), queue))
                })
            },
        );
        if paused {
            let protocol = self.registration.stats().protocol();
            self.registration.registry().flow_paused(protocol);
        }
        published
    }

    /// Sends the acknowledgements whose messages are now on disk.
    pub(super) fn release_synced(&mut self, synced: Ticket) {
        loop {
            let ready = self.sync_wait.as_mut().and_then(|wait| {
                let (ticket, _) = wait.acks.front()?;
                if *ticket > synced {
                    return None;
                }
                wait.acks.pop_front()
            });
            let Some((_, ack)) = ready else {
                break;
            };
            if let (Packet::PubAck(_), Some(wait)) = (&ack, self.sync_wait.as_mut()) {
                wait.held_pubacks = wait.held_pubacks.saturating_sub(1);
            }
            self.send(ack);
            counters_confirmed(self);
        }
    }

    /// PUBACK: a QoS 1 delivery is acknowledged; the core forgets it.
    pub(super) fn handle_puback(&mut self, ack: PubAck) -> Result<(), Closing> {
        if let Some(outbound) = active(&mut self.delivering).outbound.remove(&ack.packet_id) {
            self.registration.stats().messages().acknowledged.bump();
            if let Some((queue, seq)) = outbound.source {
                queue.ack([seq]);
            }
        }
        Ok(())
    }

    /// PUBREC: a QoS 2 delivery arrived; answered with PUBREL.
    pub(super) fn handle_pubrec(&mut self, rec: PubRec) -> Result<(), Closing> {
        let reason = match active(&mut self.delivering).outbound.remove(&rec.packet_id) {
            Some(outbound) => {
                let counters = &self.registration.stats().messages();
                counters.acknowledged.bump();
                counters.acknowledged_qos2.bump();
                // Delivered: the core forgets it; the packet id stays taken until PUBCOMP.
                if let Some((queue, seq)) = outbound.source {
                    queue.ack([seq]);
                }
                self.session.pending_pubrel.insert(rec.packet_id);
                rc::SUCCESS
            }
            None if self.session.pending_pubrel.contains(&rec.packet_id) => rc::SUCCESS,
            None => rc::PACKET_IDENTIFIER_NOT_FOUND,
        };
        self.send(Packet::PubRel(PubRel {
            packet_id: rec.packet_id,
            reason,
            ..PubRel::default()
        }));
        Ok(())
    }

    /// PUBCOMP: the packet id of a QoS 2 delivery is free again.
    pub(super) fn handle_pubcomp(&mut self, comp: PubComp) -> Result<(), Closing> {
        self.session.pending_pubrel.remove(&comp.packet_id);
        Ok(())
    }

    /// PUBREL: a QoS 2 publish from the client is complete; answered with PUBCOMP.
    pub(super) fn handle_pubrel(&mut self, rel: PubRel) -> Result<(), Closing> {
        let known = self.session.incoming_qos2.remove(&rel.packet_id);
        if known {
            self.inbound_inflight = self.inbound_inflight.saturating_sub(1);
        }
        self.send(Packet::PubComp(PubComp {
            packet_id: rel.packet_id,
            reason: if known {
                rc::SUCCESS
            } else {
                rc::PACKET_IDENTIFIER_NOT_FOUND
            },
            ..PubComp::default()
        }));
        Ok(())
    }
}
