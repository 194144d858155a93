//! Migrations of the scheduler service's schema, applied at startup under the migration lock.
//! The outbox first (the service records its own lifecycle through it), then the run engine.

pub use sea_orm_migration::prelude::*;
use switchyard_runtime::inbox::migration::CreateInbox;
use switchyard_runtime::outbox::migration::{CreateOutbox, Lz4Payloads};

mod m20261123_000001_create_engine;
mod m20261127_000001_concurrency_limits;
mod m20261127_000002_create_artifacts;
mod m20261127_000003_task_attempts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateInbox),
            Box::new(m20261123_000001_create_engine::Migration),
            Box::new(m20261127_000001_concurrency_limits::Migration),
            Box::new(m20261127_000002_create_artifacts::Migration),
            Box::new(m20261127_000003_task_attempts::Migration),
            Box::new(Lz4Payloads),
        ]
    }
}
