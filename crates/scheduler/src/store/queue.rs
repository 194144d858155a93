//! The durable task queue. Claims take ready rows with `FOR UPDATE SKIP LOCKED` in batches on
//! PostgreSQL (SQLite has one writer at a time and needs no skip); every later change to a
//! task names the state it read, so a late writer changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Select, Statement,
};

use super::entity::task;
use crate::domain::task_status::TaskStatus;
use crate::error::{Error, Result};

/// Timeouts are validated to at most a week; rows are read as if so whatever they hold, so no
/// stored value can overflow the sweeper's arithmetic.
const MAX_TIMEOUT_S: i64 = switchyard_workflow::MAX_TIMEOUT_S as i64;

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
            .filter(super::task_status_is(TaskStatus::Leased))
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
    Ok(expired_query(now, limit).all(conn).await?)
}

/// The query behind [`expired`].
pub fn expired_query(now: DateTime<Utc>, limit: u64) -> Select<task::Entity> {
    task::Entity::find()
        .filter(super::task_status_is(TaskStatus::Leased))
        .filter(task::Column::LeaseExpiresAt.lt(now))
        .order_by_asc(task::Column::LeaseExpiresAt)
        .limit(limit)
}

/// The PostgreSQL query behind [`overran`]: $1 grace (s), $2 now, $3 limit, $4 the longest
/// timeout. In the leased index's order: with `ORDER BY id` the planner walked the primary key
/// through every task ever run, looking for leased ones.
pub const OVERRAN_SQL: &str = "SELECT * FROM tasks WHERE status = 'leased' \
    AND started_at + make_interval(secs => (LEAST(timeout_s, $4) + $1)::double precision) < $2 \
    ORDER BY lease_expires_at LIMIT $3";

/// Leased tasks running past their start-to-close timeout by more than `grace` (an agent that
/// keeps heartbeating but never stops or reports): candidates for the sweeper, which
/// re-checks each under its lock.
pub async fn overran<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    grace: Duration,
    limit: u64,
) -> Result<Vec<task::Model>> {
    let grace_s = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX / 2);
    let overran = |t: &task::Model| {
        let allowed = chrono::Duration::try_seconds(t.timeout_s.saturating_add(grace_s));
        match (t.started_at, allowed) {
            (Some(at), Some(allowed)) => {
                at.checked_add_signed(allowed).is_some_and(|end| end < now)
            }
            _ => false,
        }
    };
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        let statement = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            OVERRAN_SQL,
            [
                grace_s.into(),
                now.into(),
                (limit as i64).into(),
                MAX_TIMEOUT_S.into(),
            ],
        );
        return Ok(task::Model::find_by_statement(statement).all(conn).await?);
    }
    // SQLite (embedded: a handful of leases): filter here.
    Ok(task::Entity::find()
        .filter(super::task_status_is(TaskStatus::Leased))
        .all(conn)
        .await?
        .into_iter()
        .filter(overran)
        .take(limit as usize)
        .collect())
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
    Ok(waiting_since_query(since, stopping, limit)
        .all(conn)
        .await?)
}

/// The query behind [`waiting_since`], `stopping` the runs to leave out.
pub fn waiting_since_query(
    since: DateTime<Utc>,
    stopping: Vec<String>,
    limit: u64,
) -> Select<task::Entity> {
    let mut query = task::Entity::find()
        .filter(super::task_status_is(TaskStatus::Queued))
        .filter(task::Column::NotBefore.lt(since));
    if !stopping.is_empty() {
        query = query.filter(task::Column::RunId.is_not_in(stopping));
    }
    query.order_by_asc(task::Column::NotBefore).limit(limit)
}

/// What a successful completion writes on its task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Success {
    pub id: i64,
    pub exit_code: i32,
    pub outputs_json: String,
    pub log_tail: String,
    pub result_json: String,
}

/// Marks tasks succeeded (each locked by the caller), with what each reported: one statement
/// for the whole group on PostgreSQL (the rows travel as one JSON parameter), one per task
/// on SQLite.
pub async fn mark_succeeded<C: ConnectionTrait>(
    conn: &C,
    done: &[Success],
    now: DateTime<Utc>,
) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        let rows = serde_json::to_string(done)
            .map_err(|e| Error::Internal(format!("completions not encodable: {e}")))?;
        conn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "UPDATE tasks AS t SET status = 'succeeded', finished_at = $1, \
               exit_code = v.exit_code, outputs_json = v.outputs_json, \
               log_tail = v.log_tail, result_json = v.result_json \
             FROM jsonb_to_recordset($2::jsonb) AS v(id bigint, exit_code int, \
               outputs_json text, log_tail text, result_json text) \
             WHERE t.id = v.id",
            [now.into(), rows.into()],
        ))
        .await?;
        return Ok(());
    }
    for success in done {
        task::Entity::update_many()
            .col_expr(task::Column::Status, TaskStatus::Succeeded.as_str().into())
            .col_expr(task::Column::FinishedAt, Some(now).into())
            .col_expr(task::Column::ExitCode, Some(success.exit_code).into())
            .col_expr(
                task::Column::OutputsJson,
                success.outputs_json.clone().into(),
            )
            .col_expr(task::Column::LogTail, success.log_tail.clone().into())
            .col_expr(task::Column::ResultJson, success.result_json.clone().into())
            .filter(task::Column::Id.eq(success.id))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Cancels those of the tasks `ids` that are queued (a stopping run's next attempts).
pub async fn cancel_queued<C: ConnectionTrait>(
    conn: &C,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<u64> {
    Ok(task::Entity::update_many()
        .col_expr(task::Column::Status, TaskStatus::Cancelled.as_str().into())
        .col_expr(task::Column::FinishedAt, Some(now).into())
        .filter(task::Column::Id.is_in(ids.iter().copied()))
        .filter(super::task_status_is(TaskStatus::Queued))
        .exec(conn)
        .await?
        .rows_affected)
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
