//! Project concurrency limits: read, replace, remove; and how many of a project's tasks run.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use super::entity::{project_limit, task};
use crate::domain::task_status::TaskStatus;
use crate::error::Result;

pub async fn get<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
) -> Result<Option<project_limit::Model>> {
    Ok(project_limit::Entity::find_by_id(project_id.to_owned())
        .one(conn)
        .await?)
}

/// Sets the project's limit (`0` removes it). Returns the row, `None` once removed.
pub async fn set<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    max_running_tasks: u32,
    updated_by: &str,
    now: DateTime<Utc>,
) -> Result<Option<project_limit::Model>> {
    if max_running_tasks == 0 {
        project_limit::Entity::delete_by_id(project_id.to_owned())
            .exec(conn)
            .await?;
        return Ok(None);
    }
    let row = project_limit::ActiveModel {
        project_id: Set(project_id.to_owned()),
        max_running_tasks: Set(i32::try_from(max_running_tasks).unwrap_or(i32::MAX)),
        updated_by: Set(updated_by.to_owned()),
        updated_at: Set(now),
    };
    // An upsert, so two concurrent changes cannot collide on the key.
    project_limit::Entity::insert(row)
        .on_conflict(
            OnConflict::column(project_limit::Column::ProjectId)
                .update_columns([
                    project_limit::Column::MaxRunningTasks,
                    project_limit::Column::UpdatedBy,
                    project_limit::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(conn)
        .await?;
    get(conn, project_id).await
}

/// Tasks of the project leased now.
pub async fn running<C: ConnectionTrait>(conn: &C, project_id: &str) -> Result<u64> {
    Ok(task::Entity::find()
        .filter(task::Column::ProjectId.eq(project_id))
        .filter(super::task_status_is(TaskStatus::Leased))
        .count(conn)
        .await?)
}
