//! What monitoring consumes: the scheduler's `TaskLifecycle` events and the gateway's
//! `ApiUsage` reports, read into
//! [`Execution`]s at the boundary (each bad field named). A replay's QUEUED step reads as a
//! [`Requeued`]; HEARTBEAT reads as nothing.

use switchyard_proto::events::v1::{ApiUsage, TaskLifecycle, TaskPhase};
use switchyard_runtime::time::from_proto;

use crate::domain::execution::{Execution, Requeued, Status};
use crate::domain::usage::Histogram;
use crate::store::usage::{UsageDelta, minute_of};

/// The status an event's phase gives its attempt; `None` for phases not recorded.
pub fn status_of(phase: TaskPhase) -> Option<Status> {
    match phase {
        TaskPhase::Leased => Some(Status::Running),
        TaskPhase::Succeeded => Some(Status::Succeeded),
        TaskPhase::RetryScheduled => Some(Status::Retrying),
        TaskPhase::LeaseExpired => Some(Status::LeaseExpired),
        TaskPhase::DeadLettered => Some(Status::DeadLettered),
        TaskPhase::Cancelled => Some(Status::Cancelled),
        TaskPhase::Failed => Some(Status::Failed),
        TaskPhase::Unspecified | TaskPhase::Queued | TaskPhase::Heartbeat => None,
    }
}

fn id(field: &str, value: String) -> Result<String, String> {
    match uuid::Uuid::parse_str(&value) {
        Ok(_) => Ok(value),
        Err(_) => Err(format!("{field} is not an id")),
    }
}

fn number(field: &str, value: u32) -> Result<i32, String> {
    i32::try_from(value).map_err(|_| format!("{field} is out of range"))
}

/// The execution an event describes; `Ok(None)` for a phase the history does not record.
/// Takes the event, so its texts move into the execution.
pub fn execution(event: TaskLifecycle) -> Result<Option<Execution>, String> {
    let phase = TaskPhase::try_from(event.phase).map_err(|_| "phase is unknown".to_owned())?;
    let Some(status) = status_of(phase) else {
        return Ok(None);
    };
    let time = |t: Option<prost_types::Timestamp>| t.as_ref().and_then(from_proto);
    Ok(Some(Execution {
        task_id: id("task_id", event.task_id)?,
        attempt: number("attempt", event.attempt)?,
        run_id: id("run_id", event.run_id)?,
        project_id: id("project_id", event.project_id)?,
        workflow: event.workflow,
        node: event.node,
        shard_index: number("shard_index", event.shard_index)?,
        shard_count: number("shard_count", event.shard_count)?,
        iteration: number("iteration", event.iteration)?,
        status,
        agent_id: event.agent_id,
        exit_code: event.exit_code,
        error: event.error,
        retry_reason: event.retry_reason,
        queued_at: time(event.queued_at),
        started_at: time(event.started_at),
        finished_at: time(event.finished_at),
        not_before: time(event.not_before),
        // Only an ending says so; a LEASED step is the one that was sent.
        leased_unsent: event.leased_unsent && status != Status::Running,
    }))
}

