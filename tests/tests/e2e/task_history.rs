//! Monitoring fed by the scheduler, end to end: a real agent runs a workflow with a retried
//! step and a sharded one; every attempt appears in the execution history with its outcome,
//! agent, times and retry reason; a slow task shows among the active tasks while it runs and
//! leaves them when it ends.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_test_support::{TestDatabase, eventually};

use crate::runs::{flaky_then_fan, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_history_and_active_tasks_follow_a_real_run() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let ci = Some(s.ci.as_str());
    s.workflow("flaky", flaky_then_fan()).await;
    let run = s.start("flaky").await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");

    let path = format!("/api/v1/monitoring/tasks/history?run_id={run}");
    let items: Vec<Value> = eventually(
        "every attempt in the history, finished",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&path, ci).await;
            let items = reply.body["items"].as_array()?.clone();
            (items.len() == 4 && items.iter().all(|i| i["finished_at"].is_string()))
                .then_some(items)
        },
    )
    .await;
    let mut seen: Vec<(String, u64, u64, String)> = items
        .iter()
        .map(|i| {
            (
                i["node"].as_str().unwrap_or_default().to_owned(),
                i["shard_index"].as_u64().unwrap_or(99),
                i["attempt"].as_u64().unwrap_or(0),
                i["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("fan".to_owned(), 0, 1, "succeeded".to_owned()),
            ("fan".to_owned(), 1, 1, "succeeded".to_owned()),
            ("flaky".to_owned(), 0, 1, "retrying".to_owned()),
            ("flaky".to_owned(), 0, 2, "succeeded".to_owned()),
        ],
        "{items:?}"
    );
    let first = items
        .iter()
        .find(|i| i["node"] == "flaky" && i["attempt"] == 1)
        .unwrap();
    assert_eq!(first["exit_code"], 1, "{first:?}");
    assert_eq!(first["retry_reason"], "exit_code_1", "{first:?}");
    for item in &items {
        assert_eq!(item["workflow"], "flaky", "{item:?}");
        assert!(
            item["agent_id"].as_str().is_some_and(|a| !a.is_empty()),
            "{item:?}"
        );
        assert!(
            item["started_at"].is_string() && item["queued_at"].is_string(),
            "{item:?}"
        );
        assert!(
            item["run_ms"].is_u64() && item["wait_ms"].is_u64(),
            "{item:?}"
        );
    }

    // A slow task is active while it runs, and only then.
    s.workflow("slow", json!({"nodes": [{"id": "nap", "run": "sleep 3"}]}))
        .await;
    let slow = s.start("slow").await;
    let active = format!("/api/v1/monitoring/tasks/active?project_id={}", s.project);
    let running = eventually(
        "the slow task is active",
        Duration::from_secs(20),
        || async {
            let reply = s.api.get(&active, ci).await;
            reply.body["items"]
                .as_array()?
                .iter()
                .find(|t| t["run_id"] == slow.as_str())
                .cloned()
        },
    )
    .await;
    assert_eq!(running["node"], "nap", "{running:?}");
    assert!(running["agent_id"].as_str().is_some_and(|a| !a.is_empty()));
    s.finished(&slow).await;
    eventually(
        "the finished task left the active list",
        Duration::from_secs(20),
        || async {
            let reply = s.api.get(&active, ci).await;
            let items = reply.body["items"].as_array()?.clone();
            (!items.iter().any(|t| t["run_id"] == slow.as_str())).then_some(())
        },
    )
    .await;
    s.stop().await;
}
