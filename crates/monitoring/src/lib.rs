//! The monitoring service: ingests the scheduler's task lifecycle events into an execution
//! history (one row per attempt) and answers what ran and what runs now. Records its own
//! lifecycle through the outbox to audit. See the module docs of `grpc` for which RPCs are
//! built.

pub mod active;
pub mod alerts;
pub mod checks;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod retention;
pub mod store;

use switchyard_monitoring_migration::Migrator;
use switchyard_proto::events::v1::event_sink_server::EventSinkServer;
use switchyard_proto::monitoring::v1::alert_service_server::AlertServiceServer;
use switchyard_proto::monitoring::v1::api_check_service_server::ApiCheckServiceServer;
use switchyard_proto::monitoring::v1::monitoring_service_server::MonitoringServiceServer;
use switchyard_runtime::config::ServiceConfig as _;
use switchyard_runtime::host::{self, Built, Running};
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::{RuntimeError, limit_messages, outbox};
use tonic::server::NamedService;
use tonic::service::Routes;

pub use config::MonitoringConfig;
use grpc::MonitoringApi;

pub const SERVICE: &str = "monitoring";

/// Starts the service and returns once it reports SERVING.
pub async fn start(config: MonitoringConfig, shutdown: Shutdown) -> Result<Running, RuntimeError> {
    let grpc = config.grpc.clone();
    let outbox_config = config.outbox.clone();
    let control_plane = config.control_plane.clone();
    let scheduler = config.scheduler.clone();
    let retention = config.retention.clone();
    let alerts_config = crate::alerts::config::AlertsConfig {
        stuck: config.active.stuck.clone(),
        ..config.alerts.clone()
    };
    let checks_config = config.checks.clone();
    let usage_config = config.api_usage.clone();
    let cleanup = (config.retention.enabled, config.retention.interval);
    let active_config = config.active.clone();
    let active_prefix = active::key_prefix(&config.database.url, &config.database.schema);
    host::launch::<Migrator, _, _>(SERVICE, config.base(), shutdown, move |ctx| async move {
        outbox::record_started(&ctx.db, SERVICE, &ctx.instance_id).await?;
        let relay = outbox::spawn_audit_relay(
            SERVICE,
            ctx.db.clone(),
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let mut tasks = vec![relay];
        if retention.enabled {
            tasks.push(tokio::spawn(retention::run_periodically(
                ctx.db.clone(),
                retention,
                ctx.shutdown.clone(),
            )));
        }
        metrics::describe();
        if checks_config.enabled {
            tasks.push(tokio::spawn(checks::run(
                ctx.db.clone(),
                checks_config.clone(),
                ctx.shutdown.clone(),
            )));
        }
        if cleanup.0 {
            tasks.push(tokio::spawn(checks::cleanup::run_periodically(
                ctx.db.clone(),
                cleanup.1,
                usage_config.max_age,
                ctx.shutdown.clone(),
            )));
        }
        let api = MonitoringApi::new(
            ctx.db.clone(),
            switchyard_runtime::grpc::channel(&control_plane)?,
            switchyard_runtime::grpc::channel(&scheduler)?,
        )
        .with_check_policy(checks_config.target_policy)
        .with_webhook_policy(alerts_config.webhook_urls);
        // The active-task view on the service's Redis (in memory without one, as in
        // embedded mode), kept equal to the scheduler's queue by the reconciler.
        let view = active::ActiveView::new(&ctx.cache, &active_prefix, active_config.tombstone_ttl);
        tasks.push(tokio::spawn(active::reconcile::run(
            ctx.db.clone(),
            view.clone(),
            api.scheduler.clone(),
            active_config.clone(),
            ctx.shutdown.clone(),
        )));
        let api = api.with_active(view, active_config);
        tasks.extend(alerts::spawn(
            &ctx.db,
            api.scheduler.clone(),
            &alerts_config,
            &ctx.shutdown,
        ));
        let routes = Routes::new(limit_messages!(
            MonitoringServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(AlertServiceServer::new(api.clone()), grpc))
        .add_service(limit_messages!(
            ApiCheckServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(EventSinkServer::new(api), grpc));
        Ok(Built {
            routes,
            health_names: vec![
                <MonitoringServiceServer<MonitoringApi> as NamedService>::NAME,
                <AlertServiceServer<MonitoringApi> as NamedService>::NAME,
                <ApiCheckServiceServer<MonitoringApi> as NamedService>::NAME,
                <EventSinkServer<MonitoringApi> as NamedService>::NAME,
            ],
            tasks,
        })
    })
    .await
}

/// Starts the service and runs it until `shutdown` and the drain complete.
pub async fn serve(config: MonitoringConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}
