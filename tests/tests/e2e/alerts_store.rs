//! Alerting's store and evaluator against real databases (PostgreSQL and SQLite): a condition
//! fires once however often it is evaluated (dedupe key + the open-alert unique index), clears
//! into an automatic resolution, and each change is audited and queued for its webhooks in the
//! same transaction; the condition reads count what they should (a replayed dead letter stops
//! counting); due notifications are claimed once; retention deletes only old resolved alerts.

use chrono::{Duration, Utc};
use prost::Message;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use switchyard_monitoring::alerts::{config::AlertsConfig, evaluator, retention};
use switchyard_monitoring::domain::alert::{Finding, Kind, RuleSpec};
use switchyard_monitoring::store::alert_entity::{alert, alert_rule};
use switchyard_monitoring::store::alerts::{conditions, notifications, open, rules};
use switchyard_monitoring::store::entity::task_execution;
use switchyard_monitoring_migration::Migrator;
use switchyard_proto::events::v1::{Event, event::Payload};
use switchyard_test_support::TestDatabase;

const PROJECT: &str = "0192f1a4-0000-7000-8000-0000000000aa";
const ORG: &str = "0192f1a4-0000-7000-8000-0000000000bb";

async fn connect(db: &TestDatabase) -> DatabaseConnection {
    let config = db.config("monitoring");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    conn
}

async fn rule(conn: &DatabaseConnection, kind: Kind, threshold: f64) -> alert_rule::Model {
    let spec = RuleSpec {
        id: None,
        project_id: PROJECT.into(),
        name: format!("{} rule", kind.as_str()),
        kind,
        threshold,
        window: std::time::Duration::from_secs(900),
        webhooks: vec![
            "https://hooks.example.com/a".into(),
            "https://hooks.example.com/b".into(),
        ],
        enabled: true,
    };
    rules::insert(conn, &spec, ORG, Utc::now()).await.unwrap()
}

