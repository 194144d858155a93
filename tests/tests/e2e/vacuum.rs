//! A service vacuums the tables of its schema that need it (`switchyard_runtime::vacuum`),
//! for servers whose autovacuum is off.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use switchyard_runtime::vacuum;
use switchyard_test_support::TestDatabase;
use switchyard_test_support::wait::eventually;

/// `(n_dead_tup, vacuumed by hand, analyzed by hand)` of `table` in the connection's schema.
async fn table_stats(conn: &DatabaseConnection, table: &str) -> (i64, bool, bool) {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT n_dead_tup, last_vacuum IS NOT NULL AS vacuumed, \
             last_analyze IS NOT NULL AS analyzed FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = $1",
            [table.into()],
        ))
        .await
        .unwrap()
        .expect("the table has statistics");
    (
        row.try_get("", "n_dead_tup").unwrap(),
        row.try_get("", "vacuumed").unwrap(),
        row.try_get("", "analyzed").unwrap(),
    )
}

#[tokio::test]
async fn tables_are_vacuumed_or_analyzed_as_autovacuum_would_and_quiet_ones_left_alone() {
    let db = TestDatabase::postgres().await;
    let conn = db.connect("vacuum").await;
    let schema = db.config("vacuum").schema;
    conn.execute_unprepared(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    // The server's own autovacuum (on, on most machines) must not get there first.
    for sql in [
        "CREATE TABLE churned (id bigint PRIMARY KEY, body text) WITH (autovacuum_enabled = false)",
        "CREATE TABLE grown (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false)",
        "CREATE TABLE quiet (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false)",
        "INSERT INTO churned SELECT n, repeat('x', 50) FROM generate_series(1, 20000) n",
        "DELETE FROM churned WHERE id > 1000",
        "INSERT INTO grown SELECT n FROM generate_series(1, 20000) n",
        "INSERT INTO quiet SELECT n FROM generate_series(1, 3) n",
    ] {
        conn.execute_unprepared(sql).await.unwrap();
    }
    // Backends publish their counts a moment after their transactions end.
    eventually(
        "the deleted rows counted dead",
        Duration::from_secs(30),
        || {
            let conn = conn.clone();
            async move { (table_stats(&conn, "churned").await.0 >= 19_000).then_some(()) }
        },
    )
    .await;

    // By the server's autovacuum thresholds (any sane ones: 95% dead, 20,000 rows new, 3 rows).
    let done = vacuum::vacuum_due_tables(&conn).await.unwrap();
    assert_eq!(done.vacuumed, vec!["churned".to_owned()]);
    assert_eq!(done.analyzed, vec!["grown".to_owned()]);
    assert_eq!(table_stats(&conn, "churned").await, (0, true, true));
    assert_eq!(table_stats(&conn, "grown").await, (0, false, true));
    assert_eq!(table_stats(&conn, "quiet").await, (0, false, false));
    // Nothing is due any more.
    assert_eq!(
        vacuum::vacuum_due_tables(&conn).await.unwrap(),
        vacuum::Done::default()
    );

    let shown = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT setting FROM pg_settings WHERE name = 'autovacuum'",
        ))
        .await
        .unwrap()
        .expect("the setting exists");
    let setting: String = shown.try_get("", "setting").unwrap();
    assert_eq!(
        vacuum::autovacuum_is_on(&conn).await.unwrap(),
        setting == "on"
    );
}

#[tokio::test]
async fn nothing_is_kept_on_sqlite() {
    let db = TestDatabase::sqlite();
    let conn = db.connect("vacuum").await;
    let shutdown = switchyard_runtime::shutdown::Shutdown::new();
    // Returns at once rather than looking every interval until shutdown.
    tokio::time::timeout(
        Duration::from_secs(5),
        vacuum::keep(conn, Duration::from_millis(10), shutdown),
    )
    .await
    .expect("the keeper returns at once on SQLite");
}
