//! Artifacts agents reported with their completions: one row per stored object, so that
//! artifact retention can delete the objects from their stores and run retention can tell
//! when a run's objects are gone.
//!
//! Retention reads only live rows by age: a partial index over `created_at` where
//! `deleted_at` is null (both PostgreSQL and SQLite have partial indexes). Run retention
//! looks rows up by run.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    big_integer, id_ref, serial, text, timestamp, timestamp_null,
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000002_create_artifacts"
    }
}

#[derive(DeriveIden)]
enum Artifacts {
    Table,
    Id,
    TaskId,
    RunId,
    ProjectId,
    Name,
    Location,
    SizeBytes,
    Sha256,
    CreatedAt,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Artifacts::Table)
                    .col(serial(Artifacts::Id))
                    // The integer key of the task row (`tasks.id`).
                    .col(big_integer(Artifacts::TaskId))
                    .col(id_ref(Artifacts::RunId))
                    .col(id_ref(Artifacts::ProjectId))
                    .col(text(Artifacts::Name))
                    // The object's URL (`file:///...` or `s3://bucket/key`).
                    .col(text(Artifacts::Location))
                    .col(big_integer(Artifacts::SizeBytes))
                    .col(text(Artifacts::Sha256))
                    .col(timestamp(Artifacts::CreatedAt))
                    // Set once the object is gone from its store.
                    .col(timestamp_null(Artifacts::DeletedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in [
            "CREATE INDEX artifacts_live ON artifacts (created_at) WHERE deleted_at IS NULL",
            "CREATE INDEX artifacts_run ON artifacts (run_id)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Artifacts::Table).to_owned())
            .await
    }
}
