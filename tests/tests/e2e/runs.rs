//! Runs end to end: a CI client through the HTTP API, the control plane, the scheduler and a
//! real agent running real shell commands. Passing, failing, retried, timed-out and cancelled
//! runs, with outputs, shard results and coverage coming back to the run record.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_agent::AgentConfig;
use switchyard_gateway::GatewayConfig;
use switchyard_runtime::shutdown::Shutdown;
use switchyard_test_support::api::spawn_api_full;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, eventually};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

pub(crate) struct Setup {
    pub(crate) api: Api,
    pub(crate) project: String,
    pub(crate) ci: String,
    pub(crate) agent_stop: Shutdown,
    agent: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A project, a CI token and an agent with a project-scoped `agents` token.
/// A node that fails its first attempt and succeeds on the retry (quick backoff), then a
/// two-shard node after it: a run with a history worth looking at.
pub(crate) fn flaky_then_fan() -> Value {
    json!({"nodes": [
        {"id": "flaky", "run": "test \"$SWITCHYARD_ATTEMPT\" -ge 2",
         "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20}},
        {"id": "fan", "needs": ["flaky"], "shards": 2, "run": "true"}]})
}

pub(crate) async fn setup(db: &TestDatabase) -> Setup {
    setup_with(db, |_| {}).await
}

/// The same, with a hook to adjust the gateway's config.
pub(crate) async fn setup_with(
    db: &TestDatabase,
    adjust: impl FnOnce(&mut GatewayConfig),
) -> Setup {
    setup_full(db, adjust, |_| {}, |_| {}).await
}

/// The same, with hooks for the gateway's, the scheduler's and monitoring's configs.
pub(crate) async fn setup_full(
    db: &TestDatabase,
    adjust: impl FnOnce(&mut GatewayConfig),
    adjust_scheduler: impl FnOnce(&mut switchyard_scheduler::SchedulerConfig),
    adjust_monitoring: impl FnOnce(&mut switchyard_monitoring::MonitoringConfig),
) -> Setup {
    let api = Box::pin(spawn_api_full(
        db,
        adjust,
        adjust_scheduler,
        adjust_monitoring,
    ))
    .await;
    let org = api
        .post("/api/v1/orgs", ADMIN, json!({"name": "runs"}))
        .await;
    let org = org.body["id"].as_str().unwrap().to_owned();
    let project = api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            ADMIN,
            json!({"name": "web"}),
        )
        .await;
    let project = project.body["id"].as_str().unwrap().to_owned();
    let token = |scopes: Value| {
        let api = &api;
        let project = project.clone();
        async move {
            let reply = api
                .post(
                    "/api/v1/auth/service-tokens",
                    ADMIN,
                    json!({"name": "t", "project_id": project, "scopes": scopes}),
                )
                .await;
            reply.body["token"].as_str().unwrap().to_owned()
        }
    };
    let ci = token(json!(["runs:write", "workflows:write"])).await;
    let agent_token = token(json!(["agents"])).await;
    let dir = tempfile::tempdir().unwrap();
    let scheduler = format!("http://{}", api.cluster.scheduler.grpc_addr);
    let mut config = AgentConfig::new(&scheduler, &agent_token, dir.path());
    config.poll_wait = Duration::from_secs(2);
    config.kill_grace = Duration::from_millis(200);
    config.shutdown_grace = Duration::from_secs(2);
    let agent_stop = Shutdown::new();
    let stop = agent_stop.clone();
    let agent = tokio::spawn(async move {
        if let Err(error) = switchyard_agent::run(config, stop).await {
            panic!("agent failed: {error}");
        }
    });
    Setup {
        api,
        project,
        ci,
        agent_stop,
        agent,
        _dir: dir,
    }
}

impl Setup {
    pub(crate) async fn workflow(&self, name: &str, definition: Value) {
        let put = self
            .api
            .put(
                &format!("/api/v1/projects/{}/workflows/{name}", self.project),
                Some(&self.ci),
                definition,
            )
            .await;
        assert!(matches!(put.status, 200 | 201), "{:?}", put.body);
    }

    pub(crate) async fn start(&self, workflow: &str) -> String {
        let run = self
            .api
            .post(
                &format!("/api/v1/projects/{}/runs", self.project),
                Some(&self.ci),
                json!({"workflow": workflow, "params": {"branch": "main"}}),
            )
            .await;
        assert_eq!(run.status, 201, "{:?}", run.body);
        run.body["id"].as_str().unwrap().to_owned()
    }

    /// Waits for the run to reach a final status and returns its record.
    pub(crate) async fn finished(&self, run: &str) -> Value {
        eventually("the run is final", Duration::from_secs(60), || async {
            let reply = self
                .api
                .get(&format!("/api/v1/runs/{run}"), Some(&self.ci))
                .await;
            reply.body["finished_at"].is_string().then_some(reply.body)
        })
        .await
    }

