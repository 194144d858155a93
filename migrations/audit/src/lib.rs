//! Migrations of the audit service's schema: the append-only, hash-chained `audit_events`
//! table, its chain head (the serialisation point for appends) and retention checkpoints.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_audit_events;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261122_000001_create_audit_events::Migration)]
    }
}
