//! sea-orm entities of the monitoring schema (see the migration for indexes and why).

use switchyard_runtime::entity;

entity!(task_execution, "task_executions", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: String,
    pub attempt: i32,
    pub run_id: String,
    pub project_id: String,
    pub workflow: String,
    pub node: String,
    pub shard_index: i32,
    pub shard_count: i32,
    pub iteration: i32,
    pub status: String,
    pub agent_id: String,
    pub exit_code: Option<i32>,
    pub error: String,
    pub retry_reason: String,
    pub queued_at: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub not_before: Option<DateTimeUtc>,
    pub wait_ms: Option<i64>,
    pub run_ms: Option<i64>,
    /// Orders what may overwrite the row's status (see `domain::execution`).
    pub precedence: i64,
    pub updated_at: DateTimeUtc,
});
