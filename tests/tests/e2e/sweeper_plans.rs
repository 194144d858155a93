//! The scheduler's sweepers look for expired leases, overrunning tasks and tasks waiting too
//! long several times a second, in a table that keeps every task ever run. They must read
//! the partial indexes of queued and leased rows, also under the generic plan PostgreSQL
//! switches a prepared statement to after a few runs (which sees no parameter's value).
//! Before this was tested they scanned the whole table: over 100 ms a query at 140,000 tasks,
//! and a long-lived cluster's create-to-start p50 tripled.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryTrait, Statement, TransactionTrait};
use serde_json::json;
use switchyard_scheduler::engine::Settings;
use switchyard_scheduler::store::queue;
use switchyard_test_support::TestDatabase;

use crate::engine::{claim, engine, finish, run_id, submit_one};

/// Every column of `tasks` but `id` and `uuid`.
const COPIED: &str = "run_id, org_id, project_id, node, iteration, shard_index, shard_count, \
    attempt, attempt_base, infra_losses, status, priority, command, env_json, labels_json, \
    timeout_s, not_before, lease_expires_at, agent_id, queued_at, started_at, finished_at, \
    exit_code, error, outputs_json, result_json, log_tail, node_concurrency";

/// The generic plan of `sql` (parameters `$1..`), run with `arguments` (SQL literals).
async fn generic_plan(db: &sea_orm::DatabaseConnection, sql: &str, arguments: &str) -> String {
    // One connection: a prepared statement and the setting belong to the session.
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    txn.execute_unprepared(&format!("PREPARE sweep AS {sql}"))
        .await
        .unwrap();
    let rows = txn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("EXPLAIN EXECUTE sweep({arguments})"),
        ))
        .await
        .unwrap();
    txn.execute_unprepared("DEALLOCATE sweep").await.unwrap();
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_reads(plan: &str, index: &str) {
    assert!(plan.contains(index), "not read through {index}:\n{plan}");
    assert!(
        !plan.contains("Seq Scan on tasks") && !plan.contains("tasks_pkey"),
        "walks the whole table:\n{plan}"
    );
}

#[tokio::test]
async fn sweepers_read_the_partial_indexes_under_a_generic_plan() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db, Settings::default()).await;
    submit_one(&engine, &run_id(1)).await;
    let tasks = claim(&engine).await;
    finish(&engine, &tasks[0], 0, json!({})).await.unwrap();
    // A long-lived scheduler's table: tens of thousands of finished tasks.
    engine
        .db
        .execute_unprepared(&format!(
            "INSERT INTO tasks (uuid, {COPIED}) \
             SELECT md5(g::text), {COPIED} FROM tasks, generate_series(1, 30000) g; \
             ANALYZE tasks"
        ))
        .await
        .unwrap();

    let now = Utc::now();
    let expired = queue::expired_query(now, 500).build(DatabaseBackend::Postgres);
    let plan = generic_plan(&engine.db, &expired.sql, "now(), 500").await;
    assert_reads(&plan, "tasks_leased");

    let waiting =
        queue::waiting_since_query(now, vec![run_id(9)], 500).build(DatabaseBackend::Postgres);
    let plan = generic_plan(&engine.db, &waiting.sql, "now(), 'r', 500").await;
    assert_reads(&plan, "tasks_ready");

    let plan = generic_plan(&engine.db, queue::OVERRAN_SQL, "60, now(), 500, 604800").await;
    assert_reads(&plan, "tasks_leased");
}
