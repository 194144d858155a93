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

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_run_attempt_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX task_executions_run_attempt \
             ON task_executions (run_id, task_id, attempt)",
        )
        .await?;
        conn.execute_unprepared("DROP INDEX task_executions_attempt")
            .await?;
        conn.execute_unprepared("DROP INDEX task_executions_run")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX task_executions_attempt ON task_executions (task_id, attempt)",
        )
        .await?;
        conn.execute_unprepared("CREATE INDEX task_executions_run ON task_executions (run_id, id)")
            .await?;
        conn.execute_unprepared("DROP INDEX task_executions_run_attempt")
            .await?;
        Ok(())
    }
}
