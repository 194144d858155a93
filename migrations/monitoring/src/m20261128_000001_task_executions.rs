//! Task execution history: one row per attempt of a task, built from the scheduler's
//! `TaskLifecycle` events. Events arrive at least once and possibly out of order, so rows are
//! written by upsert on (task_id, attempt) and `precedence` orders what may overwrite what:
//! 0 while the attempt runs, its finish time in microseconds once it ended. An event takes the
//! row's status only when its precedence is higher, so a late LEASED never reopens a finished
//! attempt.
//!
//! Indexes serve the reads: a run's history and a project's recent history by finish time.
//! (The partial index on running rows made here was dropped later: running attempts never
//! reach the history. The unique index and the run's index were later merged into one on
//! `(run_id, task_id, attempt)`.)

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    big_integer, id_ref, integer, integer_null, serial, text, timestamp, timestamp_null,
};

pub struct Migration;

/// The running set's partial index, made here and dropped by a later migration (its `down`
/// makes it again).
pub(crate) const RUNNING_INDEX: &str = "CREATE INDEX task_executions_running ON task_executions (project_id, id) \
     WHERE status = 'running'";

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000001_task_executions"
    }
}

#[derive(DeriveIden)]
enum TaskExecutions {
    Table,
    Id,
    TaskId,
    Attempt,
    RunId,
    ProjectId,
    Workflow,
    Node,
    ShardIndex,
    ShardCount,
    Iteration,
    Status,
    AgentId,
    ExitCode,
    Error,
    RetryReason,
    QueuedAt,
    StartedAt,
    FinishedAt,
    NotBefore,
    WaitMs,
    RunMs,
    Precedence,
    UpdatedAt,
}

fn big_integer_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use TaskExecutions as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(serial(T::Id))
                    .col(id_ref(T::TaskId))
                    .col(integer(T::Attempt))
                    .col(id_ref(T::RunId))
                    .col(id_ref(T::ProjectId))
                    .col(text(T::Workflow))
                    .col(text(T::Node))
                    .col(integer(T::ShardIndex))
                    .col(integer(T::ShardCount))
                    .col(integer(T::Iteration))
                    // running | succeeded | retrying | lease_expired | dead_lettered |
                    // cancelled | failed
                    .col(text(T::Status))
                    .col(text(T::AgentId))
                    .col(integer_null(T::ExitCode))
                    .col(text(T::Error))
                    .col(text(T::RetryReason))
                    .col(timestamp_null(T::QueuedAt))
                    .col(timestamp_null(T::StartedAt))
                    .col(timestamp_null(T::FinishedAt))
                    // When the next attempt becomes eligible (retries).
                    .col(timestamp_null(T::NotBefore))
                    .col(big_integer_null(T::WaitMs))
                    .col(big_integer_null(T::RunMs))
                    .col(big_integer(T::Precedence))
                    .col(timestamp(T::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("task_executions_attempt")
                .table(T::Table)
                .col(T::TaskId)
                .col(T::Attempt)
                .unique()
                .to_owned(),
            Index::create()
                .name("task_executions_run")
                .table(T::Table)
                .col(T::RunId)
                .col(T::Id)
                .to_owned(),
            Index::create()
                .name("task_executions_project_finished")
                .table(T::Table)
                .col(T::ProjectId)
                .col(T::FinishedAt)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        manager
            .get_connection()
            .execute_unprepared(RUNNING_INDEX)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskExecutions::Table).to_owned())
            .await
    }
}
