//! The control-plane service: tenancy, identity and service tokens, workflows and runs, suites
//! with their BDD features, datasets and the dataset gate. It
//! authenticates credentials for the gateway and hands accepted runs to the scheduler through
//! its outbox.

pub mod config;
pub mod data_source;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod maintenance;
pub mod run_changes;
pub mod state;
pub mod store;

use std::sync::Arc;

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
use domain::access_token::Signer;
use grpc::ControlPlaneApi;
use state::State;

pub const SERVICE: &str = "control-plane";

/// Starts the service and returns once it reports SERVING.
pub async fn start(
    config: ControlPlaneConfig,
    shutdown: Shutdown,
) -> Result<Running, RuntimeError> {
    let grpc = config.grpc.clone();
    let outbox_config = config.outbox.clone();
    let signing_key = config.auth.signing_key(config.bootstrap_token.as_deref());
    let signer = Signer::new(&signing_key, config.auth.access_token_ttl);
    let bootstrap_token = config.bootstrap_token.clone();
    let auth_cache_ttl = config.auth.cache_ttl;
    let token_expiry_interval = config.auth.expiry_interval;
    let data = data_source::DataSources::new(config.datasets.clone());
    host::launch::<Migrator, _, _>(SERVICE, config.base(), shutdown, move |ctx| async move {
        outbox::record_started(&ctx.db, SERVICE, &ctx.instance_id).await?;
        let relay = outbox::spawn_audit_relay(
            SERVICE,
            ctx.db.clone(),
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let to_scheduler = outbox::spawn_relay_to(
            SERVICE,
            ctx.db.clone(),
            outbox::destination::SCHEDULER,
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let state = Arc::new(State {
            db: ctx.db.clone(),
            cache: ctx.cache.clone(),
            signer,
            bootstrap_token,
            auth_cache_ttl,
            data,
            run_changes: run_changes::RunChanges::new(),
            shutdown: ctx.shutdown.clone(),
        });
        let expiry = maintenance::spawn(state.clone(), token_expiry_interval, ctx.shutdown.clone());
        let api = ControlPlaneApi::new(state);
        let routes = Routes::new(limit_messages!(
            TenancyServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            IdentityServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            WorkflowServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(RunServiceServer::new(api.clone()), grpc))
        .add_service(limit_messages!(SuiteServiceServer::new(api.clone()), grpc))
        .add_service(limit_messages!(
            DatasetServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(EventSinkServer::new(api), grpc));
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
            tasks: vec![relay, to_scheduler, expiry],
        })
    })
    .await
}

/// Starts the service and runs it until `shutdown` and the drain complete.
pub async fn serve(config: ControlPlaneConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}
