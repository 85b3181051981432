//! Channel state and the handling of every channel-level method: declarations, consumers,
//! publishes (method + header + body assembly), acknowledgements, confirms and transactions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use warren_amqp::constants as c;
use warren_amqp::frame;
use warren_amqp::method::{self as m, Method};
use warren_amqp::properties::ContentHeader;

use super::connection::{Connection, ConnectionException};
use super::translate::{
    properties_from_amqp, properties_to_amqp, reply_code, table_from_amqp, HEADER_CACHE_FORMAT,
};
use super::MAX_MESSAGE_SIZE;
use crate::core::{
    ConsumerEvent, ConsumerId, ConsumerSpec, CoreError, ExchangeDeclare, Message, Properties,
    Queue, QueueDeclare, Routed, WireCache,
};

/// A consumer as its connection knows it.
pub(super) struct ConsumerRoute {
    pub(super) channel: u16,
    pub(super) tag: String,
    pub(super) no_ack: bool,
    pub(super) queue: Arc<Queue>,
}

/// A channel-level failure: the channel closes with this code.
struct ChannelException {
    code: u16,
    text: String,
}

/// What handling a channel method can fail with.
enum Failure {
    Channel(ChannelException),
    Connection(ConnectionException),
}

impl From<CoreError> for Failure {
    fn from(error: CoreError) -> Self {
        Failure::Channel(ChannelException {
            code: reply_code(&error),
            text: error.to_string(),
        })
    }
}

impl From<ConnectionException> for Failure {
    fn from(exception: ConnectionException) -> Self {
        Failure::Connection(exception)
    }
}

fn channel_error(code: u16, text: String) -> Failure {
    Failure::Channel(ChannelException { code, text })
}

/// A publish waiting for its header and body frames.
struct PendingPublish {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    /// The method, for error reports once content completes.
    class_method: (u16, u16),
    header: Option<PendingHeader>,
}

struct PendingHeader {
    properties: Properties,
    raw: Bytes,
    body_size: u64,
    body: Body,
}

enum Body {
    Empty,
    /// One frame's payload, shared without copying (the common case).
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::One(bytes) => bytes.len() as u64,
            Body::Many(bytes) => bytes.len() as u64,
        }
    }

    fn push(&mut self, payload: Bytes) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(payload),
            Body::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + payload.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&payload);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&payload);
                Body::Many(all)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(bytes) => bytes,
            Body::Many(bytes) => bytes.freeze(),
        }
    }
}

/// An acknowledgement held back by a transaction.
enum AckOp {
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

#[derive(Default)]
struct Transaction {
    publishes: Vec<(Message, bool)>,
    acks: Vec<AckOp>,
}

/// Deliveries awaiting acknowledgement, indexed by delivery tag. Tags only grow, so a deque
/// offset by the oldest outstanding tag gives O(1) ack of any tag.
#[derive(Default)]
struct UnackedLog {
    first_tag: u64,
    entries: VecDeque<Option<(Arc<Queue>, u64)>>,
}

impl UnackedLog {
    fn push(&mut self, tag: u64, queue: Arc<Queue>, seq: u64) {
        if self.entries.is_empty() {
            self.first_tag = tag;
        }
        while self.first_tag + (self.entries.len() as u64) < tag {
            self.entries.push_back(None);
        }
        self.entries.push_back(Some((queue, seq)));
    }

    fn trim(&mut self) {
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.first_tag += 1;
        }
    }

    fn take(&mut self, tag: u64) -> Option<(Arc<Queue>, u64)> {
        let index = usize::try_from(tag.checked_sub(self.first_tag)?).ok()?;
        let taken = self.entries.get_mut(index)?.take();
        self.trim();
        taken
    }

    /// Every outstanding delivery with a tag up to `tag` (0 = all).
    fn take_up_to(&mut self, tag: u64, into: &mut Vec<(Arc<Queue>, u64)>) {
        while let Some(front) = self.entries.front() {
            if tag != 0 && self.first_tag > tag {
                break;
            }
            if let Some(entry) = front {
                into.push(entry.clone());
            }
            self.entries.pop_front();
            self.first_tag += 1;
        }
    }

