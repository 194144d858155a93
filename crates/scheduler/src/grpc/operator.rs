//! What people and CI ask the scheduler through the gateway: a run's progress and tasks, dead
//! letters and their replay, the agent list. Authorization through the one rule
//! ([`auth::authorize`]) on the run's tenancy; refusals are audited as `denied`, replays as
//! changes, each in the transaction of what it records.

use switchyard_proto::events::v1::Outcome;
use switchyard_proto::scheduler::v1::agent_registry_service_server::AgentRegistryService;
use switchyard_proto::scheduler::v1::dead_letter_service_server::DeadLetterService;
use switchyard_proto::scheduler::v1::scheduler_service_server::SchedulerService;
use switchyard_proto::scheduler::v1::*;
use switchyard_runtime::auth::{self, CallContext, Scope, Tenant};
use switchyard_runtime::outbox::AuditFact;
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::domain::task_status::TaskStatus;
use crate::engine::Engine;
use crate::error::Error;
use crate::store::entity::{agent, dead_letter, run, task};
use crate::store::{operator, queue, runs};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

pub(super) fn page(
    request: Option<&switchyard_proto::common::v1::PageRequest>,
) -> (u64, Option<String>) {
    let limit = match request.map(|p| u64::from(p.limit)).unwrap_or(0) {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let cursor = request.map(|p| p.cursor.clone()).filter(|c| !c.is_empty());
    (limit, cursor)
}

impl SchedulerApi {
    /// Authorizes `scope` on a run's project, auditing a refusal.
    async fn authorize_run(
        &self,
        ctx: &CallContext,
        run: &run::Model,
        scope: Scope,
        action: &str,
    ) -> Result<(), Status> {
        let tenant = Tenant {
            org_id: &run.org_id,
            project_id: Some(&run.project_id),
        };
        if let Err(denial) = auth::authorize(ctx.principal.as_ref(), scope, tenant) {
            let fact = AuditFact {
                action,
                resource_type: "run",
                resource_id: &run.id,
                org_id: &run.org_id,
                project_id: &run.project_id,
                outcome: Outcome::Denied,
            };
            return Err(self.deny(ctx, fact, denial).await);
        }
        Ok(())
    }

    pub(super) async fn run_for(
        &self,
        ctx: &CallContext,
        run_id: &str,
        scope: Scope,
        action: &str,
    ) -> Result<run::Model, Status> {
        if uuid::Uuid::parse_str(run_id).is_err() {
            return Err(Status::invalid_argument("run_id is not an id"));
        }
        let run = runs::find(&self.engine.db, run_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("run {run_id} has no tasks yet")))?;
        self.authorize_run(ctx, &run, scope, action).await?;
        Ok(run)
    }
}

pub fn task_message(t: &task::Model) -> Task {
    let status = match TaskStatus::parse(&t.status) {
        Some(TaskStatus::Queued) => TaskStatus_::Queued,
        Some(TaskStatus::Leased) => TaskStatus_::Leased,
        Some(TaskStatus::Succeeded) => TaskStatus_::Succeeded,
        Some(TaskStatus::Failed) => TaskStatus_::Failed,
        Some(TaskStatus::Dead) => TaskStatus_::Dead,
        Some(TaskStatus::Cancelled) => TaskStatus_::Cancelled,
        None => TaskStatus_::Unspecified,
    };
    Task {
        id: t.uuid.clone(),
        run_id: t.run_id.clone(),
        project_id: t.project_id.clone(),
        node: t.node.clone(),
        shard_index: t.shard_index as u32,
        shard_count: t.shard_count as u32,
        attempt: t.attempt as u32,
        iteration: t.iteration as u32,
        status: status as i32,
        exit_code: t.exit_code,
        agent_id: t.agent_id.clone().unwrap_or_default(),
        queued_at: Some(to_proto(t.queued_at)),
        started_at: t.started_at.map(to_proto),
        finished_at: t.finished_at.map(to_proto),
        not_before: Some(to_proto(t.not_before)),
        error: t.error.clone(),
        log_tail: t.log_tail.clone(),
    }
}

