//! Concurrency limits, priorities and cross-replica wake-ups in the scheduler's run engine,
//! against a real database: a node's `concurrency` and a project's `max_running_tasks` are
//! never exceeded, even by many claimers at once; higher-priority runs are leased first; and
//! an agent long-polling one replica hears of work committed on another at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;
use switchyard_proto::events::v1::RunRequested;
use switchyard_scheduler::engine::{AgentScope, Completion, Engine, Settings};
use switchyard_scheduler::store::entity::task;
use switchyard_scheduler::store::limits;
use switchyard_test_support::TestDatabase;

use crate::engine::{any_labels, claim, engine, finish, run_id};

const PROJECT_A: &str = "00000000-0000-7000-8000-00000000000a";
const PROJECT_B: &str = "00000000-0000-7000-8000-00000000000b";

async fn submit_to(
    engine: &Engine,
    run_id: &str,
    project_id: &str,
    priority: i32,
    definition: serde_json::Value,
) {
    let request = RunRequested {
        run_id: run_id.to_owned(),
        project_id: project_id.to_owned(),
        workflow: "w".into(),
        workflow_version: 1,
        definition_json: definition.to_string(),
        priority,
        ..RunRequested::default()
    };
    Engine::accept(&engine.db, &request).await.unwrap();
}

/// Leased tasks now, per project and per (run, node).
async fn leased(db: &DatabaseConnection) -> (HashMap<String, u32>, HashMap<(String, String), u32>) {
    let rows = task::Entity::find()
        .filter(task::Column::Status.eq("leased"))
        .all(db)
        .await
        .unwrap();
    let mut projects = HashMap::new();
    let mut nodes = HashMap::new();
    for t in rows {
        *projects.entry(t.project_id.clone()).or_default() += 1;
        *nodes.entry((t.run_id.clone(), t.node.clone())).or_default() += 1;
    }
    (projects, nodes)
}

async fn a_node_limit_caps_its_running_shards(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(1);
    submit_to(
        &engine,
        &run,
        PROJECT_A,
        0,
        json!({"nodes": [{"id": "test", "run": "x", "shards": 5, "concurrency": 2}]}),
    )
    .await;
    let first = claim(&engine).await;
    assert_eq!(first.len(), 2, "two shards at once");
    assert!(claim(&engine).await.is_empty(), "the node is full");
    finish(&engine, &first[0], 0, json!({})).await.unwrap();
    let next = claim(&engine).await;
    assert_eq!(next.len(), 1, "a finished shard frees one slot");
    assert!(claim(&engine).await.is_empty());
    for t in first.iter().skip(1).chain(&next) {
        finish(&engine, t, 0, json!({})).await.unwrap();
    }
    let rest = claim(&engine).await;
    assert_eq!(rest.len(), 2, "the last two shards");
}

