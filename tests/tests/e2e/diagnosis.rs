//! "Why is this not running?", retry statistics and the dead-letter analysis end to end: a CI
//! client through the HTTP API, monitoring asking the scheduler for live state, a real agent
//! running real commands. Runs wait on labels no agent has, on a full project limit, on a
//! backoff and on an upstream node, and each diagnosis says so in words naming the labels, the
//! limit and its holder, the time and the upstream; a finished run has nothing waiting. A node
//! that fails once then succeeds and a dead-lettered node show in the retry statistics and the
//! analysis, and a replayed dead letter stops counting while its replay runs.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_test_support::{BOOTSTRAP_TOKEN, TestDatabase, eventually};

use crate::runs::{Setup, setup};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

/// Polls the run's diagnosis until a finding with `code` appears; returns the whole answer.
async fn finding(s: &Setup, run: &str, code: &str) -> Value {
    let path = format!("/api/v1/runs/{run}/diagnosis");
    eventually(
        &format!("a `{code}` finding for run {run}"),
        Duration::from_secs(40),
        || async {
            let reply = s.api.get(&path, Some(&s.ci)).await;
            let found = reply.body["findings"]
                .as_array()?
                .iter()
                .any(|f| f["code"] == code);
            found.then_some(reply.body)
        },
    )
    .await
}

fn message<'a>(diagnosis: &'a Value, code: &str) -> &'a str {
    diagnosis["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["code"] == code))
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
}

