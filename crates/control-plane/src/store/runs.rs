//! Runs.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::run;
use super::page::Page;
use crate::domain::run_status::RunStatus;
use crate::error::{Error, Result};

pub async fn insert<C: ConnectionTrait>(conn: &C, model: run::ActiveModel) -> Result<run::Model> {
    Ok(model.insert(conn).await?)
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<run::Model> {
    run::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("run", id))
}

pub async fn find_by_idempotency_key<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    key: &str,
) -> Result<Option<run::Model>> {
    Ok(run::Entity::find()
        .filter(run::Column::ProjectId.eq(project_id))
        .filter(run::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?)
}

pub struct Filter<'a> {
    pub project_id: &'a str,
    pub status: Option<RunStatus>,
    pub workflow: Option<&'a str>,
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &Filter<'_>,
    page: &Page,
) -> Result<Vec<run::Model>> {
    let mut query = run::Entity::find().filter(run::Column::ProjectId.eq(filter.project_id));
    if let Some(status) = filter.status {
        query = query.filter(run::Column::Status.eq(status.as_str()));
    }
    if let Some(workflow) = filter.workflow {
        query = query.filter(run::Column::Workflow.eq(workflow));
    }
    if let Some(before) = &page.before {
        query = query.filter(run::Column::Id.lt(before.as_str()));
    }
    Ok(query
        .order_by_desc(run::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?)
}

pub async fn update<C: ConnectionTrait>(conn: &C, model: run::ActiveModel) -> Result<run::Model> {
    Ok(model.update(conn).await?)
}

/// The run, locked for the rest of the transaction; `None` when there is none.
pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<run::Model>> {
    Ok(run::Entity::find_by_id(id)
        .lock_exclusive()
        .one(conn)
        .await?)
}
