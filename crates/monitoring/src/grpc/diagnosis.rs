//! `MonitoringService.DiagnoseRun`: asks the scheduler for the run's live wait state with the
//! caller's own credentials (the scheduler authorizes the read and audits a refusal, as for
//! its other run reads), then puts the facts into words (`domain::diagnosis`). Monitoring adds
//! no state of its own: the answer is as fresh as the scheduler's tables.

use std::time::Duration;

use switchyard_proto::monitoring::v1::{DiagnoseRunRequest, DiagnoseRunResponse};
use switchyard_proto::scheduler::v1::GetRunWaitStateRequest;
use switchyard_proto::scheduler::v1::scheduler_service_client::SchedulerServiceClient;
use switchyard_runtime::auth::CallContext;
use tonic::{Code, Request, Response, Status};

use super::MonitoringApi;
use crate::domain::diagnosis;

/// How long the scheduler may take to answer before the diagnosis gives up.
const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(10);

impl MonitoringApi {
    pub(super) async fn diagnose(
        &self,
        request: Request<DiagnoseRunRequest>,
    ) -> Result<Response<DiagnoseRunResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let run_id = request.into_inner().run_id;
        if uuid::Uuid::parse_str(&run_id).is_err() {
            return Err(Status::invalid_argument("run_id is not an id"));
        }
        let mut call = Request::new(GetRunWaitStateRequest {
            run_id: run_id.clone(),
        });
        ctx.write_to(call.metadata_mut());
        call.set_timeout(SCHEDULER_TIMEOUT);
        let mut scheduler = SchedulerServiceClient::new(self.scheduler.clone());
        let state =
            match tokio::time::timeout(SCHEDULER_TIMEOUT, scheduler.get_run_wait_state(call)).await
            {
                Ok(Ok(answer)) => answer.into_inner(),
                Ok(Err(status)) => return Err(from_scheduler(&run_id, status)),
                Err(_) => return Err(unreachable(&run_id, "it did not answer in time")),
            };
        let found = diagnosis::diagnose(&state, chrono::Utc::now());
        Ok(Response::new(DiagnoseRunResponse {
            run_id,
            status: found.status,
            summary: found.summary,
            findings: found.findings,
        }))
    }
}

fn unreachable(run_id: &str, why: &str) -> Status {
    tracing::warn!(run_id, why, "diagnosis could not reach the scheduler");
    Status::unavailable(format!(
        "cannot diagnose run {run_id}: the scheduler, which holds its live state, is unreachable ({why}); try again shortly"
    ))
}

/// The scheduler's refusal as the caller's: not found and denied pass through (the scheduler
/// already audited a denial); a transport failure becomes UNAVAILABLE with a clear message.
fn from_scheduler(run_id: &str, status: Status) -> Status {
    match status.code() {
        Code::NotFound => Status::not_found(format!(
            "run {run_id} is not known to the scheduler (no such run, or it has not been handed to the scheduler yet)"
        )),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            unreachable(run_id, status.message())
        }
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnosis_maps_scheduler_failures_for_the_caller() {
        let run = "0190a0a0-0000-7000-8000-000000000001";
        let gone = from_scheduler(run, Status::unavailable("tcp connect error"));
        assert_eq!(gone.code(), Code::Unavailable);
        assert!(gone.message().contains(
            "the scheduler, which holds its live state, is unreachable (tcp connect error)"
        ));
        assert_eq!(
            from_scheduler(run, Status::not_found("run has no tasks yet")).code(),
            Code::NotFound
        );
        let denied = from_scheduler(
            run,
            Status::permission_denied("the token lacks `runs:read`"),
        );
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(denied.message(), "the token lacks `runs:read`");
    }
}
