//! The execution history: batched upserts that never move an attempt backwards, and the
//! read behind task history. Only ended attempts are written (one row per attempt, when it
//! ends); running ones live in the active-task view (`crate::active`).
//!
//! The upsert is one `INSERT ... ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET ...
//! WHERE` (a task belongs to one run, so that key is the attempt's). Its expressions are the
//! merge rule of [`Execution::merge`] written over `excluded` (the incoming row) and the
//! stored row, so events from concurrent batches meet in the database under the same rule as
//! events folded within one batch. On PostgreSQL the rows go as one typed array per column,
//! read by `unnest` (see [`postgres_insert`]): the statement text stays the same whatever the
//! batch size, so it is parsed once per connection, where a `VALUES` list of 22 parameters
//! per row was parsed afresh for every batch. SQLite takes the rows as parameters, a chunk at
//! a time.
//!
//! On PostgreSQL a batch is first tried as a plain `INSERT` in a savepoint, and only a batch
//! that meets a stored attempt is written again with `ON CONFLICT` (see [`upsert`]).

use chrono::{DateTime, Utc};
use sea_orm::prelude::Uuid;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, NotSet, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set, TransactionSession, TransactionTrait,
};

use super::entity::task_execution::{ActiveModel, Column, Entity, Model};
use crate::domain::execution::{Execution, Status};
use crate::domain::visibility::Visible;
use crate::error::{Error, Result};
use crate::store::history_copy;
use crate::store::history_cursor::HistoryCursor;
use crate::store::history_ids::{self, Projects};
use crate::store::is_unique_violation;
use sea_orm::sqlx::{Connection, PgConnection};
use switchyard_runtime::db::driver_error;

/// Rows per statement: 24 parameters each stays far below both databases' limits.
const CHUNK: usize = 500;

const TABLE: &str = "task_executions";

/// An execution's task, run and project ids as the history stores them.
pub(crate) fn stored_ids(e: &Execution) -> Result<[Uuid; 3]> {
    Ok([
        history_ids::required("task_id", &e.task_id)?,
        history_ids::required("run_id", &e.run_id)?,
        history_ids::required("project_id", &e.project_id)?,
    ])
}

fn active_model(e: &Execution, now: DateTime<Utc>) -> Result<ActiveModel> {
    let [task_id, run_id, project_id] = stored_ids(e)?;
    Ok(ActiveModel {
        task_id: Set(task_id),
        attempt: Set(e.attempt),
        run_id: Set(run_id),
        project_id: Set(project_id),
        workflow: Set(e.workflow.clone()),
        node: Set(e.node.clone()),
        shard_index: Set(e.shard_index),
        shard_count: Set(e.shard_count),
        iteration: Set(e.iteration),
        status: Set(e.status.as_str().to_owned()),
        agent_id: Set(e.agent_id.clone()),
        exit_code: Set(e.exit_code),
        error: Set(e.error.clone()),
        retry_reason: Set(e.retry_reason.clone()),
        queued_at: Set(e.queued_at),
        started_at: Set(e.started_at),
        // An ending without a time counts as finished when the history wrote it.
        finished_at: Set(e.finished_at.unwrap_or(now)),
        not_before: Set(e.not_before),
        wait_ms: Set(e.wait_ms()),
        run_ms: Set(e.run_ms()),
        precedence: Set(e.precedence()),
        updated_at: Set(now),
        // Only a replay sets it (`store::replays`); a merge leaves it as stored.
        replayed_at: NotSet,
    })
}