/// The requeue a QUEUED step (a dead letter's replay) describes. Its time is when the task
/// became eligible again, or `now` when the step lacks it.
pub fn requeued(
    event: TaskLifecycle,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Requeued, String> {
    Ok(Requeued {
        at: event.queued_at.as_ref().and_then(from_proto).unwrap_or(now),
        task_id: id("task_id", event.task_id)?,
        run_id: id("run_id", event.run_id)?,
        attempt: number("attempt", event.attempt)?,
    })
}

/// Whether `events` hold a replay's QUEUED step (see [`requeued`]).
pub fn has_requeue(events: &[switchyard_proto::events::v1::Event]) -> bool {
    use switchyard_proto::events::v1::event::Payload;
    let queued = |step: &TaskLifecycle| step.phase == TaskPhase::Queued as i32;
    events.iter().any(|e| match &e.payload {
        Some(Payload::TaskLifecycle(step)) => queued(step),
        Some(Payload::TaskLifecycles(batch)) => batch.steps.iter().any(queued),
        _ => false,
    })
}

/// Longest route template and method a usage report may carry.
const MAX_ROUTE: usize = 200;
const MAX_METHOD: usize = 16;

/// What a gateway's `ApiUsage` report adds to its minute (the minute its window started in).
pub fn usage(report: &ApiUsage) -> Result<UsageDelta, String> {
    if report.route.is_empty() || report.route.len() > MAX_ROUTE {
        return Err(format!("route must be 1 to {MAX_ROUTE} characters"));
    }
    if report.method.is_empty()
        || report.method.len() > MAX_METHOD
        || !report.method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err("method is not an HTTP method".to_owned());
    }
    if report.errors > report.requests {
        return Err("errors exceed requests".to_owned());
    }
    let start = report
        .window_start
        .as_ref()
        .and_then(from_proto)
        .ok_or_else(|| "window_start is missing or invalid".to_owned())?;
    let latency = Histogram::from_report(&report.latency_bounds_ms, &report.latency_counts)?;
    Ok(UsageDelta {
        minute: minute_of(start),
        route: report.route.clone(),
        method: report.method.clone(),
        requests: report.requests,
        errors: report.errors,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_events_are_checked_at_the_boundary() {
        let id = uuid::Uuid::now_v7().to_string();
        let event = TaskLifecycle {
            task_id: id.clone(),
            run_id: id.clone(),
            project_id: id.clone(),
            attempt: 1,
            phase: TaskPhase::Leased as i32,
            ..TaskLifecycle::default()
        };
        let row = execution(event.clone()).ok().flatten().map(|e| e.status);
        assert_eq!(row, Some(Status::Running));
        let heartbeat = TaskLifecycle {
            phase: TaskPhase::Heartbeat as i32,
            ..event.clone()
        };
        assert_eq!(execution(heartbeat), Ok(None));
        let bad = TaskLifecycle {
            run_id: "nope".into(),
            ..event.clone()
        };
        assert_eq!(execution(bad), Err("run_id is not an id".to_owned()));
        let huge = TaskLifecycle {
            attempt: u32::MAX,
            ..event
        };
        assert_eq!(execution(huge), Err("attempt is out of range".to_owned()));
    }

    #[test]
    fn a_replays_queued_step_reads_as_a_requeue() {
        use switchyard_proto::events::v1::{Event, TaskLifecycleBatch, event::Payload};
        let id = uuid::Uuid::now_v7().to_string();
        let now = chrono::Utc::now();
        let queued_at = now - chrono::Duration::seconds(3);
        let step = TaskLifecycle {
            task_id: id.clone(),
            run_id: id.clone(),
            project_id: id.clone(),
            attempt: 2,
            phase: TaskPhase::Queued as i32,
            queued_at: Some(switchyard_runtime::time::to_proto(queued_at)),
            ..TaskLifecycle::default()
        };
        assert_eq!(execution(step.clone()), Ok(None), "no attempt to record");
        let read = requeued(step.clone(), now).expect("a requeue");
        assert_eq!((read.task_id.as_str(), read.attempt), (id.as_str(), 2));
        assert_eq!(read.at, queued_at);
        let untimed = TaskLifecycle {
            queued_at: None,
            ..step.clone()
        };
        assert_eq!(requeued(untimed, now).map(|r| r.at), Ok(now));
        let bad = TaskLifecycle {
            task_id: "t".into(),
            ..step.clone()
        };
        assert_eq!(requeued(bad, now), Err("task_id is not an id".to_owned()));

        let event = |steps: Vec<TaskLifecycle>| Event {
            id: "e".into(),
            payload: Some(Payload::TaskLifecycles(TaskLifecycleBatch { steps })),
            ..Event::default()
        };
        let leased = TaskLifecycle {
            phase: TaskPhase::Leased as i32,
            ..step.clone()
        };
        assert!(!has_requeue(&[event(vec![leased.clone()])]));
        assert!(has_requeue(&[
            event(vec![leased.clone()]),
            event(vec![leased, step])
        ]));
    }
}
