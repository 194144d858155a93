//! Keeps the view equal to the scheduler's durable queue, which is what is leased: at
//! startup, every `active.reconcile_interval`, and at once when the view's epoch is gone
//! (Redis flushed or restarted empty) or a write to it failed. Once across replicas (a job
//! lock), so a flush does not make every replica list the whole queue.
//!
//! The view is read before the queue. An entry of that snapshot missing from the queue ended
//! (it was leased before the listing began, and a leased row keeps its id), so removing it is
//! safe; an attempt leased after the snapshot is not in it and cannot be removed by mistake.
//! Attempts the queue lists are put with fresh heartbeat and lease times; the put skips
//! attempts tombstoned as ended meanwhile (in the same atomic step, see `in_redis`).
//!
//! Except on a rebuild, attempts whose `LEASED` step the scheduler may not have sent yet
//! (`lifecycle_pending`: young ones) are not added: ingest adds them when their step comes.
//! An attempt that ends before its step is sent therefore never enters the view, so its
//! ending (marked `leased_unsent`) has nothing to remove there and costs the view nothing
//! (see `ingest`). One already in the view is kept and refreshed as any other.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_proto::scheduler::v1::LeasedAttempt;
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::shutdown::Shutdown;

use super::config::ActiveConfig;
use super::{ActiveView, Op, codec, scheduler};

const JOB: &str = "monitoring.active.reconcile";

/// How long an unreachable scheduler is expected at startup (services start in any order)
/// before it is worth a warning.
const STARTUP_GRACE: Duration = Duration::from_secs(15);

/// How soon a failed first reconciliation is retried.
const STARTUP_RETRY: Duration = Duration::from_millis(250);

/// The changes that make `view` (read first) equal to `leased` (read after): missing
/// attempts added, changed ones refreshed (keeping what only the view knows, the workflow),
/// ones no longer leased removed. Unchanged entries produce nothing.
pub fn diff(view: &[ActiveTask], leased: &[ActiveTask]) -> Vec<Op> {
    let by_field: HashMap<String, &ActiveTask> =
        view.iter().map(|t| (codec::field_of(t), t)).collect();
    let mut ops = Vec::new();
    let mut listed = std::collections::HashSet::with_capacity(leased.len());
    for task in leased {
        let field = codec::field_of(task);
        let fresh = match by_field.get(&field) {
            Some(known) => {
                let mut merged = task.clone();
                if merged.workflow.is_empty() {
                    merged.workflow.clone_from(&known.workflow);
                }
                if merged == **known {
                    listed.insert(field);
                    continue;
                }
                merged
            }
            None => task.clone(),
        };
        listed.insert(field);
        ops.push(Op::Put(Box::new(fresh)));
    }
    for task in view {
        if !listed.contains(&codec::field_of(task)) {
            ops.push(Op::Remove {
                project_id: task.project_id.clone(),
                task_id: task.task_id.clone(),
                attempt: task.attempt,
            });
        }
    }
    ops
}

/// The listed attempts the view is made equal to: on a `rebuild` (the view was flushed, and
/// its tombstones with it) all of them; otherwise those whose `LEASED` step has surely been
/// sent, and the others only when the view has them already (see the module docs).
pub fn to_reconcile(
    view: &[ActiveTask],
    leased: &[LeasedAttempt],
    rebuild: bool,
) -> Vec<ActiveTask> {
    let viewed: std::collections::HashSet<(&str, u32)> = view
        .iter()
        .map(|t| (t.task_id.as_str(), t.attempt))
        .collect();
    leased
        .iter()
        .filter(|a| {
            rebuild || !a.lifecycle_pending || viewed.contains(&(a.task_id.as_str(), a.attempt))
        })
        .map(scheduler::active_task)
        .collect()
}