/// The merge rule in SQL: `(column, expression)` assignments, and the condition under which
/// the stored row changes at all.
fn merge_sql() -> (Vec<(Column, String)>, String) {
    let wins = format!("excluded.precedence > {TABLE}.precedence");
    // Taken whole from the winning side: the status and what belongs to that ending.
    let from_winner =
        |col: &str| format!("CASE WHEN {wins} THEN excluded.{col} ELSE {TABLE}.{col} END");
    // Filled from whichever side has a value, the winner's first.
    let prefer = |col: &str, empty: &dyn Fn(&str) -> String| {
        let (new, old) = (
            empty(&format!("excluded.{col}")),
            empty(&format!("{TABLE}.{col}")),
        );
        format!(
            "CASE WHEN {wins} THEN COALESCE({new}, {TABLE}.{col}) \
             ELSE COALESCE({old}, excluded.{col}) END"
        )
    };
    let text = |side: &str| format!("NULLIF({side}, '')");
    let nullable = |side: &str| side.to_owned();
    let mut assignments = Vec::new();
    for (column, name) in [
        (Column::Status, "status"),
        (Column::ExitCode, "exit_code"),
        (Column::Error, "error"),
        (Column::RetryReason, "retry_reason"),
        (Column::FinishedAt, "finished_at"),
        (Column::NotBefore, "not_before"),
        (Column::RunMs, "run_ms"),
        (Column::Precedence, "precedence"),
    ] {
        assignments.push((column, from_winner(name)));
    }
    for (column, name) in [
        (Column::Workflow, "workflow"),
        (Column::AgentId, "agent_id"),
    ] {
        assignments.push((column, prefer(name, &text)));
    }
    for (column, name) in [
        (Column::QueuedAt, "queued_at"),
        (Column::StartedAt, "started_at"),
        (Column::WaitMs, "wait_ms"),
    ] {
        assignments.push((column, prefer(name, &nullable)));
    }
    assignments.push((Column::UpdatedAt, "excluded.updated_at".to_owned()));
    // Touch the row only when something changes: a later status, or a gap to fill.
    let gaps = ["workflow", "agent_id"]
        .map(|c| format!("({TABLE}.{c} = '' AND excluded.{c} <> '')"))
        .into_iter()
        .chain(
            ["queued_at", "started_at", "wait_ms"]
                .map(|c| format!("({TABLE}.{c} IS NULL AND excluded.{c} IS NOT NULL)")),
        )
        .collect::<Vec<_>>()
        .join(" OR ");
    (assignments, format!("{wins} OR {gaps}"))
}

/// The ON CONFLICT clause of the SQLite statement.
fn merge_rule() -> OnConflict {
    let (assignments, condition) = merge_sql();
    let mut rule = OnConflict::columns([Column::RunId, Column::TaskId, Column::Attempt]);
    for (column, expression) in assignments {
        rule.value(column, Expr::cust(expression));
    }
    rule.action_and_where(Expr::cust(condition));
    rule
}

/// The columns written on PostgreSQL, each with its array type: one array parameter per
/// column, read row by row by `unnest`. `updated_at` is not among them: the statement sets
/// it to the transaction's time.
const COLUMNS: [(&str, &str); 21] = [
    ("task_id", "uuid"),
    ("attempt", "int"),
    ("run_id", "uuid"),
    ("project_id", "uuid"),
    ("workflow", "text"),
    ("node", "text"),
    ("shard_index", "int"),
    ("shard_count", "int"),
    ("iteration", "int"),
    ("status", "text"),
    ("agent_id", "text"),
    ("exit_code", "bigint"),
    ("error", "text"),
    ("retry_reason", "text"),
    ("queued_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("not_before", "timestamptz"),
    ("wait_ms", "bigint"),
    ("run_ms", "bigint"),
    ("precedence", "bigint"),
];

/// Stands for "none" in an array of the nullable numbers: the driver cannot bind NULL
/// elements. Outside every value these columns hold (an exit code is 32 bits; durations are
/// far from it), so `NULLIF` turns it back into NULL and nothing else.
const NO_NUMBER: i64 = i64::MIN;

/// Stands for "none" in an array of timestamps (see [`NO_NUMBER`]): the Unix epoch, which no
/// attempt's time can be (the scheduler's clock wrote them).
const NO_TIME: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// What the SELECT list reads for a column: the nullable ones with their "none" turned back
/// into NULL.
fn read_back(column: &str) -> String {
    match column {
        "exit_code" => format!("NULLIF(exit_code, {NO_NUMBER})::int"),
        "wait_ms" | "run_ms" => format!("NULLIF({column}, {NO_NUMBER})"),
        "queued_at" | "started_at" | "not_before" => {
            format!("NULLIF({column}, 'epoch'::timestamptz)")
        }
        // An ending without a time counts as finished when the history wrote it.
        "finished_at" => "COALESCE(NULLIF(finished_at, 'epoch'::timestamptz), now())".to_owned(),
        _ => column.to_owned(),
    }
}

/// The PostgreSQL statements, built once: the plain insert, and the insert that merges into
/// stored attempts (`merge`).
///
/// Typed arrays rather than JSON: PostgreSQL reads each element in binary, where a JSON
/// parameter was parsed twice (once to check it when cast, once by `json_to_recordset`) and
/// every timestamp was parsed from text; in a profile of the history insert, JSON took about
/// 40% of its backend's time. The text stays the same whatever the batch size, so it is
/// parsed once per connection.
fn postgres_insert(merge: bool) -> &'static str {
    static PLAIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static MERGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cell = if merge { &MERGE } else { &PLAIN };
    cell.get_or_init(|| {
        use sea_orm::IdenStatic;
        let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
        let read: Vec<String> = names.iter().map(|name| read_back(name)).collect();
        let arrays: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| format!("${}::{kind}[]", i + 1))
            .collect();
        let (assignments, condition) = merge_sql();
        let set: Vec<String> = assignments
            .iter()
            .map(|(column, expression)| format!("{} = {expression}", column.as_str()))
            .collect();
        let insert = format!(
            "INSERT INTO {TABLE} ({columns}, updated_at) SELECT {read}, now() \
             FROM unnest({arrays}) AS v({columns})",
            columns = names.join(", "),
            read = read.join(", "),
            arrays = arrays.join(", "),
        );
        if merge {
            format!(
                "{insert} ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET {set} \
                 WHERE {condition}",
                set = set.join(", "),
            )
        } else {
            insert
        }
    })
}

