//! Task lifecycle events for monitoring: one step when an agent takes an attempt (`LEASED`),
//! one when the attempt ends (succeeded, retry scheduled, lease expired, dead-lettered,
//! cancelled), and one when a dead letter's replay queues its task again (`QUEUED`, written
//! in the replay's transaction).
//!
//! Endings are written to the outbox in the transaction that makes the change, so the
//! history monitoring builds can neither miss an attempt nor invent one. `LEASED` steps are
//! not: a claim is the one write an agent waits on, and an outbox row in it lengthens the
//! transaction that holds the claimed rows locked. Nor do they ride with the completions,
//! which one batcher applies one transaction at a time: every step added there is paid on
//! the path all completions queue on. A committed claim's steps wait in [`LeasedSteps`]
//! until their attempts have run for `engine.leased_delay`, and are written together (checked
//! every `engine.leased_flush_interval`), in a transaction of their own, beside the claims
//! and completions rather than in their way. What that costs: the active-task view shows a
//! lease up to that much later, and a scheduler that dies with steps
//! waiting loses them, which costs nothing lasting: every ending carries the attempt's start
//! and agent (the history is whole without its `LEASED`), and monitoring's periodic
//! reconciliation with the scheduler's queue puts the attempt in the view. A `LEASED` that
//! arrives after its ending is ignored (monitoring tombstones ended attempts). One whose
//! attempt ends before it is written is never sent: the ending says so (`leased_unsent`),
//! and monitoring counts the attempt's wait from it.
//!
//! All steps of one transaction go as one `TaskLifecycleBatch` event (one outbox row), which
//! costs one small insert per transaction rather than a row per step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use switchyard_proto::events::v1::{
    Event, TaskLifecycle, TaskLifecycleBatch, TaskPhase, event::Payload,
};
use switchyard_runtime::outbox::{self, destination};
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::time::to_proto;

use crate::SERVICE;
use crate::error::{Error, Result};
use crate::store::attempts::{self, Outcome};
use crate::store::entity::{task, task_attempt};

use super::leased::{LeasedSteps, Waiting};

/// How an attempt ended, for its event.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    pub exit_code: Option<i32>,
    pub error: String,
    /// Why another attempt comes (`exit_code_1`, `timed_out`, `lease_expired`); empty when
    /// none does.
    pub retry_reason: String,
    /// When the next attempt becomes eligible, for a scheduled retry.
    pub not_before: Option<DateTime<Utc>>,
}

fn base(task: &task::Model, phase: TaskPhase) -> TaskLifecycle {
    TaskLifecycle {
        task_id: task.uuid.clone(),
        run_id: task.run_id.clone(),
        project_id: task.project_id.clone(),
        node: task.node.clone(),
        shard_index: task.shard_index.max(0) as u32,
        shard_count: task.shard_count.max(0) as u32,
        attempt: task.attempt.max(0) as u32,
        iteration: task.iteration.max(0) as u32,
        phase: phase as i32,
        agent_id: task.agent_id.clone().unwrap_or_default(),
        // The attempt became eligible at `not_before` (its backoff's end, or its enqueue).
        queued_at: Some(to_proto(task.not_before)),
        started_at: task.started_at.map(to_proto),
        ..TaskLifecycle::default()
    }
}

/// An agent took the attempt (`task` as leased).
pub fn leased(task: &task::Model) -> TaskLifecycle {
    base(task, TaskPhase::Leased)
}

/// A dead letter's replay queued the task again (`task` as queued, at its new attempt).
pub fn requeued(task: &task::Model) -> TaskLifecycle {
    base(task, TaskPhase::Queued)
}

/// The attempt ended (`task` as it was while leased, before the change).
pub fn ended(
    task: &task::Model,
    workflow: &str,
    phase: TaskPhase,
    ending: Ending,
    now: DateTime<Utc>,
) -> TaskLifecycle {
    let mut step = base(task, phase);
    step.workflow = workflow.to_owned();
    step.exit_code = ending.exit_code;
    step.error = ending.error;
    step.retry_reason = ending.retry_reason;
    step.not_before = ending.not_before.map(to_proto);
    step.finished_at = Some(to_proto(now));
    step
}

/// The ends of attempts of one settled group: their attempt records and their events, each
/// written with one insert.
#[derive(Default)]
pub struct Endings {
    attempts: Vec<task_attempt::ActiveModel>,
    steps: Vec<TaskLifecycle>,
}

