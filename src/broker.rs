//! Starts the core and the listeners, and stops them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::Core;
use crate::listener::{Limits, ListenerContext, Transport};
use crate::tls::TlsAcceptor;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener's address could not be bound.
    #[error("cannot bind the {listener} listener to {address}: {source} (move it with {flag}, or {key} in warren.conf)")]
    Bind {
        /// Which listener ("AMQP", ...).
        listener: &'static str,
        /// The address that was asked for.
        address: SocketAddr,
        /// The flag that sets the listener's port.
        flag: &'static str,
        /// The `warren.conf` key that sets it.
        key: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The message store could not be opened or recovered.
    #[error("cannot open the message store: {0}")]
    Store(crate::store::StoreError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A TLS listener was asked for without TLS material, or the material is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The users or vhosts kept in the data directory cannot be read.
    #[error("{0}")]
    Metadata(String),
    /// The definitions file of `load_definitions` could not be read or imported.
    #[error("load_definitions {path}: {reason}")]
    Definitions {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Imports the definitions file of `load_definitions` (at every start, as RabbitMQ does).
fn load_definitions(core: &Core, path: &std::path::Path) -> Result<(), StartError> {
    let failed = |reason: String| StartError::Definitions {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
    let definitions: crate::core::definitions::FullDefinitions =
        serde_json::from_slice(&text).map_err(|error| failed(error.to_string()))?;
    core.import_definitions(&definitions, None)
        .map_err(|problems| failed(problems.join("; ")))?;
    tracing::info!(path = %path.display(), "definitions loaded");
    Ok(())
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Amqp,
    Mqtt,
}

/// One listener the configuration asks for.
struct ListenerSpec {
    name: &'static str,
    flag: &'static str,
    key: &'static str,
    protocol: Protocol,
    transport: Transport,
    port: Option<u16>,
}

/// A running broker: its bound addresses and the handles that stop it.
pub struct Broker {
    management_addr: Option<SocketAddr>,
    prometheus_addr: Option<SocketAddr>,
    mqtt: crate::mqtt::Mqtt,
    store: Arc<crate::store::Store>,
    addresses: Vec<(Protocol, Transport, SocketAddr)>,
    tls: Option<Arc<TlsAcceptor>>,
    core: Arc<Core>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Broker {
    /// Binds every listener and starts serving. Returns once all listeners are bound.
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(
                TlsAcceptor::new(settings.clone())
                    .map_err(|error| StartError::Tls(error.to_string()))?,
            )),
            None => None,
        };
        let specs = [
            ListenerSpec {
                name: "AMQP 0-9-1",
                flag: "--amqp-port",
                key: "listeners.tcp.default",
                protocol: Protocol::Amqp,
                transport: Transport::Tcp,
                port: Some(config.amqp_port),
            },
            ListenerSpec {
                name: "MQTT 3.1.1/5.0",
                flag: "--mqtt-port",
                key: "mqtt.listeners.tcp.default",
                protocol: Protocol::Mqtt,
                transport: Transport::Tcp,
                port: Some(config.mqtt_port),
            },
            ListenerSpec {
                name: "AMQP 0-9-1 over TLS",
                flag: "--amqps-port",
                key: "listeners.ssl.default",
                protocol: Protocol::Amqp,
                transport: Transport::Tls,
                port: config.amqps_port,
            },
            ListenerSpec {
                name: "MQTT over TLS",
                flag: "--mqtts-port",
                key: "mqtt.listeners.ssl.default",
                protocol: Protocol::Mqtt,
                transport: Transport::Tls,
                port: config.mqtts_port,
            },
            ListenerSpec {
                name: "MQTT over WebSocket",
                flag: "--ws-port",
                key: "web_mqtt.tcp.port",
                protocol: Protocol::Mqtt,
                transport: Transport::WebSocket,
                port: config.ws_port,
            },
            ListenerSpec {
                name: "MQTT over secure WebSocket",
                flag: "--wss-port",
                key: "web_mqtt.ssl.port",
                protocol: Protocol::Mqtt,
                transport: Transport::SecureWebSocket,
                port: config.wss_port,
            },
        ];
        for spec in &specs {
            if spec.port.is_some() && spec.transport.is_tls() && tls.is_none() {
                return Err(StartError::Tls(format!(
                    "the {} listener ({}) needs a certificate and key (--tls-cert, --tls-key)",
                    spec.name, spec.flag
                )));
            }
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let (store, recovered) =
            crate::store::Store::open(&config.data_dir).map_err(StartError::Store)?;
        let users = crate::auth::Users::open(&config.users, Some(store.clone()))
            .map_err(|error| StartError::Metadata(error.to_string()))?;
        let core = Core::open(
            config.memory_high_watermark,
            Some(store.clone()),
            Arc::new(users),
            &config.users.default_vhost,
        )
        .map_err(StartError::Metadata)?;
        core.restore(&store, recovered);
        // The disk alarm is measured once before any listener opens, so a node started
        // short of disk blocks its first publisher.
        core.disk().set_limit(config.disk_free_limit);
        if let Some(free) = crate::prometheus::disk_free(&config.data_dir) {
            core.disk().measured(free);
        }
        if let Some(path) = &config.load_definitions {
            load_definitions(&core, path)?;
        }
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let limits = Limits::new(config.max_connections, config.handshake_timeout);

        tasks.spawn(monitor_disk(
            core.clone(),
            config.data_dir.clone(),
            shutdown.clone(),
        ));
        let stats = crate::stats::Registry::new();
        // Bind everything first, so a port conflict leaves nothing half started.
        let mut bound = Vec::new();
        for spec in specs {
            let Some(port) = spec.port else { continue };
            let (socket, address) = bind(&spec, SocketAddr::new(config.bind, port)).await?;
            bound.push((spec, socket, address));
        }
        let prometheus = match config.prometheus_port {
            Some(port) => {
                let address = SocketAddr::new(config.bind, port);
                let socket =
                    crate::prometheus::bind(address)
                        .await
                        .map_err(|source| StartError::Bind {
                            listener: "Prometheus",
                            address,
                            flag: "--prometheus-port",
                            key: "prometheus.tcp.port",
                            source,
                        })?;
                let bound_address = socket.local_addr().unwrap_or(address);
                Some((socket, bound_address))
            }
            None => None,
        };
        let identity = crate::prometheus::NodeIdentity::load(&store);
        let management = match config.management_port {
            Some(port) => {
                let address = SocketAddr::new(config.bind, port);
                let socket =
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| StartError::Bind {
                            listener: "management API",
                            address,
                            flag: "--management-port",
                            key: "management.tcp.port",
                            source,
                        })?;
                let bound_address = socket.local_addr().unwrap_or(address);
                Some((socket, bound_address))
            }
            None => None,
        };
        let mqtt = crate::mqtt::Mqtt::new(
            core.clone(),
            crate::mqtt::Settings::from_config(&config),
            shutdown.clone(),
            tasks.clone(),
            stats.clone(),
        );
        let prometheus_addr = match prometheus {
            Some((socket, address)) => {
                let started_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |since| since.as_secs_f64());
                let exporter = Arc::new(crate::prometheus::Exporter {
                    core: core.clone(),
                    stats: stats.clone(),
                    store: store.clone(),
                    mqtt: mqtt.shared(),
                    identity: identity.clone(),
                    max_connections: config.max_connections,
                    started: std::time::Instant::now(),
                    started_unix,
                });
                tracing::info!(%address, "Prometheus listener started (/metrics, /metrics/per-object, /metrics/detailed)");
                tasks.spawn(crate::prometheus::serve(socket, exporter, shutdown.clone()));
                Some(address)
            }
            None => None,
        };
        let amqp_settings = crate::amqp::Settings::from_config(&config);
        let mut addresses = Vec::new();
        for (spec, socket, address) in bound {
            tracing::info!(%address, transport = ?spec.transport, "{} listener started", spec.name);
            addresses.push((spec.protocol, spec.transport, address));
            let context = ListenerContext {
                name: spec.name,
                transport: spec.transport,
                tls: tls.clone(),
                limits: limits.clone(),
                websocket_max_message: config.mqtt_max_packet_size as usize + 64 * 1024,
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
                stats: stats.clone(),
                protocol: match spec.protocol {
                    Protocol::Amqp => crate::stats::Protocol::Amqp091,
                    Protocol::Mqtt => crate::stats::Protocol::Mqtt311,
                },
            };
            match spec.protocol {
                Protocol::Amqp => {
                    let core = core.clone();
                    let settings = amqp_settings.clone();
                    let stop = shutdown.clone();
                    tasks.spawn(crate::listener::serve(socket, context, move |accepted| {
                        crate::amqp::serve(accepted, core.clone(), settings.clone(), stop.clone())
                    }));
                }
                Protocol::Mqtt => {
                    let shared = mqtt.shared();
                    tasks.spawn(crate::listener::serve(socket, context, move |accepted| {
                        crate::mqtt::serve(accepted, shared.clone())
                    }));
                }
            }
        }
        let management_addr = match management {
            Some((socket, address)) => {
                let mut listeners: Vec<(&'static str, SocketAddr)> = addresses
                    .iter()
                    .map(|(protocol, transport, address)| {
                        let name = match (protocol, transport) {
                            (Protocol::Amqp, Transport::Tcp) => "amqp",
                            (Protocol::Amqp, _) => "amqp/ssl",
                            (Protocol::Mqtt, Transport::Tcp) => "mqtt",
                            (Protocol::Mqtt, Transport::Tls) => "mqtt/ssl",
                            (Protocol::Mqtt, Transport::WebSocket) => "http/web-mqtt",
                            (Protocol::Mqtt, Transport::SecureWebSocket) => "https/web-mqtt",
                        };
                        (name, *address)
                    })
                    .collect();
                listeners.push(("http", address));
                if let Some(prometheus) = prometheus_addr {
                    listeners.push(("http/prometheus", prometheus));
                }
                let api = Arc::new(crate::management::Management {
                    core: core.clone(),
                    stats: stats.clone(),
                    identity,
                    listeners,
                    mqtt: mqtt.shared(),
                    data_dir: config.data_dir.clone(),
                    max_connections: config.max_connections,
                    started: std::time::Instant::now(),
                });
                tracing::info!(%address, "management API listener started (/api/...)");
                tasks.spawn(crate::management::serve(socket, api, shutdown.clone()));
                Some(address)
            }
            None => None,
        };
        Ok(Broker {
            management_addr,
            prometheus_addr,
            mqtt,
            store,
            addresses,
            tls,
            core,
            shutdown,
            tasks,
        })
    }

    fn address(&self, protocol: Protocol, transport: Transport) -> Option<SocketAddr> {
        self.addresses
            .iter()
            .find(|(p, t, _)| *p == protocol && *t == transport)
            .map(|(_, _, address)| *address)
    }

    /// The bound AMQP address (with the real port when 0 was asked for).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.address(Protocol::Amqp, Transport::Tcp)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The bound MQTT address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.address(Protocol::Mqtt, Transport::Tcp)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The bound AMQPS address, when that listener is on.
    pub fn amqps_addr(&self) -> Option<SocketAddr> {
        self.address(Protocol::Amqp, Transport::Tls)
    }

    /// The bound MQTTS address, when that listener is on.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.address(Protocol::Mqtt, Transport::Tls)
    }

    /// The bound management API address, when it is on.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The bound Prometheus endpoint address, when it is on.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_addr
    }

    /// The bound MQTT-over-WebSocket address, when that listener is on.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.address(Protocol::Mqtt, Transport::WebSocket)
    }

    /// The bound MQTT-over-secure-WebSocket address, when that listener is on.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.address(Protocol::Mqtt, Transport::SecureWebSocket)
    }

    /// Re-reads the TLS certificate, key and CA bundle (SIGHUP): new connections get the
    /// new material, open ones keep theirs. On error the current material stays. Returns
    /// false when no TLS is configured (nothing to reload).
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The routing core, for in-process inspection (tests, management).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Stops accepting, closes every connection with 320 CONNECTION_FORCED and waits for the
    /// connection tasks to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        // Last: everything the connections handed to the store reaches the disk.
        let store = self.store.clone();
        let mqtt = self.mqtt;
        let _ = tokio::task::spawn_blocking(move || {
            mqtt.save();
            store.close();
        })
        .await;
    }
}

/// Binds one listener, naming it (and the flag that moves it) in the error.
async fn bind(
    spec: &ListenerSpec,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind {
        listener: spec.name,
        address,
        flag: spec.flag,
        key: spec.key,
        source,
    };
    let socket = TcpListener::bind(address).await.map_err(failed)?;
    let local = socket.local_addr().map_err(failed)?;
    Ok((socket, local))
}

/// How often the disk monitor measures the data directory's free space (a statvfs call).
const DISK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Feeds the disk alarm until shutdown.
async fn monitor_disk(core: Arc<Core>, data_dir: std::path::PathBuf, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(DISK_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Some(free) = crate::prometheus::disk_free(&data_dir) {
            core.disk().measured(free);
        }
    }
}
