//! Aggregates over the execution history: retry statistics per (project, workflow, node) and
//! dead letters by reason. Set-based SQL (GROUP BY, one window function for the top errors),
//! the same text on PostgreSQL and SQLite apart from placeholders, bounded output.
//!
//! Error reasons are normalised in SQL ([`REASON`]): a retry's `retry_reason` as recorded
//! (`exit_code_1`, `timed_out`, `lease_expired`); a dead letter's from its exit code or the
//! start of its error, so "exit code 1 on attempt 3; 3 attempts allowed" and the same on
//! attempt 5 count as one reason.
//!
//! Dead letters: an attempt recorded `dead_lettered` counts until it is replayed — the
//! scheduler's replay (`DeadLetterService.RetryDeadLetters`) queues the task again at the next
//! attempt and says so, which marks the dead letter `replayed_at` (`store::replays`) — or a
//! later attempt of the same task is in the history (a replay whose word arrived before its
//! dead letter did). Whatever the replay's outcome, the old dead letter no longer counts (if
//! the replay dead-letters again, that attempt counts). Retry statistics instead count every
//! attempt in the window, replays included.

use chrono::{DateTime, Utc};
use sea_orm::prelude::Uuid;
use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement, Value};

use crate::domain::retry_stats::{Counts, TOP_ERRORS};
use crate::domain::visibility::Visible;
use crate::error::Result;
use crate::store::history_ids::Projects;

/// (project, workflow, node) groups listed at most, most attempts first.
pub const MAX_NODES: u64 = 500;
/// Dead-letter reasons listed at most, most frequent first.
pub const MAX_REASONS: u64 = 50;

/// The normalised reason of an ended attempt.
const REASON: &str = "CASE \
    WHEN retry_reason <> '' THEN retry_reason \
    WHEN exit_code IS NOT NULL AND error LIKE '%is not retryable%' \
      THEN 'exit_code_' || exit_code || '_not_retryable' \
    WHEN exit_code IS NOT NULL THEN 'exit_code_' || exit_code \
    WHEN error LIKE 'timed out%' THEN 'timed_out' \
    WHEN error LIKE 'lost to the platform%' OR error LIKE 'lease expired%' THEN 'lease_expired' \
    WHEN error = '' THEN 'unknown' \
    ELSE SUBSTR(error, 1, 120) END";

/// Attempts that failed one way or another.
const FAILED: &str = "('retrying', 'lease_expired', 'dead_lettered', 'failed')";

/// SQL text with its parameters, placeholders in the backend's syntax.
struct Sql {
    backend: DatabaseBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DatabaseBackend) -> Sql {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn param(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.values.push(value.into());
        let placeholder = match self.backend {
            DatabaseBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        };
        self.text.push_str(&placeholder);
        self
    }

    /// ` AND project_id IN (...)` for a project list; nothing for every project.
    fn projects(&mut self, who: &Projects) -> &mut Sql {
        if let Projects::Only(ids) = who {
            self.push(" AND project_id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                self.param(*id);
            }
            self.push(")");
        }
        self
    }

    fn statement(&self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text.clone(), self.values.clone())
    }
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    project_id: Uuid,
    workflow: String,
    node: String,
    attempts: i64,
    retries: i64,
    succeeded_after_retry: i64,
    dead_lettered: i64,
}

#[derive(Debug, FromQueryResult)]
struct ErrorRow {
    project_id: Uuid,
    workflow: String,
    node: String,
    reason: String,
    n: i64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// What a retry-statistics query covers.
#[derive(Debug, Clone)]
pub struct Window<'a> {
    pub workflow: Option<&'a str>,
    /// Attempts that ended at or after this time.
    pub since: DateTime<Utc>,
}

