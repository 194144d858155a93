//! Ended attempts of tasks, written with the completion that ended them (one multi-row insert
//! per run per batch).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entity::{task, task_attempt};
use crate::error::Result;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed (or lost) with attempts left: the task is queued again.
    Retrying,
    Dead,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::Dead => "dead",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The row for `task`'s current attempt ending as `outcome`.
pub fn ended(
    task: &task::Model,
    outcome: Outcome,
    exit_code: Option<i32>,
    error: &str,
    now: DateTime<Utc>,
) -> task_attempt::ActiveModel {
    task_attempt::ActiveModel {
        task_id: Set(task.id),
        attempt: Set(task.attempt),
        run_id: Set(task.run_id.clone()),
        agent_id: Set(task.agent_id.clone().unwrap_or_default()),
        outcome: Set(outcome.as_str().to_owned()),
        exit_code: Set(exit_code),
        error: Set(error.to_owned()),
        started_at: Set(task.started_at),
        finished_at: Set(now),
    }
}

pub async fn record<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<task_attempt::ActiveModel>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    task_attempt::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Every ended attempt of a run's tasks, by task and attempt.
pub async fn for_run<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
) -> Result<Vec<task_attempt::Model>> {
    Ok(task_attempt::Entity::find()
        .filter(task_attempt::Column::RunId.eq(run_id))
        .order_by_asc(task_attempt::Column::TaskId)
        .order_by_asc(task_attempt::Column::Attempt)
        .all(conn)
        .await?)
}
