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
        leased_unsent: false,
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
    assert_eq!(row.finished_at, now);

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

    // An ending without a time counts as finished when the history wrote it, on the plain
    // path and on the merging one (its batch meets a stored attempt).
    let written_after = Utc::now() - Duration::seconds(1);
    upsert(&conn, how, &[attempt(3_000, now, Status::Succeeded, None)]).await;
    let untimed_and_stored = [
        attempt(3_001, now, Status::Failed, None),
        attempt(2_000, now, Status::Succeeded, Some(now)),
    ];
    upsert(&conn, how, &untimed_and_stored).await;
    let written_before = Utc::now() + Duration::seconds(1);
    for n in [3_000, 3_001] {
        let finished = stored(&conn, n).await.finished_at;
        assert!(
            written_after <= finished && finished <= written_before,
            "attempt {n} finished at {finished}"
        );
    }
}

/// The migrations that merged the attempt and run indexes, made the ids UUIDs, made the
/// attempt's key the primary key and added the replay mark roll back and apply again with rows in the table: the rows
/// come back as they were (on SQLite, text ids are rewritten as blobs and back, and the table
/// is rebuilt), and the history keeps one row per attempt.
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
    Migrator::down(&conn, Some(4)).await.unwrap();
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

/// A row as a version before the attempt's key became the primary key stored it: the finish
/// time may be missing, and running attempts were stored too.
async fn legacy_row(
    conn: &sea_orm::DatabaseConnection,
    n: u32,
    status: &str,
    finished: Option<DateTime<Utc>>,
    updated: DateTime<Utc>,
) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Query};
    let id = |text: &str| sea_orm::Value::from(text.parse::<uuid::Uuid>().unwrap());
    let values: [(&str, sea_orm::Value); 12] = [
        ("task_id", id(&task(n))),
        ("attempt", 1.into()),
        ("run_id", id(&task(0))),
        ("project_id", id(PROJECT)),
        ("node", "test".into()),
        ("shard_index", 0.into()),
        ("shard_count", 1.into()),
        ("iteration", 0.into()),
        ("status", status.into()),
        ("finished_at", finished.into()),
        (
            "precedence",
            finished.map_or(0, |t| t.timestamp_micros()).into(),
        ),
        ("updated_at", updated.into()),
    ];
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("task_executions"))
        .columns(values.iter().map(|(name, _)| Alias::new(*name)))
        .values_panic(values.into_iter().map(|(_, value)| value.into()));
    conn.execute(&insert).await.unwrap();
}

/// The migration that made the attempt's key the primary key, over rows an older version
/// stored: ended attempts stay (one without a finish time takes the time it was last
/// written), running ones go, and the history takes new attempts by the new key.
async fn natural_key_migration_over_legacy_rows(db: TestDatabase) {
    use sea_orm_migration::MigratorTrait;
    let conn = db.migrated::<Migrator>("monitoring").await;
    // Back to before that migration (and the replay mark that followed it).
    Migrator::down(&conn, Some(2)).await.unwrap();
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let written = now - Duration::minutes(5);
    legacy_row(&conn, 1, "succeeded", Some(now), written).await;
    legacy_row(&conn, 2, "failed", None, written).await;
    legacy_row(&conn, 3, "running", None, written).await;
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(stored(&conn, 1).await.finished_at, now);
    assert_eq!(stored(&conn, 2).await.finished_at, written);
    let left = Entity::find().all(&conn).await.unwrap();
    assert_eq!(left.len(), 2, "the running attempt is gone: {left:?}");
    upsert(
        &conn,
        Write::SeaOrm,
        &[attempt(3, now, Status::Succeeded, Some(now))],
    )
    .await;
    assert_eq!(stored(&conn, 3).await.status, "succeeded");
    assert_eq!(Entity::find().all(&conn).await.unwrap().len(), 3);
}

#[tokio::test]
async fn natural_key_migration_over_legacy_rows_on_postgres() {
    natural_key_migration_over_legacy_rows(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn natural_key_migration_over_legacy_rows_on_sqlite() {
    natural_key_migration_over_legacy_rows(TestDatabase::sqlite()).await;
}
