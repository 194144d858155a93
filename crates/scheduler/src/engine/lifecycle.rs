//! Task lifecycle events for monitoring: one step when an agent takes an attempt (`LEASED`)
//! and one when the attempt ends (succeeded, retry scheduled, lease expired, dead-lettered,
//! cancelled).
//!
//! Endings are written to the outbox in the transaction that makes the change, so the
//! history monitoring builds can neither miss an attempt nor invent one. `LEASED` steps are
//! not: a claim is the one write an agent waits on, and an outbox row in it lengthens the
//! transaction that holds the claimed rows locked. A committed claim's steps wait in
//! [`LeasedSteps`] and leave with the next completion's event (under load, one arrives within
//! milliseconds), or on their own after `engine.leased_flush_interval` when none comes. What
//! that costs: the active-task view shows a lease that much later, and a scheduler that dies
//! with steps waiting loses them, which costs nothing lasting: every ending carries the
//! attempt's start and agent (the history is whole without its `LEASED`), and monitoring's
//! periodic reconciliation with the scheduler's queue puts the attempt in the view.
//!
//! All steps of one transaction go as one `TaskLifecycleBatch` event (one outbox row), which
//! costs one small insert per transaction rather than a row per step.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// `steps`, which the caller writes with the rest of its transaction's (see [`Outgoing`]).
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

/// Most `LEASED` steps [`LeasedSteps`] holds: past it (the database refusing every write for
/// a long while, say) the oldest are dropped, which the active view's reconciliation makes up
/// for.
const MAX_WAITING: usize = 100_000;

/// `LEASED` steps of committed claims, waiting for the next event of this replica (see the
/// module docs). Cheap to clone: clones share the steps.
#[derive(Clone, Default)]
pub struct LeasedSteps(Arc<Mutex<Waiting>>);

#[derive(Default)]
struct Waiting {
    steps: Vec<TaskLifecycle>,
    /// When the oldest of `steps` was added.
    since: Option<Instant>,
}

impl LeasedSteps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding the lock leaves a vector, which is still a list of steps.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A claim committed: its attempts' steps wait to be sent.
    pub fn add(&self, steps: impl IntoIterator<Item = TaskLifecycle>) {
        let mut waiting = self.lock();
        waiting.steps.extend(steps);
        if !waiting.steps.is_empty() {
            waiting.since.get_or_insert_with(Instant::now);
        }
        if waiting.steps.len() > MAX_WAITING {
            let dropped = waiting.steps.len() - MAX_WAITING;
            waiting.steps.drain(..dropped);
            tracing::warn!(
                dropped,
                "leased steps for monitoring could not be written for a long while; the oldest were dropped"
            );
        }
    }

    /// Takes every waiting step, to be written in the caller's transaction.
    fn take(&self) -> Vec<TaskLifecycle> {
        std::mem::take(&mut *self.lock()).steps
    }

    /// Puts back steps whose transaction did not commit, ahead of any added since; they
    /// count as waiting from now.
    fn restore(&self, mut steps: Vec<TaskLifecycle>) {
        let mut waiting = self.lock();
        steps.append(&mut waiting.steps);
        if !steps.is_empty() {
            waiting.since = Some(Instant::now());
        }
        waiting.steps = steps;
    }

    /// How many steps wait.
    pub fn len(&self) -> usize {
        self.lock().steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().steps.is_empty()
    }

    /// How long the oldest waiting step has waited; none when none waits.
    fn oldest(&self) -> Option<Duration> {
        self.lock().since.map(|since| since.elapsed())
    }
}

/// The task lifecycle event of one transaction: the waiting `LEASED` steps it carries and
/// the steps it makes. `enqueue` writes it in the transaction; `settled` tells it whether the
/// transaction committed, and puts the carried steps back when it did not.
pub struct Outgoing {
    event: Option<Event>,
    /// How many of the event's first steps were carried from `waiting`.
    carried: usize,
    waiting: LeasedSteps,
}

impl Outgoing {
    /// The event for `steps`, carrying what `waiting` holds; none when task events are off
    /// or there is nothing to send.
    pub fn new(enabled: bool, waiting: &LeasedSteps, steps: Vec<TaskLifecycle>) -> Outgoing {
        let waiting = waiting.clone();
        if !enabled {
            return Outgoing {
                event: None,
                carried: 0,
                waiting,
            };
        }
        let mut all = waiting.take();
        let carried = all.len();
        all.extend(steps);
        let event = (!all.is_empty()).then(|| {
            outbox::event(
                SERVICE,
                Payload::TaskLifecycles(TaskLifecycleBatch { steps: all }),
            )
        });
        Outgoing {
            event,
            carried,
            waiting,
        }
    }

