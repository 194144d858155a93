//! The durable task queue. Claims take ready rows with `FOR UPDATE SKIP LOCKED` in batches on
//! PostgreSQL (SQLite has one writer at a time and needs no skip); every later change to a
//! task names the state it read, so a late writer changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};

use super::entity::task;
use crate::domain::task_status::TaskStatus;
use crate::error::{Error, Result};

/// Rows per multi-row insert.
const INSERT_CHUNK: usize = 500;

pub async fn insert<C: ConnectionTrait>(conn: &C, tasks: Vec<task::ActiveModel>) -> Result<()> {
    let mut tasks = tasks;
    while !tasks.is_empty() {
        let rest = tasks.split_off(tasks.len().min(INSERT_CHUNK));
        task::Entity::insert_many(std::mem::replace(&mut tasks, rest))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Who is asking for work.
#[derive(Debug, Clone)]
pub struct Claimant<'a> {
    pub agent_id: &'a str,
    /// Only tasks of this organization / project; empty for any (platform agents).
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub max: u32,
    pub lease: Duration,
}

/// Leases up to `max` ready tasks whose required labels the agent has, best priority first.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<task::Model>> {
    if who.max == 0 {
        return Ok(Vec::new());
    }
    let expires = now + chrono::Duration::from_std(who.lease).unwrap_or_default();
    let labels = serde_json::to_string(who.labels).unwrap_or_else(|_| "{}".into());
    match conn.get_database_backend() {
        DatabaseBackend::Postgres => {
            // One statement: pick, lock and lease, skipping rows other claimers hold.
            let sql = "UPDATE tasks SET status = 'leased', agent_id = $1, lease_expires_at = $2, \
                       started_at = $3 \
                       WHERE id IN (SELECT id FROM tasks \
                         WHERE status = 'queued' AND not_before <= $3 \
                           AND labels_json::jsonb <@ $4::jsonb \
                           AND ($6 = '' OR org_id = $6) AND ($7 = '' OR project_id = $7) \
                         ORDER BY priority DESC, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                       RETURNING *";
            let statement = Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                [
                    who.agent_id.into(),
                    expires.into(),
                    now.into(),
                    labels.into(),
                    i64::from(who.max).into(),
                    who.org_id.into(),
                    who.project_id.into(),
                ],
            );
            let mut rows = task::Model::find_by_statement(statement).all(conn).await?;
            rows.sort_by_key(|t| (std::cmp::Reverse(t.priority), t.id));
            Ok(rows)
        }
        _ => {
            // SQLite: the caller's transaction is the only writer; filter labels here.
            let mut query = task::Entity::find()
                .filter(task::Column::Status.eq(TaskStatus::Queued.as_str()))
                .filter(task::Column::NotBefore.lte(now));
            if !who.org_id.is_empty() {
                query = query.filter(task::Column::OrgId.eq(who.org_id));
            }
            if !who.project_id.is_empty() {
                query = query.filter(task::Column::ProjectId.eq(who.project_id));
            }
            let candidates = query
                .order_by_desc(task::Column::Priority)
                .order_by_asc(task::Column::Id)
                .limit(u64::from(who.max) * 8)
                .all(conn)
                .await?;
            let mut leased = Vec::new();
            for candidate in candidates {
                if leased.len() as u32 >= who.max {
                    break;
                }
                if !labels_match(&candidate.labels_json, who.labels) {
                    continue;
                }
                let mut active: task::ActiveModel = candidate.into();
                active.status = Set(TaskStatus::Leased.as_str().to_owned());
                active.agent_id = Set(Some(who.agent_id.to_owned()));
                active.lease_expires_at = Set(Some(expires));
                active.started_at = Set(Some(now));
                leased.push(active.update(conn).await?);
            }
            Ok(leased)
        }
    }
}

/// Whether an agent with `have` may run a task requiring `required_json` (a JSON object of
/// label → value; every pair must be among the agent's).
pub fn labels_match(required_json: &str, have: &BTreeMap<String, String>) -> bool {
    let required: BTreeMap<String, String> =
        serde_json::from_str(required_json).unwrap_or_default();
    required.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The task with public id `uuid`, locked for the rest of the transaction.
pub async fn lock<C: ConnectionTrait>(conn: &C, uuid: &str) -> Result<task::Model> {
    task::Entity::find()
        .filter(task::Column::Uuid.eq(uuid))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("task {uuid} not found")))
}

/// The tasks with these public ids, locked in id order (one order for every locker, so two
/// batches cannot deadlock on each other).
pub async fn lock_many<C: ConnectionTrait>(conn: &C, uuids: &[String]) -> Result<Vec<task::Model>> {
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(task::Entity::find()
        .filter(task::Column::Uuid.is_in(uuids.iter().cloned()))
        .order_by_asc(task::Column::Id)
        .lock_exclusive()
        .all(conn)
        .await?)
}

