//! One row per ended attempt of a task: who ran it, how it ended, when. The key (task,
//! attempt) makes a second ending of the same attempt impossible, and the rows are the
//! history "why did this task take three attempts" is answered from.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    big_integer, integer, integer_null, text, timestamp, timestamp_null,
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000003_task_attempts"
    }
}

#[derive(DeriveIden)]
enum TaskAttempts {
    Table,
    TaskId,
    Attempt,
    RunId,
    AgentId,
    Outcome,
    ExitCode,
    Error,
    StartedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskAttempts::Table)
                    .col(big_integer(TaskAttempts::TaskId))
                    .col(integer(TaskAttempts::Attempt))
                    .col(text(TaskAttempts::RunId))
                    .col(text(TaskAttempts::AgentId))
                    // succeeded | retrying | dead | cancelled
                    .col(text(TaskAttempts::Outcome))
                    .col(integer_null(TaskAttempts::ExitCode))
                    .col(text(TaskAttempts::Error))
                    .col(timestamp_null(TaskAttempts::StartedAt))
                    .col(timestamp(TaskAttempts::FinishedAt))
                    .primary_key(
                        Index::create()
                            .col(TaskAttempts::TaskId)
                            .col(TaskAttempts::Attempt),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("task_attempts_run")
                    .table(TaskAttempts::Table)
                    .col(TaskAttempts::RunId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskAttempts::Table).to_owned())
            .await
    }
}
