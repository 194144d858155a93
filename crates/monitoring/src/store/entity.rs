//! sea-orm entities of the monitoring schema (see the migration for indexes and why).

use switchyard_runtime::entity;

entity!(task_execution, "task_executions", {
    /// Ids of the scheduler's task, run and project: `uuid` on PostgreSQL, 16-byte blobs on
    /// SQLite (see the migration `m20261201_000002_uuid_ids`). The attempt's key, `(run_id,
    /// task_id, attempt)`, is the primary key (see `m20261202_000001_natural_history_key`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub attempt: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: Uuid,
    pub project_id: Uuid,
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
    /// When the attempt ended; one stored without (an event that lacked it) took the time the
    /// history wrote it.
    pub finished_at: DateTimeUtc,
    pub not_before: Option<DateTimeUtc>,
    pub wait_ms: Option<i64>,
    pub run_ms: Option<i64>,
    /// Orders what may overwrite the row's status (see `domain::execution`).
    pub precedence: i64,
    pub updated_at: DateTimeUtc,
    /// For a dead letter: when a replay queued its task again (see `store::replays`).
    pub replayed_at: Option<DateTimeUtc>,
});

entity!(api_check, "api_checks", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub name: String,
    /// `http` or `grpc` (see `domain::checks::Protocol`).
    pub protocol: String,
    pub target: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When the prober should probe next; claiming a check moves it one interval on.
    pub next_probe_at: DateTimeUtc,
    pub last_checked_at: Option<DateTimeUtc>,
    pub last_ok: bool,
    pub last_latency_ms: Option<i64>,
    pub last_error: String,
});

entity!(api_check_probe, "api_check_probes", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub check_id: String,
    pub probed_at: DateTimeUtc,
    pub ok: bool,
    pub latency_ms: i64,
});

entity!(api_usage, "api_usage", {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The minute the counts belong to (seconds zero).
    pub minute: DateTimeUtc,
    /// The route template (`/api/v1/runs/{run_id}`), never a raw path.
    pub route: String,
    pub method: String,
    pub requests: i64,
    pub errors: i64,
    /// Latency bucket counts, bounds in `domain::usage::BOUNDS_MS`; `b14` is the overflow.
    pub b0: i64,
    pub b1: i64,
    pub b2: i64,
    pub b3: i64,
    pub b4: i64,
    pub b5: i64,
    pub b6: i64,
    pub b7: i64,
    pub b8: i64,
    pub b9: i64,
    pub b10: i64,
    pub b11: i64,
    pub b12: i64,
    pub b13: i64,
    pub b14: i64,
});