    fn contains(&self, tag: u64) -> bool {
        tag.checked_sub(self.first_tag)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| self.entries.get(index))
            .is_some_and(|entry| entry.is_some())
    }
}

/// One open channel.
#[derive(Default)]
pub(super) struct Channel {
    /// channel.close was sent; everything but close/close-ok is dropped until close-ok.
    closing: bool,
    publish: Option<PendingPublish>,
    /// Prefetch applied to consumers started after basic.qos.
    prefetch: u32,
    consumers: HashMap<String, ConsumerId>,
    next_delivery_tag: u64,
    unacked: UnackedLog,
    confirm: bool,
    /// Sequence number of the last publish in confirm mode.
    published_seq: u64,
    /// Sequence number of the last confirm sent.
    confirmed_seq: u64,
    /// Whether the channel is in the connection's list of confirms to send this burst.
    confirm_scheduled: bool,
    /// Publishes (sequence, store ticket) whose confirm waits for the store's fsync.
    awaiting_sync: VecDeque<(u64, crate::store::Ticket)>,
    transaction: Option<Transaction>,
}

impl Channel {
    /// Whether confirms on this channel wait for the store.
    pub(super) fn awaits_sync(&self) -> bool {
        !self.awaiting_sync.is_empty()
    }
}

impl Connection {
    pub(super) fn handle_channel_method(
        &mut self,
        channel: u16,
        method: Method,
    ) -> Result<(), ConnectionException> {
        self.check_channel_number(channel)?;
        let Some(state) = self.channels.get_mut(&channel) else {
            if let Method::ChannelOpen(_) = method {
                self.channels.insert(
                    channel,
                    Channel {
                        next_delivery_tag: 1,
                        ..Channel::default()
                    },
                );
                self.send_method(
                    channel,
                    &Method::ChannelOpenOk(m::ChannelOpenOk {
                        channel_id: Bytes::new(),
                    }),
                );
                return Ok(());
            }
            return Err(ConnectionException::new(
                c::CHANNEL_ERROR,
                format!(
                    "CHANNEL_ERROR - expected 'channel.open' on channel {channel}, got {}",
                    method.name()
                ),
            )
            .on(&method));
        };
        if state.closing {
            match method {
                Method::ChannelCloseOk(_) => {
                    self.channels.remove(&channel);
                }
                Method::ChannelClose(_) => {
                    self.send_method(channel, &Method::ChannelCloseOk(m::ChannelCloseOk));
                }
                _ => {}
            }
            return Ok(());
        }
        if let Some(pending) = &state.publish {
            let text = if pending.header.is_some() {
                "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
            } else {
                "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
            };
            let (class_id, method_id) = pending.class_method;
            let mut exception = ConnectionException::new(c::UNEXPECTED_FRAME, text);
            exception.class_id = class_id;
            exception.method_id = method_id;
            return Err(exception);
        }
        let class_method = (method.class_id(), method.method_id());
        match self.dispatch_channel_method(channel, method) {
            Ok(()) => Ok(()),
            Err(Failure::Connection(exception)) => Err(exception),
            Err(Failure::Channel(exception)) => {
                self.fail_channel(channel, exception, class_method);
                Ok(())
            }
        }
    }

    fn fail_channel(
        &mut self,
        channel: u16,
        exception: ChannelException,
        (class_id, method_id): (u16, u16),
    ) {
        tracing::info!(peer_connection = self.id.0, channel, code = exception.code, text = %exception.text, "channel error");
        self.release_channel(channel);
        if let Some(state) = self.channels.get_mut(&channel) {
            state.closing = true;
        }
        self.send_method(
            channel,
            &Method::ChannelClose(m::ChannelClose {
                reply_code: exception.code,
                reply_text: exception.text,
                class_id,
                method_id,
            }),
        );
    }

    fn channel(&mut self, channel: u16) -> Result<&mut Channel, Failure> {
        self.channels.get_mut(&channel).ok_or_else(|| {
            Failure::Connection(ConnectionException::new(
                c::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - channel {channel} is not open"),
            ))
        })
    }