/// One column's values across a batch, typed as the driver binds them.
enum ColumnArray {
    Id(Vec<Uuid>),
    Int(Vec<i32>),
    Text(Vec<String>),
    Number(Vec<i64>),
    Time(Vec<DateTime<Utc>>),
}

impl ColumnArray {
    fn value(self) -> sea_orm::Value {
        match self {
            ColumnArray::Id(v) => v.into(),
            ColumnArray::Int(v) => v.into(),
            ColumnArray::Text(v) => v.into(),
            ColumnArray::Number(v) => v.into(),
            ColumnArray::Time(v) => v.into(),
        }
    }
}

/// The executions as one array per column of [`COLUMNS`], in its order.
fn column_arrays<E: std::borrow::Borrow<Execution>>(rows: &[E]) -> Result<Vec<ColumnArray>> {
    fn each<E: std::borrow::Borrow<Execution>, T>(
        rows: &[E],
        of: impl Fn(&Execution) -> T,
    ) -> Vec<T> {
        rows.iter().map(|e| of(e.borrow())).collect()
    }
    let text = |of: fn(&Execution) -> &str| ColumnArray::Text(each(rows, |e| of(e).to_owned()));
    let int = |of: fn(&Execution) -> i32| ColumnArray::Int(each(rows, of));
    let number = |of: fn(&Execution) -> Option<i64>| {
        ColumnArray::Number(each(rows, |e| of(e).unwrap_or(NO_NUMBER)))
    };
    let time = |of: fn(&Execution) -> Option<DateTime<Utc>>| {
        ColumnArray::Time(each(rows, |e| of(e).unwrap_or(NO_TIME)))
    };
    let ids = rows
        .iter()
        .map(|e| stored_ids(e.borrow()))
        .collect::<Result<Vec<_>>>()?;
    let id = |which: usize| ColumnArray::Id(ids.iter().map(|i| i[which]).collect());
    Ok(vec![
        id(0),
        int(|e| e.attempt),
        id(1),
        id(2),
        text(|e| &e.workflow),
        text(|e| &e.node),
        int(|e| e.shard_index),
        int(|e| e.shard_count),
        int(|e| e.iteration),
        text(|e| e.status.as_str()),
        text(|e| &e.agent_id),
        number(|e| e.exit_code.map(i64::from)),
        text(|e| &e.error),
        text(|e| &e.retry_reason),
        time(|e| e.queued_at),
        time(|e| e.started_at),
        time(|e| e.finished_at),
        time(|e| e.not_before),
        number(Execution::wait_ms),
        number(Execution::run_ms),
        ColumnArray::Number(each(rows, Execution::precedence)),
    ])
}

/// The ended executions of `rows`: running attempts never reach the history (they live in
/// the active-task view, `crate::active`).
fn ended<E: std::borrow::Borrow<Execution>>(rows: &[E]) -> Vec<&Execution> {
    rows.iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|e| e.status != Status::Running)
        .collect()
}

