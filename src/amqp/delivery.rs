//! Consumers and deliveries: basic.consume/get, delivery frames, acknowledgements,
//! recovery and the release of a closing channel's deliveries.

use std::sync::Arc;

use warren_amqp::constants as c;
use warren_amqp::frame;
use warren_amqp::method::{self as m, Method};
use warren_amqp::properties::ContentHeader;

use super::channel::{channel_error, AckOp, ConsumerRoute, Failure};
use super::connection::{Connection, ConnectionException};
use super::translate::{properties_to_amqp, HEADER_CACHE_FORMAT};
use crate::core::{ConsumerEvent, ConsumerId, ConsumerSpec, Message, Queue};

impl Connection {
    pub(super) fn basic_consume(
        &mut self,
        channel: u16,
        consume: m::BasicConsume,
    ) -> Result<(), Failure> {
        let mut consume = consume;
        if consume.queue == crate::core::vhost::REPLY_TO {
            // Direct reply-to: a hidden exclusive queue answers to the pseudo-queue, and this
            // channel's publishes name it in `reply_to`. RabbitMQ asks for no-ack.
            if !consume.no_ack {
                return Err(super::channel::channel_error(
                    c::PRECONDITION_FAILED,
                    "PRECONDITION_FAILED - reply consumer cannot acknowledge".into(),
                ));
            }
            let queue = self.vhost.declare_reply_queue(self.id)?;
            self.channel(channel)?.reply_queue = Some(queue.name.clone());
            consume.queue = queue.name.clone();
        } else {
            self.access.check(
                crate::auth::Access::Read,
                crate::auth::Resource::Queue,
                &consume.queue,
            )?;
        }
        let state = self.channel(channel)?;
        let tag = if consume.consumer_tag.is_empty() {
            format!("amq.ctag-{:032x}", rand::random::<u128>())
        } else {
            consume.consumer_tag
        };
        if state.consumers.contains_key(&tag) {
            return Err(ConnectionException::new(
                c::NOT_ALLOWED,
                format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
            )
            .into());
        }
        let prefetch = state.prefetch;
        let credit = state.credit.clone();
        let id = self.core.next_consumer_id();
        let spec = ConsumerSpec {
            id,
            tag: tag.clone(),
            no_ack: consume.no_ack,
            exclusive: consume.exclusive,
            prefetch,
            owner: self.id,
            sink: self.events.sink(),
            priority: consumer_priority(&consume.arguments),
            channel: Some(credit),
        };
        // The reply goes out before any delivery: deliveries arrive as events, handled after
        // this frame.
        let queue = self.vhost.queue(&consume.queue, self.id)?;
        self.consumers.insert(
            id,
            ConsumerRoute {
                channel,
                tag: tag.clone(),
                no_ack: consume.no_ack,
                queue: queue.clone(),
            },
        );
        if let Err(error) = self.vhost.consume(&consume.queue, spec) {
            self.consumers.remove(&id);
            return Err(error.into());
        }
        let state = self.channel(channel)?;
        state.consumers.insert(tag.clone(), id);
        state.note_consumers();
        self.reply(
            channel,
            consume.nowait,
            Method::BasicConsumeOk(m::BasicConsumeOk { consumer_tag: tag }),
        );
        Ok(())
    }

    pub(super) fn basic_get(&mut self, channel: u16, get: m::BasicGet) -> Result<(), Failure> {
        self.access.check(
            crate::auth::Access::Read,
            crate::auth::Resource::Queue,
            &get.queue,
        )?;
        let queue = self.vhost.queue(&get.queue, self.id)?;
        let Some(result) = queue.get(get.no_ack) else {
            self.channel(channel)?.stats.messages().get_empty.bump();
            self.send_method(
                channel,
                &Method::BasicGetEmpty(m::BasicGetEmpty {
                    cluster_id: String::new(),
                }),
            );
            return Ok(());
        };
        let state = self.channel(channel)?;
        let tag = state.next_delivery_tag;
        state.next_delivery_tag += 1;
        let counters = state.stats.messages();
        if get.no_ack {
            counters.delivered_get_auto_ack.bump();
        } else {
            counters.delivered_get_manual_ack.bump();
            state.unacked.push(tag, queue, result.seq);
        }
        if result.redelivered {
            counters.redelivered.bump();
        }
        let message = result.message;
        self.send_method(
            channel,
            &Method::BasicGetOk(m::BasicGetOk {
                delivery_tag: tag,
                redelivered: result.redelivered,
                exchange: message.exchange.to_string(),
                routing_key: message.routing_key.to_string(),
                message_count: result.remaining,
            }),
        );
        self.encode_content(channel, &message);
        Ok(())
    }

