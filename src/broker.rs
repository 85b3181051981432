//! Starts the core and the listeners, and stops them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::Core;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener's address could not be bound.
    #[error("cannot bind the {listener} listener to {address}: {source}")]
    Bind {
        /// Which listener ("AMQP", ...).
        listener: &'static str,
        /// The address that was asked for.
        address: SocketAddr,
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
}

/// A running broker: its bound addresses and the handles that stop it.
pub struct Broker {
    mqtt: crate::mqtt::Mqtt,
    store: Arc<crate::store::Store>,
    amqp_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    core: Arc<Core>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Broker {
    /// Binds every listener and starts serving. Returns once all listeners are bound.
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let (store, recovered) =
            crate::store::Store::open(&config.data_dir).map_err(StartError::Store)?;
        let core = Core::new(config.memory_high_watermark, Some(store.clone()));
        core.restore(&store, recovered);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let amqp = bind("AMQP", SocketAddr::new(config.bind, config.amqp_port)).await?;
        let mqtt = bind("MQTT", SocketAddr::new(config.bind, config.mqtt_port)).await?;
        let (amqp_listener, amqp_addr) = amqp;
        let (mqtt_listener, mqtt_addr) = mqtt;
        tracing::info!(address = %amqp_addr, "AMQP 0-9-1 listener started");
        tracing::info!(address = %mqtt_addr, "MQTT 3.1.1/5.0 listener started");
        tasks.spawn(crate::amqp::accept_loop(
            amqp_listener,
            core.clone(),
            crate::amqp::Settings::from_config(&config),
            shutdown.clone(),
            tasks.clone(),
        ));
        let mqtt = crate::mqtt::Mqtt::new(
            core.clone(),
            crate::mqtt::Settings::from_config(&config),
            shutdown.clone(),
            tasks.clone(),
        );
        mqtt.serve(mqtt_listener);
        Ok(Broker {
            mqtt,
            store,
            amqp_addr,
            mqtt_addr,
            core,
            shutdown,
            tasks,
        })
    }

    /// The bound AMQP address (with the real port when 0 was asked for).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp_addr
    }

    /// The bound MQTT address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
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

/// Binds one listener, naming it in the error.
async fn bind(
    listener: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let socket = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            address,
            source,
        })?;
    let local = socket.local_addr().map_err(|source| StartError::Bind {
        listener,
        address,
        source,
    })?;
    Ok((socket, local))
}
