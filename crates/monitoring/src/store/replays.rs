//! Dead letters superseded by a replay. The scheduler's replay queues the task again at a new
//! attempt and says so with a `QUEUED` step; the history marks the task's earlier
//! dead-lettered attempts `replayed_at`, and the dead-letter analysis and alert stop counting
//! them at once — not only once the replay's attempt has ended and reached the history.
//!
//! A replay whose dead letter has not reached the history yet (its ending still in an outbox
//! when the replay arrives) marks nothing; that dead letter stops counting when a later
//! attempt of its task is in the history, as before this column.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entity::task_execution::{Column, Entity};
use crate::domain::execution::{Requeued, Status};
use crate::error::Result;
use crate::store::history_ids;

/// Marks the dead-lettered attempts each requeue supersedes (the same task's, at earlier
/// attempts, not marked yet) as replayed at the requeue's time. One statement per requeue:
/// replays are operator actions, a handful per batch. Returns how many attempts were marked.
pub async fn mark<C: ConnectionTrait>(conn: &C, requeued: &[Requeued]) -> Result<u64> {
    let mut marked = 0;
    for requeue in requeued {
        let (Some(run_id), Some(task_id)) = (
            history_ids::stored(&requeue.run_id),
            history_ids::stored(&requeue.task_id),
        ) else {
            continue;
        };
        let done = Entity::update_many()
            .col_expr(Column::ReplayedAt, Expr::value(requeue.at))
            .filter(Column::RunId.eq(run_id))
            .filter(Column::TaskId.eq(task_id))
            .filter(Column::Attempt.lt(requeue.attempt))
            .filter(Column::Status.eq(Status::DeadLettered.as_str()))
            .filter(Column::ReplayedAt.is_null())
            .exec(conn)
            .await?;
        marked += done.rows_affected;
    }
    Ok(marked)
}
