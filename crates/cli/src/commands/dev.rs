//! `switchyard dev`: every service in one process, each on its own SQLite file in the data
//! directory, on loopback ports, with an in-process cache. Ctrl-C stops everything cleanly.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use switchyard_runtime::config::{DatabaseConfig, GrpcConfig, MetricsConfig, TelemetryConfig};
use switchyard_runtime::host::Running;
use switchyard_runtime::shutdown::{self, Shutdown};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the SQLite databases live.
    #[arg(long, default_value = ".switchyard", env = "SWITCHYARD_DEV_DATA_DIR")]
    pub data_dir: PathBuf,
    /// First port: control-plane gets BASE+10, scheduler +20, monitoring +30, audit +40.
    /// 0 picks free ports.
    #[arg(long, default_value_t = 7000, env = "SWITCHYARD_DEV_PORT_BASE")]
    pub port_base: u16,
    /// Log filter (`tracing` directives).
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    pub log: String,
}

fn grpc(base: u16, offset: u16) -> GrpcConfig {
    let port = if base == 0 {
        0
    } else {
        base.saturating_add(offset)
    };
    GrpcConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ..GrpcConfig::default()
    }
}

fn sqlite(dir: &Path, service: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: format!("sqlite://{}/{service}.db", dir.display()),
        schema: service.replace('-', "_"),
        max_connections: 4,
        ..DatabaseConfig::default()
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let telemetry = TelemetryConfig {
        log_filter: args.log.clone(),
        ..TelemetryConfig::default()
    };
    let guard = switchyard_runtime::telemetry::init("dev", &telemetry)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let shutdown = Shutdown::new();
    shutdown::on_signals(shutdown.clone());

    let services = match start_all(&data_dir, args.port_base, &shutdown).await {
        Ok(services) => services,
        Err(error) => {
            shutdown.cancel();
            return Err(error);
        }
    };
    println!("\nSwitchyard dev is running. Data: {}", data_dir.display());
    for service in &services {
        println!(
            "  {:<14} grpc {:<21} metrics http://{}/metrics",
            service.service, service.grpc_addr, service.metrics_addr
        );
    }
    println!("Health: grpc.health.v1.Health on each gRPC address. Press Ctrl-C to stop.\n");

    let mut failed = false;
    for service in services {
        if let Err(error) = service.wait().await {
            eprintln!("switchyard dev: {error}");
            failed = true;
        }
    }
    guard.shutdown(std::time::Duration::from_secs(3));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Audit first: the others' outbox relays deliver to it.
async fn start_all(dir: &Path, base: u16, shutdown: &Shutdown) -> anyhow::Result<Vec<Running>> {
    let metrics = MetricsConfig::on_port(0);
    let audit = switchyard_audit::start(
        switchyard_audit::AuditConfig {
            grpc: grpc(base, 40),
            metrics: metrics.clone(),
            database: sqlite(dir, "audit"),
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .context("audit did not start")?;
    let mut outbox = switchyard_runtime::config::OutboxConfig {
        audit_endpoint: format!("http://{}", audit.grpc_addr),
        ..Default::default()
    };
    outbox.poll_interval = std::time::Duration::from_millis(100);

    let control_plane = switchyard_control_plane::start(
        switchyard_control_plane::ControlPlaneConfig {
            grpc: grpc(base, 10),
            metrics: metrics.clone(),
            database: sqlite(dir, "control-plane"),
            outbox: outbox.clone(),
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .context("control-plane did not start")?;
    let scheduler = switchyard_scheduler::start(
        switchyard_scheduler::SchedulerConfig {
            grpc: grpc(base, 20),
            metrics: metrics.clone(),
            database: sqlite(dir, "scheduler"),
            outbox: outbox.clone(),
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .context("scheduler did not start")?;
    let monitoring = switchyard_monitoring::start(
        switchyard_monitoring::MonitoringConfig {
            grpc: grpc(base, 30),
            metrics,
            database: sqlite(dir, "monitoring"),
            outbox,
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .context("monitoring did not start")?;
    Ok(vec![control_plane, scheduler, monitoring, audit])
}
