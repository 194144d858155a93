//! The control-plane service. This slice runs the shared runtime (health, reflection, migrations,
//! metrics, drain) and records its own lifecycle through the outbox to audit; see the
//! module docs of `grpc` for the state of the domain RPCs.

pub mod config;
pub mod grpc;

use switchyard_control_plane_migration::Migrator;
use switchyard_proto::controlplane::v1::dataset_service_server::DatasetServiceServer;
use switchyard_proto::controlplane::v1::identity_service_server::IdentityServiceServer;
use switchyard_proto::controlplane::v1::run_service_server::RunServiceServer;
use switchyard_proto::controlplane::v1::suite_service_server::SuiteServiceServer;
use switchyard_proto::controlplane::v1::tenancy_service_server::TenancyServiceServer;
use switchyard_proto::controlplane::v1::workflow_service_server::WorkflowServiceServer;
use switchyard_proto::events::v1::event_sink_server::EventSinkServer;
use switchyard_runtime::config::ServiceConfig as _;
use switchyard_runtime::host::{self, Built, Running};
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::{RuntimeError, limit_messages, outbox};
use tonic::server::NamedService;
use tonic::service::Routes;

pub use config::ControlPlaneConfig;
use grpc::ControlPlaneApi;

pub const SERVICE: &str = "control-plane";

/// Starts the service and returns once it reports SERVING.
pub async fn start(
    config: ControlPlaneConfig,
    shutdown: Shutdown,
) -> Result<Running, RuntimeError> {
    let grpc = config.grpc.clone();
    let outbox_config = config.outbox.clone();
    host::launch::<Migrator, _, _>(SERVICE, config.base(), shutdown, move |ctx| async move {
        outbox::record_started(&ctx.db, SERVICE, &ctx.instance_id).await?;
        let relay = outbox::spawn_audit_relay(
            SERVICE,
            ctx.db.clone(),
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let routes = Routes::new(limit_messages!(
            TenancyServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(
            IdentityServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(
            WorkflowServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(
            RunServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(
            SuiteServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(
            DatasetServiceServer::new(ControlPlaneApi),
            grpc
        ))
        .add_service(limit_messages!(EventSinkServer::new(ControlPlaneApi), grpc));
        Ok(Built {
            routes,
            health_names: vec![
                <TenancyServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <IdentityServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <WorkflowServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <RunServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <SuiteServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <DatasetServiceServer<ControlPlaneApi> as NamedService>::NAME,
                <EventSinkServer<ControlPlaneApi> as NamedService>::NAME,
            ],
            tasks: vec![relay],
        })
    })
    .await
}

/// Starts the service and runs it until `shutdown` and the drain complete.
pub async fn serve(config: ControlPlaneConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}