/// Applies executions (already folded: one per attempt) to the history; running ones are
/// left out.
///
/// On PostgreSQL the batch is first inserted plainly, in a savepoint. An attempt's row is
/// written when it ends, and the inbox has already dropped redelivered events, so a stored
/// attempt is rare: it takes two events ending the same attempt. `ON CONFLICT` costs every
/// row a second probe of the unique index and one more WAL record (about a fifth of the
/// insert's instructions, counted with callgrind on PostgreSQL 15). When the plain insert
/// meets a stored attempt, the savepoint is rolled back and the whole batch is written again
/// with the merge.
pub async fn upsert<C, E>(conn: &C, rows: &[E]) -> Result<()>
where
    C: ConnectionTrait + TransactionTrait,
    E: std::borrow::Borrow<Execution>,
{
    let rows = &ended(rows);
    if rows.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let statement = |merge| -> Result<sea_orm::Statement> {
            Ok(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                postgres_insert(merge),
                column_arrays(rows)?.into_iter().map(ColumnArray::value),
            ))
        };
        let plain = statement(false)?;
        let savepoint = conn.begin().await?;
        match savepoint.execute_raw(plain).await {
            Ok(_) => savepoint.commit().await?,
            Err(error) if is_unique_violation(&error) => {
                savepoint.rollback().await?;
                conn.execute_raw(statement(true)?).await?;
            }
            Err(error) => return Err(error.into()),
        }
        return Ok(());
    }
    let now = Utc::now();
    let rule = merge_rule();
    for chunk in rows.chunks(CHUNK) {
        let models = chunk
            .iter()
            .map(|e| active_model(e, now))
            .collect::<Result<Vec<_>>>()?;
        Entity::insert_many(models)
            .on_conflict(rule.clone())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// [`upsert`] on a PostgreSQL connection that sea-orm does not wrap, inside the caller's
/// transaction: the plain insert is a `COPY` (see [`history_copy`]), in a savepoint, and a
/// batch that meets a stored attempt is written again with the merging insert.
pub async fn upsert_postgres<E: std::borrow::Borrow<Execution>>(
    conn: &mut PgConnection,
    rows: &[E],
) -> Result<()> {
    let rows = &ended(rows);
    if rows.is_empty() {
        return Ok(());
    }
    let mut savepoint = Connection::begin(&mut *conn).await.map_err(driver_error)?;
    match history_copy::copy(&mut savepoint, rows).await {
        Ok(_) => savepoint.commit().await.map_err(driver_error)?,
        Err(Error::Database(error)) if is_unique_violation(&error) => {
            savepoint.rollback().await.map_err(driver_error)?;
            merge_postgres(conn, rows).await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

/// The merging insert of [`postgres_insert`], its arrays bound as the driver's own types.
async fn merge_postgres<E: std::borrow::Borrow<Execution>>(
    conn: &mut PgConnection,
    rows: &[E],
) -> Result<()> {
    let mut query = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(postgres_insert(true)));
    for column in column_arrays(rows)? {
        query = match column {
            ColumnArray::Id(v) => query.bind(v),
            ColumnArray::Int(v) => query.bind(v),
            ColumnArray::Text(v) => query.bind(v),
            ColumnArray::Number(v) => query.bind(v),
            ColumnArray::Time(v) => query.bind(v),
        };
    }
    query.execute(conn).await.map_err(driver_error)?;
    Ok(())
}

/// What a history listing asks for, besides who may see what.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub run_id: Option<Uuid>,
    pub status: Option<Status>,
    /// Attempts that ended at or after this time (running ones have not ended).
    pub since: Option<DateTime<Utc>>,
}

fn visible(query: sea_orm::Select<Entity>, visible: &Visible) -> Option<sea_orm::Select<Entity>> {
    match Projects::of(visible) {
        Projects::All => Some(query),
        Projects::Only(ids) if ids.is_empty() => None,
        Projects::Only(ids) => Some(query.filter(Column::ProjectId.is_in(ids))),
    }
}

async fn page<C: ConnectionTrait>(
    conn: &C,
    query: sea_orm::Select<Entity>,
    after: Option<HistoryCursor>,
    limit: u64,
) -> Result<Vec<Model>> {
    const ORDER: [Column; 4] = [
        Column::FinishedAt,
        Column::RunId,
        Column::TaskId,
        Column::Attempt,
    ];
    let query = match after {
        Some(c) => query.filter(Expr::tuple(ORDER.map(Expr::col)).lt(Expr::tuple([
            Expr::value(c.finished_at),
            Expr::value(c.run_id),
            Expr::value(c.task_id),
            Expr::value(c.attempt),
        ]))),
        None => query,
    };
    Ok(ORDER
        .into_iter()
        .fold(query, |query, column| query.order_by_desc(column))
        .limit(limit)
        .all(conn)
        .await?)
}

/// Ended attempts newest first (by finish time), after the cursor.
pub async fn history<C: ConnectionTrait>(
    conn: &C,
    who: &Visible,
    filter: &HistoryFilter,
    after: Option<HistoryCursor>,
    limit: u64,
) -> Result<Vec<Model>> {
    let Some(mut query) = visible(Entity::find(), who) else {
        return Ok(Vec::new());
    };
    if let Some(run) = filter.run_id {
        query = query.filter(Column::RunId.eq(run));
    }
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(Column::FinishedAt.gte(since));
    }
    page(conn, query, after, limit).await
}

/// Deletes up to `limit` attempts that ended before `cutoff`, by their key. Returns how many.
pub async fn delete_ended_before<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<u64> {
    const KEY: [Column; 3] = [Column::RunId, Column::TaskId, Column::Attempt];
    let old = Entity::find()
        .select_only()
        .columns(KEY)
        .filter(Column::FinishedAt.lt(cutoff))
        .limit(limit)
        .into_query();
    let done = Entity::delete_many()
        .filter(Expr::tuple(KEY.map(Expr::col)).in_subquery(old))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}
