//! Reads for operators: task pages, dead letters with their tasks, the agent list.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::{agent, dead_letter, task};
use crate::domain::task_status::TaskStatus;
use crate::error::Result;

/// A run's tasks in creation order, after the integer cursor.
pub async fn tasks_page<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<task::Model>> {
    let mut query = task::Entity::find().filter(task::Column::RunId.eq(run_id));
    if let Some(after) = after {
        query = query.filter(task::Column::Id.gt(after));
    }
    Ok(query
        .order_by_asc(task::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Which dead letters a caller may see.
pub struct Visible<'a> {
    pub org_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
}

/// Dead letters not yet replayed, newest first, each with its task.
pub async fn dead_letters<C: ConnectionTrait>(
    conn: &C,
    visible: &Visible<'_>,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<(dead_letter::Model, Option<task::Model>)>> {
    let mut query = dead_letter::Entity::find().filter(dead_letter::Column::ReplayedAt.is_null());
    if let Some(project) = visible.project_id {
        query = query.filter(dead_letter::Column::ProjectId.eq(project));
    }
    if let Some(run) = visible.run_id {
        query = query.filter(dead_letter::Column::RunId.eq(run));
    }
    if let Some(before) = before {
        query = query.filter(dead_letter::Column::Id.lt(before));
    }
    let letters = query
        .order_by_desc(dead_letter::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(letters.len());
    for letter in letters {
        let task = task::Entity::find_by_id(letter.task_id).one(conn).await?;
        if let (Some(org), Some(t)) = (visible.org_id, &task)
            && t.org_id != org
        {
            continue;
        }
        out.push((letter, task));
    }
    Ok(out)
}

/// Unreplayed dead letters by id, or all of a run's.
pub async fn letters_to_replay<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
    run_id: Option<&str>,
) -> Result<Vec<dead_letter::Model>> {
    let mut query = dead_letter::Entity::find().filter(dead_letter::Column::ReplayedAt.is_null());
    if !ids.is_empty() {
        query = query.filter(dead_letter::Column::Id.is_in(ids.iter().cloned()));
    }
    if let Some(run) = run_id {
        query = query.filter(dead_letter::Column::RunId.eq(run));
    }
    Ok(query
        .order_by_asc(dead_letter::Column::Id)
        .all(conn)
        .await?)
}

pub async fn agents<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<agent::Model>> {
    Ok(agent::Entity::find()
        .order_by_desc(agent::Column::LastHeartbeatAt)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Public ids of the tasks leased to an agent now.
pub async fn leased_to<C: ConnectionTrait>(conn: &C, agent_id: &str) -> Result<Vec<String>> {
    Ok(task::Entity::find()
        .select_only()
        .column(task::Column::Uuid)
        .filter(task::Column::AgentId.eq(agent_id))
        .filter(super::task_status_is(TaskStatus::Leased))
        .into_tuple()
        .all(conn)
        .await?)
}

/// How many of a run's tasks are in each status (one aggregate query, however many tasks).
pub async fn status_counts<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
) -> Result<std::collections::HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = task::Entity::find()
        .select_only()
        .column(task::Column::Status)
        .column_as(task::Column::Id.count(), "count")
        .filter(task::Column::RunId.eq(run_id))
        .group_by(task::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}
