//! The history upsert against real databases (PostgreSQL takes the rows by COPY on the event
//! sink's path, or as one array per column through sea-orm, inserted plainly and merged only
//! when the batch meets a stored attempt; SQLite as parameters in chunks): a later ending wins whatever order endings arrive in, an earlier
//! one only fills gaps, a repeat changes nothing, a batch larger than a chunk is stored whole
//! with its times to the microsecond, and a batch that mixes new and stored attempts stores
//! the new ones and merges the stored one.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use switchyard_monitoring::domain::execution::{Execution, Status};
use switchyard_monitoring::store::entity::task_execution::{Column, Entity, Model};
use switchyard_monitoring::store::executions;
use switchyard_monitoring_migration::Migrator;
use switchyard_test_support::TestDatabase;

const PROJECT: &str = "00000000-0000-7000-8000-0000000000b1";

fn task(n: u32) -> String {
    format!("00000000-0000-7000-8000-0000{n:08}")
}

/// Attempt 1 of task `n`, queued three seconds before `now`.
fn attempt(
    n: u32,
    now: DateTime<Utc>,
    status: Status,
    finished: Option<DateTime<Utc>>,
) -> Execution {
    Execution {
        task_id: task(n),
        attempt: 1,
        run_id: task(0),
        project_id: PROJECT.into(),
        workflow: String::new(),
        node: "test".into(),
        shard_index: 0,
        shard_count: 1,
        iteration: 0,
        status,
        agent_id: String::new(),
        exit_code: None,
        error: String::new(),
        retry_reason: String::new(),
        queued_at: Some(now - Duration::seconds(3)),
        started_at: None,
        finished_at: finished,
        not_before: None,
    }
}

async fn stored(conn: &sea_orm::DatabaseConnection, n: u32) -> Model {
    Entity::find()
        .filter(Column::TaskId.eq(task(n).parse::<uuid::Uuid>().unwrap()))
        .one(conn)
        .await
        .unwrap()
        .unwrap()
}

/// How the test writes: through sea-orm (SQLite's path, and PostgreSQL's for batches that
/// carry API usage too), or on the driver's connection with COPY (the event sink's path on
/// PostgreSQL).
#[derive(Clone, Copy)]
enum Write {
    SeaOrm,
    Copy,
}

async fn upsert(conn: &sea_orm::DatabaseConnection, how: Write, rows: &[Execution]) {
    match how {
        Write::SeaOrm => executions::upsert(conn, rows).await.unwrap(),
        Write::Copy => {
            let mut txn = conn.get_postgres_connection_pool().begin().await.unwrap();
            executions::upsert_postgres(&mut txn, rows).await.unwrap();
            txn.commit().await.unwrap();
        }
    }
}

