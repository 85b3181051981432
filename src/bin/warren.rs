//! The warren broker binary: parses flags, starts the broker, stops it on SIGTERM/Ctrl-C.
//! `warren perf …` runs the load generator instead (see [`warren_perf`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warren::config::file::FileSettings;
use warren::{Broker, Config};

/// warren: a message broker speaking AMQP 0-9-1 and MQTT 3.1.1/5.0, a drop-in for RabbitMQ.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Run a tool instead of the broker.
    #[command(subcommand)]
    command: Option<Command>,
    /// A configuration file in RabbitMQ's `rabbitmq.conf` format (see warren.conf.example);
    /// flags and environment variables override what it sets.
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Address every listener binds to [default: 0.0.0.0] (key: the address part of
    /// listeners.tcp.default).
    #[arg(long, env = "WARREN_BIND")]
    bind: Option<IpAddr>,
    /// AMQP 0-9-1 port, 0 = ephemeral [default: 5672] (key: listeners.tcp.default).
    #[arg(long, env = "WARREN_AMQP_PORT")]
    amqp_port: Option<u16>,
    /// MQTT 3.1.1/5.0 port, 0 = ephemeral [default: 1883] (key: mqtt.listeners.tcp.default).
    #[arg(long, env = "WARREN_MQTT_PORT")]
    mqtt_port: Option<u16>,
    /// AMQP over TLS port, 0 = ephemeral; on at 5671 once there is a certificate (key:
    /// listeners.ssl.default).
    #[arg(long, env = "WARREN_AMQPS_PORT")]
    amqps_port: Option<u16>,
    /// MQTT over TLS port, 0 = ephemeral; on at 8883 once there is a certificate (key:
    /// mqtt.listeners.ssl.default).
    #[arg(long, env = "WARREN_MQTTS_PORT")]
    mqtts_port: Option<u16>,
    /// MQTT over WebSocket port, path /ws, 0 = ephemeral [default: 15675] (key:
    /// web_mqtt.tcp.port).
    #[arg(long, env = "WARREN_WS_PORT")]
    ws_port: Option<u16>,
    /// MQTT over secure WebSocket port, 0 = ephemeral; on at 15676 once there is a
    /// certificate (key: web_mqtt.ssl.port).
    #[arg(long, env = "WARREN_WSS_PORT")]
    wss_port: Option<u16>,
    /// Prometheus metrics port: /metrics, /metrics/per-object, /metrics/detailed;
    /// 0 = ephemeral [default: 15692] (key: prometheus.tcp.port).
    #[arg(long, env = "WARREN_PROMETHEUS_PORT")]
    prometheus_port: Option<u16>,
    /// Management HTTP API port (/api/...), 0 = ephemeral [default: 15672] (key:
    /// management.tcp.port).
    #[arg(long, env = "WARREN_MANAGEMENT_PORT")]
    management_port: Option<u16>,
    /// Server certificate chain (PEM); turns the TLS listeners on (key:
    /// ssl_options.certfile).
    #[arg(long, env = "WARREN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Server private key, PEM (key: ssl_options.keyfile).
    #[arg(long, env = "WARREN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to (key: ssl_options.cacertfile).
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Ask TLS clients for a certificate and verify it against --tls-ca (key:
    /// ssl_options.verify = verify_peer).
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER")]
    tls_verify_peer: bool,
    /// Refuse TLS clients without a valid certificate; implies --tls-verify-peer (key:
    /// ssl_options.fail_if_no_peer_cert).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    tls_fail_if_no_peer_cert: bool,
    /// MQTT clients with a verified certificate and no user name log in as its CN (key:
    /// mqtt.ssl_cert_login).
    #[arg(long, env = "WARREN_MQTT_SSL_CERT_LOGIN")]
    mqtt_ssl_cert_login: bool,
    /// Seconds a client may take for each handshake (TLS or WebSocket, then AMQP or MQTT);
    /// slower clients are dropped [default: 10] (key: handshake_timeout, milliseconds).
    #[arg(long)]
    handshake_timeout: Option<u64>,
    /// Connections open at once at most, over all listeners [default: no limit] (key:
    /// connection_max).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Exchange MQTT topics map onto [default: amq.topic] (key: mqtt.exchange).
    #[arg(long)]
    mqtt_exchange: Option<String>,
    /// Directory for durable state [default: ./data] (key: data_dir).
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Heartbeat interval proposed to clients, in seconds, 0 = off [default: 60] (key:
    /// heartbeat).
    #[arg(long)]
    heartbeat: Option<u16>,
    /// Largest frame proposed to clients, in bytes [default: 131072] (key: frame_max).
    #[arg(long)]
    frame_max: Option<u32>,
    /// Bytes of queued message data above which publishers are blocked [default: 40% of
    /// physical memory] (keys: vm_memory_high_watermark.absolute, .relative).
    #[arg(long)]
    memory_high_watermark: Option<u64>,
    /// Free space, in bytes, on the data directory's file system under which publishers are
    /// blocked (the disk alarm) [default: 50000000] (key: disk_free_limit.absolute).
    #[arg(long)]
    disk_free_limit: Option<u64>,
}

/// Subcommands; without one, `warren` runs the broker.
#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator for any AMQP 0-9-1 or MQTT broker (RabbitMQ PerfTest-style).
    Perf(Box<warren_perf::Options>),
    /// Loopback relay for checking `warren perf` itself: forwards AMQP and MQTT messages
    /// straight to consumers, with no queues or routing (not a broker).
    Relay(warren_perf::relay::RelayOptions),
    /// Writes a development CA, a server certificate for localhost / 127.0.0.1 / ::1 and
    /// client certificates (CN = each --client name) into DIR, for trying TLS. Not for
    /// production.
    GenCerts {
        /// Directory to write the PEM files into (created if missing).
        dir: PathBuf,
        /// A client certificate is made for each name (its CN; a user name for certificate
        /// login).
        #[arg(long = "client", default_value = "guest")]
        clients: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Command::Perf(options)) => return warren_perf::cli(options),
        Some(Command::Relay(options)) => return warren_perf::relay::cli(options),
        Some(Command::GenCerts { dir, clients }) => return gen_certs(dir, clients),
        None => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: building the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_broker(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The same form `main() -> anyhow::Result<()>` printed.
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the broker until SIGTERM or Ctrl-C.
async fn run_broker(args: Args) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => warren::config::file::load(path)?,
        None => FileSettings::default(),
    };
    init_logging(&file)?;
    if let Some(path) = &args.config {
        tracing::info!(config = %path.display(), "configuration file read");
    }
    let config = build_config(&args, &file)?;
    // Signal handlers go in before anything starts, so a stop during start-up or a long
    // recovery is still a graceful one.
    let stop = stop_signal()?;
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let broker = Broker::start(config).await?;
    tracing::info!("warren {} started", env!("CARGO_PKG_VERSION"));
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => match broker.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: TLS certificate, key and CA reloaded"),
                Ok(false) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                Err(error) => tracing::error!(%error, "SIGHUP: TLS reload failed; the previous material stays"),
            },
        }
        #[cfg(not(unix))]
        {
            (&mut stop).await;
            break;
        }
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Logs to the console, or to `log.file`, at `log.console.level` (RUST_LOG wins), with
/// colour codes only on a terminal.
fn init_logging(file: &FileSettings) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(file.log_level.as_deref().unwrap_or("info"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file.log_file.clone().flatten() {
        Some(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|error| {
                    anyhow::anyhow!("cannot open log.file {}: {error}", path.display())
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(log))
                .init();
        }
        None => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
    Ok(())
}

/// The broker's configuration: built-in defaults, then the file, then flags and
/// environment variables.
fn build_config(args: &Args, file: &FileSettings) -> anyhow::Result<Config> {
    let defaults = Config::default();
    let tls = match (
        args.tls_cert.clone().or(file.tls_cert.clone()),
        args.tls_key.clone().or(file.tls_key.clone()),
    ) {
        (Some(certificate), Some(key)) => Some(warren::tls::TlsSettings {
            certificate,
            key,
            ca: args.tls_ca.clone().or(file.tls_ca.clone()),
            verify_peer: args.tls_verify_peer || file.tls_verify_peer.unwrap_or(false),
            fail_if_no_peer_certificate: args.tls_fail_if_no_peer_cert
                || file.tls_fail_if_no_peer_cert.unwrap_or(false),
        }),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!(
            "a TLS certificate without a key: give --tls-key (ssl_options.keyfile) too"
        ),
        (None, Some(_)) => anyhow::bail!(
            "a TLS key without a certificate: give --tls-cert (ssl_options.certfile) too"
        ),
    };
    // The TLS listeners come on at RabbitMQ's ports once there is a certificate.
    let tls_port = |flag: Option<u16>, key: Option<u16>, default: u16| {
        flag.or(key).or(tls.as_ref().map(|_| default))
    };
    let handshake_timeout = match (args.handshake_timeout, file.handshake_timeout_ms) {
        (Some(seconds), _) => std::time::Duration::from_secs(seconds),
        (None, Some(ms)) => std::time::Duration::from_millis(ms),
        (None, None) => std::time::Duration::from_secs(10),
    };
    Ok(Config {
        bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
        amqp_port: args.amqp_port.or(file.amqp_port).unwrap_or(5672),
        mqtt_port: args.mqtt_port.or(file.mqtt_port).unwrap_or(1883),
        amqps_port: tls_port(args.amqps_port, file.amqps_port, 5671),
        mqtts_port: tls_port(args.mqtts_port, file.mqtts_port, 8883),
        ws_port: Some(args.ws_port.or(file.ws_port).unwrap_or(15675)),
        wss_port: tls_port(args.wss_port, file.wss_port, 15676),
        mqtt_ssl_cert_login: args.mqtt_ssl_cert_login || file.mqtt_ssl_cert_login.unwrap_or(false),
        tls,
        handshake_timeout,
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(usize::MAX),
        mqtt_exchange: args
            .mqtt_exchange
            .clone()
            .or(file.mqtt_exchange.clone())
            .unwrap_or(defaults.mqtt_exchange),
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or(defaults.data_dir),
        heartbeat_secs: args
            .heartbeat
            .or(file.heartbeat)
            .unwrap_or(defaults.heartbeat_secs),
        frame_max: args
            .frame_max
            .or(file.frame_max)
            .unwrap_or(defaults.frame_max),
        channel_max: file.channel_max.unwrap_or(defaults.channel_max),
        memory_high_watermark: args
            .memory_high_watermark
            .or(file.memory_high_watermark)
            .unwrap_or(defaults.memory_high_watermark),
        prometheus_port: Some(
            args.prometheus_port
                .or(file.prometheus_port)
                .unwrap_or(15692),
        ),
        management_port: Some(
            args.management_port
                .or(file.management_port)
                .unwrap_or(15672),
        ),
        disk_free_limit: args
            .disk_free_limit
            .or(file.disk_free_limit)
            .unwrap_or(defaults.disk_free_limit),
        mqtt_allow_anonymous: file
            .mqtt_allow_anonymous
            .unwrap_or(defaults.mqtt_allow_anonymous),
        mqtt_default_user: file
            .mqtt_default_user
            .clone()
            .unwrap_or(defaults.mqtt_default_user.clone()),
        mqtt_default_pass: file
            .mqtt_default_pass
            .clone()
            .unwrap_or(defaults.mqtt_default_pass.clone()),
        users: warren::auth::UserSettings {
            default_user: file
                .default_user
                .clone()
                .unwrap_or(defaults.users.default_user.clone()),
            default_pass: file
                .default_pass
                .clone()
                .unwrap_or(defaults.users.default_pass.clone()),
            default_vhost: file
                .default_vhost
                .clone()
                .unwrap_or(defaults.users.default_vhost.clone()),
            loopback_only: file.loopback_users(&defaults.users.loopback_only),
        },
        mqtt_vhost: file
            .mqtt_vhost
            .clone()
            .unwrap_or(defaults.mqtt_vhost.clone()),
        load_definitions: file
            .load_definitions
            .clone()
            .or(defaults.load_definitions.clone()),
        ..defaults
    })
}

/// Registers SIGTERM and Ctrl-C handlers now; the returned future resolves on either.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupt = tokio::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
    })
}

/// `warren gen-certs DIR`: development TLS material.
fn gen_certs(dir: &std::path::Path, clients: &[String]) -> ExitCode {
    let names: Vec<&str> = clients.iter().map(String::as_str).collect();
    match warren::tls::generate::generate(dir, &names) {
        Ok(generated) => {
            println!("CA certificate:     {}", generated.ca_certificate.display());
            println!(
                "server certificate: {}",
                generated.server_certificate.display()
            );
            println!("server key:         {}", generated.server_key.display());
            for (certificate, key) in &generated.clients {
                println!("client certificate: {}", certificate.display());
                println!("client key:         {}", key.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}
