//! Moving a run forward inside the caller's transaction (run row locked): start the nodes the
//! graph says are ready, skip the ones a failure cut off, go round bounded loops, and end the
//! run when every node is done. Each status change becomes a `RunStatusChanged` event for
//! the control plane in the same transaction.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ConnectionTrait, Set};
use switchyard_proto::events::v1::{RunStatusChanged, event::Payload};
use switchyard_runtime::outbox::{self, destination};
use switchyard_workflow::{Definition, Node};

use crate::SERVICE;
use crate::domain::graph::{Graph, NodeStatus, RunOutcome, node_outcome};
use crate::domain::task_status::TaskStatus;
use crate::error::{Error, Result};
use crate::store::entity::{node_run, run, task};
use crate::store::{self, queue, runs};

/// Default per-task timeout when the node names none.
pub const DEFAULT_TIMEOUT_S: u64 = 3600;

pub fn definition(run: &run::Model) -> Result<Definition> {
    serde_json::from_str(&run.definition_json)
        .map_err(|e| Error::Internal(format!("run {} has an unreadable definition: {e}", run.id)))
}

/// The tasks of one node iteration, one per shard.
pub fn tasks_for(run: &run::Model, node: &Node, iteration: u32) -> Vec<task::ActiveModel> {
    let now = Utc::now();
    let shards = node.shards.max(1);
    let mut env: HashMap<String, String> = serde_json::from_str(&run.env_json).unwrap_or_default();
    env.extend(node.env.clone());
    let env_json = serde_json::to_string(&env).unwrap_or_else(|_| "{}".into());
    let labels_json = serde_json::to_string(&node.labels).unwrap_or_else(|_| "{}".into());
    let timeout = node
        .timeout_s
        .unwrap_or(DEFAULT_TIMEOUT_S)
        .min(switchyard_workflow::MAX_TIMEOUT_S);
    (0..shards)
        .map(|shard| task::ActiveModel {
            uuid: Set(store::new_id()),
            run_id: Set(run.id.clone()),
            org_id: Set(run.org_id.clone()),
            project_id: Set(run.project_id.clone()),
            node: Set(node.id.clone()),
            iteration: Set(iteration as i32),
            shard_index: Set(shard as i32),
            shard_count: Set(shards as i32),
            attempt: Set(1),
            attempt_base: Set(0),
            infra_losses: Set(0),
            status: Set(TaskStatus::Queued.as_str().to_owned()),
            priority: Set(run.priority.saturating_add(node.priority)),
            command: Set(node.run.clone()),
            env_json: Set(env_json.clone()),
            labels_json: Set(labels_json.clone()),
            timeout_s: Set(i64::try_from(timeout).unwrap_or(i64::MAX)),
            not_before: Set(now),
            lease_expires_at: Set(None),
            agent_id: Set(None),
            queued_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            exit_code: Set(None),
            error: Set(String::new()),
            outputs_json: Set(String::new()),
            result_json: Set(String::new()),
            log_tail: Set(String::new()),
            node_concurrency: Set(node
                .concurrency
                .map(|c| i32::try_from(c).unwrap_or(i32::MAX))),
            ..Default::default()
        })
        .collect()
}

/// Counts finished shards of `node` (`succeeded` and `failed` of them) and, when they were
/// the last, settles the node (and goes round its loop when the condition holds).
pub async fn count_shards<C: ConnectionTrait>(
    conn: &C,
    run: &mut run::Model,
    graph: &Graph<'_>,
    nodes: &mut HashMap<String, node_run::Model>,
    node_id: &str,
    succeeded: i32,
    failed: i32,
) -> Result<()> {
    let row = nodes
        .remove(node_id)
        .ok_or_else(|| Error::Internal(format!("run {} has no node {node_id}", run.id)))?;
    let node = graph
        .node(node_id)
        .ok_or_else(|| Error::Internal(format!("node {node_id} is not in the definition")))?;
    let (ok, bad) = (row.succeeded + succeeded, row.failed + failed);
    let settled = node_outcome(node, ok as u32, bad as u32);
    let row = runs::save_node(conn, row, |n| {
        n.succeeded = Set(ok);
        n.failed = Set(bad);
        if let Some(status) = settled {
            n.status = Set(status.as_str().to_owned());
        }
    })
    .await?;
    let iteration = row.iteration as u32;
    nodes.insert(node_id.to_owned(), row);
    if settled.is_some_and(NodeStatus::lets_downstream_run) {
        let state: serde_json::Value =
            serde_json::from_str(&run.state_json).unwrap_or(serde_json::json!({}));
        if let Some(again) = graph.loop_again(node, iteration, &state) {
            tracing::info!(run_id = %run.id, node = node_id, iteration = iteration + 1, "loop goes round again");
            for repeat in again {
                let Some(current) = nodes.remove(&repeat.id) else {
                    continue;
                };
                let next = current.iteration + 1;
                let reset = runs::save_node(conn, current, |n| {
                    n.iteration = Set(next);
                    n.status = Set(NodeStatus::Pending.as_str().to_owned());
                    n.succeeded = Set(0);
                    n.failed = Set(0);
                })
                .await?;
                nodes.insert(repeat.id.clone(), reset);
            }
        }
    }
    Ok(())
}

