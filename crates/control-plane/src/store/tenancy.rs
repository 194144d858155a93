//! Organizations, projects and environments.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entity::{environment, organization, project};
use super::new_id;
use super::page::Page;
use crate::error::{Error, Result, conflict_or};

pub async fn create_org<C: ConnectionTrait>(conn: &C, name: &str) -> Result<organization::Model> {
    organization::ActiveModel {
        id: Set(new_id()),
        name: Set(name.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await
    .map_err(|e| conflict_or(e, || format!("organization `{name}` already exists")))
}

pub async fn get_org<C: ConnectionTrait>(conn: &C, id: &str) -> Result<organization::Model> {
    organization::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("organization", id))
}

/// Organizations newest first; `only` restricts to one organization (non-admin callers).
pub async fn list_orgs<C: ConnectionTrait>(
    conn: &C,
    only: Option<&str>,
    page: &Page,
) -> Result<Vec<organization::Model>> {
    let mut query = organization::Entity::find();
    if let Some(id) = only {
        query = query.filter(organization::Column::Id.eq(id));
    }
    if let Some(before) = &page.before {
        query = query.filter(organization::Column::Id.lt(before.as_str()));
    }
    Ok(query
        .order_by_desc(organization::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?)
}

pub async fn create_project<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    name: &str,
) -> Result<project::Model> {
    project::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id.to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await
    .map_err(|e| {
        conflict_or(e, || {
            format!("project `{name}` already exists in this organization")
        })
    })
}

pub async fn get_project<C: ConnectionTrait>(conn: &C, id: &str) -> Result<project::Model> {
    project::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("project", id))
}

pub async fn list_projects<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    only: Option<&str>,
    page: &Page,
) -> Result<Vec<project::Model>> {
    let mut query = project::Entity::find().filter(project::Column::OrgId.eq(org_id));
    if let Some(id) = only {
        query = query.filter(project::Column::Id.eq(id));
    }
    if let Some(before) = &page.before {
        query = query.filter(project::Column::Id.lt(before.as_str()));
    }
    Ok(query
        .order_by_desc(project::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?)
}

/// Creates or replaces the environment `name` of a project; `true` when it was created.
pub async fn put_environment<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
    variables_json: String,
    dataset_version_id: &str,
) -> Result<(environment::Model, bool)> {
    let existing = find_environment(conn, project_id, name).await?;
    let now = Utc::now();
    match existing {
        Some(model) => {
            let mut active: environment::ActiveModel = model.into();
            active.variables_json = Set(variables_json);
            active.dataset_version_id = Set(dataset_version_id.to_owned());
            active.updated_at = Set(now);
            Ok((active.update(conn).await?, false))
        }
        None => {
            let model = environment::ActiveModel {
                id: Set(new_id()),
                project_id: Set(project_id.to_owned()),
                name: Set(name.to_owned()),
                variables_json: Set(variables_json),
                dataset_version_id: Set(dataset_version_id.to_owned()),
                updated_at: Set(now),
            }
            .insert(conn)
            .await
            .map_err(|e| {
                conflict_or(e, || {
                    format!("environment `{name}` was created concurrently")
                })
            })?;
            Ok((model, true))
        }
    }
}

pub async fn find_environment<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<Option<environment::Model>> {
    Ok(environment::Entity::find()
        .filter(environment::Column::ProjectId.eq(project_id))
        .filter(environment::Column::Name.eq(name))
        .one(conn)
        .await?)
}

pub async fn list_environments<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
) -> Result<Vec<environment::Model>> {
    Ok(environment::Entity::find()
        .filter(environment::Column::ProjectId.eq(project_id))
        .order_by_asc(environment::Column::Name)
        .all(conn)
        .await?)
}