/// Per (project, workflow, node): attempt counts (most attempts first, at most
/// [`MAX_NODES`]), and the top [`TOP_ERRORS`] reasons of each as `(project, workflow, node,
/// reason, count)`.
#[allow(clippy::type_complexity)]
pub async fn retry_statistics<C: ConnectionTrait>(
    conn: &C,
    who: &Visible,
    window: &Window<'_>,
) -> Result<(Vec<Counts>, Vec<(String, String, String, String, u64)>)> {
    let who = &Projects::of(who);
    if who.none() {
        return Ok((Vec::new(), Vec::new()));
    }
    let backend = conn.get_database_backend();
    let filter = |sql: &mut Sql, failed_only: bool| {
        sql.push(" WHERE finished_at >= ").param(window.since);
        if failed_only {
            sql.push(&format!(" AND status IN {FAILED}"));
        }
        sql.projects(who);
        if let Some(workflow) = window.workflow {
            sql.push(" AND workflow = ").param(workflow.to_owned());
        }
    };
    let mut counts = Sql::new(backend);
    counts.push(
        "SELECT project_id, workflow, node, COUNT(*) AS attempts, \
           SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) AS retries, \
           SUM(CASE WHEN attempt > 1 AND status = 'succeeded' THEN 1 ELSE 0 END) \
             AS succeeded_after_retry, \
           SUM(CASE WHEN status = 'dead_lettered' THEN 1 ELSE 0 END) AS dead_lettered \
         FROM task_executions",
    );
    filter(&mut counts, false);
    counts.push(" GROUP BY project_id, workflow, node ORDER BY attempts DESC, project_id, workflow, node LIMIT ");
    counts.param(MAX_NODES as i64);
    let rows = CountRow::find_by_statement(counts.statement())
        .all(conn)
        .await?;
    let counts: Vec<Counts> = rows
        .into_iter()
        .map(|r| Counts {
            project_id: r.project_id.to_string(),
            workflow: r.workflow,
            node: r.node,
            attempts: count(r.attempts),
            retries: count(r.retries),
            succeeded_after_retry: count(r.succeeded_after_retry),
            dead_lettered: count(r.dead_lettered),
        })
        .collect();
    if counts.is_empty() {
        return Ok((counts, Vec::new()));
    }
    let mut errors = Sql::new(backend);
    errors.push(&format!(
        "WITH failed AS (SELECT project_id, workflow, node, {REASON} AS reason \
           FROM task_executions"
    ));
    filter(&mut errors, true);
    errors.push(&format!(
        "), ranked AS (SELECT project_id, workflow, node, reason, COUNT(*) AS n, \
           ROW_NUMBER() OVER (PARTITION BY project_id, workflow, node \
             ORDER BY COUNT(*) DESC, reason) AS pos \
           FROM failed GROUP BY project_id, workflow, node, reason) \
         SELECT project_id, workflow, node, reason, n FROM ranked WHERE pos <= {TOP_ERRORS} \
         ORDER BY project_id, workflow, node, n DESC, reason LIMIT "
    ));
    errors.param((MAX_NODES as usize * TOP_ERRORS) as i64);
    let errors = ErrorRow::find_by_statement(errors.statement())
        .all(conn)
        .await?
        .into_iter()
        .map(|r| {
            let project = r.project_id.to_string();
            (project, r.workflow, r.node, r.reason, count(r.n))
        })
        .collect();
    Ok((counts, errors))
}

/// Dead letters not superseded by a replay, by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterGroup {
    pub reason: String,
    pub count: u64,
    pub oldest: Option<DateTime<Utc>>,
}

#[derive(Debug, FromQueryResult)]
struct GroupRow {
    reason: String,
    n: i64,
    oldest: Option<DateTime<Utc>>,
}

/// The total of unreplayed dead letters and their groups by reason (most first, at most
/// [`MAX_REASONS`]).
pub async fn dead_letters<C: ConnectionTrait>(
    conn: &C,
    who: &Visible,
) -> Result<(u64, Vec<DeadLetterGroup>)> {
    let who = &Projects::of(who);
    if who.none() {
        return Ok((0, Vec::new()));
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!(
        "SELECT {REASON} AS reason, COUNT(*) AS n, MIN(finished_at) AS oldest \
         FROM task_executions e WHERE status = 'dead_lettered' AND replayed_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM task_executions later \
             WHERE later.run_id = e.run_id AND later.task_id = e.task_id \
               AND later.attempt > e.attempt)"
    ));
    sql.projects(who);
    sql.push(" GROUP BY 1 ORDER BY n DESC, reason");
    let rows = GroupRow::find_by_statement(sql.statement())
        .all(conn)
        .await?;
    let total = rows.iter().map(|r| count(r.n)).sum();
    let groups = rows
        .into_iter()
        .take(MAX_REASONS as usize)
        .map(|r| DeadLetterGroup {
            reason: r.reason,
            count: count(r.n),
            oldest: r.oldest,
        })
        .collect();
    Ok((total, groups))
}
