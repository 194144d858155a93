//! The scheduler's run engine against a real database: runs accepted from the control plane
//! move through their graphs as agents claim and complete tasks; retries, dead letters, lease
//! expiry, fencing, loops and cancellation; and a completion racing the lease sweeper never
//! has its result undone.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use switchyard_proto::events::v1::{RunRequested, TaskPhase, event::Payload};
use switchyard_runtime::outbox::entity as outbox_entity;
use switchyard_scheduler::engine::{AgentScope, Completion, Engine, Settings};
use switchyard_scheduler::error::Error;
use switchyard_scheduler::store::entity::{dead_letter, task};
use switchyard_scheduler_migration::Migrator;
use switchyard_test_support::TestDatabase;

pub(crate) async fn engine(db: &TestDatabase, settings: Settings) -> Engine {
    let config = db.config("scheduler");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    Engine::new(conn, settings)
}

pub(crate) async fn submit(engine: &Engine, run_id: &str, definition: serde_json::Value) {
    let request = RunRequested {
        run_id: run_id.to_owned(),
        project_id: "00000000-0000-7000-8000-000000000001".into(),
        workflow: "w".into(),
        workflow_version: 1,
        definition_json: definition.to_string(),
        params_json: r#"{"branch": "main"}"#.into(),
        ..RunRequested::default()
    };
    Engine::accept(&engine.db, &request).await.unwrap();
}

/// Submits a run of one node that succeeds at once.
pub(crate) async fn submit_one(engine: &Engine, run_id: &str) {
    submit(
        engine,
        run_id,
        json!({"nodes": [{"id": "t", "run": "true"}]}),
    )
    .await;
}

pub(crate) fn run_id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

pub(crate) fn any_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

pub(crate) fn platform_agent(labels: &BTreeMap<String, String>) -> AgentScope<'_> {
    AgentScope {
        agent_id: "agent-1",
        org_id: "",
        project_id: "",
        labels,
    }
}

/// Claims everything ready and returns `(task id, node, shard, attempt)`.
pub(crate) async fn claim(engine: &Engine) -> Vec<(String, String, i32, u32)> {
    let labels = any_labels();
    engine
        .claim(&platform_agent(&labels), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.uuid, t.node, t.shard_index, t.attempt as u32))
        .collect()
}

pub(crate) async fn finish(
    engine: &Engine,
    task: &(String, String, i32, u32),
    exit_code: i32,
    outputs: serde_json::Value,
) -> Result<(), Error> {
    engine
        .complete(Completion {
            agent_id: "agent-1".into(),
            task_id: task.0.clone(),
            attempt: task.3,
            exit_code,
            outputs_json: outputs.to_string(),
            ..Completion::default()
        })
        .await
}

/// The payloads of the events in the outbox for `destination`, in the order written.
pub(crate) async fn outbox_payloads(db: &DatabaseConnection, destination: &str) -> Vec<Payload> {
    outbox_entity::Entity::find()
        .filter(outbox_entity::Column::Destination.eq(destination))
        .order_by_asc(outbox_entity::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|row| {
            switchyard_proto::events::v1::Event::decode(row.payload.as_slice())
                .ok()?
                .payload
        })
        .collect()
}

/// The statuses the scheduler reported for a run, in order.
async fn reported(db: &DatabaseConnection, run: &str) -> Vec<String> {
    outbox_payloads(db, "control-plane")
        .await
        .into_iter()
        .filter_map(|payload| match payload {
            Payload::RunStatusChanged(s) if s.run_id == run => Some(s.status),
            _ => None,
        })
        .collect()
}

async fn tasks_of(db: &DatabaseConnection, run: &str) -> Vec<task::Model> {
    task::Entity::find()
        .filter(task::Column::RunId.eq(run))
        .order_by_asc(task::Column::Id)
        .all(db)
        .await
        .unwrap()
}