/// One attempt of task `task` (`n` distinguishes tasks) ended with `status` a minute ago.
async fn attempt(conn: &DatabaseConnection, task: u32, number: i32, status: &str) {
    let now = Utc::now();
    let id: uuid::Uuid = format!("00000000-0000-7000-8000-{task:012}")
        .parse()
        .unwrap();
    task_execution::ActiveModel {
        task_id: Set(id),
        attempt: Set(number),
        run_id: Set(id),
        project_id: Set(PROJECT.parse().unwrap()),
        workflow: Set("w".into()),
        node: Set("t".into()),
        status: Set(status.into()),
        // Running attempts no longer reach the history; rows an older version wrote as
        // running took a finish time when the attempt's key became the primary key.
        finished_at: Set(now - Duration::minutes(1)),
        precedence: Set(1),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await
    .unwrap();
}

/// The actions of the audit records waiting in the outbox, in order.
async fn audited(conn: &DatabaseConnection) -> Vec<String> {
    switchyard_runtime::outbox::entity::Entity::find()
        .filter(switchyard_runtime::outbox::entity::Column::Destination.eq("audit"))
        .all(conn)
        .await
        .unwrap()
        .iter()
        .filter_map(
            |row| match Event::decode(row.payload.as_slice()).ok()?.payload? {
                Payload::Audit(record) if record.resource_type == "alert" => Some(record.action),
                _ => None,
            },
        )
        .collect()
}

fn holds() -> Vec<Finding> {
    vec![Finding {
        subject: "project".into(),
        message: "2 task(s) dead-lettered".into(),
    }]
}

async fn alerts_fire_once_and_resolve_when_clear(db: TestDatabase) {
    let conn = connect(&db).await;
    let rule = rule(&conn, Kind::DeadLetterCount, 1.0).await;
    let now = Utc::now();
    for round in 0..3 {
        let (fired, resolved) = evaluator::reconcile(&conn, &rule, &holds(), now)
            .await
            .unwrap();
        assert_eq!(
            (fired, resolved),
            (usize::from(round == 0), 0),
            "round {round}"
        );
    }
    let firing = open::open_for_rule(&conn, &rule.id).await.unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].state, "firing");
    assert_eq!(firing[0].dedupe_key, format!("{}:project", rule.id));
    // The index alone refuses a second open alert for the key (a racing evaluator).
    let key = firing[0].dedupe_key.clone();
    assert_eq!(
        open::fire(&conn, &rule, &key, "again", now).await.unwrap(),
        None
    );
    assert_eq!(audited(&conn).await, ["alert.fired"]);

    let (fired, resolved) = evaluator::reconcile(&conn, &rule, &[], now).await.unwrap();
    assert_eq!((fired, resolved), (0, 1));
    let row = open::get(&conn, &firing[0].id).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.resolved_by.as_str()),
        ("resolved", "auto")
    );
    assert!(row.resolved_at.is_some());
    assert_eq!(audited(&conn).await, ["alert.fired", "alert.resolved"]);
    let queued = notifications::for_alert(&conn, &row.id).await.unwrap();
    let events: Vec<(&str, &str)> = queued
        .iter()
        .map(|n| (n.event.as_str(), n.url.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("firing", "https://hooks.example.com/a"),
            ("firing", "https://hooks.example.com/b"),
            ("resolved", "https://hooks.example.com/a"),
            ("resolved", "https://hooks.example.com/b"),
        ]
    );
    let payload: serde_json::Value = serde_json::from_str(&queued[2].payload).unwrap();
    assert_eq!(payload["state"], "resolved");
    assert_eq!(payload["alert_id"], row.id.as_str());
    assert_eq!(payload["rule_name"], rule.name.as_str());
    assert_eq!(payload["resolved_by"], "auto");

    // Nothing open: a clear condition changes nothing; holding again raises a new alert.
    assert_eq!(
        evaluator::reconcile(&conn, &rule, &[], now).await.unwrap(),
        (0, 0)
    );
    assert_eq!(
        evaluator::reconcile(&conn, &rule, &holds(), now)
            .await
            .unwrap(),
        (1, 0)
    );
    let reopened = open::open_for_rule(&conn, &rule.id).await.unwrap();
    assert_eq!(reopened.len(), 1);
    assert_ne!(reopened[0].id, row.id);
}