use switchyard_proto::scheduler::v1::TaskStatus as TaskStatus_;

#[tonic::async_trait]
impl SchedulerService for SchedulerApi {
    async fn get_run_progress(
        &self,
        request: Request<GetRunProgressRequest>,
    ) -> Result<Response<GetRunProgressResponse>, Status> {
        let (ctx, req) = context(request)?;
        let run = self
            .run_for(&ctx, &req.run_id, Scope::RunsRead, "run.progress")
            .await?;
        let counts = operator::status_counts(&self.engine.db, &run.id).await?;
        let count = |s: TaskStatus| counts.get(s.as_str()).copied().unwrap_or(0) as u32;
        Ok(Response::new(GetRunProgressResponse {
            total: counts.values().sum::<i64>() as u32,
            queued: count(TaskStatus::Queued),
            running: count(TaskStatus::Leased),
            succeeded: count(TaskStatus::Succeeded),
            failed: count(TaskStatus::Failed) + count(TaskStatus::Cancelled),
            dead: count(TaskStatus::Dead),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let (ctx, req) = context(request)?;
        let run = self
            .run_for(&ctx, &req.run_id, Scope::RunsRead, "task.list")
            .await?;
        let (limit, cursor) = page(req.page.as_ref());
        let after = match cursor {
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| Status::invalid_argument("cursor is not one this API returned"))?,
            ),
            None => None,
        };
        let mut tasks = operator::tasks_page(&self.engine.db, &run.id, after, limit + 1).await?;
        let next_cursor = if tasks.len() as u64 > limit {
            tasks.truncate(limit as usize);
            tasks.last().map(|t| t.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListTasksResponse {
            tasks: tasks.iter().map(task_message).collect(),
            page: Some(switchyard_proto::common::v1::PageResponse { next_cursor }),
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<CancelRunRequest>,
    ) -> Result<Response<CancelRunResponse>, Status> {
        let (ctx, req) = context(request)?;
        let run = self
            .run_for(&ctx, &req.run_id, Scope::RunsWrite, "run.cancel")
            .await?;
        let open = queue::open_for_run(&self.engine.db, &run.id).await?.len() as u32;
        let txn = switchyard_runtime::db::write_txn(&self.engine.db)
            .await
            .map_err(Error::from)?;
        Engine::cancel(&txn, &run.id, &req.reason).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CancelRunResponse { cancelled: open }))
    }

    async fn get_run_wait_state(
        &self,
        request: Request<GetRunWaitStateRequest>,
    ) -> Result<Response<GetRunWaitStateResponse>, Status> {
        self.run_wait_state(request).await
    }

    async fn list_leased_tasks(
        &self,
        request: Request<ListLeasedTasksRequest>,
    ) -> Result<Response<ListLeasedTasksResponse>, Status> {
        self.leased_tasks(request).await
    }
}

fn dead_letter_message(d: &dead_letter::Model, t: Option<&task::Model>) -> DeadLetter {
    DeadLetter {
        id: d.id.clone(),
        task: t.map(task_message),
        last_error: d.last_error.clone(),
        log_tail: d.log_tail.clone(),
        dead_at: Some(to_proto(d.dead_at)),
        replayed_at: d.replayed_at.map(to_proto),
    }
}

#[tonic::async_trait]
impl DeadLetterService for SchedulerApi {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let (ctx, req) = context(request)?;
        let principal = ctx
            .principal
            .as_ref()
            .ok_or_else(|| Status::unauthenticated("a valid bearer token is required"))?;
        if !req.run_id.is_empty() {
            self.run_for(&ctx, &req.run_id, Scope::RunsRead, "dead_letter.list")
                .await?;
        }
        // Non-admins see their own tenancy only, whatever they ask for.
        let scope = operator::Visible {
            org_id: (!principal.platform_admin).then_some(principal.org_id.as_str()),
            project_id: if principal.project_id.is_empty() {
                (!req.project_id.is_empty()).then_some(req.project_id.as_str())
            } else {
                Some(principal.project_id.as_str())
            },
            run_id: (!req.run_id.is_empty()).then_some(req.run_id.as_str()),
        };
        if !principal.platform_admin
            && !auth::held_scopes(principal).any(|s| s.grants(Scope::RunsRead))
        {
            return Err(Status::permission_denied(
                "the token lacks the `runs:read` scope",
            ));
        }
        let (limit, cursor) = page(req.page.as_ref());
        let mut letters =
            operator::dead_letters(&self.engine.db, &scope, cursor.as_deref(), limit + 1).await?;
        let next_cursor = if letters.len() as u64 > limit {
            letters.truncate(limit as usize);
            letters
                .last()
                .map(|(d, _)| d.id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: letters
                .iter()
                .map(|(d, t)| dead_letter_message(d, t.as_ref()))
                .collect(),
            page: Some(switchyard_proto::common::v1::PageResponse { next_cursor }),
        }))
    }

