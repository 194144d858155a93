//! The scheduler service: takes runs from the control plane's outbox, turns them into tasks,
//! leases them to agents, retries, dead-letters and reports run status back through its own
//! outbox. See the module docs of `grpc` for which RPCs are built.

pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod queue_depth;
pub mod store;

use switchyard_proto::events::v1::event_sink_server::EventSinkServer;
use switchyard_proto::scheduler::v1::agent_registry_service_server::AgentRegistryServiceServer;
use switchyard_proto::scheduler::v1::dead_letter_service_server::DeadLetterServiceServer;
use switchyard_proto::scheduler::v1::project_limit_service_server::ProjectLimitServiceServer;
use switchyard_proto::scheduler::v1::schedule_service_server::ScheduleServiceServer;
use switchyard_proto::scheduler::v1::scheduler_service_server::SchedulerServiceServer;
use switchyard_proto::scheduler::v1::worker_service_server::WorkerServiceServer;
use switchyard_runtime::config::ServiceConfig as _;
use switchyard_runtime::host::{self, Built, Running};
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::{RuntimeError, limit_messages, outbox};
use switchyard_scheduler_migration::Migrator;
use tonic::server::NamedService;
use tonic::service::Routes;

pub use config::SchedulerConfig;
use engine::Engine;
use grpc::SchedulerApi;

pub const SERVICE: &str = "scheduler";

/// Starts the service and returns once it reports SERVING.
pub async fn start(config: SchedulerConfig, shutdown: Shutdown) -> Result<Running, RuntimeError> {
    let grpc = config.grpc.clone();
    let outbox_config = config.outbox.clone();
    let settings = config.engine.settings();
    let sweep_interval = config.engine.sweep_interval;
    let leased_flush_interval = config.engine.leased_flush_interval;
    let queue_depth_interval = config.engine.queue_depth_interval;
    let auth_endpoint = config.control_plane.clone();
    let upkeep = engine::maintenance::Settings::from_config(&config);
    let database = config.database.clone();
    host::launch::<Migrator, _, _>(SERVICE, config.base(), shutdown, move |ctx| async move {
        outbox::record_started(&ctx.db, SERVICE, &ctx.instance_id).await?;
        let relay = outbox::spawn_audit_relay(
            SERVICE,
            ctx.db.clone(),
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let to_control_plane = outbox::spawn_relay_to(
            SERVICE,
            ctx.db.clone(),
            outbox::destination::CONTROL_PLANE,
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        // Task lifecycle events, when they are on (their relay starts either way, so events
        // written before they were turned off still arrive).
        let to_monitoring = outbox::spawn_relay_to(
            SERVICE,
            ctx.db.clone(),
            outbox::destination::MONITORING,
            &outbox_config,
            ctx.shutdown.clone(),
        )?;
        let claims = store::claim::pool(&database, &ctx.db).await?;
        let engine = Engine::new(ctx.db.clone(), settings).with_claim_pool(claims);
        let wake_tasks = engine
            .wake
            .spawn_postgres(&ctx.db, ctx.shutdown.clone())
            .await?;
        let sweeper = engine::spawn_sweeper(engine.clone(), sweep_interval, ctx.shutdown.clone());
        let leased_flush = engine::lifecycle::spawn_leased_flush(
            engine.clone(),
            leased_flush_interval,
            ctx.shutdown.clone(),
        );
        let cron = engine::cron_job::spawn(
            engine.clone(),
            std::time::Duration::from_secs(1),
            ctx.shutdown.clone(),
        );
        let maintenance = engine::maintenance::spawn(engine.clone(), upkeep, ctx.shutdown.clone());
        let queue_depth = tokio::spawn(queue_depth::run(
            ctx.db.clone(),
            queue_depth_interval,
            ctx.shutdown.clone(),
        ));
        let api = SchedulerApi::new(engine, switchyard_runtime::grpc::channel(&auth_endpoint)?);
        let routes = Routes::new(limit_messages!(
            SchedulerServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            DeadLetterServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            ScheduleServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            AgentRegistryServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(
            ProjectLimitServiceServer::new(api.clone()),
            grpc
        ))
        .add_service(limit_messages!(WorkerServiceServer::new(api.clone()), grpc))
        .add_service(limit_messages!(EventSinkServer::new(api), grpc));
        Ok(Built {
            routes,
            health_names: vec![
                <SchedulerServiceServer<SchedulerApi> as NamedService>::NAME,
                <DeadLetterServiceServer<SchedulerApi> as NamedService>::NAME,
                <ScheduleServiceServer<SchedulerApi> as NamedService>::NAME,
                <AgentRegistryServiceServer<SchedulerApi> as NamedService>::NAME,
                <ProjectLimitServiceServer<SchedulerApi> as NamedService>::NAME,
                <WorkerServiceServer<SchedulerApi> as NamedService>::NAME,
                <EventSinkServer<SchedulerApi> as NamedService>::NAME,
            ],
            tasks: [
                relay,
                to_control_plane,
                to_monitoring,
                sweeper,
                leased_flush,
                cron,
                maintenance,
                queue_depth,
            ]
            .into_iter()
            .chain(wake_tasks)
            .collect(),
        })
    })
    .await
}

/// Starts the service and runs it until `shutdown` and the drain complete.
pub async fn serve(config: SchedulerConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}