#[tokio::test]
async fn alerts_fire_once_and_resolve_when_clear_on_postgres() {
    alerts_fire_once_and_resolve_when_clear(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn alerts_fire_once_and_resolve_when_clear_on_sqlite() {
    alerts_fire_once_and_resolve_when_clear(TestDatabase::sqlite()).await;
}

async fn alert_conditions_read_the_history(db: TestDatabase) {
    let conn = connect(&db).await;
    let since = Utc::now() - Duration::minutes(15);
    attempt(&conn, 1, 1, "succeeded").await;
    attempt(&conn, 2, 1, "retrying").await;
    attempt(&conn, 2, 2, "dead_lettered").await;
    attempt(&conn, 3, 1, "dead_lettered").await;
    attempt(&conn, 4, 1, "cancelled").await;
    attempt(&conn, 5, 1, "running").await;
    assert_eq!(
        conditions::failure_counts(&conn, PROJECT, since)
            .await
            .unwrap(),
        (3, 4),
        "cancelled and running attempts are not verdicts"
    );
    assert_eq!(
        conditions::unreplayed_dead_letters(&conn, PROJECT, since)
            .await
            .unwrap(),
        2
    );
    // Task 3's dead letter is replayed: its next attempt exists, so it stops counting.
    attempt(&conn, 3, 2, "running").await;
    assert_eq!(
        conditions::unreplayed_dead_letters(&conn, PROJECT, since)
            .await
            .unwrap(),
        1
    );
    let later = Utc::now();
    assert_eq!(
        conditions::failure_counts(&conn, PROJECT, later)
            .await
            .unwrap(),
        (0, 0),
        "outside the window"
    );

    // A full round over a stored rule, with the minimum sample met.
    let dead = rule(&conn, Kind::DeadLetterCount, 1.0).await;
    let rate = rule(&conn, Kind::FailureRate, 0.9).await;
    let config = AlertsConfig {
        min_sample: 1,
        ..AlertsConfig::default()
    };
    // Never dialled: no rule here asks the scheduler.
    let scheduler = switchyard_runtime::grpc::channel("http://127.0.0.1:1").unwrap();
    let round = evaluator::round(&conn, &scheduler, &config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((round.rules, round.fired, round.resolved), (2, 1, 0));
    assert_eq!(open::open_for_rule(&conn, &dead.id).await.unwrap().len(), 1);
    assert!(
        open::open_for_rule(&conn, &rate.id)
            .await
            .unwrap()
            .is_empty()
    );
    evaluator::update_gauge(&conn).await.unwrap();
}

#[tokio::test]
async fn alert_conditions_read_the_history_on_postgres() {
    alert_conditions_read_the_history(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn alert_conditions_read_the_history_on_sqlite() {
    alert_conditions_read_the_history(TestDatabase::sqlite()).await;
}

async fn alert_notifications_are_claimed_once_and_old_resolved_alerts_expire(db: TestDatabase) {
    let conn = connect(&db).await;
    let rule = rule(&conn, Kind::DeadLetterCount, 1.0).await;
    let now = Utc::now();
    evaluator::reconcile(&conn, &rule, &holds(), now)
        .await
        .unwrap();
    let claimed = notifications::claim_due(&conn, now, now + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        notifications::claim_due(&conn, now, now + Duration::seconds(30), 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed rows are not due again until the claim passes"
    );
    let retry_at = now + Duration::seconds(5);
    notifications::record(
        &conn,
        claimed[0].id,
        1,
        &notifications::Outcome::Retry(retry_at, "receiver answered HTTP 500".into()),
        now,
    )
    .await
    .unwrap();
    notifications::record(
        &conn,
        claimed[1].id,
        1,
        &notifications::Outcome::Delivered,
        now,
    )
    .await
    .unwrap();
    let later = notifications::claim_due(&conn, retry_at, retry_at, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "only the failed one comes back");
    assert_eq!(
        (later[0].attempts, later[0].last_error.as_str()),
        (1, "receiver answered HTTP 500")
    );

    // Retention: an alert resolved long ago goes with its notifications; an open one stays.
    let old = open::open_for_rule(&conn, &rule.id)
        .await
        .unwrap()
        .remove(0);
    open::resolve(&conn, &old.id, "auto", now - Duration::days(40))
        .await
        .unwrap();
    let other = rule_named(&conn, "second").await;
    evaluator::reconcile(&conn, &other, &holds(), now)
        .await
        .unwrap();
    let cutoff = now - Duration::days(30);
    assert_eq!(retention::apply(&conn, cutoff).await.unwrap(), Some(1));
    assert!(open::get(&conn, &old.id).await.unwrap().is_none());
    assert!(
        notifications::for_alert(&conn, &old.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(alert::Entity::find().all(&conn).await.unwrap().len(), 1);
    assert_eq!(retention::apply(&conn, cutoff).await.unwrap(), Some(0));
}

async fn rule_named(conn: &DatabaseConnection, name: &str) -> alert_rule::Model {
    let mut row = rule(conn, Kind::FailureRate, 0.5).await;
    let mut active: alert_rule::ActiveModel = row.clone().into();
    active.name = Set(name.into());
    row = active.update(conn).await.unwrap();
    row
}

#[tokio::test]
async fn alert_notifications_are_claimed_once_and_old_resolved_alerts_expire_on_postgres() {
    alert_notifications_are_claimed_once_and_old_resolved_alerts_expire(
        TestDatabase::postgres().await,
    )
    .await;
}

#[tokio::test]
async fn alert_notifications_are_claimed_once_and_old_resolved_alerts_expire_on_sqlite() {
    alert_notifications_are_claimed_once_and_old_resolved_alerts_expire(TestDatabase::sqlite())
        .await;
}
