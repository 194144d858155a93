//! The execution history: batched upserts that never move an attempt backwards, and the
//! read behind task history. Only ended attempts are written (one row per attempt, when it
//! ends); running ones live in the active-task view (`crate::active`).
//!
//! The upsert is one `INSERT ... ON CONFLICT (task_id, attempt) DO UPDATE SET ... WHERE` per
//! chunk of rows, the same SQL on PostgreSQL and SQLite. Its expressions are the merge rule of
//! [`Execution::merge`] written over `excluded` (the incoming row) and the stored row, so
//! events from concurrent batches meet in the database under the same rule as events folded
//! within one batch.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entity::task_execution::{ActiveModel, Column, Entity, Model};
use crate::domain::execution::{Execution, Status};
use crate::domain::visibility::Visible;
use crate::error::Result;

/// Rows per statement: 24 parameters each stays far below both databases' limits.
const CHUNK: usize = 500;

const TABLE: &str = "task_executions";

fn active_model(e: &Execution, now: DateTime<Utc>) -> ActiveModel {
    ActiveModel {
        id: NotSet,
        task_id: Set(e.task_id.clone()),
        attempt: Set(e.attempt),
        run_id: Set(e.run_id.clone()),
        project_id: Set(e.project_id.clone()),
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
        finished_at: Set(e.finished_at),
        not_before: Set(e.not_before),
        wait_ms: Set(e.wait_ms()),
        run_ms: Set(e.run_ms()),
        precedence: Set(e.precedence()),
        updated_at: Set(now),
    }
}

/// The ON CONFLICT clause: the merge rule in SQL.
fn merge_rule() -> OnConflict {
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
    let mut rule = OnConflict::columns([Column::TaskId, Column::Attempt]);
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
        rule.value(column, Expr::cust(from_winner(name)));
    }
    for (column, name) in [
        (Column::Workflow, "workflow"),
        (Column::AgentId, "agent_id"),
    ] {
        rule.value(column, Expr::cust(prefer(name, &text)));
    }
    for (column, name) in [
        (Column::QueuedAt, "queued_at"),
        (Column::StartedAt, "started_at"),
        (Column::WaitMs, "wait_ms"),
    ] {
        rule.value(column, Expr::cust(prefer(name, &nullable)));
    }
    rule.value(Column::UpdatedAt, Expr::cust("excluded.updated_at"));
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
    rule.action_and_where(Expr::cust(format!("{wins} OR {gaps}")));
    rule
}

/// Applies executions (already folded: one per attempt) to the history.
pub async fn upsert<C: ConnectionTrait>(conn: &C, rows: &[Execution]) -> Result<()> {
    let now = Utc::now();
    let rule = merge_rule();
    for chunk in rows.chunks(CHUNK) {
        Entity::insert_many(chunk.iter().map(|e| active_model(e, now)))
            .on_conflict(rule.clone())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// What a history listing asks for, besides who may see what.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub run_id: Option<String>,
    pub status: Option<Status>,
    /// Attempts that ended at or after this time (running ones have not ended).
    pub since: Option<DateTime<Utc>>,
}

fn visible(query: sea_orm::Select<Entity>, visible: &Visible) -> Option<sea_orm::Select<Entity>> {
    match visible {
        Visible::All => Some(query),
        Visible::Projects(ids) if ids.is_empty() => None,
        Visible::Projects(ids) => Some(query.filter(Column::ProjectId.is_in(ids.iter().cloned()))),
    }
}

async fn page<C: ConnectionTrait>(
    conn: &C,
    query: sea_orm::Select<Entity>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Model>> {
    let query = match before {
        Some(id) => query.filter(Column::Id.lt(id)),
        None => query,
    };
    Ok(query
        .order_by_desc(Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Ended attempts newest first (by when the history first heard of them), before the cursor.
pub async fn history<C: ConnectionTrait>(
    conn: &C,
    who: &Visible,
    filter: &HistoryFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Model>> {
    let Some(mut query) = visible(Entity::find(), who) else {
        return Ok(Vec::new());
    };
    if let Some(run) = &filter.run_id {
        query = query.filter(Column::RunId.eq(run.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(Column::FinishedAt.gte(since));
    }
    page(conn, query, before, limit).await
}