    pub(super) fn acknowledge(&mut self, channel: u16, op: AckOp) -> Result<(), Failure> {
        let state = self.channel(channel)?;
        if let Some(transaction) = state.transaction.as_mut() {
            transaction.acks.push(op);
            return Ok(());
        }
        self.apply_ack(channel, op)
    }

    pub(super) fn apply_ack(&mut self, channel: u16, op: AckOp) -> Result<(), Failure> {
        let (tag, multiple, requeue) = match op {
            AckOp::Ack { tag, multiple } => (tag, multiple, None),
            AckOp::Nack {
                tag,
                multiple,
                requeue,
            } => (tag, multiple, Some(requeue)),
        };
        let state = self.channel(channel)?;
        let was_full = state.credit.is_full();
        let mut taken = Vec::new();
        if multiple {
            state.unacked.take_up_to(tag, &mut taken);
        } else if state.unacked.contains(tag) {
            taken.extend(state.unacked.take(tag));
        } else {
            return Err(channel_error(
                c::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
            ));
        }
        let counters = state.stats.messages();
        match requeue {
            None => counters.acknowledged.add(taken.len() as u64),
            Some(_) => counters.rejected.add(taken.len() as u64),
        }
        let how = match requeue {
            None => Settle::Ack,
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Reject,
        };
        settle(taken, how);
        if was_full {
            // Credit freed on this queue may be wanted by the channel's consumers of others.
            self.kick_channel_consumers(channel);
        }
        Ok(())
    }

    /// Offers messages again to the queues of a channel's consumers (its shared credit grew).
    pub(super) fn kick_channel_consumers(&mut self, channel: u16) {
        let Some(state) = self.channels.get(&channel) else {
            return;
        };
        let queues: Vec<Arc<Queue>> = state
            .consumers
            .values()
            .filter_map(|id| self.consumers.get(id))
            .map(|route| route.queue.clone())
            .collect();
        for queue in queues {
            queue.kick();
        }
    }

    pub(super) fn recover(&mut self, channel: u16) -> Result<(), Failure> {
        let state = self.channel(channel)?;
        let mut taken = Vec::new();
        state.unacked.take_up_to(0, &mut taken);
        state.stats.messages().rejected.add(taken.len() as u64);
        settle(taken, Settle::Requeue);
        Ok(())
    }

    /// Writes the content header and body frames of a message.
    pub(super) fn encode_content(&mut self, channel: u16, message: &Message) {
        match &message.wire_cache {
            Some(cache) if cache.format == HEADER_CACHE_FORMAT => {
                frame::encode_raw_header_frame(channel, &cache.bytes, &mut self.out)
            }
            _ => frame::encode_header_frame(
                channel,
                &ContentHeader {
                    class_id: c::CLASS_BASIC,
                    weight: 0,
                    body_size: message.body.len() as u64,
                    properties: properties_to_amqp(&message.properties),
                },
                &mut self.out,
            ),
        }
        frame::encode_body_frames(channel, &message.body, self.frame_max, &mut self.out);
    }