/// The task with integer id `id`, locked for the rest of the transaction.
pub async fn lock_by_id<C: ConnectionTrait>(conn: &C, id: i64) -> Result<task::Model> {
    task::Entity::find_by_id(id)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("task {id} not found")))
}

pub async fn update<C: ConnectionTrait>(conn: &C, model: task::ActiveModel) -> Result<task::Model> {
    Ok(model.update(conn).await?)
}

/// Extends the leases an agent still holds (status leased, same attempt, same agent). Returns
/// the ids of the tasks whose lease was extended.
pub async fn extend<C: ConnectionTrait>(
    conn: &C,
    agent_id: &str,
    leases: &[(String, i32)],
    expires: DateTime<Utc>,
) -> Result<Vec<(String, i32)>> {
    let mut held = Vec::new();
    for (uuid, attempt) in leases {
        let updated = task::Entity::update_many()
            .col_expr(task::Column::LeaseExpiresAt, expires.into())
            .filter(task::Column::Uuid.eq(uuid.as_str()))
            .filter(task::Column::Status.eq(TaskStatus::Leased.as_str()))
            .filter(task::Column::Attempt.eq(*attempt))
            .filter(task::Column::AgentId.eq(agent_id))
            .exec(conn)
            .await?;
        if updated.rows_affected == 1 {
            held.push((uuid.clone(), *attempt));
        }
    }
    Ok(held)
}

/// Of the tasks with these public ids, those whose run is being stopped (cancel or deadline).
pub async fn of_stopping_runs<C: ConnectionTrait>(
    conn: &C,
    uuids: &[String],
) -> Result<std::collections::HashSet<String>> {
    use super::entity::run;
    if uuids.is_empty() {
        return Ok(Default::default());
    }
    let tasks: Vec<(String, String)> = task::Entity::find()
        .select_only()
        .column(task::Column::Uuid)
        .column(task::Column::RunId)
        .filter(task::Column::Uuid.is_in(uuids.iter().cloned()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut run_ids: Vec<&str> = tasks.iter().map(|(_, run)| run.as_str()).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    let stopping: std::collections::HashSet<String> = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::Id.is_in(run_ids))
        .filter(run::Column::CancelRequested.eq(true))
        .into_tuple::<String>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(tasks
        .into_iter()
        .filter(|(_, run)| stopping.contains(run))
        .map(|(task, _)| task)
        .collect())
}

/// Leases that expired before `now`: candidates for the sweeper, which re-checks each one
/// under its lock.
pub async fn expired<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::Status.eq(TaskStatus::Leased.as_str()))
        .filter(task::Column::LeaseExpiresAt.lt(now))
        .order_by_asc(task::Column::LeaseExpiresAt)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Queued tasks eligible since before `since` (never taken by any agent since), of runs not
/// already stopping.
pub async fn waiting_since<C: ConnectionTrait>(
    conn: &C,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<task::Model>> {
    use super::entity::run;
    let stopping: Vec<String> = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::CancelRequested.eq(true))
        .filter(run::Column::FinishedAt.is_null())
        .into_tuple()
        .all(conn)
        .await?;
    let mut query = task::Entity::find()
        .filter(task::Column::Status.eq(TaskStatus::Queued.as_str()))
        .filter(task::Column::NotBefore.lt(since));
    if !stopping.is_empty() {
        query = query.filter(task::Column::RunId.is_not_in(stopping));
    }
    Ok(query
        .order_by_asc(task::Column::NotBefore)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Unfinished tasks of a run (queued, leased or dead).
pub async fn open_for_run<C: ConnectionTrait>(conn: &C, run_id: &str) -> Result<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::RunId.eq(run_id))
        .filter(
            task::Column::Status.is_in([TaskStatus::Queued.as_str(), TaskStatus::Leased.as_str()]),
        )
        .all(conn)
        .await?)
}

/// Every task of a run, in node and shard order.
pub async fn for_run<C: ConnectionTrait>(conn: &C, run_id: &str) -> Result<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::RunId.eq(run_id))
        .order_by_asc(task::Column::Id)
        .all(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_needs_every_required_label() {
        let have: BTreeMap<String, String> = [("os", "linux"), ("arch", "x86_64")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(labels_match("{}", &have));
        assert!(labels_match(r#"{"os": "linux"}"#, &have));
        assert!(!labels_match(r#"{"os": "macos"}"#, &have));
        assert!(!labels_match(r#"{"gpu": "a100"}"#, &have));
    }
}
