//! Spawning real services for tests.

use std::time::Duration;

use switchyard_proto::audit::v1::audit_service_client::AuditServiceClient;
use switchyard_runtime::RuntimeError;
use switchyard_runtime::config::{GrpcConfig, MetricsConfig, OutboxConfig};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::host::Running;
use switchyard_runtime::shutdown::Shutdown;

use crate::database::TestDatabase;
use crate::ports::reserve_port;

fn grpc() -> GrpcConfig {
    GrpcConfig {
        shutdown_grace: Duration::from_secs(5),
        ..GrpcConfig::default()
    }
}

/// Relays poll fast in tests so waits stay short.
/// The platform-admin credential of test clusters.
pub const BOOTSTRAP_TOKEN: &str = "test-bootstrap-token-0123456789";

/// Real Redis next to PostgreSQL (what production runs); the in-process cache next to SQLite
/// (what embedded mode runs).
pub fn redis(db: &TestDatabase) -> switchyard_runtime::config::RedisConfig {
    switchyard_runtime::config::RedisConfig {
        url: match db.backend {
            crate::Backend::Postgres => Some(crate::database::redis_url()),
            crate::Backend::Sqlite => None,
        },
        ..Default::default()
    }
}

pub fn outbox_to(audit: &Running) -> OutboxConfig {
    OutboxConfig {
        audit_endpoint: format!("http://{}", audit.grpc_addr),
        poll_interval: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        ..OutboxConfig::default()
    }
}

pub async fn spawn_audit(db: &TestDatabase) -> Running {
    let mut config = switchyard_audit::AuditConfig {
        grpc: grpc(),
        metrics: MetricsConfig::default(),
        database: db.config("audit"),
        ..Default::default()
    };
    config.retention.enabled = false;
    switchyard_audit::start(config, Shutdown::new())
        .await
        .unwrap()
}

/// The directory tests put dataset files in; the control plane may read `file://` locations
/// under it (and nowhere else).
pub fn data_root() -> std::path::PathBuf {
    let root = std::env::temp_dir().join("switchyard-test-data");
    // Creating it is idempotent across tests; canonical so symlinked temp dirs still match.
    let _ = std::fs::create_dir_all(&root);
    root.canonicalize().unwrap_or(root)
}

/// All four services, wired like production (relays deliver to audit).
pub struct Cluster {
    pub audit: Running,
    pub control_plane: Running,
    pub scheduler: Running,
    pub monitoring: Running,
    /// What the scheduler was started with, to restart it where it stood.
    pub scheduler_config: switchyard_scheduler::SchedulerConfig,
    /// What monitoring was started with (its bound port included), to start it again there.
    pub monitoring_config: switchyard_monitoring::MonitoringConfig,
}

pub async fn spawn_cluster(db: &TestDatabase) -> Cluster {
    spawn_cluster_with(db, |_| {}).await
}

/// The same, with a hook to adjust the scheduler's config (engine settings, task events).
pub async fn spawn_cluster_with(
    db: &TestDatabase,
    adjust_scheduler: impl FnOnce(&mut switchyard_scheduler::SchedulerConfig),
) -> Cluster {
    // Boxed: the services' start-up futures would otherwise sit inline in every caller's.
    Box::pin(spawn_cluster_tuned(db, adjust_scheduler, |_| {})).await
}