    fn dispatch_channel_method(&mut self, channel: u16, method: Method) -> Result<(), Failure> {
        let owner = self.id;
        match method {
            Method::ChannelOpen(open) => Err(ConnectionException::new(
                c::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - second 'channel.open' seen on channel {channel}"),
            )
            .on(&Method::ChannelOpen(open))
            .into()),
            Method::ChannelClose(_) => {
                self.release_channel(channel);
                self.channels.remove(&channel);
                self.send_method(channel, &Method::ChannelCloseOk(m::ChannelCloseOk));
                Ok(())
            }
            Method::ChannelCloseOk(_) => Ok(()),
            Method::ChannelFlow(flow) => {
                self.send_method(
                    channel,
                    &Method::ChannelFlowOk(m::ChannelFlowOk {
                        active: flow.active,
                    }),
                );
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::AccessRequest(_) => {
                self.send_method(
                    channel,
                    &Method::AccessRequestOk(m::AccessRequestOk { ticket: 1 }),
                );
                Ok(())
            }
            Method::ExchangeDeclare(declare) => {
                let nowait = declare.nowait;
                self.vhost.declare_exchange(ExchangeDeclare {
                    name: declare.exchange,
                    kind: declare.kind,
                    passive: declare.passive,
                    durable: declare.durable,
                    auto_delete: declare.auto_delete,
                    internal: declare.internal,
                    arguments: table_from_amqp(declare.arguments),
                })?;
                self.reply(
                    channel,
                    nowait,
                    Method::ExchangeDeclareOk(m::ExchangeDeclareOk),
                );
                Ok(())
            }
            Method::ExchangeDelete(delete) => {
                self.vhost
                    .delete_exchange(&delete.exchange, delete.if_unused)?;
                self.reply(
                    channel,
                    delete.nowait,
                    Method::ExchangeDeleteOk(m::ExchangeDeleteOk),
                );
                Ok(())
            }
            Method::ExchangeBind(bind) => {
                self.vhost.bind_exchange(
                    &bind.destination,
                    &bind.source,
                    &bind.routing_key,
                    table_from_amqp(bind.arguments),
                )?;
                self.reply(
                    channel,
                    bind.nowait,
                    Method::ExchangeBindOk(m::ExchangeBindOk),
                );
                Ok(())
            }
            Method::ExchangeUnbind(unbind) => {
                self.vhost.unbind_exchange(
                    &unbind.destination,
                    &unbind.source,
                    &unbind.routing_key,
                    table_from_amqp(unbind.arguments),
                )?;
                self.reply(
                    channel,
                    unbind.nowait,
                    Method::ExchangeUnbindOk(m::ExchangeUnbindOk),
                );
                Ok(())
            }
            Method::QueueDeclare(declare) => {
                let nowait = declare.nowait;
                let declared = self.vhost.declare_queue(
                    QueueDeclare {
                        name: declare.queue,
                        passive: declare.passive,
                        durable: declare.durable,
                        exclusive: declare.exclusive,
                        auto_delete: declare.auto_delete,
                        arguments: table_from_amqp(declare.arguments),
                    },
                    owner,
                )?;
                self.reply(
                    channel,
                    nowait,
                    Method::QueueDeclareOk(m::QueueDeclareOk {
                        queue: declared.queue.name.clone(),
                        message_count: declared.message_count,
                        consumer_count: declared.consumer_count,
                    }),
                );
                Ok(())
            }
            Method::QueueBind(bind) => {
                self.vhost.bind_queue(
                    &bind.queue,
                    &bind.exchange,
                    &bind.routing_key,
                    table_from_amqp(bind.arguments),
                    owner,
                )?;
                self.reply(channel, bind.nowait, Method::QueueBindOk(m::QueueBindOk));
                Ok(())
            }
            Method::QueueUnbind(unbind) => {
                self.vhost.unbind_queue(
                    &unbind.queue,
                    &unbind.exchange,
                    &unbind.routing_key,
                    table_from_amqp(unbind.arguments),
                    owner,
                )?;
                self.send_method(channel, &Method::QueueUnbindOk(m::QueueUnbindOk));
                Ok(())
            }
            Method::QueuePurge(purge) => {
                let message_count = self.vhost.purge_queue(&purge.queue, owner)?;
                self.reply(
                    channel,
                    purge.nowait,
                    Method::QueuePurgeOk(m::QueuePurgeOk { message_count }),
                );
                Ok(())
            }
            Method::QueueDelete(delete) => {
                let message_count = self.vhost.delete_queue(
                    &delete.queue,
                    delete.if_unused,
                    delete.if_empty,
                    owner,
                )?;
                self.reply(
                    channel,
                    delete.nowait,
                    Method::QueueDeleteOk(m::QueueDeleteOk { message_count }),
                );
                Ok(())
            }
            Method::BasicQos(qos) => {
                if qos.prefetch_size != 0 {
                    return Err(ConnectionException::new(
                        c::NOT_IMPLEMENTED,
                        format!("NOT_IMPLEMENTED - prefetch_size!=0 ({})", qos.prefetch_size),
                    )
                    .into());
                }
                self.channel(channel)?.prefetch = qos.prefetch_count.into();
                self.send_method(channel, &Method::BasicQosOk(m::BasicQosOk));
                Ok(())
            }
            Method::BasicConsume(consume) => self.basic_consume(channel, consume),
            Method::BasicCancel(cancel) => {
                let consumer = self
                    .channel(channel)?
                    .consumers
                    .remove(&cancel.consumer_tag);
                if let Some(id) = consumer {
                    if let Some(route) = self.consumers.remove(&id) {
                        self.vhost.cancel(&route.queue, id);
                    }
                }
                self.reply(
                    channel,
                    cancel.nowait,
                    Method::BasicCancelOk(m::BasicCancelOk {
                        consumer_tag: cancel.consumer_tag,
                    }),
                );
                Ok(())
            }
            Method::BasicPublish(publish) => {
                let class_method = (m::BasicPublish::CLASS_ID, m::BasicPublish::METHOD_ID);
                self.published = true;
                self.channel(channel)?.publish = Some(PendingPublish {
                    exchange: publish.exchange,
                    routing_key: publish.routing_key,
                    mandatory: publish.mandatory,
                    class_method,
                    header: None,
                });
                Ok(())
            }
            Method::BasicGet(get) => self.basic_get(channel, get),
            Method::BasicAck(ack) => self.acknowledge(
                channel,
                AckOp::Ack {
                    tag: ack.delivery_tag,
                    multiple: ack.multiple,
                },
            ),
            Method::BasicNack(nack) => self.acknowledge(
                channel,
                AckOp::Nack {
                    tag: nack.delivery_tag,
                    multiple: nack.multiple,
                    requeue: nack.requeue,
                },
            ),
            Method::BasicReject(reject) => self.acknowledge(
                channel,
                AckOp::Nack {
                    tag: reject.delivery_tag,
                    multiple: false,
                    requeue: reject.requeue,
                },
            ),
            Method::BasicRecover(_) => {
                self.recover(channel)?;
                self.send_method(channel, &Method::BasicRecoverOk(m::BasicRecoverOk));
                Ok(())
            }
            Method::BasicRecoverAsync(_) => self.recover(channel),
            Method::ConfirmSelect(select) => {
                let state = self.channel(channel)?;
                if state.transaction.is_some() {
                    return Err(channel_error(
                        c::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from tx to confirm mode".into(),
                    ));
                }
                state.confirm = true;
                self.reply(
                    channel,
                    select.nowait,
                    Method::ConfirmSelectOk(m::ConfirmSelectOk),
                );
                Ok(())
            }
            Method::TxSelect(_) => {
                let state = self.channel(channel)?;
                if state.confirm {
                    return Err(channel_error(
                        c::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from confirm to tx mode".into(),
                    ));
                }
                state.transaction.get_or_insert_with(Transaction::default);
                self.send_method(channel, &Method::TxSelectOk(m::TxSelectOk));
                Ok(())
            }
            Method::TxCommit(_) => {
                let Some(transaction) = self
                    .channel(channel)?
                    .transaction
                    .replace(Transaction::default())
                else {
                    return Err(channel_error(
                        c::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional".into(),
                    ));
                };
                for (message, mandatory) in transaction.publishes {
                    self.route_message(channel, message, mandatory)?;
                }
                for op in transaction.acks {
                    self.apply_ack(channel, op)?;
                }
                self.send_method(channel, &Method::TxCommitOk(m::TxCommitOk));
                Ok(())
            }
            Method::TxRollback(_) => {
                let state = self.channel(channel)?;
                if state.transaction.is_none() {
                    return Err(channel_error(
                        c::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional".into(),
                    ));
                }
                state.transaction = Some(Transaction::default());
                self.send_method(channel, &Method::TxRollbackOk(m::TxRollbackOk));
                Ok(())
            }
            other => Err(ConnectionException::new(
                c::COMMAND_INVALID,
                format!("COMMAND_INVALID - {} is not a client method", other.name()),
            )
            .on(&other)
            .into()),
        }
    }

    /// Sends a synchronous reply unless the client asked for nowait.
    fn reply(&mut self, channel: u16, nowait: bool, method: Method) {
        if !nowait {
            self.send_method(channel, &method);
        }
    }

    fn basic_consume(&mut self, channel: u16, consume: m::BasicConsume) -> Result<(), Failure> {
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
        let id = self.core.next_consumer_id();
        let spec = ConsumerSpec {
            id,
            tag: tag.clone(),
            no_ack: consume.no_ack,
            exclusive: consume.exclusive,
            prefetch,
            owner: self.id,
            sink: self.events_tx.clone(),
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
        self.channel(channel)?.consumers.insert(tag.clone(), id);
        self.reply(
            channel,
            consume.nowait,
            Method::BasicConsumeOk(m::BasicConsumeOk { consumer_tag: tag }),
        );
        Ok(())
    }

    fn basic_get(&mut self, channel: u16, get: m::BasicGet) -> Result<(), Failure> {
        let queue = self.vhost.queue(&get.queue, self.id)?;
        let Some(result) = queue.get(get.no_ack) else {
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
        if !get.no_ack {
            state.unacked.push(tag, queue, result.seq);
        }
        let message = result.message;
        self.send_method(
            channel,
            &Method::BasicGetOk(m::BasicGetOk {
                delivery_tag: tag,
                redelivered: result.redelivered,
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                message_count: result.remaining,
            }),
        );
        self.encode_content(channel, &message);
        Ok(())
    }

    fn acknowledge(&mut self, channel: u16, op: AckOp) -> Result<(), Failure> {
        let state = self.channel(channel)?;
        if let Some(transaction) = state.transaction.as_mut() {
            transaction.acks.push(op);
            return Ok(());
        }
        self.apply_ack(channel, op)
    }

    fn apply_ack(&mut self, channel: u16, op: AckOp) -> Result<(), Failure> {
        let (tag, multiple, requeue) = match op {
            AckOp::Ack { tag, multiple } => (tag, multiple, None),
            AckOp::Nack {
                tag,
                multiple,
                requeue,
            } => (tag, multiple, Some(requeue)),
        };
        let state = self.channel(channel)?;
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
        settle(taken, requeue.unwrap_or(false));
        Ok(())
    }

    fn recover(&mut self, channel: u16) -> Result<(), Failure> {
        let state = self.channel(channel)?;
        let mut taken = Vec::new();
        state.unacked.take_up_to(0, &mut taken);
        settle(taken, true);
        Ok(())
    }

    pub(super) fn handle_header(
        &mut self,
        channel: u16,
        header: ContentHeader,
        raw: Bytes,
    ) -> Result<(), ConnectionException> {
        let pending = self
            .channels
            .get_mut(&channel)
            .filter(|state| !state.closing)
            .and_then(|state| state.publish.as_mut());
        let Some(pending) = pending else {
            if self.channels.get(&channel).is_some_and(|s| s.closing) {
                return Ok(());
            }
            return Err(ConnectionException::new(
                c::UNEXPECTED_FRAME,
                format!("UNEXPECTED_FRAME - expected method frame, got non method frame instead (content header on channel {channel})"),
            ));
        };
        if pending.header.is_some() {
            return Err(ConnectionException::new(
                c::UNEXPECTED_FRAME,
                "UNEXPECTED_FRAME - expected content body, got content header instead",
            ));
        }
        if header.class_id != c::CLASS_BASIC {
            let (class_id, method_id) = pending.class_method;
            return Err(ConnectionException {
                class_id,
                method_id,
                ..ConnectionException::new(
                c::UNEXPECTED_FRAME,
                format!(
                    "UNEXPECTED_FRAME - expected content header for class 60, got one for class {} instead",
                    header.class_id
                ),
                )
            });
        }
        let body_size = header.body_size;
        pending.header = Some(PendingHeader {
            properties: properties_from_amqp(header.properties),
            raw,
            body_size,
            body: Body::Empty,
        });
        if body_size > MAX_MESSAGE_SIZE {
            let class_method = pending.class_method;
            if let Some(state) = self.channels.get_mut(&channel) {
                state.publish = None;
            }
            self.fail_channel(
                channel,
                ChannelException {
                    code: c::PRECONDITION_FAILED,
                    text: format!("PRECONDITION_FAILED - message size {body_size} is larger than configured max size {MAX_MESSAGE_SIZE}"),
                },
                class_method,
            );
            return Ok(());
        }
        if body_size == 0 {
            return self.complete_publish(channel);
        }
        Ok(())
    }

    pub(super) fn handle_body(
        &mut self,
        channel: u16,
        payload: Bytes,
    ) -> Result<(), ConnectionException> {
        let header = self
            .channels
            .get_mut(&channel)
            .filter(|state| !state.closing)
            .and_then(|state| state.publish.as_mut())
            .and_then(|pending| pending.header.as_mut());
        let Some(header) = header else {
            if self.channels.get(&channel).is_some_and(|s| s.closing) {
                return Ok(());
            }
            return Err(ConnectionException::new(
                c::UNEXPECTED_FRAME,
                format!("UNEXPECTED_FRAME - expected method frame, got non method frame instead (content body on channel {channel})"),
            ));
        };
        header.body.push(payload);
        let received = header.body.len();
        if received > header.body_size {
            return Err(ConnectionException::new(
                c::FRAME_ERROR,
                format!(
                    "FRAME_ERROR - content body of {received} bytes exceeds the declared {}",
                    header.body_size
                ),
            ));
        }
        if received == header.body_size {
            return self.complete_publish(channel);
        }
        Ok(())
    }

    fn complete_publish(&mut self, channel: u16) -> Result<(), ConnectionException> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(pending) = state.publish.take() else {
            return Ok(());
        };
        let Some(header) = pending.header else {
            return Ok(());
        };
        if let Some(expiration) = &header.properties.expiration {
            if expiration.parse::<u64>().is_err() {
                let text = format!("PRECONDITION_FAILED - invalid expiration '{expiration}'");
                self.fail_channel(
                    channel,
                    ChannelException {
                        code: c::PRECONDITION_FAILED,
                        text,
                    },
                    pending.class_method,
                );
                return Ok(());
            }
        }
        let message = Message {
            exchange: pending.exchange,
            routing_key: pending.routing_key,
            properties: header.properties,
            body: header.body.into_bytes(),
            wire_cache: Some(WireCache {
                format: HEADER_CACHE_FORMAT,
                bytes: header.raw,
            }),
            origin: Some(self.id),
        };
        if let Some(transaction) = state.transaction.as_mut() {
            transaction.publishes.push((message, pending.mandatory));
            return Ok(());
        }
        match self.route_message(channel, message, pending.mandatory) {
            Ok(()) => Ok(()),
            Err(Failure::Connection(exception)) => Err(exception),
            Err(Failure::Channel(exception)) => {
                self.fail_channel(channel, exception, pending.class_method);
                Ok(())
            }
        }
    }

    /// Routes a complete message, returns it if unroutable and mandatory, and records the
    /// publisher confirm.
    fn route_message(
        &mut self,
        channel: u16,
        message: Message,
        mandatory: bool,
    ) -> Result<(), Failure> {
        let exchange = self.vhost.exchange(&message.exchange)?;
        let mut targets = std::mem::take(&mut self.targets);
        let routed = self.vhost.publish(&exchange, message, &mut targets);
        self.targets = targets;
        let mut ticket = 0;
        let routed = routed?;
        if let Routed::Queued {
            ticket: Some(t), ..
        } = routed
        {
            ticket = t;
        }
        if let Routed::Unroutable(message) = routed {
            if mandatory {
                self.send_method(
                    channel,
                    &Method::BasicReturn(m::BasicReturn {
                        reply_code: c::NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: message.exchange.clone(),
                        routing_key: message.routing_key.clone(),
                    }),
                );
                self.encode_content(channel, &message);
            }
        }
        let state = self.channel(channel)?;
        if state.confirm {
            state.published_seq += 1;
            if ticket != 0 || !state.awaiting_sync.is_empty() {
                // Confirmed only once the store has the message on disk, in order.
                state.awaiting_sync.push_back((state.published_seq, ticket));
            } else if !state.confirm_scheduled {
                state.confirm_scheduled = true;
                self.confirms_due.push(channel);
            }
        }
        Ok(())
    }

    /// Confirms publishes whose store ticket is now on disk (one `basic.ack multiple` per
    /// channel).
    pub(super) fn release_synced_confirms(&mut self, synced: crate::store::Ticket) {
        let mut acks = Vec::new();
        for (channel, state) in self.channels.iter_mut() {
            let mut upto = None;
            while let Some(&(seq, ticket)) = state.awaiting_sync.front() {
                if ticket > synced {
                    break;
                }
                state.awaiting_sync.pop_front();
                upto = Some(seq);
            }
            if let Some(tag) = upto {
                if !state.closing {
                    let multiple = tag > state.confirmed_seq + 1;
                    state.confirmed_seq = tag;
                    acks.push((*channel, tag, multiple));
                }
            }
        }
        for (channel, delivery_tag, multiple) in acks {
            self.send_method(
                channel,
                &Method::BasicAck(m::BasicAck {
                    delivery_tag,
                    multiple,
                }),
            );
        }
    }

    /// Sends one `basic.ack multiple` per channel for everything confirmed in this burst.
    pub(super) fn send_due_confirms(&mut self) {
        let due = std::mem::take(&mut self.confirms_due);
        for channel in &due {
            let Some(state) = self.channels.get_mut(channel) else {
                continue;
            };
            state.confirm_scheduled = false;
            if state.closing
                || state.published_seq == state.confirmed_seq
                || !state.awaiting_sync.is_empty()
            {
                continue;
            }
            let multiple = state.published_seq > state.confirmed_seq + 1;
            let tag = state.published_seq;
            state.confirmed_seq = tag;
            self.send_method(
                *channel,
                &Method::BasicAck(m::BasicAck {
                    delivery_tag: tag,
                    multiple,
                }),
            );
        }
        self.confirms_due = due;
        self.confirms_due.clear();
    }

    /// Writes the content header and body frames of a message.
    fn encode_content(&mut self, channel: u16, message: &Message) {
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
                if !route.no_ack {
                    state
                        .unacked
                        .push(tag, delivery.queue.clone(), delivery.seq);
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
        let mut taken = Vec::new();
        state.unacked.take_up_to(0, &mut taken);
        for id in consumers {
            if let Some(route) = self.consumers.remove(&id) {
                self.vhost.cancel(&route.queue, id);
            }
        }
        settle(taken, true);
    }
}

/// Acknowledges (or requeues) deliveries, one queue lock per run of the same queue.
fn settle(mut taken: Vec<(Arc<Queue>, u64)>, requeue: bool) {
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
        if requeue {
            queue.requeue(seqs.iter().copied());
        } else {
            queue.ack(seqs.iter().copied());
        }
    }
}
