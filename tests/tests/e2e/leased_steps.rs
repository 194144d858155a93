//! The scheduler's `LEASED` steps for monitoring follow their claim rather than ride in it:
//! the claim transaction writes no event; the steps leave with the next completion's event
//! (first in it, so monitoring reads the lease before the ending), or on their own once they
//! have waited; with task events off there are none.

use std::time::Duration;

use prost::Message as _;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use switchyard_proto::events::v1::{Event, TaskPhase, event::Payload};
use switchyard_runtime::outbox::entity as outbox_entity;
use switchyard_scheduler::engine::Settings;
use switchyard_test_support::TestDatabase;

use crate::engine::{claim, engine, finish, run_id, submit};

/// The monitoring outbox, event by event (in the order written), each as its steps'
/// `(phase, task id)`.
async fn monitoring_events(db: &DatabaseConnection) -> Vec<Vec<(TaskPhase, String)>> {
    outbox_entity::Entity::find()
        .filter(outbox_entity::Column::Destination.eq("monitoring"))
        .order_by_asc(outbox_entity::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(
            |row| match Event::decode(row.payload.as_slice()).unwrap().payload {
                Some(Payload::TaskLifecycles(batch)) => batch
                    .steps
                    .into_iter()
                    .map(|s| (TaskPhase::try_from(s.phase).unwrap(), s.task_id))
                    .collect(),
                other => panic!("not a lifecycle batch: {other:?}"),
            },
        )
        .collect()
}

async fn leased_steps_follow_their_claim(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    let two = json!({"nodes": [{"id": "t", "run": "true", "shards": 2}]});
    submit(&engine, &run_id(1), two.clone()).await;
    let tasks = claim(&engine).await;
    assert_eq!(tasks.len(), 2);
    assert!(
        monitoring_events(&engine.db).await.is_empty(),
        "the claim wrote no event"
    );
    assert_eq!(engine.leased.len(), 2, "its steps wait");

    // The next completion takes them along, ahead of its own step, in one event.
    finish(&engine, &tasks[0], 0, json!({})).await.unwrap();
    let events = monitoring_events(&engine.db).await;
    let leased = |task: &(String, String, i32, u32)| (TaskPhase::Leased, task.0.clone());
    assert_eq!(
        events,
        vec![vec![
            leased(&tasks[0]),
            leased(&tasks[1]),
            (TaskPhase::Succeeded, tasks[0].0.clone())
        ]]
    );
    assert!(engine.leased.is_empty());

    // With no completion coming, they go on their own once they have waited long enough.
    submit(
        &engine,
        &run_id(2),
        json!({"nodes": [{"id": "t", "run": "true"}]}),
    )
    .await;
    let third = claim(&engine).await;
    assert_eq!(third.len(), 1);
    let hour = Duration::from_secs(3600);
    assert_eq!(
        engine.flush_leased(hour).await.unwrap(),
        0,
        "not waited yet"
    );
    assert_eq!(engine.flush_leased(Duration::ZERO).await.unwrap(), 1);
    let events = monitoring_events(&engine.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], vec![leased(&third[0])]);
    assert_eq!(engine.flush_leased(Duration::ZERO).await.unwrap(), 0);

    // The last completion carries nothing more.
    finish(&engine, &tasks[1], 0, json!({})).await.unwrap();
    let events = monitoring_events(&engine.db).await;
    assert_eq!(events[2], vec![(TaskPhase::Succeeded, tasks[1].0.clone())]);

    // Task events off: no steps wait, no event is written.
    let quiet = crate::engine::engine(
        &db,
        Settings {
            task_events: false,
            ..Settings::default()
        },
    )
    .await;
    submit(&quiet, &run_id(3), two).await;
    let more = claim(&quiet).await;
    assert_eq!(more.len(), 2);
    assert!(quiet.leased.is_empty());
    finish(&quiet, &more[0], 0, json!({})).await.unwrap();
    assert_eq!(monitoring_events(&quiet.db).await.len(), 3);
}

#[tokio::test]
async fn leased_steps_follow_their_claim_on_postgres() {
    leased_steps_follow_their_claim(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn leased_steps_follow_their_claim_on_sqlite() {
    leased_steps_follow_their_claim(TestDatabase::sqlite()).await;
}
