//! Every family warren exports: RabbitMQ's names, types and labels (as `rabbitmq_prometheus`
//! in RabbitMQ 3.10 serves them), then warren's own under `warren_`.

use super::render::{Family, Kind, Scope};

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, $scope:expr, $help:literal) => {
        pub(crate) static $id: Family = Family {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            scope: $scope,
        };
    };
}

const CHURN: Scope = Scope::Node(Some("connection_churn_metrics"));
const QUEUE_COARSE: Scope = Scope::Object("queue_coarse_metrics");
const QUEUE_CONSUMERS: Scope = Scope::Object("queue_consumer_count");
const QUEUE: Scope = Scope::Object("queue_metrics");
const CHANNEL: Scope = Scope::Object("channel_metrics");
const CHANNEL_EXCHANGE: Scope = Scope::Object("channel_exchange_metrics");
const CHANNEL_QUEUE: Scope = Scope::Object("channel_queue_metrics");
const CONNECTION_COARSE: Scope = Scope::Object("connection_coarse_metrics");
const CONNECTION: Scope = Scope::Object("connection_metrics");
const AUTH: Scope = Scope::Node(Some("auth_attempt_metrics"));
const NODE_COARSE: Scope = Scope::Node(Some("node_coarse_metrics"));
const NODE: Scope = Scope::Node(Some("node_metrics"));
const PERSISTER: Scope = Scope::Node(Some("node_persister_metrics"));
const GLOBAL: Scope = Scope::Node(None);

family!(
    IDENTITY,
    "rabbitmq_identity_info",
    Gauge,
    Scope::Bare,
    "Node and cluster identity; every query of RabbitMQ's dashboards joins on it"
);
family!(
    BUILD,
    "rabbitmq_build_info",
    Gauge,
    Scope::Bare,
    "Version information"
);
family!(
    START_TIME,
    "process_start_time_seconds",
    Gauge,
    Scope::Bare,
    "When the broker process started, in seconds since the Unix epoch"
);
family!(
    UPTIME,
    "erlang_uptime_seconds",
    Gauge,
    NODE,
    "Seconds since the node started (named as RabbitMQ names it)"
);

family!(
    CONNECTIONS_OPENED,
    "connections_opened_total",
    Counter,
    CHURN,
    "Connections opened"
);
family!(
    CONNECTIONS_CLOSED,
    "connections_closed_total",
    Counter,
    CHURN,
    "Connections closed or lost"
);
family!(
    CHANNELS_OPENED,
    "channels_opened_total",
    Counter,
    CHURN,
    "Channels opened"
);
family!(
    CHANNELS_CLOSED,
    "channels_closed_total",
    Counter,
    CHURN,
    "Channels closed"
);
family!(
    QUEUES_DECLARED,
    "queues_declared_total",
    Counter,
    CHURN,
    "Queues declared (new or existing)"
);
family!(
    QUEUES_CREATED,
    "queues_created_total",
    Counter,
    CHURN,
    "Queues created"
);
family!(
    QUEUES_DELETED,
    "queues_deleted_total",
    Counter,
    CHURN,
    "Queues deleted"
);

family!(
    CONNECTIONS,
    "connections",
    Gauge,
    GLOBAL,
    "Connections open"
);
family!(CHANNELS, "channels", Gauge, GLOBAL, "Channels open");
family!(QUEUES, "queues", Gauge, GLOBAL, "Queues");
family!(CONSUMERS, "consumers", Gauge, GLOBAL, "Consumers");

