//! The active-task view in Redis through the real services: rebuilt from the scheduler's
//! queue after Redis lost it mid-run (nothing lost: the history complete, the view empty
//! after), a task whose agent stopped heartbeating listed as stuck, and ingestion that stays
//! idempotent (a duplicate or late LEASED never brings an ended attempt back).

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_proto::events::v1::event_sink_client::EventSinkClient;
use switchyard_proto::events::v1::{
    DeliverRequest, Event, TaskLifecycle, TaskLifecycleBatch, TaskPhase, event::Payload,
};
use switchyard_proto::scheduler::v1::worker_service_client::WorkerServiceClient;
use switchyard_proto::scheduler::v1::{PollTasksRequest, RegisterAgentRequest};
use switchyard_test_support::cluster::{channel, redis};
use switchyard_test_support::{BOOTSTRAP_TOKEN, TestDatabase, eventually};

use crate::monitoring::first_reconciliation;
use crate::runs::{Setup, setup_full};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

/// Monitoring on the test's Redis, checking for a flush often.
fn on_redis(db: &TestDatabase) -> impl FnOnce(&mut switchyard_monitoring::MonitoringConfig) {
    let redis = redis(db);
    move |config| {
        config.redis = redis;
        config.active.flush_check_interval = Duration::from_millis(200);
    }
}

/// A connection to the test's Redis and the keys of this test's view matching `pattern`
/// (after its prefix), never another test's.
async fn view_keys(
    db: &TestDatabase,
    pattern: &str,
) -> (::redis::aio::MultiplexedConnection, Vec<String>) {
    let database = db.config("monitoring");
    let prefix = switchyard_monitoring::active::key_prefix(&database.url, &database.schema);
    let url = redis(db).url.expect("redis url");
    let client = ::redis::Client::open(url).expect("redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:{pattern}"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    (conn, keys)
}

/// Deletes every key of this test's view (its prefix) — never anything else in a Redis that
/// other tests share.
async fn delete_view_keys(db: &TestDatabase) -> usize {
    let (mut conn, keys) = view_keys(db, "active:*").await;
    if !keys.is_empty() {
        ::redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await
            .expect("del");
    }
    keys.len()
}

/// The members of this test's view's tombstone sets (`task_id:attempt` of ended attempts).
async fn view_tombstones(db: &TestDatabase) -> Vec<String> {
    let (mut conn, keys) = view_keys(db, "ended:*").await;
    let mut members = Vec::new();
    for key in keys {
        let set: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("smembers");
        members.extend(set);
    }
    members
}

/// The run's attempts in the history, once it lists `count` of them.
async fn history_of(s: &Setup, run: &str, count: usize) -> Vec<Value> {
    let history = format!("/api/v1/monitoring/tasks/history?run_id={run}");
    eventually(
        "the attempts in the history",
        Duration::from_secs(20),
        || async {
            let items = s.api.get(&history, Some(&s.ci)).await.body["items"]
                .as_array()?
                .clone();
            (items.len() == count).then_some(items)
        },
    )
    .await
}

/// A worker API request with the agent's token.
fn authorized<T>(bearer: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    request
}

fn active_of<'a>(reply: &'a Value, run: &str) -> Option<&'a Value> {
    reply["items"]
        .as_array()?
        .iter()
        .find(|t| t["run_id"] == run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_active_view_is_rebuilt_after_redis_lost_it() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(&db, |_| {}, |_| {}, on_redis(&db)).await;
    let ci = Some(s.ci.as_str());
    s.workflow("slow", json!({"nodes": [{"id": "nap", "run": "sleep 5"}]}))
        .await;
    let run = s.start("slow").await;
    let active = format!("/api/v1/monitoring/tasks/active?project_id={}", s.project);
    eventually(
        "the slow task is active",
        Duration::from_secs(20),
        || async { active_of(&s.api.get(&active, ci).await.body, &run).cloned() },
    )
    .await;
    assert!(delete_view_keys(&db).await >= 2, "the view was in Redis");
    let rebuilt = eventually(
        "the view is rebuilt from the scheduler",
        Duration::from_secs(10),
        || async { active_of(&s.api.get(&active, ci).await.body, &run).cloned() },
    )
    .await;
    assert_eq!(rebuilt["node"], "nap", "{rebuilt:?}");
    assert!(
        rebuilt["last_heartbeat_at"].is_string() && rebuilt["lease_expires_at"].is_string(),
        "a rebuilt entry carries the queue's heartbeat and lease: {rebuilt:?}"
    );
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    // Nothing lost: the attempt's history row, and the view empty again.
    let items = history_of(&s, &run, 1).await;
    assert_eq!(items[0]["status"], "succeeded", "{items:?}");
    assert!(
        items[0]["run_ms"].as_u64().is_some_and(|ms| ms >= 4000),
        "{items:?}"
    );
    eventually("the view is empty", Duration::from_secs(20), || async {
        let reply = s.api.get(&active, ci).await;
        reply.body["items"].as_array()?.is_empty().then_some(())
    })
    .await;
    s.stop().await;
}

