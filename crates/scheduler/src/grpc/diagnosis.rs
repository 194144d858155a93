//! `SchedulerService.GetRunWaitState`: the live facts that explain why a run's tasks are (not)
//! running — its queued tasks with their labels, backoff and schedule-to-start deadline, the
//! node and project limits they count against and what holds them, the live agent pool, and
//! every node's state with what it needs. Read-only, a handful of bounded queries; authorized
//! like the other run reads (`runs:read` on the run's project). Monitoring's `DiagnoseRun`
//! turns these facts into plain words.

use std::collections::HashMap;

use chrono::Utc;
use switchyard_proto::scheduler::v1::*;
use switchyard_runtime::auth::{CallContext, Scope};
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::domain::graph::NodeStatus;
use crate::domain::wait::{self, Labels};
use crate::store::entity::{node_run, task};
use crate::store::{agents, diagnosis, limits, runs};

/// Queued tasks listed in full; the rest are counted.
const MAX_WAITING: u64 = 200;
/// Groups of a project's running tasks listed.
const MAX_HOLDERS: usize = 20;
/// Distinct label sets of the live pool listed.
const MAX_LABEL_SETS: usize = 20;

impl SchedulerApi {
    pub(super) async fn run_wait_state(
        &self,
        request: Request<GetRunWaitStateRequest>,
    ) -> Result<Response<GetRunWaitStateResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let run = self
            .run_for(&ctx, &req.run_id, Scope::RunsRead, "run.wait_state")
            .await?;
        let db = &self.engine.db;
        let now = Utc::now();
        let definition: Option<switchyard_workflow::Definition> =
            serde_json::from_str(&run.definition_json).ok();
        let nodes = runs::nodes(db, &run.id).await?;
        let mut answer = GetRunWaitStateResponse {
            run_id: run.id.clone(),
            project_id: run.project_id.clone(),
            status: run.status.clone(),
            reason: run.reason.clone(),
            cancel_requested: run.cancel_requested,
            created_at: Some(to_proto(run.created_at)),
            started_at: run.started_at.map(to_proto),
            finished_at: run.finished_at.map(to_proto),
            as_of: Some(to_proto(now)),
            nodes: node_states(definition.as_ref(), &nodes),
            schedule_to_start_seconds: self.engine.settings.schedule_to_start.as_secs(),
            ..GetRunWaitStateResponse::default()
        };
        // A finished run waits on nothing: its record and nodes say all there is.
        if run.finished_at.is_some() {
            return Ok(Response::new(answer));
        }
        let waiting = diagnosis::waiting(db, &run.id, MAX_WAITING).await?;
        let open = diagnosis::open_by_node(db, &run.id).await?;
        let limit = limits::get(db, &run.project_id).await?;
        let (holders, project_running) =
            diagnosis::project_holders(db, &run.project_id, MAX_HOLDERS).await?;
        // Live as the schedule-to-start check counts it: polled or heartbeated within three
        // leases.
        let live_since =
            now - chrono::Duration::from_std(self.engine.settings.lease * 3).unwrap_or_default();
        let live: Vec<Labels> = agents::alive_since(db, live_since)
            .await?
            .iter()
            .map(agents::labels)
            .collect();
        let start_limit =
            chrono::Duration::from_std(self.engine.settings.schedule_to_start).unwrap_or_default();
        answer.running_tasks = open.values().map(|(_, leased)| *leased).sum();
        answer.waiting_total = open.values().map(|(queued, _)| *queued).sum();
        answer.waiting = waiting
            .iter()
            .map(|t| waiting_task(t, &live, start_limit))
            .collect();
        answer.node_loads = node_loads(definition.as_ref(), &waiting, &open);
        answer.project = Some(ProjectLoad {
            max_running_tasks: limit
                .map(|l| u32::try_from(l.max_running_tasks).unwrap_or(0))
                .unwrap_or(0),
            running: project_running,
            holders: holders
                .into_iter()
                .map(|(run_id, node, running)| LimitHolder {
                    run_id,
                    node,
                    running,
                })
                .collect(),
        });
        answer.agents = Some(AgentPool {
            live: live.len() as u32,
            label_sets: wait::label_sets(&live, MAX_LABEL_SETS)
                .into_iter()
                .map(|(labels, agents)| LabelSet {
                    labels: labels.into_iter().collect(),
                    agents,
                })
                .collect(),
        });
        Ok(Response::new(answer))
    }
}

