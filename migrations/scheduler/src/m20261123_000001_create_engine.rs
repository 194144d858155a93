//! The run engine: the scheduler's view of each run, its nodes' progress, the task queue,
//! dead letters, agents and cron schedules.
//!
//! `tasks` is the hot table: an integer key, a partial index over ready rows only (claims
//! read nothing else), and one over leased rows for the lease sweeper. Finished rows stay
//! out of both indexes, so the queue's working set is what is waiting or running.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    big_integer, boolean, id, id_ref, integer, integer_null, serial, text, text_null, timestamp,
    timestamp_null,
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_create_engine"
    }
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    OrgId,
    ProjectId,
    Workflow,
    Version,
    DefinitionJson,
    StateJson,
    EnvJson,
    Status,
    Priority,
    Reason,
    CancelRequested,
    StopStatus,
    DeadlineAt,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum NodeRuns {
    Table,
    RunId,
    Node,
    Iteration,
    Status,
    Shards,
    Succeeded,
    Failed,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Uuid,
    RunId,
    OrgId,
    ProjectId,
    Node,
    Iteration,
    ShardIndex,
    ShardCount,
    Attempt,
    AttemptBase,
    InfraLosses,
    Status,
    Priority,
    Command,
    EnvJson,
    LabelsJson,
    TimeoutS,
    NotBefore,
    LeaseExpiresAt,
    AgentId,
    QueuedAt,
    StartedAt,
    FinishedAt,
    ExitCode,
    Error,
    OutputsJson,
    ResultJson,
    LogTail,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    TaskId,
    RunId,
    ProjectId,
    Node,
    LastError,
    LogTail,
    DeadAt,
    ReplayedAt,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    Name,
    LabelsJson,
    Capacity,
    Version,
    TokenId,
    RegisteredAt,
    LastHeartbeatAt,
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    ProjectId,
    Workflow,
    Cron,
    ParamsJson,
    Paused,
    NextFireAt,
    LastFiredAt,
    CreatedBy,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(id(Runs::Id))
                    .col(text(Runs::OrgId))
                    .col(id_ref(Runs::ProjectId))
                    .col(text(Runs::Workflow))
                    .col(integer(Runs::Version))
                    .col(text(Runs::DefinitionJson))
                    .col(text(Runs::StateJson))
                    .col(text(Runs::EnvJson))
                    .col(text(Runs::Status))
                    .col(integer(Runs::Priority))
                    .col(text(Runs::Reason))
                    .col(boolean(Runs::CancelRequested))
                    // The final status once a requested stop completes: `cancelled` or
                    // `timed_out` (run deadline).
                    .col(text(Runs::StopStatus))
                    .col(timestamp_null(Runs::DeadlineAt))
                    .col(timestamp(Runs::CreatedAt))
                    .col(timestamp(Runs::UpdatedAt))
                    .col(timestamp_null(Runs::StartedAt))
                    .col(timestamp_null(Runs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NodeRuns::Table)
                    .col(id_ref(NodeRuns::RunId))
                    .col(text(NodeRuns::Node))
                    .col(integer(NodeRuns::Iteration))
                    .col(text(NodeRuns::Status))
                    .col(integer(NodeRuns::Shards))
                    .col(integer(NodeRuns::Succeeded))
                    .col(integer(NodeRuns::Failed))
                    .col(timestamp(NodeRuns::UpdatedAt))
                    .primary_key(Index::create().col(NodeRuns::RunId).col(NodeRuns::Node))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(serial(Tasks::Id))
                    .col(id_ref(Tasks::Uuid).unique_key())
                    .col(id_ref(Tasks::RunId))
                    // Tenancy of the task: an agent takes only what its token may see.
                    .col(text(Tasks::OrgId))
                    .col(id_ref(Tasks::ProjectId))
                    .col(text(Tasks::Node))
                    .col(integer(Tasks::Iteration))
                    .col(integer(Tasks::ShardIndex))
                    .col(integer(Tasks::ShardCount))
                    // Also the lease's fencing token.
                    .col(integer(Tasks::Attempt))
                    // Attempts before the last dead-letter replay: a replay gives a fresh budget.
                    .col(integer(Tasks::AttemptBase))
                    .col(integer(Tasks::InfraLosses))
                    .col(text(Tasks::Status))
                    .col(integer(Tasks::Priority))
                    .col(text(Tasks::Command))
                    .col(text(Tasks::EnvJson))
                    .col(text(Tasks::LabelsJson))
                    .col(big_integer(Tasks::TimeoutS))
                    .col(timestamp(Tasks::NotBefore))
                    .col(timestamp_null(Tasks::LeaseExpiresAt))
                    .col(text_null(Tasks::AgentId))
                    .col(timestamp(Tasks::QueuedAt))
                    .col(timestamp_null(Tasks::StartedAt))
                    .col(timestamp_null(Tasks::FinishedAt))
                    .col(integer_null(Tasks::ExitCode))
                    .col(text(Tasks::Error))
                    .col(text(Tasks::OutputsJson))
                    // Test counts, coverage and artifacts reported with the completion.
                    .col(text(Tasks::ResultJson))
                    .col(text(Tasks::LogTail))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in [
            // Claims read only ready rows, best priority first, oldest first.
            "CREATE INDEX tasks_ready ON tasks (priority DESC, id) WHERE status = 'queued'",
            // The lease sweeper reads only leased rows, by expiry.
            "CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE status = 'leased'",
            "CREATE INDEX tasks_run ON tasks (run_id, node, iteration, shard_index)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(id(DeadLetters::Id))
                    .col(big_integer(DeadLetters::TaskId))
                    .col(id_ref(DeadLetters::RunId))
                    .col(id_ref(DeadLetters::ProjectId))
                    .col(text(DeadLetters::Node))
                    .col(text(DeadLetters::LastError))
                    .col(text(DeadLetters::LogTail))
                    .col(timestamp(DeadLetters::DeadAt))
                    .col(timestamp_null(DeadLetters::ReplayedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dead_letters_project")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::ProjectId)
                    .col(DeadLetters::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .col(id(Agents::Id))
                    .col(text(Agents::Name))
                    .col(text(Agents::LabelsJson))
                    .col(integer(Agents::Capacity))
                    .col(text(Agents::Version))
                    .col(text(Agents::TokenId))
                    .col(timestamp(Agents::RegisteredAt))
                    .col(timestamp(Agents::LastHeartbeatAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(id(Schedules::Id))
                    .col(id_ref(Schedules::ProjectId))
                    .col(text(Schedules::Workflow))
                    .col(text(Schedules::Cron))
                    .col(text(Schedules::ParamsJson))
                    .col(boolean(Schedules::Paused))
                    .col(timestamp(Schedules::NextFireAt))
                    .col(timestamp_null(Schedules::LastFiredAt))
                    .col(text(Schedules::CreatedBy))
                    .col(timestamp(Schedules::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("schedules_due")
                    .table(Schedules::Table)
                    .col(Schedules::Paused)
                    .col(Schedules::NextFireAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Schedules::Table.into_iden(),
            Agents::Table.into_iden(),
            DeadLetters::Table.into_iden(),
            Tasks::Table.into_iden(),
            NodeRuns::Table.into_iden(),
            Runs::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
