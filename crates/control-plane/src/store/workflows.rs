//! Workflows and their immutable versions.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entity::{workflow, workflow_version};
use super::new_id;
use super::page::Page;
use crate::error::{Error, Result};

/// A workflow and one of its versions.
pub struct Versioned {
    pub workflow: workflow::Model,
    pub version: workflow_version::Model,
}

/// Stores `definition_json` as the next version unless it equals the latest one. Returns the
/// version now current and whether this call created it. A soft-deleted workflow is revived.
pub async fn put<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
    definition_json: &str,
    digest: &str,
) -> Result<(Versioned, bool)> {
    let now = Utc::now();
    let existing = workflow::Entity::find()
        .filter(workflow::Column::ProjectId.eq(project_id))
        .filter(workflow::Column::Name.eq(name))
        .one(conn)
        .await?;
    let workflow = match existing {
        Some(workflow) => {
            let latest = version(conn, &workflow.id, workflow.latest_version).await?;
            if workflow.deleted_at.is_none() && latest.digest == digest {
                return Ok((
                    Versioned {
                        workflow,
                        version: latest,
                    },
                    false,
                ));
            }
            workflow
        }
        None => {
            workflow::ActiveModel {
                id: Set(new_id()),
                project_id: Set(project_id.to_owned()),
                name: Set(name.to_owned()),
                latest_version: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
                deleted_at: Set(None),
            }
            .insert(conn)
            .await?
        }
    };
    let next = workflow.latest_version + 1;
    let version = workflow_version::ActiveModel {
        workflow_id: Set(workflow.id.clone()),
        version: Set(next),
        definition_json: Set(definition_json.to_owned()),
        digest: Set(digest.to_owned()),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    let mut active: workflow::ActiveModel = workflow.into();
    active.latest_version = Set(next);
    active.updated_at = Set(now);
    active.deleted_at = Set(None);
    let workflow = active.update(conn).await?;
    Ok((Versioned { workflow, version }, true))
}

async fn version<C: ConnectionTrait>(
    conn: &C,
    workflow_id: &str,
    version: i32,
) -> Result<workflow_version::Model> {
    workflow_version::Entity::find_by_id((workflow_id.to_owned(), version))
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("workflow version {version} not found")))
}

/// The live (not deleted) workflow `name`, at `version` or the latest.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
    wanted: Option<i32>,
) -> Result<Versioned> {
    let workflow = workflow::Entity::find()
        .filter(workflow::Column::ProjectId.eq(project_id))
        .filter(workflow::Column::Name.eq(name))
        .filter(workflow::Column::DeletedAt.is_null())
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("workflow", name))?;
    let number = wanted.unwrap_or(workflow.latest_version);
    let version = version(conn, &workflow.id, number)
        .await
        .map_err(|_| Error::NotFound(format!("workflow `{name}` has no version {number}")))?;
    Ok(Versioned { workflow, version })
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    page: &Page,
) -> Result<Vec<Versioned>> {
    let mut query = workflow::Entity::find()
        .filter(workflow::Column::ProjectId.eq(project_id))
        .filter(workflow::Column::DeletedAt.is_null());
    if let Some(before) = &page.before {
        query = query.filter(workflow::Column::Id.lt(before.as_str()));
    }
    let workflows = query
        .order_by_desc(workflow::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(workflows.len());
    for workflow in workflows {
        let version = version(conn, &workflow.id, workflow.latest_version).await?;
        out.push(Versioned { workflow, version });
    }
    Ok(out)
}

/// Soft delete; `NotFound` when there is no live workflow of that name.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<workflow::Model> {
    let existing = workflow::Entity::find()
        .filter(workflow::Column::ProjectId.eq(project_id))
        .filter(workflow::Column::Name.eq(name))
        .filter(workflow::Column::DeletedAt.is_null())
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("workflow", name))?;
    let mut active: workflow::ActiveModel = existing.into();
    active.deleted_at = Set(Some(Utc::now()));
    Ok(active.update(conn).await?)
}
