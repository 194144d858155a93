//! What an ingested batch changes in the view: a running attempt (LEASED, no ending in the
//! batch) is put, an ended one is ended (removed and tombstoned). Works on the batch after
//! folding, so an attempt leased and ended in the same batch is only ended.
//!
//! An attempt whose `LEASED` step the scheduler never sent (its ending says `leased_unsent`:
//! it ended before the step was due) changes nothing: ingest never put it, reconciliation
//! leaves out attempts whose step may still come (see `reconcile`), and no step of it is left
//! to come that a tombstone would have to stop. Under load nearly every attempt is such a
//! short one, so this keeps the view's cost to the attempts that run long enough to be seen.

use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_runtime::time::to_proto;

use super::Op;
use crate::domain::execution::{Execution, Status};

/// The view's changes for folded executions, in their order.
pub fn ops(rows: &[Execution]) -> Vec<Op> {
    rows.iter()
        .filter(|e| !e.leased_unsent)
        .map(|e| {
            if e.status == Status::Running {
                Op::Put(Box::new(active_task(e)))
            } else {
                Op::End {
                    project_id: e.project_id.clone(),
                    task_id: e.task_id.clone(),
                    attempt: count(e.attempt),
                }
            }
        })
        .collect()
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The view's entry for a running attempt. Heartbeat and lease times are unknown until the
/// view is reconciled with the scheduler.
pub fn active_task(e: &Execution) -> ActiveTask {
    ActiveTask {
        task_id: e.task_id.clone(),
        run_id: e.run_id.clone(),
        project_id: e.project_id.clone(),
        node: e.node.clone(),
        shard_index: count(e.shard_index),
        attempt: count(e.attempt),
        agent_id: e.agent_id.clone(),
        started_at: e.started_at.map(to_proto),
        last_heartbeat_at: None,
        workflow: e.workflow.clone(),
        shard_count: count(e.shard_count),
        iteration: count(e.iteration),
        queued_at: e.queued_at.map(to_proto),
        wait: e.wait_ms().map(|ms| prost_types::Duration {
            seconds: ms / 1000,
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        lease_expires_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::execution::fold;
    use crate::domain::execution::tests::{leased, retrying};

    #[test]
    fn only_attempts_that_were_seen_running_change_the_view() {
        let running = leased();
        let ended = Execution {
            task_id: "t2".into(),
            ..retrying()
        };
        let short = Execution {
            task_id: "t3".into(),
            leased_unsent: true,
            ..retrying()
        };
        let changes = ops(&[running.clone(), ended, short]);
        assert_eq!(
            changes.len(),
            2,
            "the ending whose LEASED was never sent changes nothing"
        );
        assert!(matches!(&changes[0], Op::Put(task) if task.task_id == "t"));
        assert!(matches!(&changes[1], Op::End { task_id, .. } if task_id == "t2"));

        // A LEASED heard for the attempt after all (the scheduler put its step back after a
        // failed write, say): the ending must end it in the view.
        let marked = Execution {
            leased_unsent: true,
            ..retrying()
        };
        let folded = fold(vec![running, marked]);
        assert!(!folded[0].leased_unsent);
        assert!(matches!(ops(&folded).as_slice(), [Op::End { .. }]));
    }
}
