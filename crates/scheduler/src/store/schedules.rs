//! Cron schedules: each fires a run of a workflow when it comes due.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::schedule;
use crate::error::{Error, Result};

pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    model: schedule::ActiveModel,
) -> Result<schedule::Model> {
    Ok(model.insert(conn).await?)
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<schedule::Model> {
    schedule::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("schedule {id} not found")))
}

pub async fn update<C: ConnectionTrait>(
    conn: &C,
    model: schedule::ActiveModel,
) -> Result<schedule::Model> {
    Ok(model.update(conn).await?)
}

pub async fn delete<C: ConnectionTrait>(conn: &C, id: &str) -> Result<()> {
    schedule::Entity::delete_by_id(id).exec(conn).await?;
    Ok(())
}

/// A project's schedules, newest first, before the cursor.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<schedule::Model>> {
    let mut query = schedule::Entity::find().filter(schedule::Column::ProjectId.eq(project_id));
    if let Some(before) = before {
        query = query.filter(schedule::Column::Id.lt(before));
    }
    Ok(query
        .order_by_desc(schedule::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Schedules due at `now`, locked; rows another replica is firing are skipped, so each fire
/// happens once across replicas.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<schedule::Model>> {
    Ok(schedule::Entity::find()
        .filter(schedule::Column::Paused.eq(false))
        .filter(schedule::Column::NextFireAt.lte(now))
        .order_by_asc(schedule::Column::NextFireAt)
        .limit(limit)
        .lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        )
        .all(conn)
        .await?)
}
