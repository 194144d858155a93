//! Migrations of the scheduler service's schema, applied at startup under the migration lock.
//! The outbox first (the service records its own lifecycle through it), then the run engine.

pub use sea_orm_migration::prelude::*;
use switchyard_runtime::inbox::migration::CreateInbox;
use switchyard_runtime::outbox::migration::CreateOutbox;

mod m20261123_000001_create_engine;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateInbox),
            Box::new(m20261123_000001_create_engine::Migration),
        ]
    }
}