family!(
    RECEIVED,
    "global_messages_received_total",
    Counter,
    GLOBAL,
    "Messages received from publishers"
);
family!(
    RECEIVED_CONFIRM,
    "global_messages_received_confirm_total",
    Counter,
    GLOBAL,
    "Messages received from publishers expecting a confirm (AMQP confirm mode, MQTT QoS 1 and 2)"
);
family!(
    ROUTED,
    "global_messages_routed_total",
    Counter,
    GLOBAL,
    "Messages routed to at least one queue"
);
family!(
    UNROUTABLE_DROPPED,
    "global_messages_unroutable_dropped_total",
    Counter,
    GLOBAL,
    "Unroutable messages dropped"
);
family!(
    UNROUTABLE_RETURNED,
    "global_messages_unroutable_returned_total",
    Counter,
    GLOBAL,
    "Unroutable mandatory messages returned to publishers"
);
family!(
    CONFIRMED,
    "global_messages_confirmed_total",
    Counter,
    GLOBAL,
    "Messages confirmed to publishers"
);
family!(
    DELIVERED,
    "global_messages_delivered_total",
    Counter,
    GLOBAL,
    "Messages delivered to consumers and basic.get"
);
family!(
    DELIVERED_CONSUME_AUTO_ACK,
    "global_messages_delivered_consume_auto_ack_total",
    Counter,
    GLOBAL,
    "Messages delivered to consumers that do not acknowledge (AMQP no-ack, MQTT QoS 0)"
);
family!(
    DELIVERED_CONSUME_MANUAL_ACK,
    "global_messages_delivered_consume_manual_ack_total",
    Counter,
    GLOBAL,
    "Messages delivered to consumers that acknowledge (AMQP manual ack, MQTT QoS 1 and 2)"
);
family!(
    DELIVERED_GET_AUTO_ACK,
    "global_messages_delivered_get_auto_ack_total",
    Counter,
    GLOBAL,
    "Messages fetched with basic.get and no-ack"
);
family!(
    DELIVERED_GET_MANUAL_ACK,
    "global_messages_delivered_get_manual_ack_total",
    Counter,
    GLOBAL,
    "Messages fetched with basic.get to acknowledge"
);
family!(
    GET_EMPTY,
    "global_messages_get_empty_total",
    Counter,
    GLOBAL,
    "basic.get calls that found the queue empty"
);
family!(
    REDELIVERED,
    "global_messages_redelivered_total",
    Counter,
    GLOBAL,
    "Messages delivered again"
);
family!(
    ACKNOWLEDGED,
    "global_messages_acknowledged_total",
    Counter,
    GLOBAL,
    "Deliveries acknowledged by consumers"
);
family!(
    DEAD_LETTERED_CONFIRMED,
    "global_messages_dead_lettered_confirmed_total",
    Counter,
    GLOBAL,
    "Dead-lettered messages confirmed by their target queues"
);
family!(
    DEAD_LETTERED_DELIVERY_LIMIT,
    "global_messages_dead_lettered_delivery_limit_total",
    Counter,
    GLOBAL,
    "Messages dead-lettered for exceeding the delivery limit"
);
family!(
    DEAD_LETTERED_EXPIRED,
    "global_messages_dead_lettered_expired_total",
    Counter,
    GLOBAL,
    "Messages dead-lettered on expiry"
);
family!(
    DEAD_LETTERED_MAXLEN,
    "global_messages_dead_lettered_maxlen_total",
    Counter,
    GLOBAL,
    "Messages dead-lettered for queue length limits"
);
family!(
    DEAD_LETTERED_REJECTED,
    "global_messages_dead_lettered_rejected_total",
    Counter,
    GLOBAL,
    "Messages dead-lettered on rejection"
);
family!(
    PUBLISHERS,
    "global_publishers",
    Gauge,
    GLOBAL,
    "Channels (AMQP) and connections (MQTT) that have published"
);
family!(
    GLOBAL_CONSUMERS,
    "global_consumers",
    Gauge,
    GLOBAL,
    "Consumers, by protocol"
);
family!(
    MESSAGE_SIZE,
    "message_size_bytes",
    Gauge,
    GLOBAL,
    "Body sizes of messages received from publishers"
);