    /// Writes the event (one outbox row) in the caller's transaction.
    pub async fn enqueue<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        if let Some(event) = &self.event {
            outbox::enqueue(conn, destination::MONITORING, std::slice::from_ref(event)).await?;
        }
        Ok(())
    }

    /// The transaction ended with `outcome`: when it failed, the carried steps wait again
    /// (the ones it made went with its rollback). A commit whose outcome is unknown may send
    /// them twice, which monitoring's merge makes harmless.
    pub fn settled<T, E>(self, outcome: std::result::Result<T, E>) -> std::result::Result<T, E> {
        if outcome.is_err()
            && self.carried > 0
            && let Some(Event {
                payload: Some(Payload::TaskLifecycles(mut batch)),
                ..
            }) = self.event
        {
            batch.steps.truncate(self.carried);
            self.waiting.restore(batch.steps);
        }
        outcome
    }
}

impl super::Engine {
    /// Writes `steps` (the transaction's own lifecycle steps) and the waiting `LEASED` ones
    /// as one event, then commits.
    pub(super) async fn commit_with_steps(
        &self,
        txn: DatabaseTransaction,
        steps: Vec<TaskLifecycle>,
    ) -> Result<()> {
        let outgoing = Outgoing::new(self.settings.task_events, &self.leased, steps);
        let outcome = match outgoing.enqueue(&txn).await {
            Ok(()) => txn.commit().await.map_err(Error::from),
            Err(error) => Err(error),
        };
        outgoing.settled(outcome)
    }

    /// Writes the `LEASED` steps that have waited at least `age` in a transaction of their
    /// own (with any that wait less). Returns how many went.
    pub async fn flush_leased(&self, age: Duration) -> Result<usize> {
        if self.leased.oldest().is_none_or(|waited| waited < age) {
            return Ok(0);
        }
        let waiting = self.leased.len();
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        self.commit_with_steps(txn, Vec::new()).await?;
        Ok(waiting)
    }
}

/// Sends the `LEASED` steps no completion took along: every `interval` until shutdown, those
/// that waited that long (under load a completion takes them sooner, and this writes
/// nothing). After shutdown, whatever waits, each interval until one passes with nothing new
/// (claims answered while the server drains); a claim that commits later still is left to
/// the active view's reconciliation, as after a crash.
pub fn spawn_leased_flush(
    engine: super::Engine,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let flush = |engine: &super::Engine, age| {
        let engine = engine.clone();
        async move {
            let outcome = engine.flush_leased(age).await;
            if let Err(error) = &outcome {
                tracing::warn!(%error, waiting = engine.leased.len(), "leased steps for monitoring not written; retrying");
            }
            outcome
        }
    };
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => {}
            }
            let age = if shutdown.is_cancelled() {
                Duration::ZERO
            } else {
                interval
            };
            let _ = flush(&engine, age).await;
        }
        loop {
            tokio::time::sleep(interval).await;
            if !matches!(flush(&engine, Duration::ZERO).await, Ok(1..)) {
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
    fn carried_leased_steps_wait_again_when_their_transaction_fails() {
        let waiting = LeasedSteps::default();
        let step = |id: &str| TaskLifecycle {
            task_id: id.into(),
            ..leased(&task())
        };
        waiting.add([step("a"), step("b")]);
        let ended = TaskLifecycle {
            phase: TaskPhase::Succeeded as i32,
            ..step("c")
        };
        let outgoing = Outgoing::new(true, &waiting, vec![ended.clone()]);
        assert!(waiting.is_empty(), "the event carries them");
        // Claimed meanwhile: goes after the ones put back.
        waiting.add([step("d")]);
        let failed: std::result::Result<(), &str> = outgoing.settled(Err("rolled back"));
        assert!(failed.is_err());
        let ids: Vec<String> = waiting.take().into_iter().map(|s| s.task_id).collect();
        assert_eq!(
            ids,
            ["a", "b", "d"],
            "the transaction's own step went with it"
        );

        // A commit keeps nothing back.
        waiting.add([step("e")]);
        let outgoing = Outgoing::new(true, &waiting, vec![ended]);
        assert!(outgoing.settled(Ok::<(), ()>(())).is_ok());
        assert!(waiting.is_empty() && waiting.oldest().is_none());

        // Task events off: nothing is taken or sent.
        waiting.add([step("f")]);
        let off = Outgoing::new(false, &waiting, Vec::new());
        assert!(off.event.is_none());
        assert_eq!(waiting.len(), 1);
    }

    #[test]
    fn waiting_leased_steps_are_bounded_dropping_the_oldest() {
        let waiting = LeasedSteps::default();
        let step = |n: usize| TaskLifecycle {
            task_id: n.to_string(),
            ..TaskLifecycle::default()
        };
        waiting.add((0..MAX_WAITING).map(step));
        waiting.add((MAX_WAITING..MAX_WAITING + 3).map(step));
        let kept = waiting.take();
        assert_eq!(kept.len(), MAX_WAITING);
        assert_eq!(kept[0].task_id, "3");
    }

    #[test]
    fn retry_reasons_name_the_failure() {
        assert_eq!(retry_reason(Failure::Exit(137)), "exit_code_137");
        assert_eq!(retry_reason(Failure::TimedOut), "timed_out");
        assert_eq!(retry_reason(Failure::LeaseExpired), "lease_expired");
    }
}
