//! What must hold for every finished run, checked after each end-to-end run test: every task
//! is terminal; each task's ended attempts are 1, 2, … with no gap and none twice (the
//! attempt key makes a second completion of one attempt impossible; this checks none was
//! invented or skipped), the last one ending the way the task ended; a task succeeded at most
//! once; and the audit trail holds the run's creation and its status changes.

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use switchyard_scheduler::store::attempts;
use switchyard_scheduler::store::entity::task;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, eventually};

/// Checks the run's invariants; `run` must be final.
pub(crate) async fn check_run(api: &Api, db: &TestDatabase, run: &str) {
    let scheduler = db.connect("scheduler").await;
    let tasks = task::Entity::find()
        .filter(task::Column::RunId.eq(run))
        .all(&scheduler)
        .await
        .unwrap();
    assert!(!tasks.is_empty(), "run {run} has tasks");
    let ended = attempts::for_run(&scheduler, run).await.unwrap();
    for t in &tasks {
        assert!(
            matches!(
                t.status.as_str(),
                "succeeded" | "failed" | "dead" | "cancelled"
            ),
            "task {} of run {run} is not terminal: {}",
            t.uuid,
            t.status
        );
        let mine: Vec<_> = ended.iter().filter(|a| a.task_id == t.id).collect();
        let numbers: Vec<i32> = mine.iter().map(|a| a.attempt).collect();
        let expected: Vec<i32> = (1..=numbers.len() as i32).collect();
        assert_eq!(
            numbers, expected,
            "task {} attempts have a gap: {mine:?}",
            t.uuid
        );
        // Every attempt that ran ended with a record; a task stopped while waiting for its
        // next attempt (cancelled in the queue) has one attempt number without a record.
        let ran_last = matches!(t.status.as_str(), "succeeded" | "failed" | "dead");
        let recorded = numbers.len() as i32;
        assert!(
            recorded == t.attempt || (!ran_last && recorded == t.attempt - 1),
            "task {} is at attempt {} with {recorded} ended attempts ({})",
            t.uuid,
            t.attempt,
            t.status
        );
        let successes = mine.iter().filter(|a| a.outcome == "succeeded").count();
        match t.status.as_str() {
            "succeeded" => {
                assert_eq!(successes, 1, "task {} succeeded once: {mine:?}", t.uuid);
                assert_eq!(mine.last().map(|a| a.outcome.as_str()), Some("succeeded"));
            }
            "failed" | "dead" => {
                assert_eq!(successes, 0, "{mine:?}");
                assert_eq!(mine.last().map(|a| a.outcome.as_str()), Some("dead"));
            }
            _ => assert_eq!(successes, 0, "{mine:?}"),
        }
        for earlier in mine.iter().rev().skip(1) {
            assert!(
                matches!(earlier.outcome.as_str(), "retrying" | "dead"),
                "an attempt before the last either retried or was replayed: {mine:?}"
            );
        }
    }
    // The audit trail: who created the run, and each status the scheduler reported, up to
    // the final one.
    let status = api
        .get(&format!("/api/v1/runs/{run}"), Some(BOOTSTRAP_TOKEN))
        .await
        .body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/api/v1/audit/events?resource_id={run}&limit=500");
    let actions: Vec<String> = eventually(
        "the run's audit trail up to its final status",
        Duration::from_secs(30),
        || async {
            let reply = api.get(&path, Some(BOOTSTRAP_TOKEN)).await;
            let items = reply.body["items"].as_array()?;
            let reached_final = items.iter().any(|e| {
                e["action"] == "run.status_changed" && e["details"]["to"] == status.as_str()
            });
            let actions: Vec<String> = items
                .iter()
                .filter_map(|e| e["action"].as_str().map(str::to_owned))
                .collect();
            (actions.iter().any(|a| a == "run.created") && reached_final).then_some(actions)
        },
    )
    .await;
    assert!(
        actions
            .iter()
            .filter(|a| *a == "run.status_changed")
            .count()
            >= 2,
        "provisioning and at least the final status: {actions:?}"
    );
}
