//! Read-only queries behind a run's wait state (`GetRunWaitState`): the run's queued tasks
//! (bounded), its tasks per node and status (one aggregate), and what holds a project's
//! running slots (one aggregate). The run row, the project limit, node states and live agents
//! come from the stores that own them. Nothing here locks or writes.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::task;
use crate::domain::task_status::TaskStatus;
use crate::error::Result;

/// The run's queued tasks, best priority first (the order claims take them), at most `limit`.
pub async fn waiting<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
    limit: u64,
) -> Result<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::RunId.eq(run_id))
        .filter(super::task_status_is(TaskStatus::Queued))
        .order_by_desc(task::Column::Priority)
        .order_by_asc(task::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Queued and leased tasks of the run per node: `node → (queued, leased)`.
pub async fn open_by_node<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
) -> Result<HashMap<String, (u32, u32)>> {
    let rows: Vec<(String, String, i64)> = task::Entity::find()
        .select_only()
        .column(task::Column::Node)
        .column(task::Column::Status)
        .column_as(task::Column::Id.count(), "n")
        .filter(task::Column::RunId.eq(run_id))
        .filter(
            task::Column::Status.is_in([TaskStatus::Queued.as_str(), TaskStatus::Leased.as_str()]),
        )
        .group_by(task::Column::Node)
        .group_by(task::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for (node, status, n) in rows {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let entry = out.entry(node).or_default();
        if status == TaskStatus::Queued.as_str() {
            entry.0 = n;
        } else {
            entry.1 = n;
        }
    }
    Ok(out)
}

/// The project's leased tasks per (run, node), largest first, at most `limit` groups; and the
/// total leased across all groups.
pub async fn project_holders<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    limit: usize,
) -> Result<(Vec<(String, String, u32)>, u32)> {
    let rows: Vec<(String, String, i64)> = task::Entity::find()
        .select_only()
        .column(task::Column::RunId)
        .column(task::Column::Node)
        .column_as(task::Column::Id.count(), "n")
        .filter(task::Column::ProjectId.eq(project_id))
        .filter(super::task_status_is(TaskStatus::Leased))
        .group_by(task::Column::RunId)
        .group_by(task::Column::Node)
        .into_tuple()
        .all(conn)
        .await?;
    let mut groups: Vec<(String, String, u32)> = rows
        .into_iter()
        .map(|(run, node, n)| (run, node, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect();
    let total = groups.iter().map(|g| g.2).fold(0u32, u32::saturating_add);
    groups.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    groups.truncate(limit);
    Ok((groups, total))
}
