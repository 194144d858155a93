//! API checks: their definitions with the latest probe state, one row per probe for the
//! 24-hour availability, and the claim that hands due checks to one prober.
//!
//! Claiming: a prober takes due checks (`next_probe_at <= now`) and moves each one interval
//! on in the same short transaction, then probes outside any transaction. On PostgreSQL the
//! select skips rows another replica is claiming (`FOR UPDATE SKIP LOCKED`), so replicas share
//! the probing and each due check is probed once; SQLite has one process and writes serially
//! (`BEGIN IMMEDIATE`), so a plain select does. A replica that dies mid-probe loses that one
//! probe: the check comes due again one interval later.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::{api_check, api_check_probe};
use crate::domain::visibility::Visible;
use crate::error::Result;

pub use api_check::Model as Check;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub latency_ms: i64,
    /// Empty when the probe passed.
    pub error: String,
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<Check>> {
    Ok(api_check::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?)
}

pub async fn find_by_name<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<Option<Check>> {
    Ok(api_check::Entity::find()
        .filter(api_check::Column::ProjectId.eq(project_id))
        .filter(api_check::Column::Name.eq(name))
        .one(conn)
        .await?)
}

/// Writes a check's definition (insert or replace), keeping its probe state; a changed
/// definition is probed at once.
pub async fn save<C: ConnectionTrait>(conn: &C, check: &Check, created: bool) -> Result<()> {
    let model = api_check::ActiveModel {
        id: Set(check.id.clone()),
        org_id: Set(check.org_id.clone()),
        project_id: Set(check.project_id.clone()),
        name: Set(check.name.clone()),
        protocol: Set(check.protocol.clone()),
        target: Set(check.target.clone()),
        interval_ms: Set(check.interval_ms),
        timeout_ms: Set(check.timeout_ms),
        created_at: if created {
            Set(check.created_at)
        } else {
            NotSet
        },
        updated_at: Set(check.updated_at),
        next_probe_at: Set(check.next_probe_at),
        last_checked_at: if created { Set(None) } else { NotSet },
        last_ok: if created { Set(false) } else { NotSet },
        last_latency_ms: if created { Set(None) } else { NotSet },
        last_error: if created { Set(String::new()) } else { NotSet },
    };
    if created {
        api_check::Entity::insert(model)
            .exec_without_returning(conn)
            .await?;
    } else {
        api_check::Entity::update(model).exec(conn).await?;
    }
    Ok(())
}

/// Deletes a check and its probes; `false` when there was none.
pub async fn delete<C: ConnectionTrait>(conn: &C, id: &str) -> Result<bool> {
    api_check_probe::Entity::delete_many()
        .filter(api_check_probe::Column::CheckId.eq(id))
        .exec(conn)
        .await?;
    let done = api_check::Entity::delete_by_id(id.to_owned())
        .exec(conn)
        .await?;
    Ok(done.rows_affected > 0)
}

/// The checks of the visible projects, by project and name.
pub async fn list<C: ConnectionTrait>(conn: &C, who: &Visible) -> Result<Vec<Check>> {
    let query = match who {
        Visible::All => api_check::Entity::find(),
        Visible::Projects(ids) if ids.is_empty() => return Ok(Vec::new()),
        Visible::Projects(ids) => api_check::Entity::find()
            .filter(api_check::Column::ProjectId.is_in(ids.iter().cloned())),
    };
    Ok(query
        .order_by_asc(api_check::Column::ProjectId)
        .order_by_asc(api_check::Column::Name)
        .all(conn)
        .await?)
}

#[derive(Debug, FromQueryResult)]
struct Tally {
    check_id: String,
    total: i64,
    passed: i64,
}

