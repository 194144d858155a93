//! `SchedulerService.ListLeasedTasks`: the attempts leased now, for monitoring, which rebuilds
//! its active-task view from them and judges heartbeats by them. Only a service's own
//! principal (a background job) or a platform admin may list them: the answer spans every
//! organization. The last heartbeat is derived, not stored: every heartbeat sets the lease to
//! run out one lease length later, so it was `lease_expires_at - lease`.

use switchyard_proto::common::v1::PageResponse;
use switchyard_proto::scheduler::v1::{
    LeasedAttempt, ListLeasedTasksRequest, ListLeasedTasksResponse,
};
use switchyard_runtime::auth::{CallContext, is_service_principal};
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::store::leases::{self, Leased};

const DEFAULT_LIMIT: u64 = 500;
const MAX_LIMIT: u64 = 2000;

fn attempt_message(t: &Leased, lease: chrono::Duration, lifecycle_pending: bool) -> LeasedAttempt {
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    LeasedAttempt {
        task_id: t.uuid.clone(),
        run_id: t.run_id.clone(),
        project_id: t.project_id.clone(),
        node: t.node.clone(),
        shard_index: count(t.shard_index),
        shard_count: count(t.shard_count),
        attempt: count(t.attempt),
        iteration: count(t.iteration),
        agent_id: t.agent_id.clone().unwrap_or_default(),
        queued_at: Some(to_proto(t.queued_at)),
        started_at: t.started_at.map(to_proto),
        lease_expires_at: t.lease_expires_at.map(to_proto),
        last_heartbeat_at: t.lease_expires_at.map(|at| to_proto(at - lease)),
        timeout_seconds: u64::try_from(t.timeout_s).unwrap_or(0),
        lifecycle_pending,
    }
}

impl SchedulerApi {
    pub(crate) async fn leased_tasks(
        &self,
        request: Request<ListLeasedTasksRequest>,
    ) -> Result<Response<ListLeasedTasksResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let principal = ctx
            .principal
            .as_ref()
            .ok_or_else(|| Status::unauthenticated("a valid bearer token is required"))?;
        if !is_service_principal(principal) && !principal.platform_admin {
            return Err(Status::permission_denied(
                "listing leased tasks is for services and platform admins",
            ));
        }
        let project = match req.project_id.as_str() {
            "" => None,
            id if uuid::Uuid::parse_str(id).is_ok() => Some(id),
            _ => return Err(Status::invalid_argument("project_id is not an id")),
        };
        let page = req.page.unwrap_or_default();
        let limit = match u64::from(page.limit) {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let after = match page.cursor.as_str() {
            "" => 0,
            cursor => cursor
                .parse::<i64>()
                .map_err(|_| Status::invalid_argument("cursor is not one this API returned"))?,
        };
        let as_of = chrono::Utc::now();
        let rows = leases::leased(&self.engine.db, project, after, limit).await?;
        let next_cursor = match rows.last() {
            Some(last) if rows.len() as u64 == limit => last.id.to_string(),
            _ => String::new(),
        };
        let lease = self.engine.settings.lease;
        let lease_length = chrono::Duration::from_std(lease).unwrap_or_default();
        Ok(Response::new(ListLeasedTasksResponse {
            tasks: rows
                .iter()
                .map(|t| {
                    let pending = self.engine.lifecycle_pending(&t.uuid, t.started_at, as_of);
                    attempt_message(t, lease_length, pending)
                })
                .collect(),
            page: Some(PageResponse { next_cursor }),
            lease_seconds: lease.as_secs(),
            as_of: Some(to_proto(as_of)),
        }))
    }
}
