//! Claiming work: leasing ready tasks to an agent, best priority first, with its labels, and
//! without taking a project or a node over its concurrency limit; runs whose first task this
//! is start.
//!
//! PostgreSQL does the common case in ONE statement: a data-modifying CTE picks ready rows
//! (`FOR UPDATE SKIP LOCKED`), leases those no limit applies to and starts their runs. Rows a
//! limit applies to come back picked and locked but not leased; they are admitted under the
//! limits' advisory locks in a second step (`admit_limited`). SQLite has one writer at a time
//! (the caller's transaction began IMMEDIATE): it reads, filters labels here and updates.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use super::entity::{project_limit, run, task};
use super::queue::labels_match;
use super::runs;
use crate::domain::limits::{self, Candidate, Running};
use crate::domain::task_status::TaskStatus;
use crate::error::Result;

/// Server settings of the connections that claim. Claims walk the ready-task index in
/// priority order. Between vacuums that index still holds an entry for every task that has
/// left the queue; a plain index scan marks those dead as it passes, so later claims skip
/// them, while a bitmap scan never does and visits every one again on every claim (after a
/// burst of 20,000 tasks, `auto_explain` showed each claim reading all 20,000 entries and 626
/// heap pages, over 2 ms, until autovacuum came by). The planner picks the bitmap scan whenever it expects few ready rows,
/// so the claim pool turns bitmap scans off; the rest of the scheduler keeps the planner's
/// choice.
const PLANNER: &[(&str, &str)] = &[("enable_bitmapscan", "off")];

/// The pool claims run on: PostgreSQL connections with [`PLANNER`]'s settings, half as many
/// as the main pool may open (at least two). SQLite has one writer: claims share `main`.
pub async fn pool(
    config: &switchyard_runtime::config::DatabaseConfig,
    main: &sea_orm::DatabaseConnection,
) -> std::result::Result<sea_orm::DatabaseConnection, switchyard_runtime::RuntimeError> {
    if main.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(main.clone());
    }
    let config = switchyard_runtime::config::DatabaseConfig {
        max_connections: (config.max_connections / 2).max(2),
        ..config.clone()
    };
    switchyard_runtime::db::connect_with(&config, PLANNER).await
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

/// What a claim leased, and the runs that started with it (they were `provisioning`).
#[derive(Debug, Default)]
pub struct Claimed {
    /// Best priority first.
    pub tasks: Vec<task::Model>,
    pub started: Vec<run::Model>,
}

/// Leases up to `max` ready tasks to `who` and starts the runs they belong to that had not
/// started, in the caller's transaction.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    now: DateTime<Utc>,
) -> Result<Claimed> {
    if who.max == 0 {
        return Ok(Claimed::default());
    }
    let mut claimed = match conn.get_database_backend() {
        DatabaseBackend::Postgres => claim_postgres(conn, who, now).await?,
        _ => claim_sqlite(conn, who, now).await?,
    };
    claimed
        .tasks
        .sort_by_key(|t| (std::cmp::Reverse(t.priority), t.id));
    Ok(claimed)
}

fn expiry(who: &Claimant<'_>, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(who.lease).unwrap_or_default()
}

/// Leases the rows `ids` (picked and locked by this transaction).
async fn lease<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    ids: Vec<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<task::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(task::Entity::update_many()
        .col_expr(task::Column::Status, TaskStatus::Leased.as_str().into())
        .col_expr(task::Column::AgentId, Some(who.agent_id.to_owned()).into())
        .col_expr(task::Column::LeaseExpiresAt, Some(expiry(who, now)).into())
        .col_expr(task::Column::StartedAt, Some(now).into())
        .filter(task::Column::Id.is_in(ids))
        .exec_with_returning(conn)
        .await?)
}

