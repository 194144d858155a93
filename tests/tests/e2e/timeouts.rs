//! The scheduler's own start-to-close enforcement: an attempt still leased well past its
//! node's timeout (its agent heartbeats but never stops it or reports) is failed as timed out
//! by the sweeper, retried by the node's policy, and the agent is told it lost the lease.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use switchyard_proto::events::v1::RunRequested;
use switchyard_scheduler::engine::{Engine, Settings};
use switchyard_scheduler::store::attempts;
use switchyard_scheduler::store::entity::task;
use switchyard_test_support::TestDatabase;

use crate::engine::{claim, engine, run_id};

async fn an_overrunning_attempt_is_failed_by_the_sweeper(db: TestDatabase) {
    let engine: Engine = engine(&db, Settings::default()).await;
    let run = run_id(21);
    let request = RunRequested {
        run_id: run.clone(),
        project_id: "00000000-0000-7000-8000-000000000001".into(),
        workflow: "w".into(),
        workflow_version: 1,
        definition_json: json!({"nodes": [{"id": "t", "run": "sleep 999", "timeout_s": 5,
            "retry": {"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 1}}]})
        .to_string(),
        ..RunRequested::default()
    };
    Engine::accept(&engine.db, &request).await.unwrap();
    let leased = claim(&engine).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(engine.sweep().await.unwrap(), 0, "within its timeout");

    // Started long ago; the lease is kept fresh by heartbeats.
    let row = task::Entity::find()
        .filter(task::Column::Uuid.eq(leased[0].0.as_str()))
        .one(&engine.db)
        .await
        .unwrap()
        .unwrap();
    let mut aged: task::ActiveModel = row.into();
    aged.started_at = Set(Some(chrono::Utc::now() - chrono::Duration::hours(2)));
    aged.update(&engine.db).await.unwrap();
    let beat = engine
        .heartbeat("agent-1", &[(leased[0].0.clone(), leased[0].3)])
        .await
        .unwrap();
    assert_eq!(beat.held.len(), 1, "heartbeats alone keep it leased");

    assert_eq!(engine.sweep().await.unwrap(), 1);
    let row = task::Entity::find()
        .filter(task::Column::Uuid.eq(leased[0].0.as_str()))
        .one(&engine.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.attempt),
        ("queued", 2),
        "retried by policy"
    );
    assert_eq!(row.error, "timed out");
    let ended = attempts::for_run(&engine.db, &run).await.unwrap();
    assert_eq!(
        ended
            .iter()
            .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "retrying", "timed out")]
    );
    let beat = engine
        .heartbeat("agent-1", &[(leased[0].0.clone(), leased[0].3)])
        .await
        .unwrap();
    assert_eq!(
        beat.lost.len(),
        1,
        "the agent learns it no longer holds attempt 1"
    );
    assert_eq!(engine.sweep().await.unwrap(), 0, "nothing twice");
}

#[tokio::test]
async fn an_overrunning_attempt_is_failed_by_the_sweeper_on_postgres() {
    an_overrunning_attempt_is_failed_by_the_sweeper(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn an_overrunning_attempt_is_failed_by_the_sweeper_on_sqlite() {
    an_overrunning_attempt_is_failed_by_the_sweeper(TestDatabase::sqlite()).await;
}
