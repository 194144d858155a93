//! The scheduler's `LEASED` steps for monitoring follow their claim rather than ride in it:
//! the claim transaction writes no event, nor does a completion carry them; the periodic
//! flush writes all that wait as one event, and puts them back when that fails. An attempt
//! that ends while its step waits takes the step with it (its ending says the step was never
//! sent), unless the ending does not commit. With task events off there are none. A step
//! is due once its attempt has run for `leased_delay`; at shutdown all are.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::json;
use switchyard_proto::events::v1::{TaskPhase, event::Payload};
use switchyard_scheduler::engine::Settings;
use switchyard_test_support::TestDatabase;

use crate::engine::{claim, engine, finish, outbox_payloads, run_id, submit, submit_one};

/// A step as these tests compare it: phase, task id, and whether it says its attempt's
/// `LEASED` was never sent.
type Step = (TaskPhase, String, bool);

/// The monitoring outbox, event by event (in the order written), each as its steps.
async fn monitoring_events(db: &DatabaseConnection) -> Vec<Vec<Step>> {
    outbox_payloads(db, "monitoring")
        .await
        .into_iter()
        .map(|payload| match payload {
            Payload::TaskLifecycles(batch) => batch
                .steps
                .into_iter()
                .map(|s| {
                    (
                        TaskPhase::try_from(s.phase).unwrap(),
                        s.task_id,
                        s.leased_unsent,
                    )
                })
                .collect(),
            other => panic!("not a lifecycle batch: {other:?}"),
        })
        .collect()
}

