//! `replayed_at` on the history: when a dead-lettered attempt's task was queued again by a
//! replay (the scheduler's `QUEUED` step). The dead-letter analysis and the dead-letter alert
//! count a dead letter until it is replayed; without this column they could only see a replay
//! once its attempt had ended (running attempts never reach the history), so a replay that
//! waited for an agent, or ran for an hour, kept its dead letter counting all that while.
//!
//! A nullable column without a default: PostgreSQL adds it without rewriting the table, and
//! the history's inserts (which name their columns) are unchanged.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::timestamp_null;

pub struct Migration;

#[derive(DeriveIden)]
enum TaskExecutions {
    Table,
    ReplayedAt,
}

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000001_dead_letter_replays"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TaskExecutions::Table)
                    .add_column(timestamp_null(TaskExecutions::ReplayedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TaskExecutions::Table)
                    .drop_column(TaskExecutions::ReplayedAt)
                    .to_owned(),
            )
            .await
    }
}