/// Probes since `since` per check: `(total, passed)`. Checks without probes are absent.
pub async fn availability<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
    since: DateTime<Utc>,
) -> Result<HashMap<String, (u64, u64)>> {
    let mut out = HashMap::new();
    // Bounded chunks keep the IN list under both databases' parameter limits.
    for chunk in ids.chunks(500) {
        let rows = api_check_probe::Entity::find()
            .select_only()
            .column(api_check_probe::Column::CheckId)
            .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "total")
            .column_as(
                Expr::cust("CAST(SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS BIGINT)"),
                "passed",
            )
            .filter(api_check_probe::Column::CheckId.is_in(chunk.iter().cloned()))
            .filter(api_check_probe::Column::ProbedAt.gte(since))
            .group_by(api_check_probe::Column::CheckId)
            .into_model::<Tally>()
            .all(conn)
            .await?;
        for row in rows {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            out.insert(row.check_id, (count(row.total), count(row.passed)));
        }
    }
    Ok(out)
}

/// Claims up to `limit` due checks for this prober (see the module docs).
pub async fn claim_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Check>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // A read first: most ticks find nothing due, and need not take SQLite's write lock.
    let any_due = api_check::Entity::find()
        .select_only()
        .column(api_check::Column::Id)
        .filter(api_check::Column::NextProbeAt.lte(now))
        .limit(1)
        .into_tuple::<String>()
        .one(db)
        .await?;
    if any_due.is_none() {
        return Ok(Vec::new());
    }
    let txn = switchyard_runtime::db::write_txn(db).await?;
    let mut query = api_check::Entity::find()
        .filter(api_check::Column::NextProbeAt.lte(now))
        .order_by_asc(api_check::Column::NextProbeAt)
        .limit(limit);
    if switchyard_runtime::db::is_postgres(&txn) {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let due = query.all(&txn).await?;
    let mut by_interval: HashMap<i64, Vec<String>> = HashMap::new();
    for check in &due {
        by_interval
            .entry(check.interval_ms)
            .or_default()
            .push(check.id.clone());
    }
    for (interval_ms, ids) in by_interval {
        let next = now + chrono::Duration::milliseconds(interval_ms);
        api_check::Entity::update_many()
            .col_expr(api_check::Column::NextProbeAt, Expr::value(next))
            .filter(api_check::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(due)
}

/// Records a probe: the check's latest state and a probe row, in one transaction. A check
/// deleted while it was probed records nothing.
pub async fn record(db: &DatabaseConnection, check_id: &str, result: &ProbeResult) -> Result<()> {
    let txn = switchyard_runtime::db::write_txn(db).await?;
    let updated = api_check::Entity::update_many()
        .col_expr(
            api_check::Column::LastCheckedAt,
            Expr::value(Some(result.at)),
        )
        .col_expr(api_check::Column::LastOk, Expr::value(result.ok))
        .col_expr(
            api_check::Column::LastLatencyMs,
            Expr::value(Some(result.latency_ms)),
        )
        .col_expr(
            api_check::Column::LastError,
            Expr::value(result.error.clone()),
        )
        .filter(api_check::Column::Id.eq(check_id))
        .exec(&txn)
        .await?;
    if updated.rows_affected > 0 {
        api_check_probe::Entity::insert(api_check_probe::ActiveModel {
            id: NotSet,
            check_id: Set(check_id.to_owned()),
            probed_at: Set(result.at),
            ok: Set(result.ok),
            latency_ms: Set(result.latency_ms),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Deletes probe rows older than `cutoff` (availability looks back 24 hours only).
pub async fn delete_probes_before<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    let done = api_check_probe::Entity::delete_many()
        .filter(api_check_probe::Column::ProbedAt.lt(cutoff))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

/// The project's checks whose latest probe failed, with that probe's error: what the
/// `API_CHECK_FAILING` alert kind evaluates. Checks not probed yet are not failing.
pub async fn failing_checks<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
) -> Result<Vec<(Check, String)>> {
    let rows = api_check::Entity::find()
        .filter(api_check::Column::ProjectId.eq(project_id))
        .filter(api_check::Column::LastCheckedAt.is_not_null())
        .filter(api_check::Column::LastOk.eq(false))
        .order_by_asc(api_check::Column::Name)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|check| {
            let error = check.last_error.clone();
            (check, error)
        })
        .collect())
}
