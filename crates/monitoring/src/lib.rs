//! The monitoring service: ingests the scheduler's task lifecycle events into an execution
//! history (one row per attempt) and answers what ran and what runs now. Records its own
//! lifecycle through the outbox to audit. See the module docs of `grpc` for which RPCs are
//! built.

pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
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
        let api = MonitoringApi::new(
            ctx.db.clone(),
            switchyard_runtime::grpc::channel(&control_plane)?,
            switchyard_runtime::grpc::channel(&scheduler)?,
        );
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