/// The runs of `tasks`, deduplicated, for `runs::start`.
fn runs_of(tasks: &[task::Model]) -> Vec<&str> {
    let mut ids: Vec<&str> = tasks.iter().map(|t| t.run_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The picking and leasing statement. Every filter beyond `status` is a `CASE`, on purpose:
/// the planner cannot estimate them, so it keeps the ordered scan of the ready index that
/// stops after `max` rows. Written as plain operators (`jsonb <@` is estimated at 0.1%), it
/// sorts every ready row instead — 12 ms rather than 0.3 ms per claim with 10,000 tasks
/// waiting (EXPLAIN ANALYZE, this machine). Full limits are filtered out here unlocked (a
/// cheap look); the exact check happens under the limit's lock.
///
/// Rows come back in two kinds: leased (`limited` false, `run_started` true when the lease
/// started its run) and picked-but-limited (`limited` true, not leased, still locked).
const CLAIM_SQL: &str = "\
WITH picked AS (\
  SELECT t.id, pl.max_running_tasks AS project_limit, \
    (pl.project_id IS NOT NULL OR t.node_concurrency IS NOT NULL) AS limited \
  FROM tasks t LEFT JOIN project_limits pl ON pl.project_id = t.project_id \
  WHERE t.status = 'queued' AND t.not_before <= $1 \
    AND CASE WHEN t.labels_json = '{}' THEN TRUE ELSE t.labels_json::jsonb <@ $2::jsonb END \
    AND ($3 = '' OR t.org_id = $3) AND ($4 = '' OR t.project_id = $4) \
    AND CASE WHEN pl.project_id IS NULL THEN TRUE ELSE pl.max_running_tasks > \
      (SELECT count(*) FROM tasks l WHERE l.status = 'leased' \
         AND l.project_id = t.project_id) END \
    AND CASE WHEN t.node_concurrency IS NULL THEN TRUE ELSE t.node_concurrency > \
      (SELECT count(*) FROM tasks l WHERE l.status = 'leased' \
         AND l.run_id = t.run_id AND l.node = t.node) END \
  ORDER BY t.priority DESC, t.id LIMIT $5 FOR UPDATE OF t SKIP LOCKED\
), leased AS (\
  UPDATE tasks SET status = 'leased', agent_id = $6, lease_expires_at = $7, started_at = $1 \
  FROM picked WHERE tasks.id = picked.id AND NOT picked.limited \
  RETURNING tasks.*\
), started AS (\
  UPDATE runs SET status = 'running', started_at = $1, updated_at = $1 \
  WHERE id IN (SELECT run_id FROM leased) AND status = 'provisioning' \
  RETURNING runs.id\
) \
SELECT l.*, FALSE AS limited, NULL::int AS project_limit, \
  EXISTS (SELECT 1 FROM started s WHERE s.id = l.run_id) AS run_started \
FROM leased l \
UNION ALL \
SELECT t.*, TRUE, p.project_limit, FALSE \
FROM picked p JOIN tasks t ON t.id = p.id WHERE p.limited";

async fn claim_postgres<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    now: DateTime<Utc>,
) -> Result<Claimed> {
    let labels = serde_json::to_string(who.labels).unwrap_or_else(|_| "{}".into());
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        CLAIM_SQL,
        [
            now.into(),
            labels.into(),
            who.org_id.into(),
            who.project_id.into(),
            i64::from(who.max).into(),
            who.agent_id.into(),
            expiry(who, now).into(),
        ],
    );
    let mut claimed = Claimed::default();
    let mut started_runs: Vec<String> = Vec::new();
    let mut limited: Vec<Candidate> = Vec::new();
    for row in conn.query_all_raw(statement).await? {
        let task = task::Model::from_query_result(&row, "")?;
        if row.try_get::<bool>("", "limited")? {
            let project_limit: Option<i32> = row.try_get("", "project_limit")?;
            limited.push(candidate(task, project_limit));
        } else {
            if row.try_get::<bool>("", "run_started")? {
                started_runs.push(task.run_id.clone());
            }
            claimed.tasks.push(task);
        }
    }
    if !limited.is_empty() {
        let room = (who.max as usize).saturating_sub(claimed.tasks.len());
        let admitted = admit_limited(conn, &limited, room).await?;
        let more = lease(conn, who, admitted, now).await?;
        // The limited leases' runs were not covered by the statement's own start.
        claimed.started = runs::start(conn, &runs_of(&more), now).await?;
        claimed.tasks.extend(more);
    }
    started_runs.sort_unstable();
    started_runs.dedup();
    for id in started_runs {
        if !claimed.started.iter().any(|r| r.id == id)
            && let Some(run) = runs::find(conn, &id).await?
        {
            claimed.started.push(run);
        }
    }
    Ok(claimed)
}

fn candidate(task: task::Model, project_limit: Option<i32>) -> Candidate {
    Candidate {
        id: task.id,
        project_id: task.project_id,
        run_id: task.run_id,
        node: task.node,
        project_limit: project_limit.map(|l| l.max(0) as u32),
        node_limit: task.node_concurrency.map(|l| l.max(0) as u32),
    }
}

/// Which of the limited candidates may run, at most `max`, decided under the limits' locks.
async fn admit_limited<C: ConnectionTrait>(
    conn: &C,
    candidates: &[Candidate],
    max: usize,
) -> Result<Vec<i64>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut running = running_under_lock(conn, candidates).await?;
    Ok(limits::admit(candidates, &mut running, max))
}

