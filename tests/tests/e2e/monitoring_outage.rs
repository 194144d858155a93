//! Monitoring down for a while: a real run goes on without it (its lifecycle events wait in
//! the scheduler's outbox), and once monitoring is back every attempt arrives in the history
//! exactly once — none lost, none doubled.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;
use switchyard_test_support::{TestDatabase, eventually};

use crate::runs::{flaky_then_fan, setup};

async fn count(db: &DatabaseConnection, sql: &str, value: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [value.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_held_while_monitoring_is_down_arrive_once_after_it_returns() {
    let db = TestDatabase::postgres().await;
    let mut s = setup(&db).await;
    let ci = Some(s.ci.as_str().to_owned());
    s.workflow("flaky", flaky_then_fan()).await;

    s.api.cluster.halt_monitoring().await;
    let run = s.start("flaky").await;
    let done = s.finished(&run).await;
    assert_eq!(
        done["status"], "completed",
        "the run does not wait for monitoring"
    );
    let scheduler = db.connect("scheduler").await;
    let held = "SELECT count(*) FROM outbox_events WHERE destination = $1 \
                AND delivered_at IS NULL";
    assert!(
        count(&scheduler, held, "monitoring").await > 0,
        "lifecycle events wait in the scheduler's outbox while monitoring is down"
    );

    s.api.cluster.start_monitoring_again().await;
    let path = format!("/api/v1/monitoring/tasks/history?run_id={run}");
    let items: Vec<Value> = eventually(
        "every attempt in the history once monitoring is back",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&path, ci.as_deref()).await;
            let items = reply.body["items"].as_array()?.clone();
            (items.len() == 4).then_some(items)
        },
    )
    .await;
    eventually(
        "the scheduler's outbox for monitoring is drained",
        Duration::from_secs(30),
        || async { (count(&scheduler, held, "monitoring").await == 0).then_some(()) },
    )
    .await;

    // Nothing doubled: one row per attempt, whatever the relay retried.
    let monitoring = db.connect("monitoring").await;
    let rows = count(
        &monitoring,
        "SELECT count(*) FROM task_executions WHERE run_id = $1::uuid",
        &run,
    )
    .await;
    let attempts = count(
        &monitoring,
        "SELECT count(DISTINCT task_id || ':' || attempt) FROM task_executions \
         WHERE run_id = $1::uuid",
        &run,
    )
    .await;
    assert_eq!((rows, attempts), (4, 4), "{items:?}");
    let mut seen: Vec<(String, u64, String)> = items
        .iter()
        .map(|i| {
            (
                i["node"].as_str().unwrap_or_default().to_owned(),
                i["attempt"].as_u64().unwrap_or(0),
                i["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("fan".to_owned(), 1, "succeeded".to_owned()),
            ("fan".to_owned(), 1, "succeeded".to_owned()),
            ("flaky".to_owned(), 1, "retrying".to_owned()),
            ("flaky".to_owned(), 2, "succeeded".to_owned()),
        ]
    );
    let active = format!("/api/v1/monitoring/tasks/active?project_id={}", s.project);
    let reply = s.api.get(&active, ci.as_deref()).await;
    assert_eq!(
        reply.body["items"].as_array().map(Vec::len),
        Some(0),
        "nothing of the finished run is active: {:?}",
        reply.body
    );
    s.stop().await;
}