fn waiting_task(t: &task::Model, live: &[Labels], start_limit: chrono::Duration) -> WaitingTask {
    let labels: Labels = serde_json::from_str(&t.labels_json).unwrap_or_default();
    // A retried task keeps what ended its previous attempt until the next one ends.
    let retried = t.attempt > 1;
    WaitingTask {
        task_id: t.uuid.clone(),
        node: t.node.clone(),
        shard_index: u32::try_from(t.shard_index).unwrap_or(0),
        shard_count: u32::try_from(t.shard_count).unwrap_or(0),
        attempt: u32::try_from(t.attempt).unwrap_or(0),
        not_before: Some(to_proto(t.not_before)),
        queued_at: Some(to_proto(t.queued_at)),
        start_deadline: t.not_before.checked_add_signed(start_limit).map(to_proto),
        last_exit_code: if retried { t.exit_code } else { None },
        last_error: if retried {
            t.error.clone()
        } else {
            String::new()
        },
        matching_agents: wait::matching(&labels, live),
        unoffered_labels: wait::unoffered(&labels, live).into_iter().collect(),
        labels: labels.into_iter().collect(),
    }
}

/// Every node of the definition in its order, with its state; nodes the definition lacks (it
/// did not parse) from their rows alone.
fn node_states(
    definition: Option<&switchyard_workflow::Definition>,
    rows: &HashMap<String, node_run::Model>,
) -> Vec<NodeState> {
    let state = |id: &str, needs: Vec<String>| {
        let row = rows.get(id);
        NodeState {
            node: id.to_owned(),
            status: row
                .map(|r| r.status.clone())
                .unwrap_or_else(|| NodeStatus::Pending.as_str().to_owned()),
            shards: row
                .map(|r| u32::try_from(r.shards).unwrap_or(0))
                .unwrap_or(0),
            succeeded: row
                .map(|r| u32::try_from(r.succeeded).unwrap_or(0))
                .unwrap_or(0),
            failed: row
                .map(|r| u32::try_from(r.failed).unwrap_or(0))
                .unwrap_or(0),
            needs,
        }
    };
    match definition {
        Some(d) => d
            .nodes
            .iter()
            .map(|n| state(&n.id, n.needs.clone()))
            .collect(),
        None => {
            let mut ids: Vec<&String> = rows.keys().collect();
            ids.sort();
            ids.into_iter().map(|id| state(id, Vec::new())).collect()
        }
    }
}

/// Nodes with open tasks, by name: their limit (the definition's `concurrency`, else the one
/// stamped on their tasks), running and waiting counts.
fn node_loads(
    definition: Option<&switchyard_workflow::Definition>,
    waiting: &[task::Model],
    open: &HashMap<String, (u32, u32)>,
) -> Vec<NodeLoad> {
    let mut loads: Vec<NodeLoad> = open
        .iter()
        .map(|(node, (queued, leased))| {
            let limit = definition
                .and_then(|d| d.node(node))
                .and_then(|n| n.concurrency)
                .or_else(|| {
                    waiting
                        .iter()
                        .find(|t| &t.node == node)
                        .and_then(|t| t.node_concurrency)
                        .and_then(|l| u32::try_from(l).ok())
                })
                .unwrap_or(0);
            NodeLoad {
                node: node.clone(),
                limit,
                running: *leased,
                waiting: *queued,
            }
        })
        .collect();
    loads.sort_by(|a, b| a.node.cmp(&b.node));
    loads
}
