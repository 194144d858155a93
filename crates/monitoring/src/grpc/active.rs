//! `ListActiveTasks`: the attempts running now, from the active-task view (Redis), newest
//! first, limited to what the caller may see. The cursor is the last entry's `task:attempt`
//! field (fields sort by time: task ids are UUIDv7). When the view cannot be read the answer
//! comes from the scheduler's queue instead — slower, logged, never an error for the caller.

use switchyard_proto::common::v1::PageResponse;
use switchyard_proto::monitoring::v1::{
    ActiveTask, ListActiveTasksRequest, ListActiveTasksResponse,
};
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::active::{codec, scheduler};
use crate::domain::visibility::Visible;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The page size and the field to list below.
fn page(req: &ListActiveTasksRequest) -> Result<(usize, Option<String>), Status> {
    let page = req.page.clone().unwrap_or_default();
    let limit = match page.limit as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let cursor = match page.cursor.as_str() {
        "" => None,
        c if c
            .rsplit_once(':')
            .is_some_and(|(task, attempt)| !task.is_empty() && attempt.parse::<u32>().is_ok()) =>
        {
            Some(c.to_owned())
        }
        _ => {
            return Err(Status::invalid_argument(
                "cursor is not one this API returned",
            ));
        }
    };
    Ok((limit, cursor))
}

/// Newest first, below the cursor, one page and the cursor past it.
pub(super) fn paginate(
    tasks: Vec<ActiveTask>,
    limit: usize,
    cursor: Option<&str>,
) -> (Vec<ActiveTask>, PageResponse) {
    let mut keyed: Vec<(String, ActiveTask)> = tasks
        .into_iter()
        .map(|t| (codec::field_of(&t), t))
        .filter(|(field, _)| cursor.is_none_or(|c| field.as_str() < c))
        .collect();
    keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    let next_cursor = match keyed.get(limit) {
        Some(_) => keyed[limit - 1].0.clone(),
        None => String::new(),
    };
    keyed.truncate(limit);
    (
        keyed.into_iter().map(|(_, t)| t).collect(),
        PageResponse { next_cursor },
    )
}

impl MonitoringApi {
    /// Every running attempt the caller may see, from the view or, when it is unreachable,
    /// from the scheduler.
    pub(crate) async fn running(&self, who: &Visible) -> Result<Vec<ActiveTask>, Status> {
        let projects = match who {
            Visible::All => None,
            Visible::Projects(ids) if ids.is_empty() => return Ok(Vec::new()),
            Visible::Projects(ids) => Some(ids.as_slice()),
        };
        match self.active.entries(projects).await {
            Ok(tasks) => Ok(tasks),
            Err(error) => {
                tracing::warn!(%error, "active task view unreachable, asking the scheduler");
                let single = projects.and_then(|p| (p.len() == 1).then(|| p[0].as_str()));
                let leased = scheduler::leased(
                    &self.scheduler,
                    single,
                    self.active_config.scheduler_timeout,
                )
                .await
                .map_err(|reason| {
                    Status::unavailable(format!("active tasks are unavailable: {reason}"))
                })?;
                Ok(leased
                    .tasks
                    .iter()
                    .filter(|t| projects.is_none_or(|p| p.contains(&t.project_id)))
                    .map(scheduler::active_task)
                    .collect())
            }
        }
    }

    /// Applies an ingested batch's changes to the view. A failure is logged, not returned:
    /// the history is committed, and the view marks itself for a rebuild from the scheduler.
    pub(super) async fn update_active_view(&self, ops: &[crate::active::Op]) {
        if ops.is_empty() {
            return;
        }
        match self.active.apply(ops).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("active task view has no epoch, a rebuild is due"),
            Err(error) => {
                tracing::warn!(%error, changes = ops.len(), "active task view not updated, it will be rebuilt");
            }
        }
    }

    pub(super) async fn active_tasks(
        &self,
        request: Request<ListActiveTasksRequest>,
    ) -> Result<Response<ListActiveTasksResponse>, Status> {
        let ctx = switchyard_runtime::auth::CallContext::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let (limit, cursor) = page(&req)?;
        let who = self.visible(&ctx, &req.project_id, "task.active").await?;
        let tasks = self.running(&who).await?;
        let (tasks, page) = paginate(tasks, limit, cursor.as_deref());
        Ok(Response::new(ListActiveTasksResponse {
            tasks,
            page: Some(page),
        }))
    }
}

#[cfg(test)]
mod tests {
    use switchyard_proto::common::v1::PageRequest;

    use super::*;

    fn task(n: u32) -> ActiveTask {
        ActiveTask {
            task_id: format!("t{n:03}"),
            project_id: "p".into(),
            attempt: 1,
            ..ActiveTask::default()
        }
    }

    #[test]
    fn active_pages_are_newest_first_and_follow_the_cursor() {
        let all: Vec<_> = (1..=5).map(task).collect();
        let (first, page) = paginate(all.clone(), 2, None);
        assert_eq!(first, vec![task(5), task(4)]);
        assert_eq!(page.next_cursor, codec::field_of(&task(4)));
        let (second, page) = paginate(all.clone(), 2, Some(&page.next_cursor));
        assert_eq!(second, vec![task(3), task(2)]);
        let (last, page) = paginate(all, 2, Some(&page.next_cursor));
        assert_eq!(last, vec![task(1)]);
        assert_eq!(page.next_cursor, "");
    }

    #[test]
    fn active_cursors_are_checked() {
        let with = |cursor: &str| ListActiveTasksRequest {
            page: Some(PageRequest {
                limit: 0,
                cursor: cursor.into(),
            }),
            ..Default::default()
        };
        assert!(page(&with("42")).is_err());
        assert!(page(&with("t:x")).is_err());
        assert_eq!(
            page(&with("t:0000000001")).ok(),
            Some((50, Some("t:0000000001".into())))
        );
    }
}