async fn a_diamond_runs_to_partial_failure(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(1);
    submit(
        &engine,
        &run,
        json!({"nodes": [
            {"id": "build", "run": "make build"},
            {"id": "unit", "needs": ["build"], "run": "make unit", "shards": 2, "allow_partial": true},
            {"id": "lint", "needs": ["build"], "run": "make lint"},
            {"id": "report", "needs": ["unit", "lint"], "run": "make report"}]}),
    )
    .await;
    let first = claim(&engine).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, "build");
    assert!(claim(&engine).await.is_empty(), "nothing else is ready");
    finish(&engine, &first[0], 0, json!({"artifact": "app.tar"}))
        .await
        .unwrap();

    let mut wave: Vec<_> = claim(&engine).await;
    wave.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    let names: Vec<(&str, i32)> = wave.iter().map(|t| (t.1.as_str(), t.2)).collect();
    assert_eq!(names, vec![("lint", 0), ("unit", 0), ("unit", 1)]);
    finish(&engine, &wave[0], 0, json!({})).await.unwrap();
    finish(&engine, &wave[1], 0, json!({})).await.unwrap();
    // No retry policy: one failed attempt is a dead letter; the node allows partial results.
    finish(&engine, &wave[2], 1, json!({})).await.unwrap();
    let last = claim(&engine).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1, "report");
    finish(&engine, &last[0], 0, json!({})).await.unwrap();

    assert_eq!(
        reported(&engine.db, &run).await,
        vec!["provisioning", "running", "reporting", "partial_failed"]
    );
    // A second completion of the same lease is refused and changes nothing.
    let again = finish(&engine, &last[0], 0, json!({})).await;
    assert!(
        matches!(again, Err(Error::FailedPrecondition(_))),
        "{again:?}"
    );
    let tasks = tasks_of(&engine.db, &run).await;
    assert_eq!(tasks.len(), 5);
    let dead: Vec<_> = tasks.iter().filter(|t| t.status == "dead").collect();
    assert_eq!(dead.len(), 1);
    assert!(
        tasks
            .iter()
            .filter(|t| t.status != "dead")
            .all(|t| t.status == "succeeded")
    );
    let letters = dead_letter::Entity::find().all(&engine.db).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].node, "unit");

    // A replay queues the task again at its next attempt and tells monitoring so in the same
    // transaction (its dead letter stops counting there).
    let dead_task = dead[0].uuid.clone();
    let ctx = switchyard_runtime::auth::CallContext::default();
    assert_eq!(engine.replay(&ctx, &letters).await.unwrap(), 1);
    let told = outbox_payloads(&engine.db, "monitoring").await.pop();
    let Some(Payload::TaskLifecycles(batch)) = told else {
        panic!("no lifecycle event: {told:?}");
    };
    let steps: Vec<_> = batch
        .steps
        .iter()
        .map(|s| (s.phase, s.task_id.as_str(), s.attempt))
        .collect();
    assert_eq!(
        steps,
        [(TaskPhase::Queued as i32, dead_task.as_str(), 2)],
        "{batch:?}"
    );
}

