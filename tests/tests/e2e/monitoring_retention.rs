//! Retention of monitoring's execution history against a real database: only attempts that
//! ended before the cutoff go (running ones stay however old), an empty database is a no-op,
//! and a round skips while another replica holds the job.

use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use switchyard_monitoring::retention;
use switchyard_monitoring::store::entity::task_execution;
use switchyard_monitoring_migration::Migrator;
use switchyard_test_support::TestDatabase;

async fn history(db: &TestDatabase) -> DatabaseConnection {
    let config = db.config("monitoring");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    conn
}

/// One attempt's row, started 90 days ago and ended `ended_days_ago` days ago.
async fn attempt(conn: &DatabaseConnection, n: u32, ended_days_ago: i64) {
    let now = Utc::now();
    let id: uuid::Uuid = format!("00000000-0000-7000-8000-{n:012}").parse().unwrap();
    task_execution::ActiveModel {
        task_id: Set(id),
        attempt: Set(1),
        run_id: Set(id),
        project_id: Set(id),
        workflow: Set("w".into()),
        node: Set("t".into()),
        shard_index: Set(0),
        shard_count: Set(1),
        iteration: Set(0),
        status: Set("succeeded".into()),
        agent_id: Set("agent".into()),
        exit_code: Set(None),
        error: Set(String::new()),
        retry_reason: Set(String::new()),
        queued_at: Set(Some(now - Duration::days(90))),
        started_at: Set(Some(now - Duration::days(90))),
        finished_at: Set(now - Duration::days(ended_days_ago)),
        not_before: Set(None),
        wait_ms: Set(Some(0)),
        run_ms: Set(None),
        precedence: Set(1),
        updated_at: Set(now),
        replayed_at: Set(None),
    }
    .insert(conn)
    .await
    .unwrap();
}

async fn monitoring_retention_deletes_only_old_ended_attempts(db: TestDatabase) {
    let conn = history(&db).await;
    let cutoff = Utc::now() - Duration::days(30);
    assert_eq!(
        retention::apply(&conn, cutoff).await.unwrap(),
        Some(0),
        "empty database"
    );
    attempt(&conn, 1, 45).await;
    attempt(&conn, 2, 31).await;
    attempt(&conn, 3, 2).await;
    // Retention goes by when an attempt ended, not when it started.
    attempt(&conn, 4, 1).await;
    assert_eq!(retention::apply(&conn, cutoff).await.unwrap(), Some(2));
    let mut left: Vec<String> = task_execution::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.task_id.to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "00000000-0000-7000-8000-000000000003".to_owned(),
            "00000000-0000-7000-8000-000000000004".to_owned()
        ],
        "the attempts that ended recently stay"
    );
    assert_eq!(
        retention::apply(&conn, cutoff).await.unwrap(),
        Some(0),
        "once"
    );
}

#[tokio::test]
async fn monitoring_retention_deletes_only_old_ended_attempts_on_postgres() {
    monitoring_retention_deletes_only_old_ended_attempts(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn monitoring_retention_deletes_only_old_ended_attempts_on_sqlite() {
    monitoring_retention_deletes_only_old_ended_attempts(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn monitoring_retention_skips_while_another_replica_holds_the_job() {
    let db = TestDatabase::postgres().await;
    let conn = history(&db).await;
    attempt(&conn, 1, 45).await;
    let holder = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
    switchyard_runtime::db::hold_job_lock(&holder, "monitoring.retention")
        .await
        .unwrap();
    let cutoff = Utc::now() - Duration::days(30);
    assert_eq!(retention::apply(&conn, cutoff).await.unwrap(), None);
    holder.commit().await.unwrap();
    assert_eq!(retention::apply(&conn, cutoff).await.unwrap(), Some(1));
}