#[tokio::test]
async fn a_node_limit_caps_its_running_shards_on_postgres() {
    a_node_limit_caps_its_running_shards(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn a_node_limit_caps_its_running_shards_on_sqlite() {
    a_node_limit_caps_its_running_shards(TestDatabase::sqlite()).await;
}

async fn a_project_limit_spans_runs_and_spares_other_projects(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    limits::set(&engine.db, PROJECT_A, 3, "test", chrono::Utc::now())
        .await
        .unwrap();
    let wide = json!({"nodes": [{"id": "t", "run": "x", "shards": 4}]});
    submit_to(&engine, &run_id(1), PROJECT_A, 0, wide.clone()).await;
    submit_to(&engine, &run_id(2), PROJECT_A, 0, wide.clone()).await;
    submit_to(&engine, &run_id(3), PROJECT_B, 0, wide).await;
    let claimed = claim(&engine).await;
    let (projects, _) = leased(&engine.db).await;
    assert_eq!(projects.get(PROJECT_A), Some(&3), "project A is capped");
    assert_eq!(projects.get(PROJECT_B), Some(&4), "project B has no limit");
    assert_eq!(claimed.len(), 7);
    // Raising the limit lets more of A run; removing it lets all of A run.
    limits::set(&engine.db, PROJECT_A, 5, "test", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claim(&engine).await.len(), 2);
    limits::set(&engine.db, PROJECT_A, 0, "test", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claim(&engine).await.len(), 3);
}

#[tokio::test]
async fn a_project_limit_spans_runs_and_spares_other_projects_on_postgres() {
    a_project_limit_spans_runs_and_spares_other_projects(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn a_project_limit_spans_runs_and_spares_other_projects_on_sqlite() {
    a_project_limit_spans_runs_and_spares_other_projects(TestDatabase::sqlite()).await;
}

/// Many agents claiming at once, round after round, with completions in between: the counts
/// of leased tasks never pass a limit, and every task is eventually run exactly once.
#[tokio::test]
async fn concurrent_claimers_never_exceed_a_limit() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    limits::set(&engine.db, PROJECT_A, 7, "test", chrono::Utc::now())
        .await
        .unwrap();
    submit_to(
        &engine,
        &run_id(1),
        PROJECT_A,
        0,
        json!({"nodes": [{"id": "narrow", "run": "x", "shards": 30, "concurrency": 4}]}),
    )
    .await;
    submit_to(
        &engine,
        &run_id(2),
        PROJECT_A,
        0,
        json!({"nodes": [{"id": "wide", "run": "x", "shards": 30}]}),
    )
    .await;
    let labels: BTreeMap<String, String> = any_labels();
    let agents: Vec<String> = (0..8).map(|i| format!("agent-{i}")).collect();
    let mut completed = 0;
    for _round in 0..200 {
        let mut claims = tokio::task::JoinSet::new();
        for id in &agents {
            let engine = engine.clone();
            let labels = labels.clone();
            let id = id.clone();
            claims.spawn(async move {
                let scope = AgentScope {
                    agent_id: &id,
                    org_id: "",
                    project_id: "",
                    labels: &labels,
                };
                engine.claim(&scope, 3).await.unwrap()
            });
        }
        let won: Vec<task::Model> = claims.join_all().await.into_iter().flatten().collect();
        let (projects, nodes) = leased(&engine.db).await;
        assert!(
            projects.get(PROJECT_A).copied().unwrap_or(0) <= 7,
            "project limit passed: {projects:?}"
        );
        assert!(
            nodes
                .get(&(run_id(1), "narrow".to_owned()))
                .copied()
                .unwrap_or(0)
                <= 4,
            "node limit passed: {nodes:?}"
        );
        // Finish half of what is leased, so slots free up while others claim.
        let leased_now = task::Entity::find()
            .filter(task::Column::Status.eq("leased"))
            .all(&engine.db)
            .await
            .unwrap();
        for t in leased_now.iter().step_by(2) {
            engine
                .complete(Completion {
                    agent_id: t.agent_id.clone().unwrap(),
                    task_id: t.uuid.clone(),
                    attempt: t.attempt as u32,
                    ..Completion::default()
                })
                .await
                .unwrap();
            completed += 1;
        }
        if won.is_empty() && leased_now.is_empty() {
            break;
        }
    }
    assert_eq!(completed, 60, "every task ran exactly once");
}

/// The higher-priority run's task is leased first, whatever the order they arrived in.
#[tokio::test]
async fn a_higher_priority_run_is_leased_first() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    let one = json!({"nodes": [{"id": "t", "run": "x"}]});
    submit_to(&engine, &run_id(1), PROJECT_A, 0, one.clone()).await;
    submit_to(&engine, &run_id(2), PROJECT_A, 10, one.clone()).await;
    submit_to(&engine, &run_id(3), PROJECT_A, -5, one).await;
    let labels = any_labels();
    let scope = AgentScope {
        agent_id: "agent-1",
        org_id: "",
        project_id: "",
        labels: &labels,
    };
    let mut order = Vec::new();
    for _ in 0..3 {
        let got = engine.claim(&scope, 1).await.unwrap();
        order.push(got[0].run_id.clone());
    }
    assert_eq!(order, vec![run_id(2), run_id(1), run_id(3)]);
}

/// Two scheduler replicas on one database: an agent long-polling replica B gets a task that
/// replica A made ready through the PostgreSQL notification, long before B's own re-check
/// interval (a minute here) would have found it.
#[tokio::test]
async fn a_poll_on_one_replica_wakes_for_work_committed_on_another() {
    let db = TestDatabase::postgres().await;
    let a = engine(&db, Settings::default()).await;
    let b = engine(&db, Settings::default()).await;
    let shutdown = switchyard_runtime::shutdown::Shutdown::new();
    let _tasks_a = a
        .wake
        .spawn_postgres(&a.db, shutdown.clone())
        .await
        .unwrap();
    let _tasks_b = b
        .wake
        .spawn_postgres(&b.db, shutdown.clone())
        .await
        .unwrap();
    // Let B's listener subscribe before the work arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let poller = {
        let b = b.clone();
        tokio::spawn(async move {
            let labels = any_labels();
            let scope = AgentScope {
                agent_id: "agent-b",
                org_id: "",
                project_id: "",
                labels: &labels,
            };
            b.poll(&scope, 1, Duration::from_secs(60), Duration::from_secs(60))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    submit_to(
        &a,
        &run_id(1),
        PROJECT_A,
        0,
        json!({"nodes": [{"id": "t", "run": "x"}]}),
    )
    .await;
    a.wake.notify_waiters();
    let got = tokio::time::timeout(Duration::from_secs(20), poller)
        .await
        .expect("the poll on B was woken by A's notification")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].run_id, run_id(1));
    shutdown.cancel();
}

/// A claim never leases more than the agent asked for (SQLite reads extra rows to filter
/// labels in Rust; those must not all be leased).
async fn a_claim_leases_at_most_what_was_asked(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    submit_to(
        &engine,
        &run_id(1),
        PROJECT_A,
        0,
        json!({"nodes": [{"id": "t", "run": "x", "shards": 10}]}),
    )
    .await;
    let labels = any_labels();
    let scope = AgentScope {
        agent_id: "agent-1",
        org_id: "",
        project_id: "",
        labels: &labels,
    };
    assert_eq!(engine.claim(&scope, 3).await.unwrap().len(), 3);
    let (projects, _) = leased(&engine.db).await;
    assert_eq!(projects.get(PROJECT_A), Some(&3));
}

#[tokio::test]
async fn a_claim_leases_at_most_what_was_asked_on_postgres() {
    a_claim_leases_at_most_what_was_asked(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn a_claim_leases_at_most_what_was_asked_on_sqlite() {
    a_claim_leases_at_most_what_was_asked(TestDatabase::sqlite()).await;
}

/// One claim over limited and unlimited tasks at once: the unlimited ones are leased
/// directly, the limited ones up to their limit and within what was asked, and the run
/// starts once (PostgreSQL leases the two kinds in different statements).
async fn a_claim_mixes_limited_and_unlimited_tasks(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    let run = run_id(1);
    submit_to(
        &engine,
        &run,
        PROJECT_A,
        0,
        json!({"nodes": [
            {"id": "capped", "run": "x", "shards": 5, "concurrency": 2},
            {"id": "free", "run": "x", "shards": 3, "priority": 1}
        ]}),
    )
    .await;
    let labels = any_labels();
    let scope = AgentScope {
        agent_id: "agent-1",
        org_id: "",
        project_id: "",
        labels: &labels,
    };
    let first = engine.claim(&scope, 4).await.unwrap();
    let nodes: Vec<&str> = first.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["free", "free", "free", "capped"],
        "best priority first, within the 4 asked"
    );
    let second = engine.claim(&scope, 10).await.unwrap();
    let nodes: Vec<&str> = second.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["capped"],
        "one more of the capped node, then it is full"
    );
    let (_, running) = leased(&engine.db).await;
    assert_eq!(running.get(&(run.clone(), "capped".to_owned())), Some(&2));
    assert!(engine.claim(&scope, 10).await.unwrap().is_empty());
    let row = switchyard_scheduler::store::runs::find(&engine.db, &run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "running");
    assert!(row.started_at.is_some());
}

#[tokio::test]
async fn a_claim_mixes_limited_and_unlimited_tasks_on_postgres() {
    a_claim_mixes_limited_and_unlimited_tasks(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn a_claim_mixes_limited_and_unlimited_tasks_on_sqlite() {
    a_claim_mixes_limited_and_unlimited_tasks(TestDatabase::sqlite()).await;
}
