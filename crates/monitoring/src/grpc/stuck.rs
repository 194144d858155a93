//! `ListStuckTasks`: the running attempts the caller may see that look stuck (see
//! `active::stuck` for the rules, `active::detect` for the facts), authorized per project
//! like the other task listings.

use switchyard_proto::monitoring::v1::{ListStuckTasksRequest, ListStuckTasksResponse};
use switchyard_runtime::auth::CallContext;
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::active::detect;
use crate::domain::visibility::Visible;

impl MonitoringApi {
    pub(super) async fn stuck(
        &self,
        request: Request<ListStuckTasksRequest>,
    ) -> Result<Response<ListStuckTasksResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let who = self.visible(&ctx, &req.project_id, "task.stuck").await?;
        let projects = match &who {
            Visible::All => None,
            Visible::Projects(ids) if ids.is_empty() => {
                return Ok(Response::new(ListStuckTasksResponse::default()));
            }
            Visible::Projects(ids) => Some(ids.as_slice()),
        };
        let tasks = detect::stuck_tasks(
            &self.db,
            &self.scheduler,
            Some(&self.active),
            projects,
            &self.active_config,
        )
        .await
        .map_err(|reason| Status::unavailable(format!("stuck tasks are unavailable: {reason}")))?;
        Ok(Response::new(ListStuckTasksResponse { tasks }))
    }
}