    async fn retry_dead_letters(
        &self,
        request: Request<RetryDeadLettersRequest>,
    ) -> Result<Response<RetryDeadLettersResponse>, Status> {
        let (ctx, req) = context(request)?;
        if req.dead_letter_ids.is_empty() && req.run_id.is_empty() {
            return Err(Status::invalid_argument(
                "name dead_letter_ids, or a run_id to replay all of its dead letters",
            ));
        }
        let letters = operator::letters_to_replay(
            &self.engine.db,
            &req.dead_letter_ids,
            (!req.run_id.is_empty()).then_some(req.run_id.as_str()),
        )
        .await?;
        if letters.is_empty() {
            return Err(Status::not_found("no dead letter to replay"));
        }
        // Every run touched must allow the caller to write runs before anything changes.
        let mut run_ids: Vec<&str> = letters.iter().map(|d| d.run_id.as_str()).collect();
        run_ids.sort_unstable();
        run_ids.dedup();
        for run_id in &run_ids {
            self.run_for(&ctx, run_id, Scope::RunsWrite, "dead_letter.retry")
                .await?;
        }
        let retried = self.engine.replay(&ctx, &letters).await?;
        Ok(Response::new(RetryDeadLettersResponse { retried }))
    }
}

fn agent_message(a: &agent::Model, tasks: Vec<String>) -> Agent {
    Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        labels: serde_json::from_str(&a.labels_json).unwrap_or_default(),
        capacity: a.capacity as u32,
        version: a.version.clone(),
        registered_at: Some(to_proto(a.registered_at)),
        last_heartbeat_at: Some(to_proto(a.last_heartbeat_at)),
        task_ids: tasks,
    }
}

#[tonic::async_trait]
impl AgentRegistryService for SchedulerApi {
    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let principal = ctx
            .principal
            .as_ref()
            .ok_or_else(|| Status::unauthenticated("a valid bearer token is required"))?;
        // The agent pool is the platform's: admins see it.
        if !principal.platform_admin && !auth::held_scopes(principal).any(|s| s == Scope::Admin) {
            return Err(Status::permission_denied(
                "listing agents needs the `admin` scope",
            ));
        }
        let (limit, _) = page(req.page.as_ref());
        let agents = operator::agents(&self.engine.db, limit).await?;
        let mut out = Vec::with_capacity(agents.len());
        for a in &agents {
            let tasks = operator::leased_to(&self.engine.db, &a.id).await?;
            out.push(agent_message(a, tasks));
        }
        Ok(Response::new(ListAgentsResponse {
            agents: out,
            page: Some(switchyard_proto::common::v1::PageResponse::default()),
        }))
    }
}
