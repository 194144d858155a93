//! What an ingested batch changes in the view: a running attempt (LEASED, no ending in the
//! batch) is put, an ended one is ended (removed and tombstoned). Works on the batch after
//! folding, so an attempt leased and ended in the same batch is only ended.

use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_runtime::time::to_proto;

use super::Op;
use crate::domain::execution::{Execution, Status};

/// The view's changes for folded executions, in their order.
pub fn ops(rows: &[Execution]) -> Vec<Op> {
    rows.iter()
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
