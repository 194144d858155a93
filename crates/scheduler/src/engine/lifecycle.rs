//! Task lifecycle events for monitoring: one when an agent takes an attempt (`LEASED`) and one
//! when the attempt ends (succeeded, retry scheduled, lease expired, dead-lettered,
//! cancelled). They are written to the outbox in the transaction that makes the change, all
//! steps of one claim or one settled group as one `TaskLifecycleBatch` event (one outbox row),
//! so the history monitoring builds can neither miss an attempt nor invent one, and costs one
//! small insert per batch rather than a row per step.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use switchyard_proto::events::v1::{TaskLifecycle, TaskLifecycleBatch, TaskPhase, event::Payload};
use switchyard_runtime::outbox::{self, destination};
use switchyard_runtime::time::to_proto;

use crate::SERVICE;
use crate::error::Result;
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

    /// Writes both in the caller's transaction.
    pub async fn write<C: ConnectionTrait>(self, conn: &C, task_events: bool) -> Result<()> {
        attempts::record(conn, self.attempts).await?;
        emit(conn, task_events, self.steps).await
    }
}

/// Writes the steps for monitoring in the caller's transaction, as one event (one row), when
/// task events are on.
pub async fn emit<C: ConnectionTrait>(
    conn: &C,
    enabled: bool,
    steps: Vec<TaskLifecycle>,
) -> Result<()> {
    if enabled && !steps.is_empty() {
        let event = outbox::event(
            SERVICE,
            Payload::TaskLifecycles(TaskLifecycleBatch { steps }),
        );
        outbox::enqueue(conn, destination::MONITORING, &[event]).await?;
    }
    Ok(())
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
