//! A bounded review → fix loop through the HTTP API and a real agent: the review's verdict
//! (an output of its shell command) sends the run back to `fix` until it approves, each
//! iteration is recorded on its tasks, and a loop that never approves stops at
//! `max_iterations`.

use serde_json::json;
use switchyard_test_support::TestDatabase;

use crate::runs::setup;

/// `review` approves on its second iteration (`SWITCHYARD_ITERATION` counts from 0).
fn review_loop(max_iterations: u32, approve_at: u32) -> serde_json::Value {
    json!({"nodes": [
        {"id": "fix", "run": "echo \"{\\\"fixed_in\\\": $SWITCHYARD_ITERATION}\" > $SWITCHYARD_OUTPUTS"},
        {"id": "review", "needs": ["fix"],
         "run": format!("if [ \"$SWITCHYARD_ITERATION\" -ge {approve_at} ]; then v=true; else v=false; fi; echo \"{{\\\"approved\\\": $v}}\" > $SWITCHYARD_OUTPUTS"),
         "loop": {"to": "fix", "max_iterations": max_iterations, "when": {"key": "approved", "equals": false}}},
        {"id": "ship", "needs": ["review"], "run": "true"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_review_loop_goes_round_until_approved_through_real_agents() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    s.workflow("reviewed", review_loop(3, 1)).await;
    s.workflow("never", review_loop(2, 99)).await;
    let run = s.start("reviewed").await;
    let stuck = s.start("never").await;

    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{run}/tasks"), Some(&s.ci))
        .await;
    let mut iterations: Vec<(String, u64)> = tasks.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["node"].as_str().unwrap().to_owned(),
                t["iteration"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    iterations.sort();
    assert_eq!(
        iterations,
        vec![
            ("fix".to_owned(), 0),
            ("fix".to_owned(), 1),
            ("review".to_owned(), 0),
            ("review".to_owned(), 1),
            ("ship".to_owned(), 0)
        ],
        "{:?}",
        tasks.body
    );
    // The second fix's output replaced the first's in the run's state.
    assert_eq!(done["final_state"]["fixed_in"], 1, "{done:?}");
    assert_eq!(done["final_state"]["approved"], true, "{done:?}");

    // Never approved: the loop stops at its bound and the run moves on rather than spinning.
    let bounded = s.finished(&stuck).await;
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{stuck}/tasks"), Some(&s.ci))
        .await;
    let reviews = tasks.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["node"] == "review")
        .count();
    assert_eq!(
        reviews, 2,
        "max_iterations bounds the reviews: {:?}",
        tasks.body
    );
    assert!(bounded["finished_at"].is_string(), "{bounded:?}");

    crate::invariants::check_run(&s.api, &db, &run).await;
    crate::invariants::check_run(&s.api, &db, &stuck).await;
    s.stop().await;
}