#[tokio::test]
async fn a_diamond_runs_to_partial_failure_on_postgres() {
    a_diamond_runs_to_partial_failure(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn a_diamond_runs_to_partial_failure_on_sqlite() {
    a_diamond_runs_to_partial_failure(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn retries_follow_the_policy_and_non_retryable_codes_stop_at_once() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let retry = json!({"max_attempts": 3, "initial_backoff_ms": 1, "max_backoff_ms": 1,
                       "non_retryable_exit_codes": [2]});
    let flaky = run_id(2);
    submit(
        &engine,
        &flaky,
        json!({"nodes": [{"id": "t", "run": "x", "retry": retry}]}),
    )
    .await;
    let attempt1 = claim(&engine).await;
    finish(&engine, &attempt1[0], 1, json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let attempt2 = claim(&engine).await;
    assert_eq!(attempt2.len(), 1);
    assert_eq!(
        (attempt2[0].0.as_str(), attempt2[0].3),
        (attempt1[0].0.as_str(), 2)
    );
    // The first attempt's fencing token is stale now.
    assert!(finish(&engine, &attempt1[0], 0, json!({})).await.is_err());
    finish(&engine, &attempt2[0], 0, json!({})).await.unwrap();
    assert_eq!(
        reported(&engine.db, &flaky)
            .await
            .last()
            .map(String::as_str),
        Some("completed")
    );

    let fatal = run_id(3);
    submit(
        &engine,
        &fatal,
        json!({"nodes": [{"id": "t", "run": "x", "retry": retry},
                                             {"id": "after", "needs": ["t"], "run": "y"}]}),
    )
    .await;
    let only = claim(&engine).await;
    finish(&engine, &only[0], 2, json!({})).await.unwrap();
    assert_eq!(
        reported(&engine.db, &fatal)
            .await
            .last()
            .map(String::as_str),
        Some("failed")
    );
    let tasks = tasks_of(&engine.db, &fatal).await;
    assert_eq!(
        tasks.len(),
        1,
        "the downstream node was skipped, never queued"
    );
    assert_eq!((tasks[0].status.as_str(), tasks[0].attempt), ("dead", 1));
}

#[tokio::test]
async fn an_expired_lease_returns_the_task_and_fences_the_old_holder() {
    let db = TestDatabase::postgres().await;
    let engine = engine(
        &db,
        Settings {
            lease: Duration::from_millis(50),
            ..Settings::default()
        },
    )
    .await;
    let run = run_id(4);
    submit(&engine, &run, json!({"nodes": [{"id": "t", "run": "x"}]})).await;
    let lost = claim(&engine).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(engine.sweep().await.unwrap(), 1);
    assert_eq!(
        engine.sweep().await.unwrap(),
        0,
        "a second sweep finds nothing"
    );
    // The lost agent comes back: its heartbeat and its completion are refused.
    let beat = engine
        .heartbeat("agent-1", &[(lost[0].0.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(beat.lost, vec![(lost[0].0.clone(), 1)]);
    assert!(finish(&engine, &lost[0], 0, json!({})).await.is_err());
    let again = claim(&engine).await;
    assert_eq!(again[0].3, 2, "attempt 2, counted as lost to the platform");
    finish(&engine, &again[0], 0, json!({})).await.unwrap();
    let tasks = tasks_of(&engine.db, &run).await;
    assert_eq!(
        (tasks[0].status.as_str(), tasks[0].infra_losses),
        ("succeeded", 1)
    );
}

/// Many times over: a completion and the sweeper race for the same expired lease. Whoever
/// wins, the other changes nothing: a succeeded task is never put back in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_racing_the_sweeper_is_never_undone() {
    let db = TestDatabase::postgres().await;
    let engine = engine(
        &db,
        Settings {
            lease: Duration::from_millis(1),
            ..Settings::default()
        },
    )
    .await;
    let (mut completions_won, mut sweeps_won) = (0, 0);
    for n in 0..25 {
        let run = run_id(100 + n);
        submit(&engine, &run, json!({"nodes": [{"id": "t", "run": "x"}]})).await;
        let leased = claim(&engine).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let (a, b) = (engine.clone(), engine.clone());
        let task = leased[0].clone();
        let (completed, swept) = tokio::join!(
            async move { finish(&a, &task, 0, json!({})).await },
            async move { b.sweep().await.unwrap() }
        );
        let tasks = tasks_of(&engine.db, &run).await;
        let t = &tasks[0];
        match completed {
            Ok(()) => {
                completions_won += 1;
                assert_eq!(swept, 0, "the sweep must not touch a completed task");
                assert_eq!((t.status.as_str(), t.attempt), ("succeeded", 1));
            }
            Err(Error::FailedPrecondition(_)) => {
                sweeps_won += 1;
                assert_eq!(swept, 1);
                assert_eq!((t.status.as_str(), t.attempt), ("queued", 2));
                // Drain it so the next round's sweep sees only its own task.
                let retry = claim(&engine).await;
                tokio::time::sleep(Duration::from_millis(0)).await;
                let _ = finish(&engine, &retry[0], 0, json!({})).await;
                let _ = engine.sweep().await;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(completions_won + sweeps_won, 25);
}

#[tokio::test]
async fn a_bounded_review_loop_goes_round_until_approved() {
    let db = TestDatabase::sqlite();
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(5);
    submit(
        &engine,
        &run,
        json!({"nodes": [
            {"id": "fix", "run": "fix"},
            {"id": "review", "needs": ["fix"], "run": "review",
             "loop": {"to": "fix", "max_iterations": 3, "when": {"key": "approved", "equals": false}}},
            {"id": "ship", "needs": ["review"], "run": "ship"}]}),
    )
    .await;
    let mut order = Vec::new();
    for verdict in [false, true] {
        let fix = claim(&engine).await;
        order.push(format!("{}#{}", fix[0].1, verdict));
        finish(&engine, &fix[0], 0, json!({})).await.unwrap();
        let review = claim(&engine).await;
        assert_eq!(review[0].1, "review");
        finish(&engine, &review[0], 0, json!({"approved": verdict}))
            .await
            .unwrap();
    }
    let ship = claim(&engine).await;
    assert_eq!(ship[0].1, "ship");
    finish(&engine, &ship[0], 0, json!({})).await.unwrap();
    let tasks = tasks_of(&engine.db, &run).await;
    let iterations: Vec<(String, i32)> = tasks
        .iter()
        .map(|t| (t.node.clone(), t.iteration))
        .collect();
    assert_eq!(
        iterations,
        vec![
            ("fix".into(), 0),
            ("review".into(), 0),
            ("fix".into(), 1),
            ("review".into(), 1),
            ("ship".into(), 0)
        ]
    );
    assert_eq!(
        reported(&engine.db, &run).await.last().map(String::as_str),
        Some("completed")
    );
}

#[tokio::test]
async fn cancelling_stops_queued_tasks_and_reaches_running_ones_through_heartbeats() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(6);
    submit(
        &engine,
        &run,
        json!({"nodes": [{"id": "t", "run": "x", "shards": 3}]}),
    )
    .await;
    let labels = any_labels();
    let leased = engine.claim(&platform_agent(&labels), 1).await.unwrap();
    assert_eq!(leased.len(), 1);
    let txn = sea_orm::TransactionTrait::begin(&engine.db).await.unwrap();
    Engine::cancel(&txn, &run, "cancelled by test")
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let beat = engine
        .heartbeat("agent-1", &[(leased[0].uuid.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(beat.cancelled, vec![(leased[0].uuid.clone(), 1)]);
    assert!(
        claim(&engine).await.is_empty(),
        "queued shards were cancelled"
    );
    engine
        .complete(Completion {
            agent_id: "agent-1".into(),
            task_id: leased[0].uuid.clone(),
            attempt: 1,
            exit_code: -15,
            cancelled: true,
            ..Completion::default()
        })
        .await
        .unwrap();
    let statuses: Vec<String> = tasks_of(&engine.db, &run)
        .await
        .into_iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(statuses, vec!["cancelled"; 3]);
    assert_eq!(
        reported(&engine.db, &run).await,
        vec!["provisioning", "running", "cancelled"]
    );
}

#[tokio::test]
async fn agents_take_only_tasks_of_their_tenancy_with_their_labels() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let request = RunRequested {
        run_id: run_id(7),
        org_id: "org-a".into(),
        project_id: "project-1".into(),
        workflow: "w".into(),
        definition_json: json!({"nodes": [{"id": "t", "run": "x", "labels": {"os": "linux"}}]})
            .to_string(),
        ..RunRequested::default()
    };
    Engine::accept(&engine.db, &request).await.unwrap();
    let linux: BTreeMap<String, String> = [("os".to_owned(), "linux".to_owned())].into();
    let mac: BTreeMap<String, String> = [("os".to_owned(), "macos".to_owned())].into();
    let agent = |org: &'static str, project: &'static str, labels| AgentScope {
        agent_id: "agent-1",
        org_id: org,
        project_id: project,
        labels,
    };
    for (who, why) in [
        (agent("org-a", "project-2", &linux), "another project"),
        (agent("org-b", "", &linux), "another organization"),
        (agent("org-a", "", &mac), "missing label"),
    ] {
        assert!(engine.claim(&who, 10).await.unwrap().is_empty(), "{why}");
    }
    let taken = engine.claim(&agent("org-a", "", &linux), 10).await.unwrap();
    assert_eq!(taken.len(), 1, "an org-wide agent with the label takes it");
}

/// Retention deletes finished runs past the period with their tasks, keeps recent ones, does
/// nothing on an empty database, and runs once across replicas (a round that finds another
/// holding the job skips).
#[tokio::test]
async fn retention_deletes_only_old_finished_runs_once_across_replicas() {
    use sea_orm::{ActiveModelTrait, Set};
    use switchyard_scheduler::engine::maintenance::{Deleted, retention};
    use switchyard_scheduler::store::entity::run;
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let month = Duration::from_secs(30 * 24 * 3600);
    assert_eq!(
        retention(&engine, month).await.unwrap(),
        Some(Deleted::default())
    );

    let (old, recent) = (run_id(8), run_id(9));
    for id in [&old, &recent] {
        submit(&engine, id, json!({"nodes": [{"id": "t", "run": "x"}]})).await;
        let leased = claim(&engine).await;
        finish(&engine, &leased[0], 0, json!({})).await.unwrap();
    }
    let row = run::Entity::find_by_id(old.clone())
        .one(&engine.db)
        .await
        .unwrap()
        .unwrap();
    let mut aged: run::ActiveModel = row.into();
    aged.finished_at = Set(Some(chrono::Utc::now() - chrono::Duration::days(40)));
    aged.update(&engine.db).await.unwrap();

    // Another replica holds the job: this round skips and deletes nothing.
    let holder = sea_orm::TransactionTrait::begin(&engine.db).await.unwrap();
    switchyard_runtime::db::hold_job_lock(&holder, "scheduler.retention")
        .await
        .unwrap();
    assert_eq!(retention(&engine, month).await.unwrap(), None);
    holder.commit().await.unwrap();

    let deleted = retention(&engine, month).await.unwrap();
    assert_eq!(
        deleted,
        Some(Deleted {
            runs: 1,
            tasks: 1,
            dead_letters: 0
        })
    );
    assert!(tasks_of(&engine.db, &old).await.is_empty());
    assert_eq!(tasks_of(&engine.db, &recent).await.len(), 1);
    assert!(
        run::Entity::find_by_id(recent)
            .one(&engine.db)
            .await
            .unwrap()
            .is_some()
    );
}

/// A run past its whole-run timeout stops: queued tasks at once, running ones through their
/// agents' heartbeats; it ends `timed_out`, not `cancelled`.
#[tokio::test]
async fn a_run_past_its_deadline_ends_timed_out() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(10);
    submit(
        &engine,
        &run,
        json!({"timeout_s": 1, "nodes": [{"id": "t", "run": "sleep 60", "shards": 2}]}),
    )
    .await;
    let labels = any_labels();
    let running = engine.claim(&platform_agent(&labels), 1).await.unwrap();
    assert_eq!(engine.expire_runs().await.unwrap(), 0, "not due yet");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(engine.expire_runs().await.unwrap(), 1);
    assert_eq!(
        engine.expire_runs().await.unwrap(),
        0,
        "stopping once is enough"
    );
    let beat = engine
        .heartbeat("agent-1", &[(running[0].uuid.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(beat.cancelled.len(), 1, "the agent is told to stop");
    engine
        .complete(Completion {
            agent_id: "agent-1".into(),
            task_id: running[0].uuid.clone(),
            attempt: 1,
            exit_code: -15,
            cancelled: true,
            ..Completion::default()
        })
        .await
        .unwrap();
    assert_eq!(
        reported(&engine.db, &run).await,
        vec!["provisioning", "running", "timed_out"]
    );
}

/// A task no live agent can take (nobody has its labels) ends its run `infra_failed` after the
/// schedule-to-start timeout; a task a live agent could take keeps waiting however long.
#[tokio::test]
async fn a_task_no_agent_can_take_fails_the_run_as_infrastructure() {
    let db = TestDatabase::postgres().await;
    let engine = engine(
        &db,
        Settings {
            schedule_to_start: Duration::from_millis(200),
            ..Settings::default()
        },
    )
    .await;
    let stranded = run_id(11);
    submit(
        &engine,
        &stranded,
        json!({"nodes": [{"id": "t", "run": "x", "labels": {"gpu": "a100"}}]}),
    )
    .await;
    let plain = run_id(12);
    submit(&engine, &plain, json!({"nodes": [{"id": "t", "run": "x"}]})).await;
    // A live agent without GPUs: it could take `plain`, not `stranded`.
    sea_orm::ActiveModelTrait::insert(
        switchyard_scheduler::store::entity::agent::ActiveModel {
            id: sea_orm::Set("agent-live".into()),
            name: sea_orm::Set("cpu".into()),
            labels_json: sea_orm::Set("{}".into()),
            capacity: sea_orm::Set(1),
            version: sea_orm::Set("test".into()),
            token_id: sea_orm::Set("t".into()),
            registered_at: sea_orm::Set(chrono::Utc::now()),
            last_heartbeat_at: sea_orm::Set(chrono::Utc::now()),
        },
        &engine.db,
    )
    .await
    .unwrap();
    assert_eq!(
        engine.expire_unstarted().await.unwrap(),
        0,
        "nothing waited long yet"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.expire_unstarted().await.unwrap(), 1);
    assert_eq!(
        reported(&engine.db, &stranded).await,
        vec!["provisioning", "infra_failed"]
    );
    assert_eq!(
        reported(&engine.db, &plain).await,
        vec!["provisioning"],
        "still waiting"
    );
}
