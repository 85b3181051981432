//! The warren broker binary: parses flags, starts the broker, stops it on SIGTERM/Ctrl-C.
//! `warren perf …` runs the load generator instead (see [`warren_perf`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warren::{Broker, Config};

/// warren: a message broker speaking AMQP 0-9-1, a drop-in for RabbitMQ.
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
}

/// Subcommands; without one, `warren` runs the broker.
#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator for any AMQP 0-9-1 or MQTT broker (RabbitMQ PerfTest-style).
    Perf(Box<warren_perf::Options>),
    /// Loopback relay for checking `warren perf` itself: forwards AMQP and MQTT messages
    /// straight to consumers, with no queues or routing (not a broker).
    Relay(warren_perf::relay::RelayOptions),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Command::Perf(options)) => return warren_perf::cli(options),
        Some(Command::Relay(options)) => return warren_perf::relay::cli(options),
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
    let mut config = Config {
        bind: args.bind,
        amqp_port: args.amqp_port,
        mqtt_port: args.mqtt_port,
        mqtt_exchange: args.mqtt_exchange,
        data_dir: args.data_dir,
        heartbeat_secs: args.heartbeat,
        frame_max: args.frame_max,
        ..Config::default()
    };
    if let Some(limit) = args.memory_high_watermark {
        config.memory_high_watermark = limit;
    }
    // Signal handlers go in before anything starts, so a stop during start-up or a long
    // recovery is still a graceful one.
    let stop = stop_signal()?;
    let broker = Broker::start(config).await?;
    tracing::info!("warren {} started", env!("CARGO_PKG_VERSION"));
    stop.await;
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
