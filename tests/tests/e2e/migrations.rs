//! Migrations under the advisory lock: many replicas starting at once apply each migration
//! exactly once, and a replica that dies holding the lock does not block the others.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate;
use switchyard_test_support::TestDatabase;

struct CreateCounter;
struct CountRuns;

impl MigrationName for CreateCounter {
    fn name(&self) -> &str {
        "m1_create_counter"
    }
}

impl MigrationName for CountRuns {
    fn name(&self) -> &str {
        "m2_count_runs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCounter {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE counter (ran_at timestamptz NOT NULL DEFAULT now())")
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CountRuns {
    /// Records that it ran, slowly, so that racing replicas overlap.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared("SELECT pg_sleep(0.3)").await?;
        conn.execute_unprepared("INSERT INTO counter DEFAULT VALUES")
            .await
            .map(|_| ())
    }
}

struct TestMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateCounter), Box::new(CountRuns)]
    }
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replicas_apply_each_migration_once() {
    let db = TestDatabase::postgres().await;
    let config = db.config("migrations");
    let mut replicas = Vec::new();
    for _ in 0..6 {
        let config = config.clone();
        replicas.push(tokio::spawn(async move {
            // Each replica has its own pool, as separate processes would.
            let pool = switchyard_runtime::db::connect(&config).await.unwrap();
            migrate::run::<TestMigrator>(&pool, &config).await
        }));
    }
    for replica in replicas {
        replica.await.unwrap().expect("every replica succeeds");
    }
    let check = db.connect("migrations").await;
    assert_eq!(
        count(&check, "SELECT count(*) FROM counter").await,
        1,
        "the data migration ran once"
    );
    assert_eq!(
        count(&check, "SELECT count(*) FROM seaql_migrations").await,
        2,
        "both versions recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_holding_the_lock_releases_it() {
    let db = TestDatabase::postgres().await;
    let config = db.config("migrations");
    // A "replica" takes the lock and hangs mid-migration.
    let holder = Database::connect(config.url.as_str()).await.unwrap();
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_lock({})",
            migrate::lock_key(&config.schema)
        ))
        .await
        .unwrap();
    let waiting = {
        let config = config.clone();
        tokio::spawn(async move {
            let pool = switchyard_runtime::db::connect(&config).await.unwrap();
            migrate::run::<TestMigrator>(&pool, &config).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the second replica waits for the lock"
    );
    holder.close().await.unwrap(); // the holder dies: its session ends, the lock goes with it
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting replica takes over")
        .unwrap()
        .unwrap();
    let check = db.connect("migrations").await;
    assert_eq!(count(&check, "SELECT count(*) FROM counter").await, 1);
}
