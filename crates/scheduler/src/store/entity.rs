//! sea-orm entities of the scheduler schema (see the migration for indexes and why).

use switchyard_runtime::entity;

entity!(run, "runs", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub workflow: String,
    pub version: i32,
    pub definition_json: String,
    /// The run's current state: params merged with node outputs.
    pub state_json: String,
    pub env_json: String,
    pub status: String,
    pub priority: i32,
    pub reason: String,
    pub cancel_requested: bool,
    pub stop_status: String,
    pub deadline_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
});

entity!(node_run, "node_runs", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub node: String,
    pub iteration: i32,
    pub status: String,
    pub shards: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub updated_at: DateTimeUtc,
});

entity!(task, "tasks", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub uuid: String,
    pub run_id: String,
    pub org_id: String,
    pub project_id: String,
    pub node: String,
    pub iteration: i32,
    pub shard_index: i32,
    pub shard_count: i32,
    pub attempt: i32,
    pub attempt_base: i32,
    pub infra_losses: i32,
    pub status: String,
    pub priority: i32,
    pub command: String,
    pub env_json: String,
    pub labels_json: String,
    pub timeout_s: i64,
    pub not_before: DateTimeUtc,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub agent_id: Option<String>,
    pub queued_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub exit_code: Option<i32>,
    pub error: String,
    pub outputs_json: String,
    pub result_json: String,
    pub log_tail: String,
    /// Most leased tasks of this task's (run, node) at once; `None` for no limit.
    pub node_concurrency: Option<i32>,
});

entity!(dead_letter, "dead_letters", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub task_id: i64,
    pub run_id: String,
    pub project_id: String,
    pub node: String,
    pub last_error: String,
    pub log_tail: String,
    pub dead_at: DateTimeUtc,
    pub replayed_at: Option<DateTimeUtc>,
});

entity!(agent, "agents", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub labels_json: String,
    pub capacity: i32,
    pub version: String,
    pub token_id: String,
    pub registered_at: DateTimeUtc,
    pub last_heartbeat_at: DateTimeUtc,
});

entity!(schedule, "schedules", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub workflow: String,
    pub cron: String,
    pub params_json: String,
    pub paused: bool,
    pub next_fire_at: DateTimeUtc,
    pub last_fired_at: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
});

entity!(project_limit, "project_limits", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: String,
    /// Most leased tasks of the project at once, across its runs.
    pub max_running_tasks: i32,
    pub updated_by: String,
    pub updated_at: DateTimeUtc,
});

entity!(artifact, "artifacts", {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The integer key of the task row that reported it.
    pub task_id: i64,
    pub run_id: String,
    pub project_id: String,
    pub name: String,
    /// The object's URL (`file:///...` or `s3://bucket/key`).
    pub location: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: DateTimeUtc,
    /// When the object was deleted from its store; the row goes with its run.
    pub deleted_at: Option<DateTimeUtc>,
});

entity!(task_attempt, "task_attempts", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub attempt: i32,
    pub run_id: String,
    pub agent_id: String,
    /// `succeeded`, `retrying`, `dead` or `cancelled`.
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub error: String,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: DateTimeUtc,
});