async fn rename_outbox(engine: &switchyard_scheduler::engine::Engine, from: &str, to: &str) {
    engine
        .db
        .execute_unprepared(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .await
        .unwrap();
}

async fn leased_steps_follow_their_claim(db: TestDatabase) {
    // Every waiting step is due at the next flush (the delay has its own test below).
    let now = Settings {
        leased_delay: Duration::ZERO,
        ..Settings::default()
    };
    let engine = engine(&db, now).await;
    let two = json!({"nodes": [{"id": "t", "run": "true", "shards": 2}]});
    submit(&engine, &run_id(1), two.clone()).await;
    let tasks = claim(&engine).await;
    assert_eq!(tasks.len(), 2);
    assert!(
        monitoring_events(&engine.db).await.is_empty(),
        "the claim wrote no event"
    );
    assert_eq!(engine.leased.len(), 2, "its steps wait");

    // A completion whose transaction fails leaves the waiting steps as they were.
    rename_outbox(&engine, "outbox_events", "outbox_events_away").await;
    assert!(finish(&engine, &tasks[0], 0, json!({})).await.is_err());
    rename_outbox(&engine, "outbox_events_away", "outbox_events").await;
    assert_eq!(engine.leased.len(), 2, "put back");

    // A completion writes its own step, in its own transaction, and takes its attempt's
    // waiting step with it: that one is never sent, and the ending says so.
    finish(&engine, &tasks[0], 0, json!({})).await.unwrap();
    let events = monitoring_events(&engine.db).await;
    assert_eq!(
        events,
        vec![vec![(TaskPhase::Succeeded, tasks[0].0.clone(), true)]]
    );
    assert_eq!(engine.leased.len(), 1, "the other task's step still waits");

    // The flush writes the waiting ones, with those of later claims, as one event.
    submit_one(&engine, &run_id(2)).await;
    let third = claim(&engine).await;
    assert_eq!(third.len(), 1);
    // A write that fails puts them back, and the next one takes them.
    rename_outbox(&engine, "outbox_events", "outbox_events_away").await;
    assert!(engine.flush_leased().await.is_err());
    assert_eq!(engine.leased.len(), 2, "put back");
    rename_outbox(&engine, "outbox_events_away", "outbox_events").await;
    assert_eq!(engine.flush_leased().await.unwrap(), 2);
    let leased = |task: &(String, String, i32, u32)| (TaskPhase::Leased, task.0.clone(), false);
    let events = monitoring_events(&engine.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], vec![leased(&tasks[1]), leased(&third[0])]);
    assert!(engine.leased.is_empty());
    assert_eq!(engine.flush_leased().await.unwrap(), 0, "nothing waits");
    assert_eq!(monitoring_events(&engine.db).await.len(), 2);

    // An attempt whose step was sent ends without the mark.
    finish(&engine, &tasks[1], 0, json!({})).await.unwrap();
    let events = monitoring_events(&engine.db).await;
    assert_eq!(
        events[2],
        vec![(TaskPhase::Succeeded, tasks[1].0.clone(), false)]
    );

    // Task events off: no steps wait, no event is written.
    let quiet = crate::engine::engine(
        &db,
        Settings {
            task_events: false,
            ..now
        },
    )
    .await;
    submit(&quiet, &run_id(3), two).await;
    let more = claim(&quiet).await;
    assert_eq!(more.len(), 2);
    assert!(quiet.leased.is_empty());
    finish(&quiet, &more[0], 0, json!({})).await.unwrap();
    assert_eq!(quiet.flush_leased().await.unwrap(), 0);
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

/// With the shipped delay (1 s), a step just claimed is not written by the periodic flush;
/// the flush at shutdown writes it.
async fn young_leased_steps_wait_for_the_delay(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    submit_one(&engine, &run_id(1)).await;
    let tasks = claim(&engine).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(engine.flush_leased().await.unwrap(), 0, "not due yet");
    assert_eq!(engine.leased.len(), 1);
    assert!(monitoring_events(&engine.db).await.is_empty());
    assert_eq!(engine.flush_all_leased().await.unwrap(), 1);
    let leased = vec![vec![(TaskPhase::Leased, tasks[0].0.clone(), false)]];
    assert_eq!(monitoring_events(&engine.db).await, leased);
}

#[tokio::test]
async fn young_leased_steps_wait_for_the_delay_on_postgres() {
    young_leased_steps_wait_for_the_delay(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn young_leased_steps_wait_for_the_delay_on_sqlite() {
    young_leased_steps_wait_for_the_delay(TestDatabase::sqlite()).await;
}

/// Monitoring leaves out of its view the attempts whose step may not have been sent: those
/// whose step waits here, and young ones (whose step may wait on another replica). With task
/// events off there are no steps, and nothing is pending.
async fn attempts_whose_step_may_be_unsent_are_pending(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    submit_one(&engine, &run_id(1)).await;
    let tasks = claim(&engine).await;
    let task = &tasks[0].0;
    let now = chrono::Utc::now();
    let long_ago = Some(now - chrono::Duration::hours(1));
    assert!(engine.lifecycle_pending(task, Some(now), now), "young");
    assert!(
        engine.lifecycle_pending(task, long_ago, now),
        "its step waits here"
    );
    assert_eq!(engine.flush_all_leased().await.unwrap(), 1);
    assert!(!engine.lifecycle_pending(task, long_ago, now), "sent");
    // Young enough for another replica's flush: its delay, a flush interval and a second.
    let window = chrono::Duration::milliseconds(1000 + 100 + 1000);
    let just_young = now - window + chrono::Duration::milliseconds(50);
    assert!(engine.lifecycle_pending(task, Some(just_young), now));
    let just_old = now - window - chrono::Duration::milliseconds(50);
    assert!(!engine.lifecycle_pending(task, Some(just_old), now));

    let quiet = crate::engine::engine(
        &db,
        Settings {
            task_events: false,
            ..Settings::default()
        },
    )
    .await;
    assert!(!quiet.lifecycle_pending(task, Some(now), now));
}

#[tokio::test]
async fn attempts_whose_step_may_be_unsent_are_pending_on_postgres() {
    attempts_whose_step_may_be_unsent_are_pending(TestDatabase::postgres().await).await;
}