/// Attempts that end before their `LEASED` step is due (the scheduler's delay, a second)
/// never enter the view, and their endings leave nothing in Redis: nothing to remove, no
/// tombstone. The history has every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_attempts_that_end_before_their_lease_is_reported_leave_the_view_alone() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(&db, |_| {}, |_| {}, on_redis(&db)).await;
    let ci = Some(s.ci.as_str());
    s.workflow(
        "quick",
        json!({"nodes": [{"id": "t", "run": "true", "shards": 4}]}),
    )
    .await;
    let run = s.start("quick").await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let items = history_of(&s, &run, 4).await;
    // Well within the delay even on a slow machine: these endings took their attempt's
    // waiting step with them.
    let quick: Vec<String> = items
        .iter()
        .filter(|i| i["run_ms"].as_u64().is_some_and(|ms| ms < 500))
        .map(|i| {
            let attempt = u32::try_from(i["attempt"].as_u64().unwrap_or(0)).unwrap_or(0);
            switchyard_monitoring::active::codec::field(
                i["task_id"].as_str().unwrap_or(""),
                attempt,
            )
        })
        .collect();
    assert!(
        !quick.is_empty(),
        "attempts of `true` end quickly: {items:?}"
    );
    let tombstones = view_tombstones(&db).await;
    for attempt in &quick {
        assert!(
            !tombstones.contains(attempt),
            "{attempt} was tombstoned: {tombstones:?}"
        );
    }
    let active = format!("/api/v1/monitoring/tasks/active?project_id={}", s.project);
    let listed = s.api.get(&active, ci).await;
    assert_eq!(listed.body["items"], json!([]), "{:?}", listed.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_a_task_whose_agent_went_silent_is_stuck() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(
        &db,
        |_| {},
        // A long lease: the silent agent's lease outlives the test.
        |scheduler| scheduler.engine.lease = Duration::from_secs(60),
        |monitoring| {
            on_redis(&db)(monitoring);
            // Stale after 3 s of silence (the default, 2/3 of a lease, would be 40 s here).
            monitoring.active.stuck.heartbeat_stale_fraction = 0.05;
        },
    )
    .await;
    // The setup's agent stays out: the task must go to the silent one.
    s.agent_stop.cancel();
    let token = s
        .api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "silent", "project_id": s.project, "scopes": ["agents"]}),
        )
        .await;
    let bearer = format!("Bearer {}", token.body["token"].as_str().unwrap());
    let mut worker = WorkerServiceClient::new(channel(&s.api.cluster.scheduler));
    let agent = worker
        .register_agent(authorized(
            &bearer,
            RegisterAgentRequest {
                name: "silent".into(),
                capacity: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    s.workflow(
        "hang",
        json!({"nodes": [{"id": "wait", "run": "sleep 600"}]}),
    )
    .await;
    let run = s.start("hang").await;
    let leased = eventually(
        "the silent agent leased the task",
        Duration::from_secs(20),
        || {
            let mut worker = worker.clone();
            let request = authorized(
                &bearer,
                PollTasksRequest {
                    agent_id: agent.clone(),
                    max_tasks: 1,
                    wait: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                },
            );
            async move {
                worker
                    .poll_tasks(request)
                    .await
                    .ok()?
                    .into_inner()
                    .tasks
                    .pop()
            }
        },
    )
    .await;
    assert_eq!(leased.run_id, run);
    let stuck = format!("/api/v1/monitoring/tasks/stuck?project_id={}", s.project);
    let found = eventually("the task is stuck", Duration::from_secs(20), || async {
        let reply = s.api.get(&stuck, Some(&s.ci)).await;
        reply.body["items"]
            .as_array()?
            .iter()
            .find(|t| t["task"]["task_id"] == leased.task_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(found["reason"], "heartbeat_stale", "{found:?}");
    assert!(
        found["message"]
            .as_str()
            .is_some_and(|m| m.contains("last sent a heartbeat")),
        "{found:?}"
    );
    assert_eq!(found["task"]["agent_id"], agent.as_str(), "{found:?}");
    assert_eq!(
        s.api.get(&stuck, None).await.status,
        401,
        "callers must say who they are"
    );
    s.stop().await;
}

fn step(project: &str, task: &str, phase: TaskPhase, finished: bool) -> TaskLifecycle {
    let now = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    TaskLifecycle {
        task_id: task.to_owned(),
        run_id: uuid::Uuid::now_v7().to_string(),
        project_id: project.to_owned(),
        workflow: "w".into(),
        node: "n".into(),
        shard_count: 1,
        attempt: 1,
        phase: phase as i32,
        agent_id: "agent-x".into(),
        queued_at: Some(now),
        started_at: Some(now),
        finished_at: finished.then_some(now),
        ..TaskLifecycle::default()
    }
}

fn event(steps: Vec<TaskLifecycle>) -> Event {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        source: "scheduler".into(),
        payload: Some(Payload::TaskLifecycles(TaskLifecycleBatch { steps })),
        ..Event::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_duplicates_and_late_leases_never_reopen_an_attempt() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(&db, |_| {}, |_| {}, on_redis(&db)).await;
    // The steps below are made up: the scheduler's queue never lists them, so they go in
    // after the first reconciliation, which would remove them (the next is 30 s away).
    first_reconciliation().await;
    let project = s.project.clone();
    let sink = EventSinkClient::new(channel(&s.api.cluster.monitoring));
    let deliver = |events: Vec<Event>| {
        let mut sink = sink.clone();
        async move {
            sink.deliver(DeliverRequest { events })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let (running, ended) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let leased = event(vec![step(&project, &running, TaskPhase::Leased, false)]);
    assert_eq!(deliver(vec![leased.clone()]).await.accepted, 1);
    assert_eq!(deliver(vec![leased]).await.duplicates, 1, "by event id");
    // The end of `ended` arrives before its LEASED (a different event, delivered late).
    deliver(vec![event(vec![step(
        &project,
        &ended,
        TaskPhase::Succeeded,
        true,
    )])])
    .await;
    deliver(vec![event(vec![step(
        &project,
        &ended,
        TaskPhase::Leased,
        false,
    )])])
    .await;
    let active = format!("/api/v1/monitoring/tasks/active?project_id={project}");
    let ids: Vec<String> = s.api.get(&active, ADMIN).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["task_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids,
        vec![running.clone()],
        "the late LEASED did not reopen {ended}"
    );
    let history = format!("/api/v1/monitoring/tasks/history?project_id={project}");
    let rows = s.api.get(&history, ADMIN).await.body["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rows.len(), 1, "only the ended attempt has a row: {rows:?}");
    assert_eq!(rows[0]["task_id"], ended.as_str());
    assert_eq!(rows[0]["status"], "succeeded");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_active_tasks_come_from_the_scheduler_while_redis_is_down() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(
        &db,
        |_| {},
        |_| {},
        |monitoring| {
            // Nothing listens there: every view operation fails fast.
            monitoring.redis.url = Some("redis://127.0.0.1:1".into());
            monitoring.redis.timeout = Duration::from_millis(200);
        },
    )
    .await;
    let ci = Some(s.ci.as_str());
    s.workflow("slow", json!({"nodes": [{"id": "nap", "run": "sleep 4"}]}))
        .await;
    let run = s.start("slow").await;
    let active = format!("/api/v1/monitoring/tasks/active?project_id={}", s.project);
    let running = eventually(
        "the slow task is active, answered by the scheduler",
        Duration::from_secs(20),
        || async {
            let reply = s.api.get(&active, ci).await;
            assert_eq!(reply.status, 200, "never an error: {:?}", reply.body);
            active_of(&reply.body, &run).cloned()
        },
    )
    .await;
    assert!(
        running["lease_expires_at"].is_string(),
        "straight from the queue: {running:?}"
    );
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let history = format!("/api/v1/monitoring/tasks/history?run_id={run}");
    eventually(
        "the history is written without Redis",
        Duration::from_secs(20),
        || async {
            let items = s.api.get(&history, ci).await.body["items"]
                .as_array()?
                .clone();
            (items.len() == 1 && items[0]["status"] == "succeeded").then_some(())
        },
    )
    .await;
    s.stop().await;
}
