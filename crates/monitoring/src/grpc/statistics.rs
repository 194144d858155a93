//! `MonitoringService.GetRetryStatistics` and `GetDeadLetterAnalysis`, from monitoring's own
//! execution history, limited to what the caller may see (see `access`: a named project is
//! authorized on its tenancy; none named covers the caller's own tenancy). Replaying dead
//! letters is the scheduler's (`DeadLetterService`); see `store::statistics` for how a replay
//! leaves the analysis.

use chrono::{Duration, Utc};
use switchyard_proto::monitoring::v1::{
    DeadLetterGroup, ErrorReason, GetDeadLetterAnalysisRequest, GetDeadLetterAnalysisResponse,
    GetRetryStatisticsRequest, GetRetryStatisticsResponse, RetryStatistics,
};
use switchyard_runtime::auth::CallContext;
use switchyard_runtime::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::domain::retry_stats;
use crate::store::statistics::{self, Window};

/// The window when the request names no `since`.
const DEFAULT_WINDOW_DAYS: i64 = 7;
/// Longest workflow name a filter may carry.
const MAX_WORKFLOW: usize = 200;

fn window(req: &GetRetryStatisticsRequest) -> Result<Window<'_>, Status> {
    let since = match &req.since {
        None => Utc::now() - Duration::days(DEFAULT_WINDOW_DAYS),
        Some(t) => {
            from_proto(t).ok_or_else(|| Status::invalid_argument("since is not a valid time"))?
        }
    };
    let workflow = match req.workflow.as_str() {
        "" => None,
        w if w.len() > MAX_WORKFLOW => {
            return Err(Status::invalid_argument(format!(
                "workflow is longer than {MAX_WORKFLOW} bytes"
            )));
        }
        w => Some(w),
    };
    Ok(Window { workflow, since })
}

impl MonitoringApi {
    pub(super) async fn retry_statistics(
        &self,
        request: Request<GetRetryStatisticsRequest>,
    ) -> Result<Response<GetRetryStatisticsResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let window = window(&req)?;
        let who = self
            .visible(&ctx, &req.project_id, "retry_statistics.read")
            .await?;
        let (counts, errors) = statistics::retry_statistics(&self.db, &who, &window).await?;
        let statistics = retry_stats::assemble(counts, errors)
            .into_iter()
            .map(|s| RetryStatistics {
                project_id: s.counts.project_id,
                workflow: s.counts.workflow,
                node: s.counts.node,
                attempts: s.counts.attempts,
                retries: s.counts.retries,
                retry_rate: s.retry_rate,
                succeeded_after_retry: s.counts.succeeded_after_retry,
                dead_lettered: s.counts.dead_lettered,
                top_errors: s
                    .top_errors
                    .into_iter()
                    .map(|(reason, count)| ErrorReason { reason, count })
                    .collect(),
            })
            .collect();
        Ok(Response::new(GetRetryStatisticsResponse { statistics }))
    }

    pub(super) async fn dead_letter_analysis(
        &self,
        request: Request<GetDeadLetterAnalysisRequest>,
    ) -> Result<Response<GetDeadLetterAnalysisResponse>, Status> {
        let ctx = CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let who = self
            .visible(&ctx, &req.project_id, "dead_letter.analysis")
            .await?;
        let (total, groups) = statistics::dead_letters(&self.db, &who).await?;
        Ok(Response::new(GetDeadLetterAnalysisResponse {
            total,
            groups: groups
                .into_iter()
                .map(|g| DeadLetterGroup {
                    reason: g.reason,
                    count: g.count,
                    oldest: g.oldest.map(to_proto),
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_statistics_default_to_a_week_and_check_their_filters() {
        let req = GetRetryStatisticsRequest::default();
        let w = window(&req).ok();
        let age = w.map(|w| Utc::now() - w.since);
        assert!(age.is_some_and(
            |a| a >= Duration::days(7) && a < Duration::days(7) + Duration::minutes(1)
        ));
        let bad = GetRetryStatisticsRequest {
            since: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        };
        assert_eq!(
            window(&bad).err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
        let long = GetRetryStatisticsRequest {
            workflow: "w".repeat(201),
            ..Default::default()
        };
        assert!(window(&long).is_err());
    }
}
