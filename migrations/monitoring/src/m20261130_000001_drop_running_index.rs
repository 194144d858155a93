//! Drops `task_executions_running`. Running attempts never reach the history (they live in
//! the active-task view; an attempt's row is written once, when it ends), so the partial index
//! on `status = 'running'` never held a row, and every insert still evaluated its predicate.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_drop_running_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS task_executions_running")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(super::m20261128_000001_task_executions::RUNNING_INDEX)
            .await?;
        Ok(())
    }
}
