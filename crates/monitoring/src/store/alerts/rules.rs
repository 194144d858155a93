//! Alert rules: a project's conditions with thresholds, windows and webhooks.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::domain::alert::RuleSpec;
use crate::error::Result;
use crate::store::alert_entity::alert_rule::{ActiveModel, Column, Entity, Model};

/// The webhook URLs of a stored rule.
pub fn webhooks(rule: &Model) -> Vec<String> {
    serde_json::from_str(&rule.webhooks).unwrap_or_default()
}

fn window_ms(spec: &RuleSpec) -> i64 {
    i64::try_from(spec.window.as_millis()).unwrap_or(i64::MAX)
}

/// Stores a new rule.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    spec: &RuleSpec,
    org_id: &str,
    now: DateTime<Utc>,
) -> Result<Model> {
    Ok(ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        org_id: Set(org_id.to_owned()),
        project_id: Set(spec.project_id.clone()),
        name: Set(spec.name.clone()),
        kind: Set(spec.kind.as_str().to_owned()),
        threshold: Set(spec.threshold),
        window_ms: Set(window_ms(spec)),
        webhooks: Set(serde_json::to_string(&spec.webhooks).unwrap_or_else(|_| "[]".into())),
        enabled: Set(spec.enabled),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?)
}

/// Replaces what a rule says (its id, project and creation stay).
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    row: Model,
    spec: &RuleSpec,
    now: DateTime<Utc>,
) -> Result<Model> {
    let mut active: ActiveModel = row.into();
    active.name = Set(spec.name.clone());
    active.kind = Set(spec.kind.as_str().to_owned());
    active.threshold = Set(spec.threshold);
    active.window_ms = Set(window_ms(spec));
    active.webhooks = Set(serde_json::to_string(&spec.webhooks).unwrap_or_else(|_| "[]".into()));
    active.enabled = Set(spec.enabled);
    active.updated_at = Set(now);
    Ok(active.update(conn).await?)
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<Model>> {
    Ok(Entity::find_by_id(id).one(conn).await?)
}

/// A project's rules by name.
pub async fn list<C: ConnectionTrait>(conn: &C, project_id: &str) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::ProjectId.eq(project_id))
        .order_by_asc(Column::Name)
        .all(conn)
        .await?)
}

/// Every enabled rule, the evaluator's work list.
pub async fn enabled<C: ConnectionTrait>(conn: &C) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::Enabled.eq(true))
        .order_by_asc(Column::Id)
        .all(conn)
        .await?)
}

pub async fn delete<C: ConnectionTrait>(conn: &C, id: &str) -> Result<u64> {
    Ok(Entity::delete_by_id(id).exec(conn).await?.rows_affected)
}
