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
    /// First port: control-plane gets BASE+10, scheduler +20, monitoring +30, audit +40,
    /// the HTTP gateway +80.
    /// 0 picks free ports.
    #[arg(long, default_value_t = 7000, env = "SWITCHYARD_DEV_PORT_BASE")]
    pub port_base: u16,
    /// Log filter (`tracing` directives).
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    pub log: String,
}

fn port(base: u16, offset: u16) -> u16 {
    if base == 0 {
        0
    } else {
        base.saturating_add(offset)
    }
}

/// The address a service will listen on, known before it starts: the control plane and the
/// scheduler each need the other's endpoint for their outbox relays. With base port 0 a free
/// port is picked now.
fn reserve(base: u16, offset: u16) -> SocketAddr {
    let wanted = SocketAddr::from((Ipv4Addr::LOCALHOST, port(base, offset)));
    if base != 0 {
        return wanted;
    }
    std::net::TcpListener::bind(wanted)
        .and_then(|l| l.local_addr())
        .unwrap_or(wanted)
}

fn grpc(base: u16, offset: u16) -> GrpcConfig {
    GrpcConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port(base, offset))),
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
    // Ctrl-C stops the agent and the gateway first; the services stop once both have: the
    // agent's drain reports the tasks it lets finish (or hands back the rest) to a scheduler
    // that still answers, and the gateway's last API usage report reaches monitoring.
    let shutdown = Shutdown::new();
    shutdown::on_signals(shutdown.clone());
    let services_shutdown = Shutdown::new();

    let bootstrap = bootstrap_token();
    let started = start_all(
        &data_dir,
        args.port_base,
        &bootstrap,
        &shutdown,
        &services_shutdown,
    )
    .await;
    let (services, gateway) = match started {
        Ok(started) => started,
        Err(error) => {
            shutdown.cancel();
            services_shutdown.cancel();
            return Err(error);
        }
    };
    // One local agent, so runs started here run here. The bootstrap credential is a platform
    // admin, which the scheduler accepts from agents.
    let scheduler_url = services
        .iter()
        .find(|s| s.service == "scheduler")
        .map(|s| format!("http://{}", s.grpc_addr))
        .unwrap_or_default();
    let mut agent =
        switchyard_agent::AgentConfig::new(&scheduler_url, &bootstrap, &data_dir.join("agent"));
    agent.name = "dev-agent".into();
    agent.shutdown_grace = std::time::Duration::from_secs(10);
    let agent_capacity = agent.capacity;
    let agent = tokio::spawn(switchyard_agent::run(agent, shutdown.clone()));
    println!("\nSwitchyard dev is running. Data: {}", data_dir.display());
    for service in &services {
        println!(
            "  {:<14} grpc {:<21} metrics http://{}/metrics",
            service.service, service.grpc_addr, service.metrics_addr
        );
    }
    println!(
        "  {:<14} http://{}  (OpenAPI: /api/v1/openapi.json)",
        "gateway", gateway.addr
    );
    println!(
        "  {:<14} runs up to {agent_capacity} tasks at once, work in {}",
        "agent",
        data_dir.join("agent").display()
    );
    println!("\nTry it:");
    println!("  export SWITCHYARD_URL=http://{}", gateway.addr);
    println!("  export SWITCHYARD_TOKEN={bootstrap}");
    println!(
        "  curl -s -X POST $SWITCHYARD_URL/api/v1/orgs -H \"Authorization: Bearer $SWITCHYARD_TOKEN\" -H 'content-type: application/json' -d '{{\"name\":\"acme\"}}'"
    );
    println!("Health: /healthz and /readyz on the gateway. Press Ctrl-C to stop.\n");

    let mut failed = false;
    match agent.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            eprintln!("switchyard dev: agent: {error}");
            failed = true;
        }
        Err(error) => {
            eprintln!("switchyard dev: agent: {error}");
            failed = true;
        }
    }
    if let Err(error) = gateway.wait().await {
        eprintln!("switchyard dev: {error}");
        failed = true;
    }
    services_shutdown.cancel();
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