    pub(crate) async fn stop(self) {
        self.agent_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.agent).await;
        self.api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_run_completes_with_outputs_shards_and_coverage() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    s.workflow(
        "pipeline",
        json!({"nodes": [
            {"id": "build", "run": "echo built > $SWITCHYARD_ARTIFACTS/app.txt && echo '{\"built\": true}' > $SWITCHYARD_OUTPUTS"},
            {"id": "test", "needs": ["build"], "shards": 2,
             "run": "echo \"{\\\"passed\\\": 3, \\\"failed\\\": 0, \\\"skipped\\\": 1, \\\"coverage\\\": [{\\\"path\\\": \\\"src/a.rs\\\", \\\"covered_lines\\\": [$SWITCHYARD_SHARD_INDEX], \\\"executable_lines\\\": [0, 1, 2]}]}\" > $SWITCHYARD_RESULTS"},
            {"id": "report", "needs": ["test"], "run": "test \"$SWITCHYARD_NODE\" = report && test \"$SWITCHYARD_SHARD_COUNT\" = 1"}]}),
    )
    .await;
    let run = s.start("pipeline").await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    assert_eq!(done["final_state"]["built"], true);
    assert_eq!(done["final_state"]["branch"], "main");
    assert!(done["started_at"].is_string());
    assert!(done["duration_ms"].is_u64(), "{done:?}");
    let test_shards: Vec<&Value> = done["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "test")
        .collect();
    assert_eq!(test_shards.len(), 2, "{done:?}");
    assert!(
        test_shards
            .iter()
            .all(|s| s["passed"] == 3 && s["skipped"] == 1)
    );
    // Shard 0 covered line 0, shard 1 line 1: two of three lines, merged.
    assert_eq!(done["coverage"]["files"][0]["lines_covered"], 2, "{done:?}");
    assert_eq!(done["coverage"]["total_percent"], 66.67);
    crate::invariants::check_run(&s.api, &db, &run).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_retries_and_timeouts_end_runs_as_they_should() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    s.workflow(
        "fails",
        json!({"nodes": [{"id": "t", "run": "echo boom >&2; exit 3"},
                                         {"id": "after", "needs": ["t"], "run": "true"}]}),
    )
    .await;
    s.workflow(
        "flaky",
        json!({"nodes": [{"id": "t", "run": "test \"$SWITCHYARD_ATTEMPT\" -ge 2",
                          "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20}}]}),
    )
    .await;
    s.workflow(
        "slow",
        json!({"nodes": [{"id": "t", "run": "sleep 30", "timeout_s": 1}]}),
    )
    .await;
    s.workflow(
        "misconfigured",
        json!({"nodes": [{"id": "t", "run": "exit 2",
                          "retry": {"max_attempts": 5, "initial_backoff_ms": 10,
                                    "non_retryable_exit_codes": [2]}}]}),
    )
    .await;
    let (fails, flaky, slow, misconfigured) = (
        s.start("fails").await,
        s.start("flaky").await,
        s.start("slow").await,
        s.start("misconfigured").await,
    );
    let failed = s.finished(&fails).await;
    assert_eq!(failed["status"], "failed", "{failed:?}");
    assert!(
        failed["reason"].as_str().unwrap().contains('t'),
        "{failed:?}"
    );
    let retried = s.finished(&flaky).await;
    assert_eq!(retried["status"], "completed", "{retried:?}");
    let timed_out = s.finished(&slow).await;
    assert_eq!(timed_out["status"], "failed", "{timed_out:?}");
    // A non-retryable exit code fails at once, with retries left.
    let refused = s.finished(&misconfigured).await;
    assert_eq!(refused["status"], "failed", "{refused:?}");
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{misconfigured}/tasks"), Some(&s.ci))
        .await;
    assert_eq!(
        (
            &tasks.body["items"][0]["attempt"],
            &tasks.body["items"][0]["exit_code"]
        ),
        (&json!(1), &json!(2)),
        "{:?}",
        tasks.body
    );
    // The flaky node failed once, then succeeded on attempt 2.
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{flaky}/tasks"), Some(&s.ci))
        .await;
    assert_eq!(tasks.body["items"][0]["attempt"], 2, "{:?}", tasks.body);
    crate::invariants::check_run(&s.api, &db, &fails).await;
    crate::invariants::check_run(&s.api, &db, &flaky).await;
    crate::invariants::check_run(&s.api, &db, &slow).await;
    crate::invariants::check_run(&s.api, &db, &misconfigured).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_run_stops_its_process() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let marker = s._dir.path().join("pid");
    s.workflow(
        "long",
        json!({"nodes": [{"id": "t", "run": format!("echo $$ > {} && sleep 60", marker.display())}]}),
    )
    .await;
    let run = s.start("long").await;
    let pid: i32 = eventually("the task is running", Duration::from_secs(30), || async {
        std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await;
    let cancel = s
        .api
        .post(
            &format!("/api/v1/runs/{run}/cancel"),
            Some(&s.ci),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "cancelled", "{done:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the task's shell {pid} is gone"
    );
    crate::invariants::check_run(&s.api, &db, &run).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_replayed_and_its_run_resumes() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let marker = s._dir.path().join("fixed");
    s.workflow(
        "gate",
        json!({"nodes": [{"id": "check", "run": format!("test -f {}", marker.display())},
                         {"id": "after", "needs": ["check"], "run": "true"}]}),
    )
    .await;
    s.workflow(
        "partial",
        json!({"nodes": [{"id": "t", "shards": 2, "allow_partial": true,
                          "run": "test \"$SWITCHYARD_SHARD_INDEX\" = 0"}]}),
    )
    .await;
    let partial = s.start("partial").await;
    let run = s.start("gate").await;
    let failed = s.finished(&run).await;
    assert_eq!(failed["status"], "failed", "{failed:?}");
    assert_eq!(failed["tasks"]["dead"], 1, "{failed:?}");
    let partial = s.finished(&partial).await;
    assert_eq!(partial["status"], "partial_failed", "{partial:?}");

    let ci = Some(s.ci.as_str());
    let letters = s
        .api
        .get(&format!("/api/v1/monitoring/dead-letter?run_id={run}"), ci)
        .await;
    assert_eq!(letters.status, 200, "{:?}", letters.body);
    let letter = &letters.body["items"][0];
    assert_eq!(letter["task"]["node"], "check");
    assert!(
        letter["last_error"]
            .as_str()
            .unwrap()
            .contains("exit code 1"),
        "{letter:?}"
    );
    let id = letter["id"].as_str().unwrap().to_owned();

    std::fs::write(&marker, "").unwrap();
    let retry = s
        .api
        .post(
            &format!("/api/v1/monitoring/dead-letter/{id}/retry"),
            ci,
            json!({}),
        )
        .await;
    assert_eq!(
        (retry.status, &retry.body["retried"]),
        (202, &json!(1)),
        "{:?}",
        retry.body
    );
    let resumed = eventually(
        "the run resumed and completed",
        Duration::from_secs(60),
        || async {
            let reply = s.api.get(&format!("/api/v1/runs/{run}"), ci).await;
            (reply.body["status"] == "completed").then_some(reply.body)
        },
    )
    .await;
    assert_eq!(resumed["tasks"]["succeeded"], 2, "{resumed:?}");
    let tasks = s.api.get(&format!("/api/v1/runs/{run}/tasks"), ci).await;
    let check = &tasks.body["items"][0];
    assert_eq!(
        (
            check["node"].as_str(),
            check["attempt"].as_u64(),
            check["status"].as_str()
        ),
        (Some("check"), Some(2), Some("succeeded")),
        "{:?}",
        tasks.body
    );
    let again = s
        .api
        .post(
            &format!("/api/v1/monitoring/dead-letter/{id}/retry"),
            ci,
            json!({}),
        )
        .await;
    assert_eq!(
        again.status, 404,
        "a replayed letter is gone: {:?}",
        again.body
    );

    let agents = s.api.get("/api/v1/agents", ADMIN).await;
    assert_eq!(
        agents.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        agents.body
    );
    assert_eq!(s.api.get("/api/v1/agents", ci).await.status, 403);
    crate::invariants::check_run(&s.api, &db, &run).await;
    crate::invariants::check_run(&s.api, &db, partial["id"].as_str().unwrap()).await;
    s.stop().await;
}

/// An agent process is killed mid-task (SIGKILL: no drain, no hand-back, no more
/// heartbeats): the lease expires, another agent runs the task again, and the run completes
/// with the lost attempt on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_of_a_killed_agent_runs_again_elsewhere() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    // The in-process agent of the setup stays out of this: stop it before the run exists.
    s.agent_stop.cancel();
    let marker = s._dir.path().join("first-attempt");
    s.workflow(
        "survivor",
        json!({"nodes": [{"id": "t", "run": format!(
            "if [ -f {m} ]; then exit 0; else touch {m}; sleep 60; fi", m = marker.display())}]}),
    )
    .await;
    let token = |name: &'static str| {
        let api = &s.api;
        let project = s.project.clone();
        async move {
            let reply = api
                .post(
                    "/api/v1/auth/service-tokens",
                    ADMIN,
                    json!({"name": name, "project_id": project, "scopes": ["agents"]}),
                )
                .await;
            reply.body["token"].as_str().unwrap().to_owned()
        }
    };
    let scheduler = format!("http://{}", s.api.cluster.scheduler.grpc_addr);
    let work = tempfile::tempdir().unwrap();
    let agent = |token: String, dir: &str| {
        tokio::process::Command::new(switchyard_test_support::binary("switchyard-agent"))
            .args([
                "--scheduler",
                &scheduler,
                "--token",
                &token,
                "--capacity",
                "1",
                "--dir",
            ])
            .arg(work.path().join(dir))
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut first = agent(token("first").await, "first");
    let run = s.start("survivor").await;
    eventually(
        "the first attempt is running",
        Duration::from_secs(30),
        || async { marker.exists().then_some(()) },
    )
    .await;
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let _second = agent(token("second").await, "second");
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{run}/tasks"), Some(&s.ci))
        .await;
    assert_eq!(tasks.body["items"][0]["attempt"], 2, "{:?}", tasks.body);
    crate::invariants::check_run(&s.api, &db, &run).await;
    s.stop().await;
}

/// A cron schedule (every second, 6 fields) starts runs of its workflow through the control
/// plane, which a real agent runs; pausing stops it; bad expressions are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cron_schedule_starts_runs_until_paused() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    let ci = Some(s.ci.as_str());
    s.workflow("nightly", json!({"nodes": [{"id": "t", "run": "true"}]}))
        .await;
    let path = format!("/api/v1/projects/{}/schedules", s.project);
    let bad = s
        .api
        .post(
            &path,
            ci,
            json!({"workflow": "nightly", "cron": "every night"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (400, "invalid_argument"),
        "{:?}",
        bad.body
    );
    let created = s
        .api
        .post(
            &path,
            ci,
            json!({"workflow": "nightly", "cron": "* * * * * *", "params": {"kind": "cron"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let runs_path = format!("/api/v1/projects/{}/runs?status=completed", s.project);
    let runs = eventually(
        "scheduled runs completed",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&runs_path, ci).await;
            reply.body["items"]
                .as_array()
                .filter(|items| items.len() >= 2)
                .cloned()
        },
    )
    .await;
    assert_eq!(runs[0]["params"]["kind"], "cron");
    let paused = s
        .api
        .request(reqwest::Method::PATCH, &format!("{path}/{id}"), ci)
        .json(&json!({"paused": true}));
    let paused = s.api.send(paused).await;
    assert_eq!(
        (paused.status, &paused.body["paused"]),
        (200, &json!(true)),
        "{:?}",
        paused.body
    );
    let listed = s.api.get(&path, ci).await;
    assert!(
        listed.body["items"][0]["last_fired_at"].is_string(),
        "{:?}",
        listed.body
    );
    let deleted = s.api.delete(&format!("{path}/{id}"), ci).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(s.api.get(&path, ci).await.body["items"], json!([]));
    for scheduled in &runs {
        crate::invariants::check_run(&s.api, &db, scheduled["id"].as_str().unwrap()).await;
    }
    s.stop().await;
}

/// The scheduler restarts while a run's shards are running: agents' calls fail for a moment
/// and are retried, the run completes, and no task is completed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_survives_a_scheduler_restart() {
    let db = TestDatabase::postgres().await;
    let mut s = setup(&db).await;
    let started = s._dir.path().join("started");
    std::fs::create_dir_all(&started).unwrap();
    s.workflow(
        "steady",
        json!({"nodes": [
            {"id": "work", "shards": 3,
             "run": format!("touch {}/$SWITCHYARD_SHARD_INDEX-$SWITCHYARD_ATTEMPT && sleep 1", started.display())},
            {"id": "after", "needs": ["work"], "run": "true"}]}),
    )
    .await;
    let run = s.start("steady").await;
    eventually("shards are running", Duration::from_secs(30), || async {
        (std::fs::read_dir(&started).map(|d| d.count()).unwrap_or(0) >= 1).then_some(())
    })
    .await;
    s.api.cluster.restart_scheduler().await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let tasks = s
        .api
        .get(&format!("/api/v1/runs/{run}/tasks"), Some(&s.ci))
        .await;
    let items = tasks.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{:?}", tasks.body);
    assert!(
        items.iter().all(|t| t["status"] == "succeeded"),
        "{:?}",
        tasks.body
    );
    // Each shard's accepted completion is its last attempt; a lease lost during the restart
    // shows as a higher attempt, never as a second completion.
    assert_eq!(done["tasks"]["succeeded"], 4, "{done:?}");
    crate::invariants::check_run(&s.api, &db, &run).await;
    s.stop().await;
}