family!(
    QUEUE_MESSAGES_READY,
    "queue_messages_ready",
    Gauge,
    QUEUE_COARSE,
    "Messages ready to be delivered to consumers"
);
family!(
    QUEUE_MESSAGES_UNACKED,
    "queue_messages_unacked",
    Gauge,
    QUEUE_COARSE,
    "Messages delivered to consumers and not yet acknowledged"
);
family!(
    QUEUE_MESSAGES,
    "queue_messages",
    Gauge,
    QUEUE_COARSE,
    "Messages ready and unacknowledged: the queue's depth"
);
family!(
    QUEUE_CONSUMER_COUNT,
    "queue_consumers",
    Gauge,
    QUEUE_CONSUMERS,
    "Consumers on the queue"
);
family!(
    QUEUE_METRICS_CONSUMERS,
    "queue_consumers",
    Gauge,
    QUEUE,
    "Consumers on the queue"
);
family!(
    QUEUE_MESSAGES_BYTES,
    "queue_messages_bytes",
    Gauge,
    QUEUE,
    "Body bytes of the queue's messages, ready and unacknowledged"
);
family!(
    QUEUE_MESSAGES_READY_BYTES,
    "queue_messages_ready_bytes",
    Gauge,
    QUEUE,
    "Body bytes of ready messages"
);
family!(
    QUEUE_MESSAGES_UNACKED_BYTES,
    "queue_messages_unacked_bytes",
    Gauge,
    QUEUE,
    "Body bytes of unacknowledged messages"
);
family!(
    QUEUE_MESSAGES_RAM,
    "queue_messages_ram",
    Gauge,
    QUEUE,
    "Messages with their bodies in memory"
);
family!(
    QUEUE_MESSAGES_RAM_BYTES,
    "queue_messages_ram_bytes",
    Gauge,
    QUEUE,
    "Body bytes of messages in memory"
);
family!(
    QUEUE_MESSAGES_PAGED_OUT,
    "queue_messages_paged_out",
    Gauge,
    QUEUE,
    "Ready messages whose bodies are paged out to disk"
);
family!(
    QUEUE_MESSAGES_PAGED_OUT_BYTES,
    "queue_messages_paged_out_bytes",
    Gauge,
    QUEUE,
    "Body bytes of messages paged out to disk"
);
family!(
    QUEUE_MESSAGES_PERSISTENT,
    "queue_messages_persistent",
    Gauge,
    QUEUE,
    "Persistent messages kept on disk for the queue"
);
family!(
    QUEUE_MESSAGES_PUBLISHED,
    "queue_messages_published_total",
    Counter,
    QUEUE,
    "Messages published into the queue"
);

family!(
    CHANNEL_CONSUMERS,
    "channel_consumers",
    Gauge,
    CHANNEL,
    "Consumers on the channel"
);
family!(
    CHANNEL_MESSAGES_UNACKED,
    "channel_messages_unacked",
    Gauge,
    CHANNEL,
    "Deliveries on the channel awaiting acknowledgement"
);
family!(
    CHANNEL_MESSAGES_UNCONFIRMED,
    "channel_messages_unconfirmed",
    Gauge,
    CHANNEL,
    "Publishes on the channel awaiting their confirm"
);
family!(
    CHANNEL_PREFETCH,
    "channel_prefetch",
    Gauge,
    CHANNEL,
    "The prefetch count basic.qos set"
);
family!(
    CHANNEL_PUBLISHED,
    "channel_messages_published_total",
    Counter,
    CHANNEL_EXCHANGE,
    "Messages published on the channel"
);
family!(
    CHANNEL_CONFIRMED,
    "channel_messages_confirmed_total",
    Counter,
    CHANNEL_EXCHANGE,
    "Publishes on the channel confirmed"
);
family!(
    CHANNEL_RETURNED,
    "channel_messages_unroutable_returned_total",
    Counter,
    CHANNEL_EXCHANGE,
    "Unroutable publishes returned on the channel"
);
family!(
    CHANNEL_DROPPED,
    "channel_messages_unroutable_dropped_total",
    Counter,
    CHANNEL_EXCHANGE,
    "Unroutable publishes dropped"
);
family!(
    CHANNEL_GET_ACK,
    "channel_get_ack_total",
    Counter,
    CHANNEL_QUEUE,
    "basic.get answers to acknowledge"
);
family!(
    CHANNEL_GET,
    "channel_get_total",
    Counter,
    CHANNEL_QUEUE,
    "basic.get answers with no-ack"
);
family!(
    CHANNEL_DELIVERED_ACK,
    "channel_messages_delivered_ack_total",
    Counter,
    CHANNEL_QUEUE,
    "Deliveries to consumers that acknowledge"
);
family!(
    CHANNEL_DELIVERED,
    "channel_messages_delivered_total",
    Counter,
    CHANNEL_QUEUE,
    "Deliveries to no-ack consumers"
);
family!(
    CHANNEL_REDELIVERED,
    "channel_messages_redelivered_total",
    Counter,
    CHANNEL_QUEUE,
    "Deliveries of messages delivered before"
);
family!(
    CHANNEL_ACKED,
    "channel_messages_acked_total",
    Counter,
    CHANNEL_QUEUE,
    "Deliveries acknowledged"
);
family!(
    CHANNEL_GET_EMPTY,
    "channel_get_empty_total",
    Counter,
    CHANNEL_QUEUE,
    "basic.get calls that found the queue empty"
);

