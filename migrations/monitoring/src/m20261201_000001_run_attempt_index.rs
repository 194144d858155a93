//! One unique index on `(run_id, task_id, attempt)` in place of two: the unique
//! `(task_id, attempt)` and `(run_id, id)`. A task belongs to one run, so the three columns
//! are unique exactly when task and attempt are; the same index finds a run's attempts (the
//! history of a run sorts them by id, at most a few thousand). Every ended attempt is one
//! insert into the history, and with four indexes, index maintenance was about 73% of that
//! insert's instructions (callgrind, PostgreSQL 15); one fewer index cut the insert's
//! instructions by about a fifth.
//!
//! On a large history the new index takes a while to build, and ingestion waits for it: the
//! events wait in the scheduler's outbox meanwhile, and none is lost.

use sea_orm_migration::prelude::*;

pub struct Migration;

/// The statements in order (the same text on PostgreSQL and SQLite).
async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_run_attempt_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &[
                "CREATE UNIQUE INDEX task_executions_run_attempt \
                 ON task_executions (run_id, task_id, attempt)",
                "DROP INDEX task_executions_attempt",
                "DROP INDEX task_executions_run",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &[
                "CREATE UNIQUE INDEX task_executions_attempt ON task_executions (task_id, attempt)",
                "CREATE INDEX task_executions_run ON task_executions (run_id, id)",
                "DROP INDEX task_executions_run_attempt",
            ],
        )
        .await
    }
}
