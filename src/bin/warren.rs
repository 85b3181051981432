//! The warren broker binary: parses flags, starts the broker, stops it on SIGTERM/Ctrl-C.
//! `warren perf …` runs the load generator instead (see [`warren_perf`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warren::{Broker, Config};

/// warren: a message broker speaking AMQP 0-9-1 and MQTT 3.1.1/5.0, a drop-in for RabbitMQ.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Run a tool instead of the broker.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address every listener binds to.
    #[arg(long, default_value = "0.0.0.0", env = "WARREN_BIND")]
    bind: IpAddr,
    /// AMQP 0-9-1 port (0 = ephemeral).
    #[arg(long, default_value_t = 5672, env = "WARREN_AMQP_PORT")]
    amqp_port: u16,
    /// MQTT 3.1.1/5.0 port (0 = ephemeral).
    #[arg(long, default_value_t = 1883, env = "WARREN_MQTT_PORT")]
    mqtt_port: u16,
    /// AMQP over TLS port (0 = ephemeral); on at 5671 when --tls-cert is given.
    #[arg(long, env = "WARREN_AMQPS_PORT")]
    amqps_port: Option<u16>,
    /// MQTT over TLS port (0 = ephemeral); on at 8883 when --tls-cert is given.
    #[arg(long, env = "WARREN_MQTTS_PORT")]
    mqtts_port: Option<u16>,
    /// MQTT over WebSocket port, path /ws (0 = ephemeral).
    #[arg(long, default_value_t = 15675, env = "WARREN_WS_PORT")]
    ws_port: u16,
    /// MQTT over secure WebSocket port (0 = ephemeral); on at 15676 when --tls-cert is given.
    #[arg(long, env = "WARREN_WSS_PORT")]
    wss_port: Option<u16>,
    /// Prometheus metrics port: /metrics, /metrics/per-object, /metrics/detailed
    /// (0 = ephemeral).
    #[arg(long, default_value_t = 15692, env = "WARREN_PROMETHEUS_PORT")]
    prometheus_port: u16,
    /// Server certificate chain (PEM); turns the TLS listeners on.
    #[arg(long, env = "WARREN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "WARREN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to.
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Ask TLS clients for a certificate and verify it against --tls-ca.
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER")]
    tls_verify_peer: bool,
    /// Refuse TLS clients without a valid certificate (implies --tls-verify-peer).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    tls_fail_if_no_peer_cert: bool,
    /// MQTT clients with a verified certificate and no user name log in as its CN.
    #[arg(long, env = "WARREN_MQTT_SSL_CERT_LOGIN")]
    mqtt_ssl_cert_login: bool,
    /// Seconds a client may take for each handshake (TLS or WebSocket, then AMQP or MQTT);
    /// slower clients are dropped.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Connections open at once at most, over all listeners (default: no limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Exchange MQTT topics map onto.
    #[arg(long, default_value = "amq.topic")]
    mqtt_exchange: String,
    /// Directory for durable state.
    #[arg(long, default_value = "./data", env = "WARREN_DATA_DIR")]
    data_dir: PathBuf,
    /// Heartbeat interval proposed to clients, in seconds (0 = off).
    #[arg(long, default_value_t = 60)]
    heartbeat: u16,
    /// Largest frame proposed to clients, in bytes.
    #[arg(long, default_value_t = 131_072)]
    frame_max: u32,
    /// Bytes of queued message data above which publishers are blocked
    /// (default: 40% of physical memory).
    #[arg(long)]
    memory_high_watermark: Option<u64>,
    /// Free disk space, in bytes, under which the disk alarm shows in the metrics.
    #[arg(long, default_value_t = 50_000_000)]
    disk_free_limit: u64,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(certificate), Some(key)) => Some(warren::tls::TlsSettings {
            certificate: certificate.clone(),
            key: key.clone(),
            ca: args.tls_ca.clone(),
            verify_peer: args.tls_verify_peer,
            fail_if_no_peer_certificate: args.tls_fail_if_no_peer_cert,
        }),
        _ => None,
    };
    // The TLS listeners come on at RabbitMQ's ports once there is a certificate.
    let tls_port = |flag: Option<u16>, default: u16| flag.or(tls.as_ref().map(|_| default));
    let mut config = Config {
        bind: args.bind,
        amqp_port: args.amqp_port,
        mqtt_port: args.mqtt_port,
        amqps_port: tls_port(args.amqps_port, 5671),
        mqtts_port: tls_port(args.mqtts_port, 8883),
        ws_port: Some(args.ws_port),
        wss_port: tls_port(args.wss_port, 15676),
        tls,
        mqtt_ssl_cert_login: args.mqtt_ssl_cert_login,
        handshake_timeout: std::time::Duration::from_secs(args.handshake_timeout),
        max_connections: args.max_connections.unwrap_or(usize::MAX),
        mqtt_exchange: args.mqtt_exchange,
        data_dir: args.data_dir,
        heartbeat_secs: args.heartbeat,
        frame_max: args.frame_max,
        prometheus_port: Some(args.prometheus_port),
        disk_free_limit: args.disk_free_limit,
        ..Config::default()
    };
    if let Some(limit) = args.memory_high_watermark {
        config.memory_high_watermark = limit;
    }
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