impl Endings {
    pub fn with_capacity(n: usize) -> Endings {
        Endings {
            attempts: Vec::with_capacity(n),
            steps: Vec::with_capacity(n),
        }
    }

    /// `task` (as it was while leased) ended its attempt.
    pub fn push(
        &mut self,
        task: &task::Model,
        workflow: &str,
        (outcome, phase): (Outcome, TaskPhase),
        ending: Ending,
        now: DateTime<Utc>,
    ) {
        self.attempts.push(attempts::ended(
            task,
            outcome,
            ending.exit_code,
            &ending.error,
            now,
        ));
        self.steps.push(ended(task, workflow, phase, ending, now));
    }

    /// Writes the attempt records in the caller's transaction and adds the steps to
    /// `steps`, which the caller writes with the rest of its transaction's as one event.
    pub async fn write<C: ConnectionTrait>(
        self,
        conn: &C,
        steps: &mut Vec<TaskLifecycle>,
    ) -> Result<()> {
        attempts::record(conn, self.attempts).await?;
        steps.extend(self.steps);
        Ok(())
    }
}

/// Writes `steps` for monitoring in the caller's transaction, as one event (one outbox row),
/// when task events are on.
pub async fn emit<C: ConnectionTrait>(
    conn: &C,
    enabled: bool,
    steps: Vec<TaskLifecycle>,
) -> Result<()> {
    if enabled && !steps.is_empty() {
        outbox::enqueue(conn, destination::MONITORING, &[event(steps)]).await?;
    }
    Ok(())
}

/// The steps as one event.
fn event(steps: Vec<TaskLifecycle>) -> Event {
    outbox::event(
        SERVICE,
        Payload::TaskLifecycles(TaskLifecycleBatch { steps }),
    )
}

/// Time allowed on top of `engine.leased_delay` and one flush interval before a `LEASED` step
/// is surely written (or, its attempt having ended first, dropped): a flush that runs late,
/// and another replica's clock.
const PENDING_LEEWAY: Duration = Duration::from_secs(1);

impl super::Engine {
    /// Whether the `LEASED` step of a leased attempt (task `task_uuid`, leased at
    /// `started_at`) may not have been sent at `now`: it waits here, or the attempt is young
    /// enough for its step to wait on the replica that leased it. Monitoring leaves such
    /// attempts out of its view until the step comes (see `LeasedAttempt.lifecycle_pending`).
    pub fn lifecycle_pending(
        &self,
        task_uuid: &str,
        started_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        if !self.settings.task_events {
            return false;
        }
        let window =
            self.settings.leased_delay + self.settings.leased_flush_interval + PENDING_LEEWAY;
        let young = started_at.is_some_and(|at| {
            chrono::Duration::from_std(window).is_ok_and(|window| now - at < window)
        });
        young || self.leased.contains(task_uuid)
    }

    /// Writes the transaction's lifecycle `steps` as one event, then commits. The waiting
    /// `LEASED` steps of the attempts it ends are dropped if it commits (see
    /// [`LeasedSteps::take_ended`]), and put back if it surely does not: when the commit
    /// itself fails, it may have committed all the same (its answer lost), and a step put
    /// back would then be sent for an attempt whose ending said it never would be, which
    /// monitoring would show as running until its next reconciliation. Dropped instead, an
    /// attempt that is in fact still running shows there only from that reconciliation on.
    pub(super) async fn commit_with_steps(
        &self,
        txn: DatabaseTransaction,
        mut steps: Vec<TaskLifecycle>,
    ) -> Result<()> {
        let unsent = self.leased.take_ended(&mut steps);
        if let Err(error) = emit(&txn, self.settings.task_events, steps).await {
            self.leased.restore(unsent);
            return Err(error);
        }
        Ok(txn.commit().await?)
    }

    /// Writes the `LEASED` steps of attempts leased at least `engine.leased_delay` ago as one
    /// event in a transaction of their own; puts them back when it fails. Returns how many
    /// went.
    pub async fn flush_leased(&self) -> Result<usize> {
        self.write_leased(self.settings.leased_delay).await
    }

    /// Writes every waiting `LEASED` step, however young (at shutdown: nobody else will).
    pub async fn flush_all_leased(&self) -> Result<usize> {
        self.write_leased(Duration::ZERO).await
    }