/// `SWITCHYARD_BOOTSTRAP_TOKEN`, or a fresh random one for this session.
fn bootstrap_token() -> String {
    std::env::var("SWITCHYARD_BOOTSTRAP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("dev-{}", uuid::Uuid::new_v4().simple()))
}

/// Audit first: the others' outbox relays deliver to it. The gateway last, once every
/// service it forwards to is up; it stops on `shutdown`, the services on `services_shutdown`.
async fn start_all(
    dir: &Path,
    base: u16,
    bootstrap: &str,
    shutdown: &Shutdown,
    services_shutdown: &Shutdown,
) -> anyhow::Result<(Vec<Running>, switchyard_gateway::Gateway)> {
    let metrics = MetricsConfig::on_port(0);
    let audit = switchyard_audit::start(
        switchyard_audit::AuditConfig {
            grpc: grpc(base, 40),
            metrics: metrics.clone(),
            database: sqlite(dir, "audit"),
            ..Default::default()
        },
        services_shutdown.clone(),
    )
    .await
    .context("audit did not start")?;
    let mut outbox = switchyard_runtime::config::OutboxConfig {
        audit_endpoint: format!("http://{}", audit.grpc_addr),
        ..Default::default()
    };
    outbox.poll_interval = std::time::Duration::from_millis(100);
    let control_plane_addr = reserve(base, 10);
    let scheduler_addr = reserve(base, 20);
    // Monitoring needs only the control plane's and the scheduler's addresses (dialled
    // lazily): it starts first, and the others learn its bound address.
    let monitoring = switchyard_monitoring::start(
        switchyard_monitoring::MonitoringConfig {
            grpc: grpc(base, 30),
            metrics: metrics.clone(),
            database: sqlite(dir, "monitoring"),
            outbox: outbox.clone(),
            control_plane: switchyard_monitoring::config::ControlPlaneEndpoint(format!(
                "http://{control_plane_addr}"
            )),
            scheduler: switchyard_monitoring::config::SchedulerEndpoint(format!(
                "http://{scheduler_addr}"
            )),
            // Everything runs on this machine in dev: webhook receivers and checked APIs on
            // loopback are the ones a newcomer tries first (metadata and link-local stay
            // refused).
            alerts: switchyard_monitoring::alerts::config::AlertsConfig {
                webhook_urls: loopback_allowed(),
                ..Default::default()
            },
            checks: switchyard_monitoring::checks::ChecksConfig {
                target_policy: loopback_allowed(),
                ..Default::default()
            },
            ..Default::default()
        },
        services_shutdown.clone(),
    )
    .await
    .context("monitoring did not start")?;
    outbox.control_plane_endpoint = format!("http://{control_plane_addr}");
    outbox.scheduler_endpoint = format!("http://{scheduler_addr}");
    outbox.monitoring_endpoint = format!("http://{}", monitoring.grpc_addr);

    let control_plane = switchyard_control_plane::start(
        switchyard_control_plane::ControlPlaneConfig {
            grpc: GrpcConfig {
                listen: control_plane_addr,
                ..GrpcConfig::default()
            },
            metrics: metrics.clone(),
            database: sqlite(dir, "control-plane"),
            outbox: outbox.clone(),
            bootstrap_token: Some(bootstrap.to_owned()),
            // Datasets under the directory `switchyard dev` was started in can be gated on.
            datasets: switchyard_control_plane::config::DatasetsConfig {
                local_roots: std::env::current_dir().into_iter().collect(),
                ..Default::default()
            },
            ..Default::default()
        },
        services_shutdown.clone(),
    )
    .await
    .context("control-plane did not start")?;
    let scheduler = switchyard_scheduler::start(
        switchyard_scheduler::SchedulerConfig {
            grpc: GrpcConfig {
                listen: scheduler_addr,
                ..GrpcConfig::default()
            },
            metrics: metrics.clone(),
            database: sqlite(dir, "scheduler"),
            outbox: outbox.clone(),
            control_plane: switchyard_scheduler::config::ControlPlaneEndpoint(format!(
                "http://{control_plane_addr}"
            )),
            ..Default::default()
        },
        services_shutdown.clone(),
    )
    .await
    .context("scheduler did not start")?;
    let mut gateway = switchyard_gateway::GatewayConfig::default();
    gateway.http.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port(base, 80)));
    gateway.upstream.control_plane = format!("http://{}", control_plane.grpc_addr);
    gateway.upstream.scheduler = format!("http://{}", scheduler.grpc_addr);
    gateway.upstream.monitoring = format!("http://{}", monitoring.grpc_addr);
    gateway.upstream.audit = format!("http://{}", audit.grpc_addr);
    let gateway = switchyard_gateway::start(gateway, shutdown.clone())
        .await
        .context("gateway did not start")?;
    Ok((vec![control_plane, scheduler, monitoring, audit], gateway))
}

/// The default address policy, with loopback allowed (dev runs everything on this machine).
fn loopback_allowed() -> switchyard_monitoring::domain::url_policy::UrlPolicy {
    switchyard_monitoring::domain::url_policy::UrlPolicy {
        allow_loopback: true,
        ..Default::default()
    }
}