family!(
    CONNECTION_INCOMING_BYTES,
    "connection_incoming_bytes_total",
    Counter,
    CONNECTION_COARSE,
    "Bytes received from the client"
);
family!(
    CONNECTION_OUTGOING_BYTES,
    "connection_outgoing_bytes_total",
    Counter,
    CONNECTION_COARSE,
    "Bytes sent to the client"
);
family!(
    CONNECTION_INCOMING_PACKETS,
    "connection_incoming_packets_total",
    Counter,
    CONNECTION,
    "Socket reads that returned data"
);
family!(
    CONNECTION_OUTGOING_PACKETS,
    "connection_outgoing_packets_total",
    Counter,
    CONNECTION,
    "Socket writes"
);
family!(
    CONNECTION_CHANNELS,
    "connection_channels",
    Gauge,
    CONNECTION,
    "Channels open on the connection"
);

family!(
    EXCHANGE_NAME,
    "exchange_name",
    Gauge,
    Scope::Cluster("exchange_names"),
    "An exchange (value 1)"
);
family!(
    EXCHANGE_BINDINGS,
    "exchange_bindings",
    Gauge,
    Scope::Cluster("exchange_bindings"),
    "Bindings of an exchange"
);
family!(
    VHOST_STATUS,
    "vhost_status",
    Gauge,
    Scope::Cluster("vhost_status"),
    "Whether the vhost is running (1)"
);

family!(
    AUTH_ATTEMPTS,
    "auth_attempts_total",
    Counter,
    AUTH,
    "Authentication attempts"
);
family!(
    AUTH_SUCCEEDED,
    "auth_attempts_succeeded_total",
    Counter,
    AUTH,
    "Successful authentication attempts"
);
family!(
    AUTH_FAILED,
    "auth_attempts_failed_total",
    Counter,
    AUTH,
    "Failed authentication attempts"
);

family!(
    OPEN_FDS,
    "process_open_fds",
    Gauge,
    NODE_COARSE,
    "Open file descriptors"
);
family!(
    OPEN_TCP_SOCKETS,
    "process_open_tcp_sockets",
    Gauge,
    NODE_COARSE,
    "Open client connections"
);
family!(
    RESIDENT_MEMORY,
    "process_resident_memory_bytes",
    Gauge,
    NODE_COARSE,
    "Resident set size of the broker process"
);
family!(
    DISK_AVAILABLE,
    "disk_space_available_bytes",
    Gauge,
    NODE_COARSE,
    "Free disk space where the data directory is"
);
family!(
    MAX_FDS,
    "process_max_fds",
    Gauge,
    NODE,
    "The file descriptor limit"
);
family!(
    MAX_TCP_SOCKETS,
    "process_max_tcp_sockets",
    Gauge,
    NODE,
    "Client connections allowed at most"
);
family!(
    MEMORY_LIMIT,
    "resident_memory_limit_bytes",
    Gauge,
    NODE,
    "The memory high watermark: above it publishers are blocked"
);
family!(
    DISK_LIMIT,
    "disk_space_available_limit_bytes",
    Gauge,
    NODE,
    "The free disk space limit (disk_free_limit)"
);
family!(
    ALARM_MEMORY,
    "alarms_memory_used_watermark",
    Gauge,
    GLOBAL,
    "1 while the memory alarm is on"
);
family!(
    ALARM_DISK,
    "alarms_free_disk_space_watermark",
    Gauge,
    GLOBAL,
    "1 while free disk space is under its limit"
);
family!(
    ALARM_FDS,
    "alarms_file_descriptor_limit",
    Gauge,
    GLOBAL,
    "1 while file descriptors are exhausted"
);

