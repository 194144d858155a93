//! Alerts: raising one per condition (the partial unique index on `dedupe_key` refuses a
//! second open alert, so a raise that loses a race inserts nothing), acknowledging and
//! resolving by conditional updates (a state already left is reported, not overwritten),
//! listings and the retention of resolved alerts.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};

use crate::domain::alert::State;
use crate::domain::visibility::Visible;
use crate::error::Result;
use crate::store::alert_entity::alert::{ActiveModel, Column, Entity, Model};
use crate::store::alert_entity::{alert_notification, alert_rule};

/// Raises an alert for `dedupe_key` unless one is open. `None`: one was open already.
pub async fn fire<C: ConnectionTrait>(
    conn: &C,
    rule: &alert_rule::Model,
    dedupe_key: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Option<Model>> {
    let row = Model {
        id: uuid::Uuid::now_v7().to_string(),
        rule_id: rule.id.clone(),
        org_id: rule.org_id.clone(),
        project_id: rule.project_id.clone(),
        kind: rule.kind.clone(),
        state: State::Firing.as_str().to_owned(),
        dedupe_key: dedupe_key.to_owned(),
        message: message.to_owned(),
        fired_at: now,
        acknowledged_at: None,
        acknowledged_by: String::new(),
        resolved_at: None,
        resolved_by: String::new(),
    };
    let active = ActiveModel {
        id: Set(row.id.clone()),
        rule_id: Set(row.rule_id.clone()),
        org_id: Set(row.org_id.clone()),
        project_id: Set(row.project_id.clone()),
        kind: Set(row.kind.clone()),
        state: Set(row.state.clone()),
        dedupe_key: Set(row.dedupe_key.clone()),
        message: Set(row.message.clone()),
        fired_at: Set(now),
        acknowledged_at: Set(None),
        acknowledged_by: Set(String::new()),
        resolved_at: Set(None),
        resolved_by: Set(String::new()),
    };
    // No conflict target: any unique violation (only the open-dedupe index can occur) means
    // the condition already has its alert. Same SQL on PostgreSQL and SQLite.
    let inserted = Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok((inserted == 1).then_some(row))
}

pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<Model>> {
    Ok(Entity::find_by_id(id).one(conn).await?)
}

/// A rule's open (firing or acknowledged) alerts.
pub async fn open_for_rule<C: ConnectionTrait>(conn: &C, rule_id: &str) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::RuleId.eq(rule_id))
        .filter(Column::State.ne(State::Resolved.as_str()))
        .all(conn)
        .await?)
}

/// Moves a firing alert to acknowledged. `None`: it was not firing (anymore).
pub async fn acknowledge<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Model>> {
    let done = Entity::update_many()
        .col_expr(Column::State, Expr::value(State::Acknowledged.as_str()))
        .col_expr(Column::AcknowledgedAt, Expr::value(now))
        .col_expr(Column::AcknowledgedBy, Expr::value(by))
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(State::Firing.as_str()))
        .exec(conn)
        .await?;
    if done.rows_affected == 0 {
        return Ok(None);
    }
    get(conn, id).await
}

/// Resolves an open alert (`by`: `auto` or the actor). `None`: it was resolved already.
pub async fn resolve<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Model>> {
    let done = Entity::update_many()
        .col_expr(Column::State, Expr::value(State::Resolved.as_str()))
        .col_expr(Column::ResolvedAt, Expr::value(now))
        .col_expr(Column::ResolvedBy, Expr::value(by))
        .filter(Column::Id.eq(id))
        .filter(Column::State.ne(State::Resolved.as_str()))
        .exec(conn)
        .await?;
    if done.rows_affected == 0 {
        return Ok(None);
    }
    get(conn, id).await
}

/// Alerts newest first, before the cursor (an alert id), limited to what the caller sees.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    who: &Visible,
    state: Option<State>,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Model>> {
    let mut query = Entity::find();
    match who {
        Visible::All => {}
        Visible::Projects(ids) if ids.is_empty() => return Ok(Vec::new()),
        Visible::Projects(ids) => query = query.filter(Column::ProjectId.is_in(ids.clone())),
    }
    if let Some(state) = state {
        query = query.filter(Column::State.eq(state.as_str()));
    }
    if let Some(id) = before {
        query = query.filter(Column::Id.lt(id));
    }
    Ok(query
        .order_by_desc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// How many alerts are in each state, for the gauge.
pub async fn count_by_state<C: ConnectionTrait>(conn: &C) -> Result<Vec<(String, i64)>> {
    Ok(Entity::find()
        .select_only()
        .column(Column::State)
        .column_as(Expr::col(Column::Id).count(), "n")
        .group_by(Column::State)
        .into_tuple()
        .all(conn)
        .await?)
}

/// Deletes up to `chunk` alerts resolved before `cutoff`, with their notifications. Returns
/// how many alerts.
pub async fn delete_resolved_before<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
    chunk: u64,
) -> Result<u64> {
    let ids: Vec<String> = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::State.eq(State::Resolved.as_str()))
        .filter(Column::ResolvedAt.lt(cutoff))
        .limit(chunk)
        .into_tuple()
        .all(conn)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    alert_notification::Entity::delete_many()
        .filter(alert_notification::Column::AlertId.is_in(ids.clone()))
        .exec(conn)
        .await?;
    Ok(Entity::delete_many()
        .filter(Column::Id.is_in(ids))
        .exec(conn)
        .await?
        .rows_affected)
}
