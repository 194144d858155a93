//! WorkerService: what agents call. Every call is authenticated (`agents` scope); an agent id
//! works only with the token that registered it, and takes only tasks of that token's
//! organization or project.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_proto::scheduler::v1::worker_service_server::WorkerService;
use switchyard_proto::scheduler::v1::*;
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use super::agent_auth::AgentPrincipal;
use crate::engine::report::TaskResult;
use crate::engine::{AgentScope, Completion};
use crate::error::Error;
use crate::store::agents;
use crate::store::entity::{agent, task};

/// Longest long-poll the server holds open.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Fallback re-check while waiting, for wake-ups that happen on another replica.
const RECHECK: Duration = Duration::from_millis(250);
/// Most tasks one poll may lease.
const MAX_TASKS_PER_POLL: u32 = 100;
/// Longest log tail kept with a completion.
const MAX_LOG_TAIL: usize = 64 * 1024;

impl SchedulerApi {
    /// The registered agent `agent_id`, when the calling token is the one that registered it.
    async fn own_agent(
        &self,
        who: &AgentPrincipal,
        agent_id: &str,
    ) -> Result<agent::Model, Status> {
        let agent = agents::get(&self.engine.db, agent_id).await?;
        if agent.token_id != who.token_id {
            return Err(Status::permission_denied(format!(
                "agent {agent_id} was registered with another token"
            )));
        }
        Ok(agent)
    }
}

fn leases(refs: &[LeaseRef]) -> Vec<(String, u32)> {
    refs.iter()
        .map(|l| (l.task_id.clone(), l.attempt))
        .collect()
}

fn lease_refs(leases: Vec<(String, u32)>) -> Vec<LeaseRef> {
    leases
        .into_iter()
        .map(|(task_id, attempt)| LeaseRef { task_id, attempt })
        .collect()
}

fn leased(t: task::Model) -> LeasedTask {
    let environment: std::collections::HashMap<String, String> =
        serde_json::from_str(&t.env_json).unwrap_or_default();
    LeasedTask {
        task_id: t.uuid,
        run_id: t.run_id,
        project_id: t.project_id,
        node: t.node,
        shard_index: t.shard_index as u32,
        shard_count: t.shard_count as u32,
        attempt: t.attempt as u32,
        iteration: t.iteration as u32,
        command: t.command,
        environment,
        timeout: Some(prost_types::Duration {
            seconds: t.timeout_s,
            nanos: 0,
        }),
        lease_expires_at: t.lease_expires_at.map(to_proto),
    }
}

#[tonic::async_trait]
impl WorkerService for SchedulerApi {
    async fn register_agent(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        let who = self.auth.agent(request.metadata()).await?;
        let req = request.into_inner();
        if req.name.trim().is_empty() || req.name.len() > 200 {
            return Err(Status::invalid_argument("name must be 1-200 characters"));
        }
        if req.capacity == 0 || req.capacity > 1024 {
            return Err(Status::invalid_argument("capacity must be 1-1024"));
        }
        let labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        let agent = agents::register(
            &self.engine.db,
            &req.name,
            &labels,
            req.capacity,
            &req.version,
            &who.token_id,
        )
        .await?;
        tracing::info!(agent_id = %agent.id, name = %agent.name, capacity = agent.capacity, ?labels, "agent registered");
        // Often enough that a lease survives two lost beats, and that a cancel reaches the
        // agent within a couple of seconds.
        let interval = (self.engine.settings.lease / 3).min(Duration::from_secs(2));
        Ok(Response::new(RegisterAgentResponse {
            agent_id: agent.id,
            heartbeat_interval: Some(prost_types::Duration {
                seconds: interval.as_secs() as i64,
                nanos: interval.subsec_nanos() as i32,
            }),
        }))
    }

