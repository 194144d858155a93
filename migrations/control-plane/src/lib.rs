//! Migrations of the control-plane service's schema, applied at startup under the migration lock.
//! Domain tables arrive with the issues that build the domain; the outbox is there from the
//! start because the service records its own lifecycle through it.

pub use sea_orm_migration::prelude::*;
use switchyard_runtime::outbox::migration::CreateOutbox;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}
