//! Migrations of the control-plane service's schema, applied at startup under the migration lock.

pub use sea_orm_migration::prelude::*;
use switchyard_runtime::inbox::migration::CreateInbox;
use switchyard_runtime::outbox::migration::{CreateOutbox, Lz4Payloads};

mod m20261123_000001_create_tenancy_identity;
mod m20261123_000002_create_workflows_runs;
mod m20261123_000003_create_suites_datasets;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(m20261123_000001_create_tenancy_identity::Migration),
            Box::new(m20261123_000002_create_workflows_runs::Migration),
            Box::new(m20261123_000003_create_suites_datasets::Migration),
            Box::new(CreateInbox),
            Box::new(Lz4Payloads),
        ]
    }
}
