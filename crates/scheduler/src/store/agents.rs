//! The agent registry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::entity::agent;
use super::new_id;
use crate::error::{Error, Result};

pub async fn register<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    labels: &BTreeMap<String, String>,
    capacity: u32,
    version: &str,
    token_id: &str,
) -> Result<agent::Model> {
    let now = Utc::now();
    Ok(agent::ActiveModel {
        id: Set(new_id()),
        name: Set(name.to_owned()),
        labels_json: Set(serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())),
        capacity: Set(i32::try_from(capacity).unwrap_or(i32::MAX)),
        version: Set(version.to_owned()),
        token_id: Set(token_id.to_owned()),
        registered_at: Set(now),
        last_heartbeat_at: Set(now),
    }
    .insert(conn)
    .await?)
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<agent::Model> {
    agent::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("agent {id} is not registered")))
}

pub async fn touch<C: ConnectionTrait>(conn: &C, agent: agent::Model) -> Result<()> {
    let mut active: agent::ActiveModel = agent.into();
    active.last_heartbeat_at = Set(Utc::now());
    active.update(conn).await?;
    Ok(())
}

pub fn labels(agent: &agent::Model) -> BTreeMap<String, String> {
    serde_json::from_str(&agent.labels_json).unwrap_or_default()
}

/// Agents that heartbeated (or registered) since `since`.
pub async fn alive_since<C: ConnectionTrait>(
    conn: &C,
    since: DateTime<Utc>,
) -> Result<Vec<agent::Model>> {
    Ok(agent::Entity::find()
        .filter(agent::Column::LastHeartbeatAt.gt(since))
        .all(conn)
        .await?)
}