async fn claim_sqlite<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    now: DateTime<Utc>,
) -> Result<Claimed> {
    let candidates = candidates_sqlite(conn, who, now).await?;
    let ids: Vec<i64> = if candidates.iter().any(Candidate::is_limited) {
        admit_limited(conn, &candidates, who.max as usize).await?
    } else {
        // More rows were read than may be leased (labels are filtered in Rust).
        candidates
            .iter()
            .take(who.max as usize)
            .map(|c| c.id)
            .collect()
    };
    let tasks = lease(conn, who, ids, now).await?;
    let started = runs::start(conn, &runs_of(&tasks), now).await?;
    Ok(Claimed { tasks, started })
}

/// SQLite: the caller's transaction is the only writer (it began IMMEDIATE); labels are
/// filtered here.
async fn candidates_sqlite<C: ConnectionTrait>(
    conn: &C,
    who: &Claimant<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Candidate>> {
    let mut query = task::Entity::find()
        .filter(super::task_status_is(TaskStatus::Queued))
        .filter(task::Column::NotBefore.lte(now));
    if !who.org_id.is_empty() {
        query = query.filter(task::Column::OrgId.eq(who.org_id));
    }
    if !who.project_id.is_empty() {
        query = query.filter(task::Column::ProjectId.eq(who.project_id));
    }
    let rows = query
        .order_by_desc(task::Column::Priority)
        .order_by_asc(task::Column::Id)
        .limit(u64::from(who.max) * 8)
        .all(conn)
        .await?;
    let mut projects: Vec<String> = rows.iter().map(|t| t.project_id.clone()).collect();
    projects.sort_unstable();
    projects.dedup();
    let limits: std::collections::HashMap<String, i32> = project_limit::Entity::find()
        .filter(project_limit::Column::ProjectId.is_in(projects))
        .all(conn)
        .await?
        .into_iter()
        .map(|l| (l.project_id, l.max_running_tasks))
        .collect();
    Ok(rows
        .into_iter()
        .filter(|t| labels_match(&t.labels_json, who.labels))
        .map(|t| {
            let limit = limits.get(&t.project_id).copied();
            candidate(t, limit)
        })
        .collect())
}

/// What runs now under each limit the candidates are subject to, counted after taking each
/// limit's transaction lock (PostgreSQL advisory locks, in one global order so claimers
/// cannot deadlock): a concurrent claimer of the same project or node waits until this one
/// commits, then counts this one's leases. SQLite has one writer and needs no lock.
async fn running_under_lock<C: ConnectionTrait>(
    conn: &C,
    candidates: &[Candidate],
) -> Result<Running> {
    let mut projects: Vec<&str> = candidates
        .iter()
        .filter(|c| c.project_limit.is_some())
        .map(|c| c.project_id.as_str())
        .collect();
    projects.sort_unstable();
    projects.dedup();
    let mut nodes: Vec<(&str, &str)> = candidates
        .iter()
        .filter(|c| c.node_limit.is_some())
        .map(|c| (c.run_id.as_str(), c.node.as_str()))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        let mut keys: Vec<String> = projects
            .iter()
            .map(|p| format!("limit:project:{p}"))
            .collect();
        keys.extend(nodes.iter().map(|(r, n)| format!("limit:node:{r}:{n}")));
        keys.sort_unstable();
        for key in keys {
            conn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                [key.into()],
            ))
            .await?;
        }
    }
    let mut running = Running::default();
    if !projects.is_empty() {
        let counts: Vec<(String, i64)> = task::Entity::find()
            .select_only()
            .column(task::Column::ProjectId)
            .column_as(task::Column::Id.count(), "n")
            .filter(super::task_status_is(TaskStatus::Leased))
            .filter(task::Column::ProjectId.is_in(projects.iter().copied()))
            .group_by(task::Column::ProjectId)
            .into_tuple()
            .all(conn)
            .await?;
        running.projects = counts
            .into_iter()
            .map(|(p, n)| (p, n.max(0) as u32))
            .collect();
    }
    if !nodes.is_empty() {
        let mut runs: Vec<&str> = nodes.iter().map(|(r, _)| *r).collect();
        runs.dedup();
        let counts: Vec<(String, String, i64)> = task::Entity::find()
            .select_only()
            .column(task::Column::RunId)
            .column(task::Column::Node)
            .column_as(task::Column::Id.count(), "n")
            .filter(super::task_status_is(TaskStatus::Leased))
            .filter(task::Column::RunId.is_in(runs))
            .group_by(task::Column::RunId)
            .group_by(task::Column::Node)
            .into_tuple()
            .all(conn)
            .await?;
        running.nodes = counts
            .into_iter()
            .map(|(r, n, c)| ((r, n), c.max(0) as u32))
            .collect();
    }
    Ok(running)
}