/// Starts ready nodes and skips cut-off ones until nothing changes, then ends the run if
/// every node is done.
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    run: &mut run::Model,
    graph: &Graph<'_>,
    nodes: &mut HashMap<String, node_run::Model>,
) -> Result<()> {
    loop {
        let statuses = runs::statuses(nodes);
        let skipped = graph.skipped(&statuses);
        let ready = graph.ready(&statuses);
        if skipped.is_empty() && ready.is_empty() {
            break;
        }
        for node in skipped {
            if let Some(row) = nodes.remove(&node.id) {
                let row = runs::save_node(conn, row, |n| {
                    n.status = Set(NodeStatus::Skipped.as_str().to_owned());
                })
                .await?;
                nodes.insert(node.id.clone(), row);
            }
        }
        for node in ready {
            if let Some(row) = nodes.remove(&node.id) {
                let iteration = row.iteration as u32;
                queue::insert(conn, tasks_for(run, node, iteration)).await?;
                let row = runs::save_node(conn, row, |n| {
                    n.status = Set(NodeStatus::Running.as_str().to_owned());
                })
                .await?;
                nodes.insert(node.id.clone(), row);
            }
        }
    }
    if let Some(outcome) = graph.outcome(&runs::statuses(nodes)) {
        let (status, reason) = match outcome {
            RunOutcome::Completed => ("completed", String::new()),
            RunOutcome::PartialFailed => (
                "partial_failed",
                "some shards failed; the nodes allow partial results".to_owned(),
            ),
            RunOutcome::Failed => ("failed", failure_reason(nodes)),
        };
        finish(conn, run, status, &reason).await?;
    }
    Ok(())
}

fn failure_reason(nodes: &HashMap<String, node_run::Model>) -> String {
    let mut failed: Vec<&str> = nodes
        .values()
        .filter(|n| n.status == NodeStatus::Failed.as_str())
        .map(|n| n.node.as_str())
        .collect();
    failed.sort_unstable();
    format!(
        "node{} failed: {}",
        if failed.len() == 1 { "" } else { "s" },
        failed.join(", ")
    )
}

/// Ends the run: `reporting` while shard results and coverage are gathered (for runs that
/// ran to the end), then `status`.
pub async fn finish<C: ConnectionTrait>(
    conn: &C,
    run: &mut run::Model,
    status: &str,
    reason: &str,
) -> Result<()> {
    let tasks = queue::for_run(conn, &run.id).await?;
    let (shards_json, coverage_json) = super::report::aggregate(&tasks);
    if matches!(status, "completed" | "failed" | "partial_failed") {
        emit(conn, run, "reporting", "", &shards_json, &coverage_json).await?;
    }
    let now = Utc::now();
    let mut active: run::ActiveModel = run.clone().into();
    active.status = Set(status.to_owned());
    active.reason = Set(reason.to_owned());
    active.finished_at = Set(Some(now));
    active.updated_at = Set(now);
    *run = runs::update(conn, active).await?;
    emit(conn, run, status, reason, &shards_json, &coverage_json).await?;
    tracing::info!(run_id = %run.id, status, "run finished");
    Ok(())
}

/// Tells the control plane the run's new status, in the caller's transaction.
pub async fn emit<C: ConnectionTrait>(
    conn: &C,
    run: &run::Model,
    status: &str,
    reason: &str,
    shards_json: &str,
    coverage_json: &str,
) -> Result<()> {
    let final_state = matches!(
        status,
        "completed" | "failed" | "partial_failed" | "timed_out" | "infra_failed" | "cancelled"
    );
    let event = outbox::event(
        SERVICE,
        Payload::RunStatusChanged(RunStatusChanged {
            run_id: run.id.clone(),
            project_id: run.project_id.clone(),
            status: status.to_owned(),
            current_state_json: run.state_json.clone(),
            final_state_json: if final_state {
                run.state_json.clone()
            } else {
                String::new()
            },
            reason: reason.to_owned(),
            shards_json: shards_json.to_owned(),
            coverage_json: coverage_json.to_owned(),
        }),
    );
    outbox::enqueue(conn, destination::CONTROL_PLANE, &[event]).await?;
    Ok(())
}