/// One reconciliation (a `rebuild` when the view was flushed): how many entries were put
/// and removed.
pub async fn once(
    view: &ActiveView,
    channel: &GrpcChannel,
    timeout: Duration,
    rebuild: bool,
) -> Result<(usize, usize), String> {
    let snapshot = view.entries(None).await.map_err(|e| e.to_string())?;
    let leased = scheduler::leased(channel, None, timeout).await?;
    let tasks = to_reconcile(&snapshot, &leased.tasks, rebuild);
    let ops = diff(&snapshot, &tasks);
    let removed = ops
        .iter()
        .filter(|o| matches!(o, Op::Remove { .. }))
        .count();
    for chunk in ops.chunks(1000) {
        view.apply(chunk).await.map_err(|e| e.to_string())?;
    }
    view.mark_built().await.map_err(|e| e.to_string())?;
    Ok((ops.len() - removed, removed))
}

/// Reconciles under the job lock; `Ok(false)` when another replica holds it.
async fn locked_once(
    db: &DatabaseConnection,
    view: &ActiveView,
    channel: &GrpcChannel,
    timeout: Duration,
    rebuild: bool,
) -> Result<bool, String> {
    // SQLite (embedded mode) is one process: no lock, and no write transaction held open
    // across a call to the scheduler.
    let lock = if switchyard_runtime::db::is_postgres(db) {
        let txn = switchyard_runtime::db::write_txn(db)
            .await
            .map_err(|e| e.to_string())?;
        if !switchyard_runtime::db::try_job_lock(&txn, JOB)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(false);
        }
        Some(txn)
    } else {
        None
    };
    let started = Instant::now();
    let (put, removed) = once(view, channel, timeout, rebuild).await?;
    if let Some(txn) = lock {
        // Nothing was written in the transaction: it only held the lock.
        txn.commit().await.map_err(|e| e.to_string())?;
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // Quiet when the view was right: it is, nearly always.
    if put + removed > 0 {
        tracing::info!(
            put,
            removed,
            elapsed_ms,
            view = view.kind(),
            "active task view reconciled"
        );
    } else {
        tracing::debug!(
            elapsed_ms,
            view = view.kind(),
            "active task view reconciled"
        );
    }
    Ok(true)
}

/// Runs until shutdown.
pub async fn run(
    db: DatabaseConnection,
    view: ActiveView,
    channel: GrpcChannel,
    config: ActiveConfig,
    shutdown: Shutdown,
) {
    let began = Instant::now();
    let mut last: Option<Instant> = None;
    let mut last_failure_logged: Option<Instant> = None;
    loop {
        let due = last.is_none_or(|at| at.elapsed() >= config.reconcile_interval);
        let flushed = match view.intact().await {
            Ok(intact) => !intact,
            Err(error) => {
                tracing::debug!(%error, "active task view unreachable");
                false
            }
        };
        if due || flushed {
            if flushed && last.is_some() {
                tracing::info!("active task view flushed or behind, rebuilding");
            }
            match locked_once(&db, &view, &channel, config.scheduler_timeout, flushed).await {
                Ok(_) => {
                    last = Some(Instant::now());
                    metrics::counter!(
                        crate::metrics::ACTIVE_RECONCILES,
                        "service" => crate::SERVICE
                    )
                    .increment(1);
                }
                Err(error) if last.is_none() && began.elapsed() < STARTUP_GRACE => {
                    // Monitoring starts before the scheduler: not a problem yet.
                    tracing::debug!(%error, "active task view waits for the scheduler");
                }
                Err(error) => {
                    // Retried at the next check, logged at most once per interval.
                    if last_failure_logged
                        .is_none_or(|at| at.elapsed() >= config.reconcile_interval)
                    {
                        tracing::warn!(%error, "active task view not reconciled");
                        last_failure_logged = Some(Instant::now());
                    }
                }
            }
        }
        // Until the first reconciliation succeeds (the scheduler may start after monitoring),
        // retry soon: the view is only as good as what ingestion alone has seen.
        let pause = match last {
            None => config.flush_check_interval.min(STARTUP_RETRY),
            Some(_) => config.flush_check_interval,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
