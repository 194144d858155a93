//! Concurrency limits. A node may cap how many of its tasks run at once (`concurrency` in the
//! definition, copied onto each task so claims need not parse definitions), and a project may
//! cap how many of its tasks run at once across all its runs (`project_limits`).
//!
//! Claims count leased rows per project and per (run, node); the partial index over leased
//! rows by project keeps that count to the running set.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{id_ref, integer, text, timestamp};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000001_concurrency_limits"
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    NodeConcurrency,
}

#[derive(DeriveIden)]
enum ProjectLimits {
    Table,
    ProjectId,
    MaxRunningTasks,
    UpdatedBy,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    // Most leased tasks of this task's (run, node) at once; NULL for no limit.
                    .add_column(ColumnDef::new(Tasks::NodeConcurrency).integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProjectLimits::Table)
                    .col(id_ref(ProjectLimits::ProjectId).primary_key())
                    .col(integer(ProjectLimits::MaxRunningTasks))
                    .col(text(ProjectLimits::UpdatedBy))
                    .col(timestamp(ProjectLimits::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX tasks_leased_project ON tasks (project_id) WHERE status = 'leased'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProjectLimits::Table).to_owned())
            .await?;
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS tasks_leased_project")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::NodeConcurrency)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
