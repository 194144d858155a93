//! What the scheduler's durable queue says is leased now (`SchedulerService.ListLeasedTasks`),
//! asked under monitoring's own service principal: reconciliation and stuck detection run
//! without a caller, and the answer spans organizations (callers filter by what the user may
//! see). Pages are followed to the end.

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_proto::common::v1::PageRequest;
use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_proto::scheduler::v1::scheduler_service_client::SchedulerServiceClient;
use switchyard_proto::scheduler::v1::{LeasedAttempt, ListLeasedTasksRequest};
use switchyard_runtime::auth::{CallContext, Scope, service_principal};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::time::from_proto;

/// Attempts per page (the scheduler's maximum).
const PAGE: u32 = 2000;

/// The leased attempts and what they are judged by.
#[derive(Debug, Clone)]
pub struct Leased {
    pub tasks: Vec<LeasedAttempt>,
    /// The scheduler's lease length.
    pub lease: Duration,
    /// The scheduler's clock when it answered (the first page).
    pub as_of: DateTime<Utc>,
}

/// Every attempt leased now, of one project or (`None`) of all.
pub async fn leased(
    channel: &GrpcChannel,
    project_id: Option<&str>,
    timeout: Duration,
) -> Result<Leased, String> {
    let ctx = CallContext {
        principal: Some(service_principal(crate::SERVICE, &[Scope::RunsRead])),
        ..CallContext::default()
    };
    let mut client = SchedulerServiceClient::new(channel.clone());
    let mut out = Leased {
        tasks: Vec::new(),
        lease: Duration::ZERO,
        as_of: Utc::now(),
    };
    let mut cursor = String::new();
    for page in 0.. {
        let mut request = tonic::Request::new(ListLeasedTasksRequest {
            project_id: project_id.unwrap_or_default().to_owned(),
            page: Some(PageRequest {
                limit: PAGE,
                cursor: cursor.clone(),
            }),
        });
        ctx.write_to(request.metadata_mut());
        request.set_timeout(timeout);
        let answer = tokio::time::timeout(timeout, client.list_leased_tasks(request))
            .await
            .map_err(|_| "the scheduler did not answer in time".to_owned())?
            .map_err(|status| format!("the scheduler refused: {}", status.message()))?
            .into_inner();
        if page == 0 {
            out.lease = Duration::from_secs(answer.lease_seconds);
            out.as_of = answer
                .as_of
                .as_ref()
                .and_then(from_proto)
                .unwrap_or(out.as_of);
        }
        out.tasks.extend(answer.tasks);
        cursor = answer.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// The view's entry for a leased attempt (without a workflow: the queue does not keep it).
pub fn active_task(t: &LeasedAttempt) -> ActiveTask {
    let wait = match (
        t.queued_at.as_ref().and_then(from_proto),
        t.started_at.as_ref().and_then(from_proto),
    ) {
        (Some(queued), Some(started)) => {
            let ms = (started - queued).num_milliseconds().max(0);
            Some(prost_types::Duration {
                seconds: ms / 1000,
                nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
            })
        }
        _ => None,
    };
    ActiveTask {
        task_id: t.task_id.clone(),
        run_id: t.run_id.clone(),
        project_id: t.project_id.clone(),
        node: t.node.clone(),
        shard_index: t.shard_index,
        attempt: t.attempt,
        agent_id: t.agent_id.clone(),
        started_at: t.started_at,
        last_heartbeat_at: t.last_heartbeat_at,
        workflow: String::new(),
        shard_count: t.shard_count,
        iteration: t.iteration,
        queued_at: t.queued_at,
        wait,
        lease_expires_at: t.lease_expires_at,
    }
}
