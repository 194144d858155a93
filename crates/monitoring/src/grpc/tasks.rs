//! MonitoringService's task listings: the execution history of ended attempts (filters by
//! project, run, status and end time), newest first by finish time with a cursor naming the
//! last row's place (see `store::history_cursor`),
//! limited to what the caller may see (see `access`). Running attempts are not in the history
//! (their row is written once, when they end): they are listed by `ListActiveTasks` from the
//! active-task view (`active`), and judged by `ListStuckTasks` (`stuck`).

use switchyard_proto::common::v1::{PageRequest, PageResponse};
use switchyard_proto::monitoring::v1::monitoring_service_server::MonitoringService;
use switchyard_proto::monitoring::v1::*;
use switchyard_runtime::auth::CallContext;
use switchyard_runtime::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::domain::execution::Status as ExecutionStatus;
use crate::store::entity::task_execution::Model;
use crate::store::executions::{self, HistoryFilter};
use crate::store::history_cursor::HistoryCursor;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

/// The page size and the cursor: rows that sort after it.
fn page(request: Option<&PageRequest>) -> Result<(u64, Option<HistoryCursor>), Status> {
    let limit = match request.map(|p| u64::from(p.limit)).unwrap_or(0) {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let after = match request.map(|p| p.cursor.as_str()).unwrap_or_default() {
        "" => None,
        cursor => Some(
            HistoryCursor::parse(cursor)
                .ok_or_else(|| Status::invalid_argument("cursor is not one this API returned"))?,
        ),
    };
    Ok((limit, after))
}

/// Trims the extra row fetched to detect a next page and names the cursor past this one.
fn finish(rows: &mut Vec<Model>, limit: u64) -> PageResponse {
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| HistoryCursor::after(r).to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    PageResponse { next_cursor }
}

fn duration(ms: Option<i64>) -> Option<prost_types::Duration> {
    ms.map(|ms| prost_types::Duration {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    })
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn execution_message(row: &Model) -> TaskExecution {
    TaskExecution {
        task_id: row.task_id.to_string(),
        run_id: row.run_id.to_string(),
        project_id: row.project_id.to_string(),
        workflow: row.workflow.clone(),
        node: row.node.clone(),
        shard_index: count(row.shard_index),
        shard_count: count(row.shard_count),
        attempt: count(row.attempt),
        iteration: count(row.iteration),
        status: row.status.clone(),
        agent_id: row.agent_id.clone(),
        exit_code: row.exit_code,
        error: row.error.clone(),
        retry_reason: row.retry_reason.clone(),
        queued_at: row.queued_at.map(to_proto),
        started_at: row.started_at.map(to_proto),
        finished_at: Some(to_proto(row.finished_at)),
        wait: duration(row.wait_ms),
        run: duration(row.run_ms),
    }
}

fn history_filter(req: &ListTaskHistoryRequest) -> Result<HistoryFilter, Status> {
    let run_id = match req.run_id.as_str() {
        "" => None,
        id => Some(
            uuid::Uuid::parse_str(id)
                .map_err(|_| Status::invalid_argument("run_id is not an id"))?,
        ),
    };
    let status = match req.status.as_str() {
        "" => None,
        text => Some(ExecutionStatus::parse(text).ok_or_else(|| {
            Status::invalid_argument(format!(
                "status must be one of {}",
                ExecutionStatus::names()
            ))
        })?),
    };
    let since = match &req.since {
        None => None,
        Some(t) => Some(
            from_proto(t).ok_or_else(|| Status::invalid_argument("since is not a valid time"))?,
        ),
    };
    Ok(HistoryFilter {
        run_id,
        status,
        since,
    })
}

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {
    async fn list_task_history(
        &self,
        request: Request<ListTaskHistoryRequest>,
    ) -> Result<Response<ListTaskHistoryResponse>, Status> {
        let (ctx, req) = context(request)?;
        let filter = history_filter(&req)?;
        let (limit, after) = page(req.page.as_ref())?;
        let who = self.visible(&ctx, &req.project_id, "task.history").await?;
        let mut rows = executions::history(&self.db, &who, &filter, after, limit + 1).await?;
        let page = finish(&mut rows, limit);
        Ok(Response::new(ListTaskHistoryResponse {
            executions: rows.iter().map(execution_message).collect(),
            page: Some(page),
        }))
    }

    async fn list_active_tasks(
        &self,
        request: Request<ListActiveTasksRequest>,
    ) -> Result<Response<ListActiveTasksResponse>, Status> {
        self.active_tasks(request).await
    }

    async fn list_stuck_tasks(
        &self,
        request: Request<ListStuckTasksRequest>,
    ) -> Result<Response<ListStuckTasksResponse>, Status> {
        self.stuck(request).await
    }

    async fn diagnose_run(
        &self,
        request: Request<DiagnoseRunRequest>,
    ) -> Result<Response<DiagnoseRunResponse>, Status> {
        self.diagnose(request).await
    }

    async fn get_retry_statistics(
        &self,
        request: Request<GetRetryStatisticsRequest>,
    ) -> Result<Response<GetRetryStatisticsResponse>, Status> {
        self.retry_statistics(request).await
    }

    async fn get_dead_letter_analysis(
        &self,
        request: Request<GetDeadLetterAnalysisRequest>,
    ) -> Result<Response<GetDeadLetterAnalysisResponse>, Status> {
        self.dead_letter_analysis(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_pages_default_clamp_and_check_cursors() {
        let page_of = |limit, cursor: &str| {
            page(Some(&PageRequest {
                limit,
                cursor: cursor.into(),
            }))
        };
        assert_eq!(page(None).ok(), Some((50, None)));
        assert_eq!(page_of(10_000, "").ok(), Some((500, None)));
        let cursor = "1764400000.000123456_00000000000000000000000000000007_00000000000000000000000000000009_2";
        assert_eq!(
            page_of(5, cursor).ok(),
            Some((5, HistoryCursor::parse(cursor)))
        );
        assert!(HistoryCursor::parse(cursor).is_some());
        assert!(page_of(5, "garbage").is_err());
        assert!(
            page_of(5, "42").is_err(),
            "the old integer cursors are refused"
        );
    }

    #[test]
    fn monitoring_durations_keep_their_milliseconds() {
        assert_eq!(
            duration(Some(1_250)),
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 250_000_000
            })
        );
        assert_eq!(duration(None), None);
    }

    #[test]
    fn monitoring_history_filters_name_the_bad_field() {
        let bad_status = ListTaskHistoryRequest {
            status: "leased".into(),
            ..Default::default()
        };
        let error = history_filter(&bad_status)
            .err()
            .map(|s| s.message().to_owned());
        assert!(error.is_some_and(|m| m.starts_with("status must be one of running")));
        let bad_run = ListTaskHistoryRequest {
            run_id: "x".into(),
            ..Default::default()
        };
        assert!(history_filter(&bad_run).is_err());
    }
}
