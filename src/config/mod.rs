//! Broker configuration: listener addresses, data directory and protocol limits.
//!
//! Every listener has its own port (0 = ephemeral, as tests use); the binary fills this from
//! its built-in defaults, then a `warren.conf` ([`file`]), then command-line flags and
//! environment variables.

pub mod file;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every listener binds to (RabbitMQ listens on all interfaces by default).
    pub bind: IpAddr,
    /// AMQP 0-9-1 listener port; 0 picks an ephemeral port.
    pub amqp_port: u16,
    /// MQTT listener port; 0 picks an ephemeral port.
    pub mqtt_port: u16,
    /// AMQPS (AMQP over TLS) port; None = off. Needs [`Config::tls`].
    pub amqps_port: Option<u16>,
    /// MQTTS (MQTT over TLS) port; None = off. Needs [`Config::tls`].
    pub mqtts_port: Option<u16>,
    /// MQTT over WebSocket port (path `/ws`); None = off.
    pub ws_port: Option<u16>,
    /// MQTT over secure WebSocket port; None = off. Needs [`Config::tls`].
    pub wss_port: Option<u16>,
    /// Certificate, key and client verification for the TLS listeners.
    pub tls: Option<crate::tls::TlsSettings>,
    /// MQTT clients with a verified certificate and no user name log in as its CN.
    pub mqtt_ssl_cert_login: bool,
    /// How long a client may take for each handshake: the transport's (TLS, WebSocket
    /// upgrade), then the protocol's (AMQP up to connection.open, MQTT CONNECT).
    pub handshake_timeout: std::time::Duration,
    /// Connections open at once at most, over all listeners (RabbitMQ's `connection_max`).
    pub max_connections: usize,
    /// Exchange MQTT topics map onto (RabbitMQ's `mqtt.exchange`).
    pub mqtt_exchange: String,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub mqtt_max_packet_size: u32,
    /// Directory for durable state.
    pub data_dir: PathBuf,
    /// Heartbeat interval (seconds) proposed in connection.tune; 0 disables heartbeats.
    pub heartbeat_secs: u16,
    /// Largest frame (bytes, including the 8-byte envelope) proposed in connection.tune.
    pub frame_max: u32,
    /// Highest channel number proposed in connection.tune.
    pub channel_max: u16,
    /// Bytes of message data held in queues above which publishers are blocked until
    /// consumers drain them (RabbitMQ's memory high watermark).
    pub memory_high_watermark: u64,
    /// Prometheus endpoint port (RabbitMQ's `prometheus.tcp.port`); None = off.
    pub prometheus_port: Option<u16>,
    /// Management HTTP API port (RabbitMQ's `management.tcp.port`); None = off.
    pub management_port: Option<u16>,
    /// MQTT clients without credentials log in as `mqtt_default_user` (RabbitMQ's
    /// `mqtt.allow_anonymous`, on by default).
    pub mqtt_allow_anonymous: bool,
    /// The user anonymous MQTT clients log in as (`mqtt.default_user`).
    pub mqtt_default_user: String,
    /// Its password (`mqtt.default_pass`).
    pub mqtt_default_pass: String,
    /// The default user and vhost and the loopback-only users.
    pub users: crate::auth::UserSettings,
    /// The vhost of MQTT clients whose user name names none (`mqtt.vhost`, default `/`).
    pub mqtt_vhost: String,
    /// A definitions file imported at every start (`load_definitions`).
    pub load_definitions: Option<std::path::PathBuf>,
    /// Free disk space (bytes) under which the disk alarm blocks publishers (RabbitMQ's
    /// `disk_free_limit.absolute`, default 50 MB).
    pub disk_free_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            amqp_port: 5672,
            mqtt_port: 1883,
            amqps_port: None,
            mqtts_port: None,
            ws_port: None,
            wss_port: None,
            tls: None,
            mqtt_ssl_cert_login: false,
            handshake_timeout: std::time::Duration::from_secs(10),
            max_connections: usize::MAX,
            mqtt_exchange: "amq.topic".to_string(),
            mqtt_max_packet_size: 16 * 1024 * 1024,
            data_dir: PathBuf::from("./data"),
            heartbeat_secs: 60,
            frame_max: 131_072,
            channel_max: 2047,
            memory_high_watermark: default_memory_high_watermark(),
            prometheus_port: None,
            management_port: None,
            disk_free_limit: 50_000_000,
            users: crate::auth::UserSettings::default(),
            mqtt_vhost: crate::auth::DEFAULT_VHOST.to_string(),
            load_definitions: None,
            mqtt_allow_anonymous: true,
            mqtt_default_user: crate::auth::DEFAULT_USER.to_string(),
            mqtt_default_pass: crate::auth::DEFAULT_USER.to_string(),
        }
    }
}

/// 40% of physical memory, as RabbitMQ's `vm_memory_high_watermark.relative = 0.4`; 40% of
/// [`FALLBACK_MEMORY`] if the total cannot be read.
pub fn default_memory_high_watermark() -> u64 {
    total_memory().unwrap_or(FALLBACK_MEMORY) / 10 * 4
}

/// The memory assumed when the machine's cannot be read.
pub const FALLBACK_MEMORY: u64 = 2560 << 20;

/// The memory the broker may use, in bytes: the machine's physical memory (`MemTotal` of
/// `/proc/meminfo`), or the cgroup's limit when it is lower (a container), as RabbitMQ
/// counts it for `vm_memory_high_watermark.relative`.
pub fn total_memory() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024);
    match (physical, cgroup_memory_limit()) {
        (Some(physical), Some(limit)) => Some(physical.min(limit)),
        (physical, limit) => physical.or(limit),
    }
}

/// The cgroup memory limit (v2 `memory.max`, else v1 `memory.limit_in_bytes`); None when
/// unlimited ("max", or v1's huge sentinel) or unreadable.
fn cgroup_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok())
    .filter(|limit| *limit < 1 << 60)
}
