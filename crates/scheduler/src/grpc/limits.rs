//! ProjectLimitService: a project's concurrency limit (most of its tasks running at once,
//! across its runs). Reading needs `runs:read` on the project, changing it `admin`; a change
//! is audited in the transaction that makes it.

use chrono::Utc;
use switchyard_proto::events::v1::Outcome;
use switchyard_proto::scheduler::v1::project_limit_service_server::ProjectLimitService;
use switchyard_proto::scheduler::v1::*;
use switchyard_runtime::auth::{CallContext, Scope};
use switchyard_runtime::outbox::{self, AuditFact};
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::SERVICE;
use crate::error::Error;
use crate::store::entity::project_limit;
use crate::store::limits;

/// Beyond any real pool; a typo like 10000000 is refused rather than silently meaningless.
const MAX_LIMIT: u32 = 100_000;

fn message(project_id: &str, row: Option<&project_limit::Model>, running: u64) -> ProjectLimits {
    ProjectLimits {
        project_id: project_id.to_owned(),
        max_running_tasks: row.map_or(0, |r| r.max_running_tasks.max(0) as u32),
        running_tasks: u32::try_from(running).unwrap_or(u32::MAX),
        updated_at: row.map(|r| to_proto(r.updated_at)),
    }
}

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

#[tonic::async_trait]
impl ProjectLimitService for SchedulerApi {
    async fn get_project_limits(
        &self,
        request: Request<GetProjectLimitsRequest>,
    ) -> Result<Response<GetProjectLimitsResponse>, Status> {
        let (ctx, req) = context(request)?;
        self.authorize_project(&ctx, &req.project_id, Scope::RunsRead, "project_limits.get")
            .await?;
        let row = limits::get(&self.engine.db, &req.project_id).await?;
        let running = limits::running(&self.engine.db, &req.project_id).await?;
        Ok(Response::new(GetProjectLimitsResponse {
            limits: Some(message(&req.project_id, row.as_ref(), running)),
        }))
    }

    async fn set_project_limits(
        &self,
        request: Request<SetProjectLimitsRequest>,
    ) -> Result<Response<SetProjectLimitsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let org_id = self
            .authorize_project(&ctx, &req.project_id, Scope::Admin, "project_limits.set")
            .await?;
        if req.max_running_tasks > MAX_LIMIT {
            return Err(Status::invalid_argument(format!(
                "max_running_tasks must be at most {MAX_LIMIT} (0 for no limit)"
            )));
        }
        let txn = switchyard_runtime::db::write_txn(&self.engine.db)
            .await
            .map_err(Error::from)?;
        let row = limits::set(
            &txn,
            &req.project_id,
            req.max_running_tasks,
            &ctx.actor().id,
            Utc::now(),
        )
        .await?;
        let fact = AuditFact {
            action: "project_limits.set",
            resource_type: "project",
            resource_id: &req.project_id,
            org_id: &org_id,
            project_id: &req.project_id,
            outcome: Outcome::Success,
        };
        let details = serde_json::json!({ "max_running_tasks": req.max_running_tasks });
        outbox::enqueue_audit(&txn, SERVICE, outbox::request_record(&ctx, fact, &details))
            .await
            .map_err(Error::from)?;
        let running = limits::running(&txn, &req.project_id).await?;
        txn.commit().await.map_err(Error::from)?;
        // A raised or removed limit may let waiting tasks run at once.
        self.engine.wake.notify_waiters();
        tracing::info!(project_id = %req.project_id, max_running_tasks = req.max_running_tasks, "project concurrency limit set");
        Ok(Response::new(SetProjectLimitsResponse {
            limits: Some(message(&req.project_id, row.as_ref(), running)),
        }))
    }
}
