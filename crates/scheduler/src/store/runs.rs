//! Runs as the scheduler sees them, and their nodes' progress.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};

use super::entity::{node_run, run};
use crate::domain::graph::NodeStatus;
use crate::error::{Error, Result};

/// The run row, locked for the rest of the transaction: every change to one run's progress
/// goes through this lock, so two completions of the same run apply one after the other.
pub async fn lock<C: ConnectionTrait>(conn: &C, run_id: &str) -> Result<run::Model> {
    run::Entity::find_by_id(run_id)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))
}

pub async fn find<C: ConnectionTrait>(conn: &C, run_id: &str) -> Result<Option<run::Model>> {
    Ok(run::Entity::find_by_id(run_id).one(conn).await?)
}

pub async fn insert<C: ConnectionTrait>(conn: &C, model: run::ActiveModel) -> Result<run::Model> {
    Ok(model.insert(conn).await?)
}

pub async fn update<C: ConnectionTrait>(conn: &C, model: run::ActiveModel) -> Result<run::Model> {
    Ok(model.update(conn).await?)
}

/// Every node of the run with its progress, keyed by node id.
pub async fn nodes<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
) -> Result<HashMap<String, node_run::Model>> {
    Ok(node_run::Entity::find()
        .filter(node_run::Column::RunId.eq(run_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|n| (n.node.clone(), n))
        .collect())
}

pub fn statuses(nodes: &HashMap<String, node_run::Model>) -> HashMap<String, NodeStatus> {
    nodes
        .iter()
        .map(|(id, n)| {
            (
                id.clone(),
                NodeStatus::parse(&n.status).unwrap_or(NodeStatus::Pending),
            )
        })
        .collect()
}

pub async fn insert_nodes<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
    nodes: impl Iterator<Item = (&str, u32)>,
    now: DateTime<Utc>,
) -> Result<()> {
    let rows: Vec<node_run::ActiveModel> = nodes
        .map(|(node, shards)| node_run::ActiveModel {
            run_id: Set(run_id.to_owned()),
            node: Set(node.to_owned()),
            iteration: Set(0),
            status: Set(NodeStatus::Pending.as_str().to_owned()),
            shards: Set(i32::try_from(shards).unwrap_or(i32::MAX)),
            succeeded: Set(0),
            failed: Set(0),
            updated_at: Set(now),
        })
        .collect();
    if !rows.is_empty() {
        node_run::Entity::insert_many(rows).exec(conn).await?;
    }
    Ok(())
}

pub async fn save_node<C: ConnectionTrait>(
    conn: &C,
    node: node_run::Model,
    change: impl FnOnce(&mut node_run::ActiveModel),
) -> Result<node_run::Model> {
    let mut active: node_run::ActiveModel = node.into();
    change(&mut active);
    active.updated_at = Set(Utc::now());
    Ok(active.update(conn).await?)
}

/// Marks the runs among `ids` that are still `provisioning` as `running` (their first task was
/// just leased) and returns them.
pub async fn start<C: ConnectionTrait>(
    conn: &C,
    ids: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<run::Model>> {
    Ok(run::Entity::update_many()
        .col_expr(run::Column::Status, "running".into())
        .col_expr(run::Column::StartedAt, Some(now).into())
        .col_expr(run::Column::UpdatedAt, now.into())
        .filter(run::Column::Id.is_in(ids.iter().copied()))
        .filter(run::Column::Status.eq("provisioning"))
        .exec_with_returning(conn)
        .await?)
}

/// Unfinished runs past their deadline that are not already stopping.
pub async fn overdue<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<run::Model>> {
    Ok(run::Entity::find()
        .filter(run::Column::DeadlineAt.lt(now))
        .filter(run::Column::FinishedAt.is_null())
        .filter(run::Column::CancelRequested.eq(false))
        .limit(limit)
        .all(conn)
        .await?)
}
