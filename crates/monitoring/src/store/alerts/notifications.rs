//! The webhook outbox: one row per (notification, URL), queued in the transaction that fired or
//! resolved the alert. The deliverer claims due rows by pushing their `next_attempt_at` past a
//! claim period (in a short transaction under the job lock, so one replica claims a row) and
//! records the outcome afterwards; a claim whose replica died simply comes due again.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::error::Result;
use crate::store::alert_entity::alert_notification::{ActiveModel, Column, Entity, Model};

/// Queues `payload` (JSON) for every URL in `urls`.
pub async fn queue<C: ConnectionTrait>(
    conn: &C,
    alert_id: &str,
    event: &str,
    urls: &[String],
    payload: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if urls.is_empty() {
        return Ok(());
    }
    let rows = urls.iter().map(|url| ActiveModel {
        id: NotSet,
        alert_id: Set(alert_id.to_owned()),
        url: Set(url.clone()),
        event: Set(event.to_owned()),
        payload: Set(payload.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        delivered_at: Set(None),
        failed_at: Set(None),
        last_error: Set(String::new()),
        created_at: Set(now),
    });
    Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Whether any row is due: a read, so an idle deliverer takes no write lock.
pub async fn any_due<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<bool> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::DeliveredAt.is_null())
        .filter(Column::FailedAt.is_null())
        .filter(Column::NextAttemptAt.lte(now))
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .is_some())
}

/// Up to `limit` due rows, oldest due first, each claimed until `claim_until`.
pub async fn claim_due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    claim_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Model>> {
    let due = Entity::find()
        .filter(Column::DeliveredAt.is_null())
        .filter(Column::FailedAt.is_null())
        .filter(Column::NextAttemptAt.lte(now))
        .order_by_asc(Column::NextAttemptAt)
        .limit(limit)
        .all(conn)
        .await?;
    if due.is_empty() {
        return Ok(due);
    }
    Entity::update_many()
        .col_expr(Column::NextAttemptAt, Expr::value(claim_until))
        .filter(Column::Id.is_in(due.iter().map(|n| n.id)))
        .exec(conn)
        .await?;
    Ok(due)
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>, String),
    /// The last attempt failed, or the URL is no longer allowed.
    GiveUp(String),
}

/// Records the outcome of attempt number `attempts` of notification `id`.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    attempts: i32,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut update = Entity::update_many()
        .col_expr(Column::Attempts, Expr::value(attempts))
        .filter(Column::Id.eq(id));
    update = match outcome {
        Outcome::Delivered => update
            .col_expr(Column::DeliveredAt, Expr::value(now))
            .col_expr(Column::LastError, Expr::value("")),
        Outcome::Retry(at, error) => update
            .col_expr(Column::NextAttemptAt, Expr::value(*at))
            .col_expr(Column::LastError, Expr::value(error.as_str())),
        Outcome::GiveUp(error) => update
            .col_expr(Column::FailedAt, Expr::value(now))
            .col_expr(Column::LastError, Expr::value(error.as_str())),
    };
    update.exec(conn).await?;
    Ok(())
}

/// An alert's notifications, oldest first (tests and diagnostics).
pub async fn for_alert<C: ConnectionTrait>(conn: &C, alert_id: &str) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::AlertId.eq(alert_id))
        .order_by_asc(Column::Id)
        .all(conn)
        .await?)
}
