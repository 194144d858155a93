//! How long a node's attempts usually run, for stuck detection: the number of its successful
//! attempts that ended since a time, and the p95 of their run times. Portable SQL (SQLite has
//! no percentile function): a count, then the row at the 5% offset from the longest. Served
//! by the (project, finished_at) index; asked once per distinct node of the running
//! attempts, which are few.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::task_execution::{Column, Entity};
use crate::active::stuck::History;
use crate::domain::execution::Status;
use crate::error::Result;

/// The successful runs of `node` in `project` (of `workflow`, when not empty) that ended at
/// or after `since`.
pub async fn node_history<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    workflow: &str,
    node: &str,
    since: DateTime<Utc>,
) -> Result<History> {
    let Some(project_id) = super::history_ids::stored(project_id) else {
        return Ok(History::default());
    };
    let mut query = Entity::find()
        .filter(Column::ProjectId.eq(project_id))
        .filter(Column::FinishedAt.gte(since))
        .filter(Column::Node.eq(node))
        .filter(Column::Status.eq(Status::Succeeded.as_str()))
        .filter(Column::RunMs.is_not_null());
    if !workflow.is_empty() {
        query = query.filter(Column::Workflow.eq(workflow));
    }
    let samples = query.clone().count(conn).await?;
    if samples == 0 {
        return Ok(History::default());
    }
    let p95_ms: Option<Option<i64>> = query
        .select_only()
        .column(Column::RunMs)
        .order_by_desc(Column::RunMs)
        .offset(samples / 20)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(History {
        samples,
        p95_ms: p95_ms.flatten(),
    })
}
