//! The attempts leased now, read for monitoring's active-task view: one page of `tasks` rows
//! in the `leased` status, by row id (the cursor), optionally of one project. A read of the
//! durable queue only (the columns it needs, not commands or logs); the claim and heartbeat
//! paths are untouched.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::task;
use crate::domain::task_status::TaskStatus;
use crate::error::Result;

/// One leased attempt.
#[derive(Debug, Clone, FromQueryResult)]
pub struct Leased {
    pub id: i64,
    pub uuid: String,
    pub run_id: String,
    pub project_id: String,
    pub node: String,
    pub iteration: i32,
    pub shard_index: i32,
    pub shard_count: i32,
    pub attempt: i32,
    pub timeout_s: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub agent_id: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
}

/// Up to `limit` leased tasks with row ids above `after`, lowest id first.
pub async fn leased<C: ConnectionTrait>(
    conn: &C,
    project_id: Option<&str>,
    after: i64,
    limit: u64,
) -> Result<Vec<Leased>> {
    use task::Column as C;
    let mut query = task::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::Uuid,
            C::RunId,
            C::ProjectId,
            C::Node,
            C::Iteration,
            C::ShardIndex,
            C::ShardCount,
            C::Attempt,
            C::TimeoutS,
            C::LeaseExpiresAt,
            C::AgentId,
            C::QueuedAt,
            C::StartedAt,
        ])
        .filter(C::Status.eq(TaskStatus::Leased.as_str()))
        .filter(C::Id.gt(after));
    if let Some(project) = project_id {
        query = query.filter(C::ProjectId.eq(project));
    }
    Ok(query
        .order_by_asc(C::Id)
        .limit(limit)
        .into_model::<Leased>()
        .all(conn)
        .await?)
}
