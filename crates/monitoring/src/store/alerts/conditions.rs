//! The reads behind alert conditions over the execution history. Each answers for one project
//! and a window start; indexes `task_executions_project_finished` serve them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::domain::execution::Status;
use crate::error::Result;
use crate::store::entity::task_execution::{Column, Entity};
use crate::store::history_ids;

/// Statuses that count as a failed attempt: failed for good, dead-lettered, or failed with a
/// retry scheduled (`retrying` is how a failed attempt with attempts left is recorded).
pub const FAILED: [Status; 3] = [Status::Failed, Status::DeadLettered, Status::Retrying];

/// Statuses that end an attempt with a verdict. Cancelled attempts and lost leases say nothing
/// about the code and stay out of the rate.
pub const ENDED: [Status; 5] = [
    Status::Succeeded,
    Status::Failed,
    Status::DeadLettered,
    Status::Retrying,
    Status::LeaseExpired,
];

fn names(statuses: &[Status]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

/// (failed, ended) attempts of `project_id` that ended at or after `since`.
pub async fn failure_counts<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    since: DateTime<Utc>,
) -> Result<(u64, u64)> {
    let Some(project_id) = history_ids::stored(project_id) else {
        return Ok((0, 0));
    };
    let base = || {
        Entity::find()
            .filter(Column::ProjectId.eq(project_id))
            .filter(Column::FinishedAt.gte(since))
    };
    let ended = base()
        .filter(Column::Status.is_in(names(&ENDED)))
        .count(conn)
        .await?;
    let failed = base()
        .filter(Column::Status.is_in(names(&FAILED)))
        .count(conn)
        .await?;
    Ok((failed, ended))
}

/// Attempts of `project_id` dead-lettered at or after `since`, not replayed: neither marked
/// by a replay (`store::replays`) nor followed by a later attempt of their task.
pub async fn unreplayed_dead_letters<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    since: DateTime<Utc>,
) -> Result<u64> {
    let Some(project_id) = history_ids::stored(project_id) else {
        return Ok(0);
    };
    let later = Alias::new("later");
    let mut replayed = Query::select();
    replayed
        .expr(Expr::val(1))
        .from_as(Entity, later.clone())
        // The run too, so the probe uses the index on (run_id, task_id, attempt).
        .and_where(Expr::col((later.clone(), Column::RunId)).equals((Entity, Column::RunId)))
        .and_where(Expr::col((later.clone(), Column::TaskId)).equals((Entity, Column::TaskId)))
        .and_where(Expr::col((later, Column::Attempt)).gt(Expr::col((Entity, Column::Attempt))));
    Ok(Entity::find()
        .filter(Column::ProjectId.eq(project_id))
        .filter(Column::Status.eq(Status::DeadLettered.as_str()))
        .filter(Column::FinishedAt.gte(since))
        .filter(Column::ReplayedAt.is_null())
        .filter(Expr::exists(replayed).not())
        .count(conn)
        .await?)
}