async fn cancel(s: &Setup, run: &str) {
    let reply = s
        .api
        .post(
            &format!("/api/v1/runs/{run}/cancel"),
            Some(&s.ci),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

/// A token of another organization that may read runs (of its own projects).
async fn stranger(s: &Setup) -> String {
    let org = s
        .api
        .post("/api/v1/orgs", ADMIN, json!({"name": "other"}))
        .await;
    let org = org.body["id"].as_str().unwrap().to_owned();
    let project = s
        .api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            ADMIN,
            json!({"name": "elsewhere"}),
        )
        .await;
    let project = project.body["id"].as_str().unwrap().to_owned();
    let token = s
        .api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "t", "project_id": project, "scopes": ["runs:read"]}),
        )
        .await;
    token.body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnosis_explains_waiting_runs_in_plain_words() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let ci = Some(s.ci.as_str());

    // Bad input and unknown runs get precise errors.
    let bad = s.api.get("/api/v1/runs/not-an-id/diagnosis", ci).await;
    assert_eq!(
        (bad.status, bad.code()),
        (400, "invalid_argument"),
        "{:?}",
        bad.body
    );
    let unknown = format!("/api/v1/runs/{}/diagnosis", uuid::Uuid::now_v7());
    assert_eq!(s.api.get(&unknown, ci).await.status, 404);

    // A downstream node names its upstream while that runs; the finished run waits on nothing.
    s.workflow(
        "chain",
        json!({"nodes": [{"id": "build", "run": "sleep 3"},
                         {"id": "report", "needs": ["build"], "run": "true"}]}),
    )
    .await;
    let chain = s.start("chain").await;
    let waiting = finding(&s, &chain, "waiting_on_upstream").await;
    assert_eq!(
        message(&waiting, "waiting_on_upstream"),
        "Node report waits on build (running, 0/1 shards done).",
        "{waiting:?}"
    );
    assert_eq!(waiting["run_id"], chain.as_str());
    assert!(
        waiting["summary"]
            .as_str()
            .unwrap()
            .contains("Node report waits on build")
    );
    // Another organization's token may not ask.
    let other = stranger(&s).await;
    let denied = s
        .api
        .get(&format!("/api/v1/runs/{chain}/diagnosis"), Some(&other))
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    s.finished(&chain).await;
    let done = s
        .api
        .get(&format!("/api/v1/runs/{chain}/diagnosis"), ci)
        .await;
    assert_eq!(done.body["status"], "completed", "{:?}", done.body);
    assert!(
        done.body["summary"]
            .as_str()
            .unwrap()
            .starts_with("Nothing is waiting: the run completed at "),
        "{:?}",
        done.body
    );
    assert_eq!(done.body["findings"], json!([]));
    // The CLI says the same, readably.
    let out = tokio::process::Command::new(switchyard_test_support::binary("switchyard"))
        .args(["run", "why", &chain])
        .env("SWITCHYARD_URL", &s.api.base)
        .env("SWITCHYARD_TOKEN", &s.ci)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "run {chain} (completed)\n\nNothing is waiting: the run completed at "
        )),
        "{stdout}"
    );

    // Labels no agent offers.
    s.workflow(
        "gpu",
        json!({"nodes": [{"id": "train", "run": "true", "labels": {"gpu": "true", "os": "linux"}}]}),
    )
    .await;
    let gpu = s.start("gpu").await;
    let lost = finding(&s, &gpu, "no_matching_agent").await;
    let text = message(&lost, "no_matching_agent");
    assert!(
        text.starts_with(
            "No agent with labels gpu=true, os=linux is polling for node train: 1 agent is live"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("no live agent offers gpu=true, os=linux."),
        "{text}"
    );
    cancel(&s, &gpu).await;

    // A full project limit names the limit and the run that holds it.
    let limit = s
        .api
        .put(
            &format!("/api/v1/projects/{}/limits", s.project),
            ADMIN,
            json!({"max_running_tasks": 1}),
        )
        .await;
    assert_eq!(limit.status, 200, "{:?}", limit.body);
    s.workflow("hold", json!({"nodes": [{"id": "nap", "run": "sleep 8"}]}))
        .await;
    s.workflow("quick", json!({"nodes": [{"id": "hop", "run": "true"}]}))
        .await;
    let hold = s.start("hold").await;
    eventually("the holding run runs", Duration::from_secs(20), || async {
        let reply = s
            .api
            .get(&format!("/api/v1/runs/{hold}/diagnosis"), ci)
            .await;
        (reply.body["status"] == "running").then_some(())
    })
    .await;
    let quick = s.start("quick").await;
    let full = finding(&s, &quick, "concurrency_limit").await;
    let text = message(&full, "concurrency_limit");
    assert!(
        text.starts_with(&format!(
            "Project limit 1 reached: 1 task of 1 run is running [run {hold}: nap (1)]"
        )),
        "{text}"
    );
    let lifted = s
        .api
        .put(
            &format!("/api/v1/projects/{}/limits", s.project),
            ADMIN,
            json!({"max_running_tasks": 0}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{:?}", lifted.body);
    s.finished(&quick).await;

    // A failed attempt backing off says until when and why (full jitter: some retries
    // return at once, so the diagnosis is polled across attempts).
    s.workflow(
        "stubborn",
        json!({"nodes": [{"id": "fails", "run": "exit 1",
                          "retry": {"max_attempts": 20, "initial_backoff_ms": 30000,
                                    "max_backoff_ms": 60000}}]}),
    )
    .await;
    let stubborn = s.start("stubborn").await;
    let backing = finding(&s, &stubborn, "backing_off").await;
    let text = message(&backing, "backing_off");
    assert!(text.starts_with("Attempt "), "{text}");
    assert!(text.contains(" of node fails backs off until "), "{text}");
    assert!(text.ends_with("after exit code 1."), "{text}");
    // The time is a clock time (HH:MM:SSZ).
    let until = text.split(" until ").nth(1).unwrap_or_default();
    assert!(until.len() > 9 && until.as_bytes()[8] == b'Z', "{text}");
    cancel(&s, &stubborn).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_statistics_and_dead_letter_analysis_follow_real_runs() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let ci = Some(s.ci.as_str());
    s.workflow(
        "flaky",
        json!({"nodes": [{"id": "flaky", "run": "test \"$SWITCHYARD_ATTEMPT\" -ge 2",
                          "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20}}]}),
    )
    .await;
    s.workflow(
        "doomed",
        // The replay (attempt 2) runs a while, so the analysis is seen to drop it before the
        // replay has ended.
        json!({"nodes": [{"id": "doomed", "run": "if test \"$SWITCHYARD_ATTEMPT\" -ge 2; then sleep 20; else exit 2; fi",
                          "retry": {"max_attempts": 3, "non_retryable_exit_codes": [2]}}]}),
    )
    .await;
    let flaky = s.start("flaky").await;
    let doomed = s.start("doomed").await;
    assert_eq!(s.finished(&flaky).await["status"], "completed");
    assert_eq!(s.finished(&doomed).await["status"], "failed");

    let stats_path = format!(
        "/api/v1/monitoring/retry-statistics?project_id={}",
        s.project
    );
    let stats: Vec<Value> = eventually(
        "both nodes in the retry statistics",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&stats_path, ci).await;
            let items = reply.body["items"].as_array()?.clone();
            let flaky = items.iter().find(|i| i["node"] == "flaky")?;
            let doomed = items.iter().find(|i| i["node"] == "doomed")?;
            (flaky["attempts"] == 2 && doomed["dead_lettered"] == 1).then_some(items)
        },
    )
    .await;
    let flaky_stats = stats.iter().find(|i| i["node"] == "flaky").unwrap();
    assert_eq!(flaky_stats["workflow"], "flaky");
    assert_eq!(flaky_stats["retries"], 1, "{flaky_stats:?}");
    assert_eq!(flaky_stats["retry_rate"], 0.5);
    assert_eq!(flaky_stats["succeeded_after_retry"], 1);
    assert_eq!(flaky_stats["dead_lettered"], 0);
    assert_eq!(
        flaky_stats["top_errors"],
        json!([{"reason": "exit_code_1", "count": 1}])
    );
    let doomed_stats = stats.iter().find(|i| i["node"] == "doomed").unwrap();
    assert_eq!(
        doomed_stats["top_errors"],
        json!([{"reason": "exit_code_2_not_retryable", "count": 1}])
    );
    // Filters: another workflow only, a future window, a bad time.
    let only = s
        .api
        .get(&format!("{stats_path}&workflow=doomed"), ci)
        .await;
    assert_eq!(
        only.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        only.body
    );
    let future = s
        .api
        .get(&format!("{stats_path}&since=2999-01-01T00:00:00Z"), ci)
        .await;
    assert_eq!(future.body["items"], json!([]));
    let bad = s
        .api
        .get(&format!("{stats_path}&since=yesterday"), ci)
        .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_argument"));

    // The analysis groups the dead letter by reason, with its age.
    let analysis_path = format!(
        "/api/v1/monitoring/dead-letter/analysis?project_id={}",
        s.project
    );
    let analysis = s.api.get(&analysis_path, ci).await;
    assert_eq!(analysis.body["total"], 1, "{:?}", analysis.body);
    assert_eq!(
        analysis.body["groups"][0]["reason"],
        "exit_code_2_not_retryable"
    );
    assert_eq!(analysis.body["groups"][0]["count"], 1);
    assert!(analysis.body["groups"][0]["oldest"].is_string());

    // Replay goes through the scheduler's dead-letter queue; the dead letter stops counting
    // at once, while the replay still runs, and the replay then succeeds.
    let letters = s
        .api
        .get(
            &format!("/api/v1/monitoring/dead-letter?run_id={doomed}"),
            ci,
        )
        .await;
    let letter = letters.body["items"][0]["id"].as_str().unwrap().to_owned();
    let replay = s
        .api
        .post(
            &format!("/api/v1/monitoring/dead-letter/{letter}/retry"),
            ci,
            json!({}),
        )
        .await;
    assert_eq!(replay.status, 202, "{:?}", replay.body);
    eventually(
        "the replayed dead letter leaves the analysis",
        Duration::from_secs(15),
        || async {
            let reply = s.api.get(&analysis_path, ci).await;
            (reply.body["total"] == 0).then_some(())
        },
    )
    .await;
    let replay_ended = s
        .api
        .get(
            &format!("/api/v1/monitoring/tasks/history?run_id={doomed}&status=succeeded"),
            ci,
        )
        .await;
    assert_eq!(
        replay_ended.body["items"],
        json!([]),
        "the replay had not ended when its dead letter stopped counting"
    );
    let history = eventually("the replay succeeded", Duration::from_secs(60), || async {
        let reply = s
            .api
            .get(
                &format!("/api/v1/monitoring/tasks/history?run_id={doomed}&status=succeeded"),
                ci,
            )
            .await;
        let items = reply.body["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(history[0]["attempt"], 2, "{history:?}");
    s.stop().await;
}