    async fn write_leased(&self, older_than: Duration) -> Result<usize> {
        let due = self.leased.take_older_than(older_than);
        if due.is_empty() {
            return Ok(0);
        }
        let count = due.len();
        let places: Vec<_> = due.iter().map(Waiting::place).collect();
        let event = event(due.into_iter().map(|w| w.step).collect());
        let written = async {
            let txn = switchyard_runtime::db::write_txn(&self.db).await?;
            // The steps waited in memory until now, so a crash could lose them anyway (the
            // active view's reconciliation covers that): not worth a WAL flush every round.
            switchyard_runtime::db::without_flush_wait(&txn).await?;
            outbox::enqueue(&txn, destination::MONITORING, std::slice::from_ref(&event)).await?;
            txn.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = written {
            // A commit whose outcome is unknown may send them twice, which monitoring's merge
            // makes harmless.
            if let Some(Payload::TaskLifecycles(batch)) = event.payload {
                self.leased
                    .restore(LeasedSteps::rejoin(places, batch.steps));
            }
            return Err(error);
        }
        Ok(count)
    }
}

/// Writes the `LEASED` steps that have waited `engine.leased_delay` every `interval` until
/// shutdown; then all that wait, however young, once more each interval until one passes with
/// nothing new (claims answered while the server drains). A claim that commits later still is
/// left to the active view's reconciliation, as after a crash.
pub fn spawn_leased_flush(
    engine: super::Engine,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    async fn flush(engine: &super::Engine, all: bool) -> Result<usize> {
        let outcome = if all {
            engine.flush_all_leased().await
        } else {
            engine.flush_leased().await
        };
        if let Err(error) = &outcome {
            tracing::warn!(%error, waiting = engine.leased.len(), "leased steps for monitoring not written");
        }
        outcome
    }
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => {}
            }
            let _ = flush(&engine, shutdown.is_cancelled()).await;
        }
        loop {
            tokio::time::sleep(interval).await;
            if !matches!(flush(&engine, true).await, Ok(1..)) {
                return;
            }
        }
    })
}

/// The retry reason of a failure, as monitoring groups them.
pub fn retry_reason(failure: crate::domain::retry::Failure) -> String {
    use crate::domain::retry::Failure;
    match failure {
        Failure::Exit(code) => format!("exit_code_{code}"),
        Failure::TimedOut => "timed_out".to_owned(),
        Failure::LeaseExpired => "lease_expired".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::retry::Failure;

    fn task() -> task::Model {
        let now = Utc::now();
        task::Model {
            id: 7,
            uuid: "t-1".into(),
            run_id: "r-1".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            node: "test".into(),
            iteration: 1,
            shard_index: 2,
            shard_count: 4,
            attempt: 3,
            attempt_base: 0,
            infra_losses: 0,
            status: "leased".into(),
            priority: 0,
            command: "true".into(),
            env_json: "{}".into(),
            labels_json: "{}".into(),
            timeout_s: 60,
            not_before: now,
            lease_expires_at: None,
            agent_id: Some("agent-9".into()),
            queued_at: now,
            started_at: Some(now),
            finished_at: None,
            exit_code: None,
            error: String::new(),
            outputs_json: String::new(),
            result_json: String::new(),
            log_tail: String::new(),
            node_concurrency: None,
        }
    }

    #[test]
    fn an_ended_attempt_carries_what_monitoring_needs() {
        let ending = Ending {
            exit_code: Some(1),
            error: "exit code 1".into(),
            retry_reason: retry_reason(Failure::Exit(1)),
            not_before: Some(Utc::now()),
        };
        let e = ended(&task(), "ci", TaskPhase::RetryScheduled, ending, Utc::now());
        assert_eq!(
            (
                e.task_id.as_str(),
                e.attempt,
                e.shard_index,
                e.iteration,
                e.agent_id.as_str()
            ),
            ("t-1", 3, 2, 1, "agent-9")
        );
        assert_eq!(e.phase, TaskPhase::RetryScheduled as i32);
        assert_eq!(
            (e.workflow.as_str(), e.exit_code, e.retry_reason.as_str()),
            ("ci", Some(1), "exit_code_1")
        );
        assert!(e.queued_at.is_some() && e.started_at.is_some() && e.finished_at.is_some());
        assert!(e.not_before.is_some());
    }

    #[test]
    fn retry_reasons_name_the_failure() {
        assert_eq!(retry_reason(Failure::Exit(137)), "exit_code_137");
        assert_eq!(retry_reason(Failure::TimedOut), "timed_out");
        assert_eq!(retry_reason(Failure::LeaseExpired), "lease_expired");
    }
}
