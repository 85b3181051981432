//! Channel state and the handling of every channel-level method: opening and closing,
//! declarations, qos, confirm and tx modes, and dispatch to the publish and delivery code.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use warren_amqp::constants as c;
use warren_amqp::method::{self as m, Method};

use super::connection::{Connection, ConnectionException};
use super::publish::PendingPublish;
use super::translate::{reply_code, table_from_amqp};
use crate::auth::{Access, Resource};
use crate::core::{ConsumerId, CoreError, ExchangeDeclare, Message, Queue, QueueDeclare};

/// A consumer as its connection knows it.
pub(super) struct ConsumerRoute {
    pub(super) channel: u16,
    pub(super) tag: String,
    pub(super) no_ack: bool,
    pub(super) queue: Arc<Queue>,
}

/// A channel-level failure: the channel closes with this code.
pub(super) struct ChannelException {
    pub(super) code: u16,
    pub(super) text: String,
}

/// What handling a channel method can fail with.
pub(super) enum Failure {
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

impl From<crate::auth::AccessRefused> for Failure {
    fn from(refused: crate::auth::AccessRefused) -> Self {
        Failure::Channel(ChannelException {
            code: c::ACCESS_REFUSED,
            text: format!("ACCESS_REFUSED - {refused}"),
        })
    }
}

impl From<ConnectionException> for Failure {
    fn from(exception: ConnectionException) -> Self {
        Failure::Connection(exception)
    }
}

pub(super) fn channel_error(code: u16, text: String) -> Failure {
    Failure::Channel(ChannelException { code, text })
}

/// An acknowledgement held back by a transaction.
pub(super) enum AckOp {
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
pub(super) struct Transaction {
    pub(super) publishes: Vec<(Arc<Message>, bool)>,
    pub(super) acks: Vec<AckOp>,
}

/// Deliveries awaiting acknowledgement, indexed by delivery tag. Tags only grow, so a deque
/// offset by the oldest outstanding tag gives O(1) ack of any tag.
#[derive(Default)]
pub(super) struct UnackedLog {
    first_tag: u64,
    entries: VecDeque<Option<(Arc<Queue>, u64)>>,
}

impl UnackedLog {
    pub(super) fn push(&mut self, tag: u64, queue: Arc<Queue>, seq: u64) {
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

    pub(super) fn take(&mut self, tag: u64) -> Option<(Arc<Queue>, u64)> {
        let index = usize::try_from(tag.checked_sub(self.first_tag)?).ok()?;
        let taken = self.entries.get_mut(index)?.take();
        self.trim();
        taken
    }

    /// Every outstanding delivery with a tag up to `tag` (0 = all).
    pub(super) fn take_up_to(&mut self, tag: u64, into: &mut Vec<(Arc<Queue>, u64)>) {
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

    pub(super) fn contains(&self, tag: u64) -> bool {
        tag.checked_sub(self.first_tag)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| self.entries.get(index))
            .is_some_and(|entry| entry.is_some())
    }
}

/// One open channel.
#[derive(Default)]
pub(super) struct Channel {
    /// The queue behind this channel's direct reply-to consumer (`amq.rabbitmq.reply-to`):
    /// publishes with that `reply_to` get its name instead.
    pub(super) reply_queue: Option<String>,
    /// channel.close was sent; everything but close/close-ok is dropped until close-ok.
    pub(super) closing: bool,
    pub(super) publish: Option<PendingPublish>,
    /// Prefetch applied to consumers started after basic.qos.
    pub(super) prefetch: u32,
    pub(super) consumers: HashMap<String, ConsumerId>,
    pub(super) next_delivery_tag: u64,
    pub(super) unacked: UnackedLog,
    pub(super) confirm: bool,
    /// Sequence number of the last publish in confirm mode.
    pub(super) published_seq: u64,
    /// Sequence number of the last confirm sent.
    pub(super) confirmed_seq: u64,
    /// Whether the channel is in the connection's list of confirms to send this burst.
    pub(super) confirm_scheduled: bool,
    /// Publishes (sequence, store ticket, refused) whose confirm waits for the store's fsync
    /// or for the confirms before it; a refused one (a queue at its length limit) is nacked.
    pub(super) awaiting_sync: VecDeque<(u64, crate::store::Ticket, bool)>,
    pub(super) transaction: Option<Transaction>,
    /// The exchange of the last publish: publishers mostly reuse one, and this skips the
    /// vhost lookup (a shared lock and a hash) per message.
    pub(super) last_exchange: Option<Arc<crate::core::Exchange>>,
    /// The channel's counters, as the metrics see them.
    pub(super) stats: Arc<crate::stats::ChannelStats>,
    /// What basic.qos `global=true` and channel.flow allow the channel's consumers together.
    pub(super) credit: Arc<crate::core::ChannelCredit>,
}

impl Channel {
    /// Counts a message received on this channel for the metrics.
    pub(super) fn count_publish(&self, body_len: usize, unroutable: bool, mandatory: bool) {
        let stats = &self.stats;
        let counters = stats.messages();
        counters.received(body_len);
        if unroutable {
            if mandatory {
                counters.unroutable_returned.bump();
            } else {
                counters.unroutable_dropped.bump();
            }
        }
        if self.confirm {
            counters.received_confirm.bump();
        }
        if !stats.publisher.load(std::sync::atomic::Ordering::Relaxed) {
            stats
                .publisher
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Shows the channel's consumer count to the metrics.
    pub(super) fn note_consumers(&self) {
        self.stats.consumers.store(
            u32::try_from(self.consumers.len()).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether confirms on this channel wait for the store.
    pub(super) fn awaits_sync(&self) -> bool {
        !self.awaiting_sync.is_empty()
    }
}

impl Connection {
    /// RabbitMQ's checks for a binding change: write on the destination, read on the source
    /// exchange and, for a topic exchange with topic permissions, read on the binding key.
    fn check_binding(
        &mut self,
        destination_kind: Resource,
        destination: &str,
        source: &str,
        routing_key: &str,
    ) -> Result<(), Failure> {
        self.access
            .check(Access::Write, destination_kind, destination)?;
        self.access
            .check(Access::Read, Resource::Exchange, source)?;
        if self.access.has_topic_permissions()
            && self
                .vhost
                .exchange(source)
                .is_ok_and(|e| e.kind == crate::core::ExchangeKind::Topic)
        {
            self.access.check_topic(Access::Read, source, routing_key)?;
        }
        Ok(())
    }

    pub(super) fn handle_channel_method(
        &mut self,
        channel: u16,
        method: Method,
    ) -> Result<(), ConnectionException> {
        self.check_channel_number(channel)?;
        let Some(state) = self.channels.get_mut(&channel) else {
            if let Method::ChannelOpen(_) = method {
                let stats = self.registration.open_channel(channel);
                self.channels.insert(
                    channel,
                    Channel {
                        next_delivery_tag: 1,
                        stats,
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
                    self.forget_channel(channel);
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

    pub(super) fn fail_channel(
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

    /// Drops a closed channel, keeping its counts in the metrics' totals.
    pub(super) fn forget_channel(&mut self, channel: u16) {
        if let Some(state) = self.channels.remove(&channel) {
            self.registration.close_channel(&state.stats);
        }
    }

    pub(super) fn channel(&mut self, channel: u16) -> Result<&mut Channel, Failure> {
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
                self.forget_channel(channel);
                self.send_method(channel, &Method::ChannelCloseOk(m::ChannelCloseOk));
                Ok(())
            }
            Method::ChannelCloseOk(_) => Ok(()),
            Method::ChannelFlow(flow) => {
                // active=false: no more deliveries to this channel until active=true.
                self.channel(channel)?.credit.set_paused(!flow.active);
                if flow.active {
                    self.kick_channel_consumers(channel);
                }
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
                let arguments = table_from_amqp(declare.arguments);
                if !declare.passive {
                    self.access
                        .check(Access::Configure, Resource::Exchange, &declare.exchange)?;
                    // An alternate exchange receives what is published here: RabbitMQ asks
                    // for read on this exchange and write on the alternate one.
                    if let Some(crate::core::Value::String(alternate)) =
                        arguments.get("alternate-exchange")
                    {
                        let alternate = String::from_utf8_lossy(alternate).into_owned();
                        self.access
                            .check(Access::Read, Resource::Exchange, &declare.exchange)?;
                        self.access
                            .check(Access::Write, Resource::Exchange, &alternate)?;
                    }
                }
                self.vhost.declare_exchange(ExchangeDeclare {
                    name: declare.exchange,
                    kind: declare.kind,
                    passive: declare.passive,
                    durable: declare.durable,
                    auto_delete: declare.auto_delete,
                    internal: declare.internal,
                    arguments,
                })?;
                self.reply(
                    channel,
                    nowait,
                    Method::ExchangeDeclareOk(m::ExchangeDeclareOk),
                );
                Ok(())
            }
            Method::ExchangeDelete(delete) => {
                self.access
                    .check(Access::Configure, Resource::Exchange, &delete.exchange)?;
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
                self.check_binding(
                    Resource::Exchange,
                    &bind.destination,
                    &bind.source,
                    &bind.routing_key,
                )?;
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
                self.check_binding(
                    Resource::Exchange,
                    &unbind.destination,
                    &unbind.source,
                    &unbind.routing_key,
                )?;
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
                if !declare.passive {
                    // A server-named queue is checked as `amq.gen-` (its name's prefix).
                    let name = if declare.queue.is_empty() {
                        "amq.gen-"
                    } else {
                        declare.queue.as_str()
                    };
                    self.access
                        .check(Access::Configure, Resource::Queue, name)?;
                }
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
                self.check_binding(
                    Resource::Queue,
                    &bind.queue,
                    &bind.exchange,
                    &bind.routing_key,
                )?;
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
                self.check_binding(
                    Resource::Queue,
                    &unbind.queue,
                    &unbind.exchange,
                    &unbind.routing_key,
                )?;
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
                self.access
                    .check(Access::Read, Resource::Queue, &purge.queue)?;
                let message_count = self.vhost.purge_queue(&purge.queue, owner)?;
                self.reply(
                    channel,
                    purge.nowait,
                    Method::QueuePurgeOk(m::QueuePurgeOk { message_count }),
                );
                Ok(())
            }
            Method::QueueDelete(delete) => {
                self.access
                    .check(Access::Configure, Resource::Queue, &delete.queue)?;
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
                let state = self.channel(channel)?;
                if qos.global {
                    // RabbitMQ 3.x: a limit shared by the channel's consumers, existing ones
                    // included (AMQP's connection-wide meaning is not implemented by anyone).
                    state.credit.set_limit(qos.prefetch_count.into());
                    self.kick_channel_consumers(channel);
                } else {
                    state.prefetch = qos.prefetch_count.into();
                    state
                        .stats
                        .prefetch
                        .store(state.prefetch, std::sync::atomic::Ordering::Relaxed);
                }
                self.send_method(channel, &Method::BasicQosOk(m::BasicQosOk));
                Ok(())
            }
            Method::BasicConsume(consume) => self.basic_consume(channel, consume),
            Method::BasicCancel(cancel) => {
                let state = self.channel(channel)?;
                let consumer = state.consumers.remove(&cancel.consumer_tag);
                state.note_consumers();
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
                if publish.immediate {
                    // RabbitMQ 3.x dropped immediate delivery and closes the connection.
                    let mut exception = ConnectionException::new(
                        c::NOT_IMPLEMENTED,
                        "NOT_IMPLEMENTED - immediate=true",
                    );
                    (exception.class_id, exception.method_id) = class_method;
                    return Err(exception.into());
                }
                self.published = true;
                self.channel(channel)?.publish = Some(PendingPublish {
                    exchange: publish.exchange.into(),
                    routing_key: publish.routing_key.into(),
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
    pub(super) fn reply(&mut self, channel: u16, nowait: bool, method: Method) {
        if !nowait {
            self.send_method(channel, &method);
        }
    }
}