    /// Turns a core event into frames.
    pub(super) fn handle_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(delivery) => {
                let route = self.consumers.get(&delivery.consumer);
                let state = route.and_then(|r| self.channels.get_mut(&r.channel));
                let (Some(route), Some(state)) = (route, state) else {
                    // The consumer was cancelled while this was in flight.
                    delivery.queue.requeue([delivery.seq]);
                    return;
                };
                let channel = route.channel;
                let tag = state.next_delivery_tag;
                state.next_delivery_tag += 1;
                let counters = state.stats.messages();
                if route.no_ack {
                    counters.delivered_consume_auto_ack.bump();
                } else {
                    counters.delivered_consume_manual_ack.bump();
                    state
                        .unacked
                        .push(tag, delivery.queue.clone(), delivery.seq);
                }
                if delivery.redelivered {
                    counters.redelivered.bump();
                }
                let message = &delivery.message;
                warren_amqp::method::encode_basic_deliver_frame(
                    channel,
                    &route.tag,
                    tag,
                    delivery.redelivered,
                    &message.exchange,
                    &message.routing_key,
                    &mut self.out,
                );
                self.encode_content(channel, message);
                self.window_grants.note(&delivery);
            }
            ConsumerEvent::Cancelled { consumer } => {
                let Some(route) = self.consumers.remove(&consumer) else {
                    return;
                };
                if let Some(state) = self.channels.get_mut(&route.channel) {
                    state.consumers.remove(&route.tag);
                    state.note_consumers();
                    if !state.closing && self.notify_cancel() {
                        self.send_method(
                            route.channel,
                            &Method::BasicCancel(m::BasicCancel {
                                consumer_tag: route.tag,
                                nowait: true,
                            }),
                        );
                    }
                }
            }
        }
    }

    /// Cancels a channel's consumers and requeues its unacknowledged deliveries.
    pub(super) fn release_channel(&mut self, channel: u16) {
        let Some(state) = self.channels.get_mut(&channel) else {
            return;
        };
        state.publish = None;
        state.transaction = None;
        let consumers: Vec<ConsumerId> = state.consumers.drain().map(|(_, id)| id).collect();
        state.note_consumers();
        let mut taken = Vec::new();
        state.unacked.take_up_to(0, &mut taken);
        for id in consumers {
            if let Some(route) = self.consumers.remove(&id) {
                self.vhost.cancel(&route.queue, id);
            }
        }
        settle(taken, Settle::Requeue);
    }
}

/// `x-priority` from basic.consume's arguments (0 when absent or not an integer).
fn consumer_priority(arguments: &warren_amqp::FieldTable) -> i32 {
    use warren_amqp::FieldValue as V;
    match arguments.get("x-priority") {
        Some(V::ShortShortInt(n)) => (*n).into(),
        Some(V::ShortShortUInt(n)) => (*n).into(),
        Some(V::ShortInt(n)) => (*n).into(),
        Some(V::ShortUInt(n)) => (*n).into(),
        Some(V::LongInt(n)) => *n,
        Some(V::LongUInt(n)) => i32::try_from(*n).unwrap_or(i32::MAX),
        Some(V::LongLongInt(n)) => {
            i32::try_from(*n).unwrap_or(if *n < 0 { i32::MIN } else { i32::MAX })
        }
        _ => 0,
    }
}

/// What becomes of settled deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// basic.ack: gone for good.
    Ack,
    /// Back into the queue (nack/reject with requeue, recover, channel closed).
    Requeue,
    /// basic.nack / basic.reject without requeue: dead-lettered or dropped.
    Reject,
}

/// Acknowledges, requeues or rejects deliveries, one queue lock per run of the same queue.
fn settle(mut taken: Vec<(Arc<Queue>, u64)>, how: Settle) {
    let mut seqs = Vec::new();
    while !taken.is_empty() {
        let queue = taken[0].0.clone();
        seqs.clear();
        taken.retain(|(q, seq)| {
            if Arc::ptr_eq(q, &queue) {
                seqs.push(*seq);
                false
            } else {
                true
            }
        });
        match how {
            Settle::Ack => queue.ack(seqs.iter().copied()),
            Settle::Requeue => queue.requeue(seqs.iter().copied()),
            Settle::Reject => queue.reject(seqs.iter().copied()),
        }
    }
}
