//! API usage buckets: one row per (minute, route, method), added to with one portable upsert
//! that sums every counter (`col = api_usage.col + excluded.col`), so concurrent reports for
//! the same minute add up instead of overwriting each other. Reads sum the minutes of a window
//! per route in SQL.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::entity::api_usage::{ActiveModel, Column, Entity};
use crate::domain::usage::{BUCKETS, Histogram};
use crate::error::Result;

const TABLE: &str = "api_usage";
/// Rows per statement: 20 parameters each.
const CHUNK: usize = 500;

/// What one report adds to one minute of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub minute: DateTime<Utc>,
    pub route: String,
    pub method: String,
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram,
}

/// A route's usage summed over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTotals {
    pub route: String,
    pub method: String,
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram,
}

const BUCKET_COLUMNS: [Column; BUCKETS] = [
    Column::B0,
    Column::B1,
    Column::B2,
    Column::B3,
    Column::B4,
    Column::B5,
    Column::B6,
    Column::B7,
    Column::B8,
    Column::B9,
    Column::B10,
    Column::B11,
    Column::B12,
    Column::B13,
    Column::B14,
];

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn active_model(d: &UsageDelta) -> ActiveModel {
    let b = |i: usize| Set(signed(d.latency.0[i]));
    ActiveModel {
        id: NotSet,
        minute: Set(d.minute),
        route: Set(d.route.clone()),
        method: Set(d.method.clone()),
        requests: Set(signed(d.requests)),
        errors: Set(signed(d.errors)),
        b0: b(0),
        b1: b(1),
        b2: b(2),
        b3: b(3),
        b4: b(4),
        b5: b(5),
        b6: b(6),
        b7: b(7),
        b8: b(8),
        b9: b(9),
        b10: b(10),
        b11: b(11),
        b12: b(12),
        b13: b(13),
        b14: b(14),
    }
}

fn summing() -> OnConflict {
    let mut rule = OnConflict::columns([Column::Minute, Column::Route, Column::Method]);
    let names = (0..BUCKETS).map(|i| format!("b{i}"));
    let columns = [Column::Requests, Column::Errors]
        .into_iter()
        .zip(["requests".to_owned(), "errors".to_owned()])
        .chain(BUCKET_COLUMNS.into_iter().zip(names));
    for (column, name) in columns {
        rule.value(
            column,
            Expr::cust(format!("{TABLE}.{name} + excluded.{name}")),
        );
    }
    rule
}

/// Adds deltas (at most one per minute, route and method: a statement may not upsert the
/// same row twice — see [`fold`]).
///
/// SQLite takes a per-row `UPDATE`, then an `INSERT` when no row was there, instead of the
/// upsert: a pooled SQLite connection that cached the schema while the migration ran rejects
/// an `ON CONFLICT` target it cannot match yet ("ON CONFLICT clause does not match any
/// PRIMARY KEY or UNIQUE constraint", not retried like a schema change), and SQLite's single
/// writer (the caller's `BEGIN IMMEDIATE` transaction) makes the two statements race-free.
pub async fn add<C: ConnectionTrait>(conn: &C, deltas: &[UsageDelta]) -> Result<()> {
    if !switchyard_runtime::db::is_postgres(conn) {
        for delta in deltas {
            add_one_serially(conn, delta).await?;
        }
        return Ok(());
    }
    let rule = summing();
    for chunk in deltas.chunks(CHUNK) {
        Entity::insert_many(chunk.iter().map(active_model))
            .on_conflict(rule.clone())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

async fn add_one_serially<C: ConnectionTrait>(conn: &C, d: &UsageDelta) -> Result<()> {
    let columns = [(Column::Requests, d.requests), (Column::Errors, d.errors)]
        .into_iter()
        .chain(BUCKET_COLUMNS.into_iter().zip(d.latency.0));
    let mut update = Entity::update_many();
    for (column, value) in columns {
        update = update.col_expr(column, Expr::col(column).add(signed(value)));
    }
    let done = update
        .filter(Column::Minute.eq(d.minute))
        .filter(Column::Route.eq(d.route.as_str()))
        .filter(Column::Method.eq(d.method.as_str()))
        .exec(conn)
        .await?;
    if done.rows_affected == 0 {
        Entity::insert(active_model(d))
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// One delta per (minute, route, method), in key order (so concurrent batches lock rows in
/// the same order).
pub fn fold(deltas: Vec<UsageDelta>) -> Vec<UsageDelta> {
    let mut merged: std::collections::BTreeMap<(DateTime<Utc>, String, String), UsageDelta> =
        std::collections::BTreeMap::new();
    for d in deltas {
        let key = (d.minute, d.route.clone(), d.method.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                m.requests = m.requests.saturating_add(d.requests);
                m.errors = m.errors.saturating_add(d.errors);
                m.latency.merge(&d.latency);
            }
            None => {
                merged.insert(key, d);
            }
        }
    }
    merged.into_values().collect()
}

#[derive(Debug, FromQueryResult)]
struct Summed {
    route: String,
    method: String,
    requests: i64,
    errors: i64,
    b0: i64,
    b1: i64,
    b2: i64,
    b3: i64,
    b4: i64,
    b5: i64,
    b6: i64,
    b7: i64,
    b8: i64,
    b9: i64,
    b10: i64,
    b11: i64,
    b12: i64,
    b13: i64,
    b14: i64,
}

/// Usage per route and method over the minutes starting at or after `since`'s minute,
/// busiest first.
pub async fn totals<C: ConnectionTrait>(
    conn: &C,
    since: DateTime<Utc>,
) -> Result<Vec<RouteTotals>> {
    let mut query = Entity::find()
        .select_only()
        .column(Column::Route)
        .column(Column::Method);
    let names = ["requests".to_owned(), "errors".to_owned()]
        .into_iter()
        .chain((0..BUCKETS).map(|i| format!("b{i}")));
    for name in names {
        // CAST: PostgreSQL sums BIGINT into NUMERIC.
        query = query.column_as(Expr::cust(format!("CAST(SUM({name}) AS BIGINT)")), name);
    }
    let rows = query
        .filter(Column::Minute.gte(minute_of(since)))
        .group_by(Column::Route)
        .group_by(Column::Method)
        .order_by_asc(Column::Route)
        .order_by_asc(Column::Method)
        .into_model::<Summed>()
        .all(conn)
        .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut out: Vec<RouteTotals> = rows
        .into_iter()
        .map(|r| RouteTotals {
            latency: Histogram(
                [
                    r.b0, r.b1, r.b2, r.b3, r.b4, r.b5, r.b6, r.b7, r.b8, r.b9, r.b10, r.b11,
                    r.b12, r.b13, r.b14,
                ]
                .map(count),
            ),
            requests: count(r.requests),
            errors: count(r.errors),
            route: r.route,
            method: r.method,
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.requests));
    Ok(out)
}

/// Deletes buckets of minutes before `cutoff`.
pub async fn delete_before<C: ConnectionTrait>(conn: &C, cutoff: DateTime<Utc>) -> Result<u64> {
    let done = Entity::delete_many()
        .filter(Column::Minute.lt(cutoff))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

/// The start of `t`'s minute.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = t.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(seconds, 0).unwrap_or(t)
}
