//! Datasets, their immutable versions (where the data lives and in which format) and the
//! expectations a version's data must meet.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entity::{dataset, dataset_version};
use super::new_id;
use crate::domain::expectations::{DataFormat, Expectation};
use crate::error::{Error, Result, conflict_or};

pub async fn create<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<dataset::Model> {
    let now = Utc::now();
    dataset::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id.to_owned()),
        name: Set(name.to_owned()),
        expectations_json: Set("[]".into()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await
    .map_err(|e| conflict_or(e, || format!("dataset `{name}` already exists")))
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<dataset::Model> {
    dataset::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("dataset", id))
}

pub async fn create_version<C: ConnectionTrait>(
    conn: &C,
    dataset_id: &str,
    version: &str,
    location: &str,
    format: DataFormat,
) -> Result<dataset_version::Model> {
    dataset_version::ActiveModel {
        id: Set(new_id()),
        dataset_id: Set(dataset_id.to_owned()),
        version: Set(version.to_owned()),
        location: Set(location.to_owned()),
        format: Set(format.as_str().to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await
    .map_err(|e| conflict_or(e, || format!("version `{version}` already exists")))
}

pub async fn get_version<C: ConnectionTrait>(conn: &C, id: &str) -> Result<dataset_version::Model> {
    dataset_version::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("dataset version", id))
}

/// The version and the dataset it belongs to, when the dataset is in `project_id`: a version
/// of another project's dataset is reported as missing.
pub async fn find_version_in_project<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    version_id: &str,
) -> Result<Option<(dataset::Model, dataset_version::Model)>> {
    let Some(version) = dataset_version::Entity::find_by_id(version_id)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let dataset = dataset::Entity::find_by_id(&version.dataset_id)
        .filter(dataset::Column::ProjectId.eq(project_id))
        .one(conn)
        .await?;
    Ok(dataset.map(|d| (d, version)))
}

/// Replaces the dataset's expectations.
pub async fn put_expectations<C: ConnectionTrait>(
    conn: &C,
    dataset: dataset::Model,
    expectations: &[Expectation],
) -> Result<dataset::Model> {
    let json = serde_json::to_string(expectations)
        .map_err(|e| Error::Internal(format!("expectations do not serialize: {e}")))?;
    let mut active: dataset::ActiveModel = dataset.into();
    active.expectations_json = Set(json);
    active.updated_at = Set(Utc::now());
    Ok(active.update(conn).await?)
}

/// The stored expectations; a row that no longer parses is a server fault, not the caller's.
pub fn expectations(dataset: &dataset::Model) -> Result<Vec<Expectation>> {
    serde_json::from_str(&dataset.expectations_json).map_err(|e| {
        Error::Internal(format!(
            "dataset {} has unreadable expectations: {e}",
            dataset.id
        ))
    })
}

/// A project's datasets by name (a project has few; no paging).
pub async fn list<C: ConnectionTrait>(conn: &C, project_id: &str) -> Result<Vec<dataset::Model>> {
    Ok(dataset::Entity::find()
        .filter(dataset::Column::ProjectId.eq(project_id))
        .order_by_asc(dataset::Column::Name)
        .all(conn)
        .await?)
}

/// A dataset's versions, newest first.
pub async fn list_versions<C: ConnectionTrait>(
    conn: &C,
    dataset_id: &str,
) -> Result<Vec<dataset_version::Model>> {
    Ok(dataset_version::Entity::find()
        .filter(dataset_version::Column::DatasetId.eq(dataset_id))
        .order_by_desc(dataset_version::Column::Id)
        .all(conn)
        .await?)
}
