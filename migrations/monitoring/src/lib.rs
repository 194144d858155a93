//! Migrations of the monitoring service's schema, applied at startup under the migration lock.
//! The outbox first (the service records its own lifecycle through it), the inbox (events it
//! consumes are applied once), then the execution history.

pub use sea_orm_migration::prelude::*;
use switchyard_runtime::inbox::migration::CreateInbox;
use switchyard_runtime::outbox::migration::{CreateOutbox, Lz4Payloads};

mod m20261128_000001_task_executions;
mod m20261129_000001_alerts;
mod m20261129_000002_api_checks;
mod m20261130_000001_drop_running_index;
mod m20261201_000001_run_attempt_index;
mod m20261201_000002_uuid_ids;
mod m20261202_000001_natural_history_key;
mod m20261203_000001_dead_letter_replays;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateInbox),
            Box::new(m20261128_000001_task_executions::Migration),
            Box::new(m20261129_000001_alerts::Migration),
            Box::new(m20261129_000002_api_checks::Migration),
            Box::new(Lz4Payloads),
            Box::new(m20261130_000001_drop_running_index::Migration),
            Box::new(m20261201_000001_run_attempt_index::Migration),
            Box::new(m20261201_000002_uuid_ids::Migration),
            Box::new(m20261202_000001_natural_history_key::Migration),
            Box::new(m20261203_000001_dead_letter_replays::Migration),
        ]
    }
}
