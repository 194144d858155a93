//! Alerting: the evaluator that fires and auto-resolves alerts from each enabled rule's
//! condition (`evaluator`, conditions one module per kind under `conditions`), what goes with
//! every alert change (`notify`: audit record and queued webhooks) and the webhook deliverer
//! (`webhook`). Evaluator and deliverer run once across replicas.

pub mod conditions;
pub mod config;
pub mod evaluator;
pub mod notify;
pub mod retention;
pub mod webhook;

use sea_orm::DatabaseConnection;
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::shutdown::Shutdown;
use tokio::task::JoinHandle;

/// Starts the evaluator and the deliverer (nothing when `alerts.enabled` is off).
pub fn spawn(
    db: &DatabaseConnection,
    scheduler: GrpcChannel,
    config: &config::AlertsConfig,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    if !config.enabled {
        return Vec::new();
    }
    vec![
        tokio::spawn(evaluator::run_periodically(
            db.clone(),
            scheduler,
            config.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(webhook::run_periodically(
            db.clone(),
            config.clone(),
            shutdown.clone(),
        )),
    ]
}
