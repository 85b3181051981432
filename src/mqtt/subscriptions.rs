//! SUBSCRIBE and UNSUBSCRIBE: the session queue, shared-subscription queues and the
//! consumers reading from them.

use std::sync::Arc;
use std::time::Duration;

use warren_mqtt::reason as rc;
use warren_mqtt::{Packet, SubAck, Subscribe, UnsubAck, Unsubscribe};

use super::connection::{
    active, session_queue_name, Closing, ConsumerSource, MqttConnection, Outbound,
};
use super::session::Subscription;
use super::translate::topic_to_routing_key;
use crate::core::{ConsumerSpec, Queue, QueueDeclare, Table};

impl MqttConnection {
    pub(super) fn ensure_session_queue(&mut self) -> Result<Arc<Queue>, crate::core::CoreError> {
        let name = session_queue_name(&self.client_id, self.persistent);
        let declared = self.vhost.declare_queue(
            QueueDeclare {
                name: name.clone(),
                durable: self.persistent,
                exclusive: !self.persistent,
                auto_delete: false,
                ..QueueDeclare::default()
            },
            self.id,
        )?;
        let queue = declared.queue;
        let consuming = active(&mut self.delivering)
            .consumers
            .values()
            .any(|source| source.shared.is_none());
        if !consuming {
            self.start_consumer(&queue, None)?;
        }
        Ok(queue)
    }

    fn start_consumer(
        &mut self,
        queue: &Arc<Queue>,
        shared: Option<String>,
    ) -> Result<(), crate::core::CoreError> {
        let id = self.shared.core.next_consumer_id();
        let spec = ConsumerSpec {
            id,
            tag: format!("mqtt-{}", id.0),
            no_ack: false,
            exclusive: false,
            prefetch: self.client_receive_maximum.into(),
            owner: self.id,
            sink: self.sink(),
            priority: 0,
            channel: None,
        };
        active(&mut self.delivering).consumers.insert(
            id,
            ConsumerSource {
                queue: queue.clone(),
                shared,
            },
        );
        if let Err(error) = self.vhost.consume(&queue.name, spec) {
            active(&mut self.delivering).consumers.remove(&id);
            return Err(error);
        }
        self.note_consumers();
        Ok(())
    }