family!(
    IO_WRITE_OPS,
    "io_write_ops_total",
    Counter,
    PERSISTER,
    "Writes to the message store"
);
family!(
    IO_WRITE_BYTES,
    "io_write_bytes_total",
    Counter,
    PERSISTER,
    "Bytes written to the message store"
);
family!(
    IO_SYNC_OPS,
    "io_sync_ops_total",
    Counter,
    PERSISTER,
    "fsyncs of the message store"
);
family!(
    IO_SYNC_TIME,
    "io_sync_time_seconds_total",
    Counter,
    PERSISTER,
    "Time spent in fsync"
);

family!(
    W_CONNECTIONS,
    "connections",
    Gauge,
    Scope::Warren,
    "Connections open, by protocol and transport"
);
family!(
    W_MQTT_SESSIONS,
    "mqtt_sessions",
    Gauge,
    Scope::Warren,
    "MQTT sessions by kind (clean, persistent) and state (online, offline)"
);
family!(
    W_MQTT_SUBSCRIPTIONS,
    "mqtt_subscriptions",
    Gauge,
    Scope::Warren,
    "MQTT subscriptions, of online and offline sessions"
);
family!(
    W_MQTT_RETAINED,
    "mqtt_retained_messages",
    Gauge,
    Scope::Warren,
    "Retained MQTT messages"
);
family!(
    W_MQTT_RETAINED_BYTES,
    "mqtt_retained_bytes",
    Gauge,
    Scope::Warren,
    "Body bytes of retained MQTT messages"
);
family!(
    W_MQTT_IN_FLIGHT,
    "mqtt_messages_in_flight",
    Gauge,
    Scope::Warren,
    "QoS 1 and 2 deliveries awaiting the client's acknowledgement"
);
family!(
    W_MQTT_RECEIVED,
    "mqtt_messages_received_total",
    Counter,
    Scope::Warren,
    "PUBLISH packets from clients, by QoS"
);
family!(
    W_MQTT_DELIVERED,
    "mqtt_messages_delivered_total",
    Counter,
    Scope::Warren,
    "PUBLISH packets to clients, by QoS"
);
family!(
    W_MQTT_WILLS,
    "mqtt_will_messages_published_total",
    Counter,
    Scope::Warren,
    "Will messages published"
);
family!(
    W_FSYNC,
    "store_fsync_seconds",
    Gauge,
    Scope::Warren,
    "Latency of the message store's fsyncs"
);
family!(
    W_STORE_BYTES,
    "store_bytes",
    Gauge,
    Scope::Warren,
    "Bytes in the message store's segment files"
);
family!(
    W_STORE_SEGMENTS,
    "store_segments",
    Gauge,
    Scope::Warren,
    "Segment files of the message store"
);
family!(
    W_PAGED_BYTES,
    "store_paged_bytes",
    Gauge,
    Scope::Warren,
    "Body bytes of queued messages paged out of memory"
);
family!(
    W_FLOW_PAUSES,
    "flow_pauses_total",
    Counter,
    Scope::Warren,
    "Times a publisher was paused because a queue it published to was congested"
);
family!(
    W_MESSAGE_MEMORY,
    "message_memory_bytes",
    Gauge,
    Scope::Warren,
    "Bytes of message data held in queues, against the memory high watermark"
);
family!(
    W_MESSAGE_MEMORY_LIMIT,
    "message_memory_limit_bytes",
    Gauge,
    Scope::Warren,
    "The memory high watermark for message data"
);