async fn history_upsert(db: TestDatabase, how: Write) {
    let conn = db.migrated::<Migrator>("monitoring").await;
    // Microseconds: what both databases keep.
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();

    // The later ending arrives first; the earlier one (a retry scheduled) must not replace
    // it, but fills what it lacked.
    let mut later = attempt(1, now, Status::Succeeded, Some(now));
    later.exit_code = Some(0);
    upsert(&conn, how, std::slice::from_ref(&later)).await;
    let mut earlier = attempt(1, now, Status::Retrying, Some(now - Duration::seconds(1)));
    earlier.exit_code = Some(1);
    earlier.error = "exit code 1".into();
    earlier.workflow = "ci".into();
    earlier.agent_id = "agent-7".into();
    earlier.started_at = Some(now - Duration::seconds(2));
    upsert(&conn, how, std::slice::from_ref(&earlier)).await;
    let row = stored(&conn, 1).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!((row.exit_code, row.error.as_str()), (Some(0), ""));
    assert_eq!(
        (row.workflow.as_str(), row.agent_id.as_str()),
        ("ci", "agent-7")
    );
    assert_eq!(row.started_at, earlier.started_at);
    assert_eq!(row.wait_ms, Some(1000));
    assert_eq!(row.finished_at, Some(now));

    // A repeat changes nothing, not even the update time.
    upsert(&conn, how, std::slice::from_ref(&earlier)).await;
    assert_eq!(stored(&conn, 1).await, row);

    // An even later ending (the lease expired after all) wins.
    let mut last = attempt(
        1,
        now,
        Status::LeaseExpired,
        Some(now + Duration::seconds(1)),
    );
    last.retry_reason = "lease_expired".into();
    upsert(&conn, how, std::slice::from_ref(&last)).await;
    let row = stored(&conn, 1).await;
    assert_eq!(
        (row.status.as_str(), row.retry_reason.as_str()),
        ("lease_expired", "lease_expired")
    );
    assert_eq!(row.agent_id, "agent-7", "gaps stay filled");

    // More rows than one chunk, in one call.
    let many: Vec<Execution> = (100..1_300)
        .map(|n| {
            let mut e = attempt(n, now, Status::Succeeded, Some(now));
            e.started_at = Some(now - Duration::microseconds(i64::from(n)));
            e
        })
        .collect();
    upsert(&conn, how, &many).await;
    let rows = Entity::find()
        .filter(Column::TaskId.ne(task(1).parse::<uuid::Uuid>().unwrap()))
        .order_by_asc(Column::TaskId)
        .all(&conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), many.len());
    for (row, sent) in rows.iter().zip(&many) {
        assert_eq!(row.task_id.to_string(), sent.task_id);
        assert_eq!(row.started_at, sent.started_at);
        assert_eq!(row.run_ms, sent.run_ms());
    }

    // New attempts beside a stored one in one batch: the plain insert fails on the stored
    // one, and the whole batch goes again with the merge.
    let mut later_for_100 = attempt(100, now, Status::Failed, Some(now + Duration::seconds(5)));
    later_for_100.error = "exit code 2".into();
    let mixed = vec![
        attempt(2_000, now, Status::Succeeded, Some(now)),
        later_for_100,
        attempt(2_001, now, Status::Cancelled, Some(now)),
    ];
    upsert(&conn, how, &mixed).await;
    let row = stored(&conn, 100).await;
    assert_eq!(
        (row.status.as_str(), row.error.as_str()),
        ("failed", "exit code 2")
    );
    assert_eq!(row.started_at, many[0].started_at, "gaps stay filled");
    assert_eq!(stored(&conn, 2_000).await.status, "succeeded");
    assert_eq!(stored(&conn, 2_001).await.status, "cancelled");
    let total = Entity::find().all(&conn).await.unwrap().len();
    assert_eq!(total, 1 + many.len() + 2, "one row per attempt");
}

/// The migrations that merged the attempt and run indexes and made the ids UUIDs roll back
/// and apply again with rows in the table: the rows come back as they were (on SQLite, text
/// ids are rewritten as blobs and back), and the history keeps one row per attempt.
async fn history_migrations_round_trip(db: TestDatabase) {
    use sea_orm_migration::MigratorTrait;
    let conn = db.migrated::<Migrator>("monitoring").await;
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let first = attempt(1, now, Status::Succeeded, Some(now));
    executions::upsert(&conn, std::slice::from_ref(&first))
        .await
        .unwrap();
    let before = stored(&conn, 1).await;
    Migrator::down(&conn, Some(2)).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(stored(&conn, 1).await, before);
    let mut again = first.clone();
    again.agent_id = "agent-3".into();
    executions::upsert(&conn, &[again, attempt(2, now, Status::Failed, Some(now))])
        .await
        .unwrap();
    assert_eq!(
        stored(&conn, 1).await.agent_id,
        "agent-3",
        "merged, not doubled"
    );
    assert_eq!(Entity::find().all(&conn).await.unwrap().len(), 2);
}

#[tokio::test]
async fn history_migrations_round_trip_on_postgres() {
    history_migrations_round_trip(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn history_migrations_round_trip_on_sqlite() {
    history_migrations_round_trip(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn history_upsert_on_postgres() {
    history_upsert(TestDatabase::postgres().await, Write::SeaOrm).await;
}

#[tokio::test]
async fn history_upsert_on_postgres_by_copy() {
    history_upsert(TestDatabase::postgres().await, Write::Copy).await;
}

#[tokio::test]
async fn history_upsert_on_sqlite() {
    history_upsert(TestDatabase::sqlite(), Write::SeaOrm).await;
}