/// The same, with hooks for the scheduler's and monitoring's configs (monitoring's
/// addresses, database and outbox are the cluster's whatever the hook sets).
pub async fn spawn_cluster_tuned(
    db: &TestDatabase,
    adjust_scheduler: impl FnOnce(&mut switchyard_scheduler::SchedulerConfig),
    adjust_monitoring: impl FnOnce(&mut switchyard_monitoring::MonitoringConfig),
) -> Cluster {
    // Boxed: kept across awaits, it would otherwise sit inline in every caller's future.
    let mut monitoring_template = Box::new(switchyard_monitoring::MonitoringConfig::default());
    adjust_monitoring(&mut monitoring_template);
    let audit = spawn_audit(db).await;
    let mut tuned = switchyard_scheduler::SchedulerConfig {
        // Short leases so a lost agent's task comes back within a test's patience.
        engine: switchyard_scheduler::config::EngineConfig {
            lease: Duration::from_secs(2),
            sweep_interval: Duration::from_millis(200),
            ..Default::default()
        },
        // Fast relays, as every service of the cluster has (a hook may slow them down).
        outbox: OutboxConfig {
            poll_interval: outbox_to(&audit).poll_interval,
            ..OutboxConfig::default()
        },
        ..Default::default()
    };
    adjust_scheduler(&mut tuned);
    // Reserved ports are ours alone among test processes, but anything else on the machine
    // may still bind one first: start again on fresh ports rather than fail the test.
    for attempt in 1..=3 {
        match Box::pin(spawn_around(db, &audit, &tuned, &monitoring_template)).await {
            Ok(Services {
                control_plane,
                scheduler,
                scheduler_config,
                monitoring,
                monitoring_config,
            }) => {
                return Cluster {
                    audit,
                    control_plane,
                    scheduler,
                    scheduler_config,
                    monitoring,
                    monitoring_config,
                };
            }
            Err(error) if attempt < 3 && matches!(error, RuntimeError::Bind { .. }) => {
                eprintln!("a reserved port was taken ({error}); starting the cluster again");
            }
            Err(error) => panic!("the cluster did not start: {error}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// What [`spawn_around`] started.
struct Services {
    control_plane: Running,
    scheduler: Running,
    scheduler_config: switchyard_scheduler::SchedulerConfig,
    monitoring: Running,
    monitoring_config: switchyard_monitoring::MonitoringConfig,
}

/// Control plane, scheduler and monitoring around a running audit service. What started is
/// stopped again when a later service cannot bind its port.
async fn spawn_around(
    db: &TestDatabase,
    audit: &Running,
    tuned: &switchyard_scheduler::SchedulerConfig,
    monitoring_template: &switchyard_monitoring::MonitoringConfig,
) -> Result<Services, RuntimeError> {
    // Every service's relays at the pace the scheduler hook chose (the benchmark asks for
    // the shipped one): how often a destination is polled decides what its deliveries cost.
    let mut outbox = OutboxConfig {
        poll_interval: tuned.outbox.poll_interval,
        ..outbox_to(audit)
    };
    // The control plane and the scheduler relay events to each other, and the scheduler its
    // task lifecycle events to monitoring. Monitoring needs only the control plane's and the
    // scheduler's addresses (dialled lazily), so it starts first on a port of its own.
    let control_plane_addr = reserve_port();
    let scheduler_addr = reserve_port();
    let mut monitoring_config = switchyard_monitoring::MonitoringConfig {
        // A reserved port, not port 0: an outage test starts monitoring again there.
        grpc: GrpcConfig {
            listen: reserve_port(),
            ..grpc()
        },
        metrics: MetricsConfig::default(),
        database: db.config("monitoring"),
        outbox: outbox.clone(),
        control_plane: switchyard_monitoring::config::ControlPlaneEndpoint(format!(
            "http://{control_plane_addr}"
        )),
        scheduler: switchyard_monitoring::config::SchedulerEndpoint(format!(
            "http://{scheduler_addr}"
        )),
        // The active-tasks view in real Redis next to PostgreSQL, as deployed, unless the
        // test chose its own.
        redis: match &monitoring_template.redis.url {
            Some(_) => monitoring_template.redis.clone(),
            None => redis(db),
        },
        ..monitoring_template.clone()
    };
    let monitoring =
        switchyard_monitoring::start(monitoring_config.clone(), Shutdown::new()).await?;
    monitoring_config.grpc.listen = monitoring.grpc_addr;
    outbox.control_plane_endpoint = format!("http://{control_plane_addr}");
    outbox.scheduler_endpoint = format!("http://{scheduler_addr}");
    outbox.monitoring_endpoint = format!("http://{}", monitoring.grpc_addr);
    let control_plane = match switchyard_control_plane::start(
        switchyard_control_plane::ControlPlaneConfig {
            grpc: GrpcConfig {
                listen: control_plane_addr,
                ..grpc()
            },
            metrics: MetricsConfig::default(),
            database: db.config("control-plane"),
            redis: redis(db),
            outbox: outbox.clone(),
            bootstrap_token: Some(BOOTSTRAP_TOKEN.to_owned()),
            datasets: switchyard_control_plane::config::DatasetsConfig {
                local_roots: vec![data_root()],
                ..Default::default()
            },
            ..Default::default()
        },
        Shutdown::new(),
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            let _ = monitoring.stop().await;
            return Err(error);
        }
    };
    let scheduler_config = switchyard_scheduler::SchedulerConfig {
        grpc: GrpcConfig {
            listen: scheduler_addr,
            ..grpc()
        },
        metrics: MetricsConfig::default(),
        database: db.config("scheduler"),
        // The cluster's endpoints; the relays' pace as the hook left it.
        outbox: OutboxConfig {
            poll_interval: tuned.outbox.poll_interval,
            batch_size: tuned.outbox.batch_size,
            ..outbox
        },
        control_plane: switchyard_scheduler::config::ControlPlaneEndpoint(format!(
            "http://{control_plane_addr}"
        )),
        ..tuned.clone()
    };
    match switchyard_scheduler::start(scheduler_config.clone(), Shutdown::new()).await {
        Ok(scheduler) => Ok(Services {
            control_plane,
            scheduler,
            scheduler_config,
            monitoring,
            monitoring_config,
        }),
        Err(error) => {
            let _ = control_plane.stop().await;
            let _ = monitoring.stop().await;
            Err(error)
        }
    }
}

impl Cluster {
    pub async fn stop(self) {
        for service in [
            self.control_plane,
            self.scheduler,
            self.monitoring,
            self.audit,
        ] {
            service.stop().await.unwrap();
        }
    }
}

impl Cluster {
    /// Stops the scheduler (drained, as on SIGTERM) and starts a fresh one on the same address
    /// and database: a restart mid-run.
    /// Stops monitoring abruptly (an outage: events for it wait in the other services'
    /// outboxes) until [`Cluster::start_monitoring_again`].
    pub async fn halt_monitoring(&mut self) {
        self.monitoring.halt().await;
    }

    /// Starts monitoring again on its old port and database, where the relays find it.
    pub async fn start_monitoring_again(&mut self) {
        self.monitoring =
            switchyard_monitoring::start(self.monitoring_config.clone(), Shutdown::new())
                .await
                .unwrap();
    }

    pub async fn restart_scheduler(&mut self) {
        self.scheduler.halt().await;
        let fresh = switchyard_scheduler::start(self.scheduler_config.clone(), Shutdown::new())
            .await
            .unwrap();
        self.scheduler = fresh;
    }
}

pub fn channel(service: &Running) -> GrpcChannel {
    switchyard_runtime::grpc::channel(&format!("http://{}", service.grpc_addr)).unwrap()
}

pub fn audit_client(audit: &Running) -> AuditServiceClient<GrpcChannel> {
    AuditServiceClient::new(channel(audit))
}

/// The overall health status a service reports.
pub async fn health(service: &Running) -> tonic_health::ServingStatus {
    use tonic_health::pb::health_client::HealthClient;
    let mut client = HealthClient::new(channel(service));
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    match response.status {
        1 => tonic_health::ServingStatus::Serving,
        2 => tonic_health::ServingStatus::NotServing,
        _ => tonic_health::ServingStatus::Unknown,
    }
}
