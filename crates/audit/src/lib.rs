//! The audit service: ingests audit records from every service's outbox into an append-only,
//! hash-chained log; answers queries, exports JSON lines, verifies the chain and applies
//! retention behind a checkpoint.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod retention;
pub mod store;

use chrono::Utc;
use switchyard_audit_migration::Migrator;
use switchyard_proto::audit::v1::audit_service_server::AuditServiceServer;
use switchyard_proto::events::v1::event::Payload;
use switchyard_proto::events::v1::event_sink_server::EventSinkServer;
use switchyard_runtime::config::ServiceConfig as _;
use switchyard_runtime::host::{self, Built, Running};
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::{RuntimeError, limit_messages, outbox};
use tonic::server::NamedService;
use tonic::service::Routes;

pub use config::AuditConfig;
use store::AuditStore;

pub const SERVICE: &str = "audit";

/// Starts the service and returns once it reports SERVING.
pub async fn start(config: AuditConfig, shutdown: Shutdown) -> Result<Running, RuntimeError> {
    let grpc = config.grpc.clone();
    let retention = config.retention.clone();
    host::launch::<Migrator, _, _>(SERVICE, config.base(), shutdown, move |ctx| async move {
        let store = AuditStore::new(ctx.db.clone());
        record_started(&store, &ctx.instance_id).await?;
        let routes = Routes::new(limit_messages!(
            AuditServiceServer::new(grpc::AuditApi::new(store.clone())),
            grpc
        ))
        .add_service(limit_messages!(
            EventSinkServer::new(grpc::Sink::new(store.clone())),
            grpc
        ));
        let mut tasks = Vec::new();
        if retention.enabled {
            tasks.push(tokio::spawn(retention::run_periodically(
                store,
                retention,
                ctx.shutdown.clone(),
            )));
        }
        Ok(Built {
            routes,
            health_names: vec![
                <AuditServiceServer<grpc::AuditApi> as NamedService>::NAME,
                <EventSinkServer<grpc::Sink> as NamedService>::NAME,
            ],
            tasks,
        })
    })
    .await
}

/// Starts the service and runs it until `shutdown` and the drain complete.
pub async fn serve(config: AuditConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}

/// The audit service records its own start directly in its chain (it is its own consumer).
async fn record_started(store: &AuditStore, instance_id: &str) -> Result<(), RuntimeError> {
    let details =
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "instance": instance_id });
    let audit = outbox::service_record(SERVICE, "service.started", instance_id, &details);
    let event = outbox::event(SERVICE, Payload::Audit(audit));
    let record = domain::record::from_event(0, &event, Utc::now())
        .map_err(|v| RuntimeError::Config(format!("invalid startup record: {v:?}")))?;
    store.append(vec![record]).await.map_err(|e| match e {
        error::AuditError::Database(db) => RuntimeError::Database(db),
        other => RuntimeError::Config(other.to_string()),
    })?;
    Ok(())
}