    async fn poll_tasks(
        &self,
        request: Request<PollTasksRequest>,
    ) -> Result<Response<PollTasksResponse>, Status> {
        let who = self.auth.agent(request.metadata()).await?;
        let req = request.into_inner();
        let agent = self.own_agent(&who, &req.agent_id).await?;
        let labels = agents::labels(&agent);
        // A polling agent is alive even with nothing in hand (it heartbeats only leases).
        agents::touch(&self.engine.db, agent.clone()).await?;
        let max = req
            .max_tasks
            .min(agent.capacity as u32)
            .min(MAX_TASKS_PER_POLL);
        let wait = req
            .wait
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default()
            .min(MAX_WAIT);
        let scope = AgentScope {
            agent_id: &agent.id,
            org_id: &who.org_id,
            project_id: &who.project_id,
            labels: &labels,
        };
        let tasks = self.engine.poll(&scope, max, wait, RECHECK).await?;
        Ok(Response::new(PollTasksResponse {
            tasks: tasks.into_iter().map(leased).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let who = self.auth.agent(request.metadata()).await?;
        let req = request.into_inner();
        let agent = self.own_agent(&who, &req.agent_id).await?;
        let beat = self
            .engine
            .heartbeat(&agent.id, &leases(&req.leases))
            .await?;
        agents::touch(&self.engine.db, agent).await?;
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(self.engine.settings.lease).unwrap_or_default();
        Ok(Response::new(HeartbeatResponse {
            cancelled: lease_refs(beat.cancelled),
            lost: lease_refs(beat.lost),
            lease_expires_at: Some(to_proto(expires)),
        }))
    }

    async fn complete_task(
        &self,
        request: Request<CompleteTaskRequest>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let who = self.auth.agent(request.metadata()).await?;
        let req = request.into_inner();
        let agent = self.own_agent(&who, &req.agent_id).await?;
        let lease = req
            .lease
            .ok_or_else(|| Status::invalid_argument("lease is required"))?;
        if !req.outputs_json.trim().is_empty() {
            match serde_json::from_str::<serde_json::Value>(&req.outputs_json) {
                Ok(serde_json::Value::Object(_)) => {}
                _ => {
                    return Err(Status::invalid_argument(
                        "outputs_json must be a JSON object",
                    ));
                }
            }
        }
        let tests = req.tests.unwrap_or_default();
        let coverage = req
            .coverage
            .into_iter()
            .map(|f| {
                (
                    f.path,
                    (
                        f.covered_lines.into_iter().collect(),
                        f.executable_lines.into_iter().collect(),
                    ),
                )
            })
            .collect();
        let artifacts = req
            .artifacts
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name, "location": a.location,
                    "size_bytes": a.size_bytes, "sha256": a.sha256,
                })
            })
            .collect();
        let mut log_tail = req.log_tail;
        if log_tail.len() > MAX_LOG_TAIL {
            let cut = log_tail.len() - MAX_LOG_TAIL;
            let cut = (cut..log_tail.len())
                .find(|i| log_tail.is_char_boundary(*i))
                .unwrap_or(log_tail.len());
            log_tail = log_tail.split_off(cut);
        }
        self.completions
            .complete(Completion {
                agent_id: agent.id,
                task_id: lease.task_id,
                attempt: lease.attempt,
                exit_code: req.exit_code,
                timed_out: req.timed_out,
                cancelled: req.cancelled,
                outputs_json: req.outputs_json,
                result: TaskResult {
                    passed: tests.passed,
                    failed: tests.failed,
                    skipped: tests.skipped,
                    coverage,
                    artifacts,
                },
                log_tail,
            })
            .await
            .map_err(|e| match e {
                Error::NotFound(m) => Status::not_found(m),
                other => other.into(),
            })?;
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn release_tasks(
        &self,
        request: Request<ReleaseTasksRequest>,
    ) -> Result<Response<ReleaseTasksResponse>, Status> {
        let who = self.auth.agent(request.metadata()).await?;
        let req = request.into_inner();
        let agent = self.own_agent(&who, &req.agent_id).await?;
        let released = self.engine.release(&agent.id, &leases(&req.leases)).await?;
        tracing::info!(agent_id = %agent.id, released, "leases handed back");
        Ok(Response::new(ReleaseTasksResponse { released }))
    }
}