    pub(super) fn join_shared(
        &mut self,
        full: &str,
        group: &str,
        filter: &str,
    ) -> Result<(), crate::core::CoreError> {
        let key: String = topic_to_routing_key(filter);
        let name = format!("mqtt-shared-{group}-{key}");
        let declared = self.vhost.declare_queue(
            QueueDeclare {
                name: name.clone(),
                auto_delete: true,
                ..QueueDeclare::default()
            },
            self.id,
        )?;
        self.vhost.bind_queue(
            &name,
            &self.shared.settings.exchange,
            &key,
            Table::default(),
            self.id,
        )?;
        let already = active(&mut self.delivering)
            .consumers
            .values()
            .any(|source| source.shared.as_deref() == Some(full));
        if !already {
            self.start_consumer(&declared.queue, Some(full.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn handle_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Closing> {
        if subscribe.subscription_identifier == Some(0) {
            return Err(Closing::new(
                rc::PROTOCOL_ERROR,
                "subscription identifier 0",
            ));
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_to_send = Vec::new();
        for request in subscribe.filters {
            let full = request.filter.clone();
            let (group, filter) = match warren_mqtt::topic::parse_shared(&full) {
                Some(shared) => (Some(shared.group.to_string()), shared.filter.to_string()),
                None if full.starts_with("$share/") => {
                    reasons.push(self.failure_code(rc::TOPIC_FILTER_INVALID));
                    continue;
                }
                None => (None, full.clone()),
            };
            if !warren_mqtt::topic::valid_topic_filter(&filter) {
                reasons.push(self.failure_code(rc::TOPIC_FILTER_INVALID));
                continue;
            }
            if let Err(refused) = self.may_subscribe(&filter) {
                tracing::warn!(client_id = %self.client_id, %refused, "subscribe refused");
                reasons.push(self.failure_code(rc::NOT_AUTHORIZED));
                continue;
            }
            let existed = self.session.subscriptions.contains_key(&full);
            let subscription = Subscription {
                filter: filter.clone(),
                qos: request.qos,
                no_local: request.no_local,
                retain_as_published: request.retain_as_published,
                identifier: subscribe.subscription_identifier,
                group: group.clone(),
            };
            let result = match &group {
                Some(group) => self.join_shared(&full, group, &filter),
                None => self.ensure_session_queue().and_then(|queue| {
                    self.vhost.bind_queue(
                        &queue.name,
                        &self.shared.settings.exchange,
                        &topic_to_routing_key::<String>(&filter),
                        Table::default(),
                        self.id,
                    )
                }),
            };
            match result {
                Ok(()) => {
                    self.session
                        .subscriptions
                        .insert(full, subscription.clone());
                    reasons.push(request.qos.as_u8());
                    let send_retained = group.is_none()
                        && match request.retain_handling {
                            0 => true,
                            1 => !existed,
                            _ => false,
                        };
                    if send_retained {
                        retained_to_send.push(subscription);
                    }
                }
                Err(error) => {
                    tracing::warn!(client_id = %self.client_id, %error, "subscribe failed");
                    reasons.push(self.failure_code(rc::UNSPECIFIED_ERROR));
                }
            }
        }
        self.send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            ..SubAck::default()
        }));
        self.session_changed();
        // Retained messages follow the SUBACK [MQTT-3.3.1-9].
        for subscription in retained_to_send {
            for (topic, retained) in self
                .shared
                .retained
                .matching(&self.vhost.name, &subscription.filter)
            {
                let qos = retained.qos.min(subscription.qos);
                let identifiers = subscription.identifier.into_iter().collect();
                self.deliver(
                    &topic,
                    &retained.message,
                    qos,
                    true,
                    false,
                    retained.expires_at,
                    identifiers,
                    None,
                );
            }
        }
        Ok(())
    }

    /// Saves a persistent session's subscriptions (debounced, in the background).
    fn session_changed(&self) {
        self.note_session();
        if self.persistent && self.session.expiry != Some(Duration::ZERO) {
            self.shared.persistence.session_changed(
                &self.vhost.name,
                &self.client_id,
                &self.session,
            );
        }
    }

    fn failure_code(&self, v5_reason: u8) -> u8 {
        if self.v5() {
            v5_reason
        } else {
            0x80
        }
    }

    pub(super) fn handle_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Closing> {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for full in unsubscribe.filters {
            let Some(subscription) = self.session.subscriptions.remove(&full) else {
                reasons.push(rc::NO_SUBSCRIPTION_EXISTED);
                continue;
            };
            let key: String = topic_to_routing_key(&subscription.filter);
            match subscription.group {
                Some(_) => {
                    let found = active(&mut self.delivering)
                        .consumers
                        .iter()
                        .find(|(_, source)| source.shared.as_deref() == Some(full.as_str()))
                        .map(|(id, _)| *id);
                    if let Some(id) = found {
                        if let Some(source) = active(&mut self.delivering).consumers.remove(&id) {
                            self.requeue_outbound_of(&source.queue);
                            self.vhost.cancel(&source.queue, id);
                        }
                        self.note_consumers();
                    }
                }
                None => {
                    let still_bound = self.session.subscriptions.values().any(|s| {
                        s.group.is_none() && topic_to_routing_key::<String>(&s.filter) == key
                    });
                    if !still_bound {
                        let name = session_queue_name(&self.client_id, self.persistent);
                        let _ = self.vhost.unbind_queue(
                            &name,
                            &self.shared.settings.exchange,
                            &key,
                            Table::default(),
                            self.id,
                        );
                    }
                }
            }
            reasons.push(rc::SUCCESS);
        }
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            ..UnsubAck::default()
        }));
        self.session_changed();
        Ok(())
    }

    fn requeue_outbound_of(&mut self, queue: &Arc<Queue>) {
        let ids: Vec<u16> = active(&mut self.delivering)
            .outbound
            .iter()
            .filter(|(_, o)| {
                o.source
                    .as_ref()
                    .is_some_and(|(q, _)| Arc::ptr_eq(q, queue))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(Outbound {
                source: Some((queue, seq)),
                ..
            }) = active(&mut self.delivering).outbound.remove(&id)
            {
                queue.requeue([seq]);
            }
        }
    }
}
