//! Retry statistics, the dead-letter analysis and the scheduler's wait-state queries against
//! real databases (PostgreSQL and SQLite): the set-based SQL counts attempts, retries,
//! successes after a retry and dead letters per node, normalises and ranks error reasons,
//! honours the project, workflow and time filters, and a replayed dead letter stops counting
//! as soon as its replay is heard of.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use switchyard_monitoring::domain::execution::{Execution, Requeued, Status};
use switchyard_monitoring::domain::retry_stats;
use switchyard_monitoring::domain::visibility::Visible;
use switchyard_monitoring::store::alerts::conditions;
use switchyard_monitoring::store::{executions, replays, statistics};
use switchyard_monitoring_migration::Migrator;
use switchyard_scheduler::engine::Settings;
use switchyard_scheduler::store::{diagnosis, limits};
use switchyard_test_support::TestDatabase;

use crate::engine::{claim, engine, run_id};

const P: &str = "00000000-0000-7000-8000-0000000000a1";
const Q: &str = "00000000-0000-7000-8000-0000000000a2";

fn task(n: u32) -> String {
    format!("00000000-0000-7000-8000-00000000{n:04}")
}

#[allow(clippy::too_many_arguments)]
fn ended(
    project: &str,
    workflow: &str,
    node: &str,
    task_n: u32,
    attempt: i32,
    status: Status,
    exit_code: Option<i32>,
    error: &str,
    retry_reason: &str,
    at: DateTime<Utc>,
) -> Execution {
    Execution {
        task_id: task(task_n),
        attempt,
        run_id: task(9000),
        project_id: project.into(),
        workflow: workflow.into(),
        node: node.into(),
        shard_index: 0,
        shard_count: 1,
        iteration: 0,
        status,
        agent_id: "agent".into(),
        exit_code,
        error: error.into(),
        retry_reason: retry_reason.into(),
        queued_at: Some(at - Duration::seconds(5)),
        started_at: Some(at - Duration::seconds(4)),
        finished_at: (status != Status::Running).then_some(at),
        not_before: None,
        leased_unsent: false,
    }
}

async fn statistics_from_history(db: TestDatabase) {
    let config = db.config("monitoring");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    let now = Utc::now();
    let m = |minutes| now - Duration::minutes(minutes);
    use Status::*;
    let rows = vec![
        // flaky: one task fails once then succeeds, one succeeds at once.
        ended(
            P,
            "ci",
            "flaky",
            1,
            1,
            Retrying,
            Some(1),
            "exit code 1",
            "exit_code_1",
            m(30),
        ),
        ended(P, "ci", "flaky", 1, 2, Succeeded, Some(0), "", "", m(29)),
        ended(P, "ci", "flaky", 2, 1, Succeeded, Some(0), "", "", m(28)),
        // doomed: one task exhausts its attempts; one is not retryable and was replayed.
        ended(
            P,
            "ci",
            "doomed",
            3,
            1,
            Retrying,
            Some(3),
            "exit code 3",
            "exit_code_3",
            m(20),
        ),
        ended(
            P,
            "ci",
            "doomed",
            3,
            2,
            DeadLettered,
            Some(3),
            "exit code 3 on attempt 2; 2 attempts allowed",
            "",
            m(19),
        ),
        ended(
            P,
            "ci",
            "doomed",
            4,
            1,
            DeadLettered,
            Some(2),
            "exit code 2 is not retryable",
            "",
            m(18),
        ),
        ended(P, "ci", "doomed", 4, 2, Running, None, "", "", m(1)),
        // Outside the filters: too old, another workflow, another project.
        ended(
            P,
            "ci",
            "old",
            5,
            1,
            Retrying,
            Some(1),
            "exit code 1",
            "exit_code_1",
            now - Duration::days(10),
        ),
        ended(
            P,
            "nightly",
            "flaky",
            6,
            1,
            Retrying,
            None,
            "timed out",
            "timed_out",
            m(10),
        ),
        ended(
            Q,
            "ci",
            "flaky",
            7,
            2,
            DeadLettered,
            None,
            "timed out on attempt 2; 2 attempts allowed",
            "",
            m(5),
        ),
    ];
    executions::upsert(&conn, &rows).await.unwrap();

    let mine = Visible::Projects(vec![P.to_owned()]);
    let window = statistics::Window {
        workflow: Some("ci"),
        since: now - Duration::days(7),
    };
    let (counts, errors) = statistics::retry_statistics(&conn, &mine, &window)
        .await
        .unwrap();
    let stats = retry_stats::assemble(counts, errors);
    let nodes: Vec<&str> = stats.iter().map(|s| s.counts.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["doomed", "flaky"],
        "most attempts first, then by name"
    );
    let doomed = &stats[0];
    assert_eq!(
        (
            doomed.counts.attempts,
            doomed.counts.retries,
            doomed.counts.succeeded_after_retry
        ),
        (3, 1, 0),
        "the running replay is no ended attempt"
    );
    assert_eq!(doomed.counts.dead_lettered, 2);
    assert_eq!(
        doomed.top_errors,
        [
            ("exit_code_3".to_owned(), 2),
            ("exit_code_2_not_retryable".to_owned(), 1)
        ],
        "a retry and a dead letter of the same exit code are one reason"
    );
    let flaky = &stats[1];
    assert_eq!(
        (
            flaky.counts.attempts,
            flaky.counts.retries,
            flaky.counts.succeeded_after_retry
        ),
        (3, 1, 1)
    );
    assert!((flaky.retry_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(flaky.top_errors, [("exit_code_1".to_owned(), 1)]);

    // Every workflow and project: the other workflow's timeout and project Q appear.
    let everything = statistics::Window {
        workflow: None,
        since: now - Duration::days(7),
    };
    let (counts, errors) = statistics::retry_statistics(&conn, &Visible::All, &everything)
        .await
        .unwrap();
    let all = retry_stats::assemble(counts, errors);
    assert_eq!(all.len(), 4, "{all:?}");
    let q = all.iter().find(|s| s.counts.project_id == Q).unwrap();
    assert_eq!(q.top_errors, [("timed_out".to_owned(), 1)]);
    assert_eq!(q.counts.dead_lettered, 1);
    // A caller who may see no project sees nothing.
    let none = statistics::retry_statistics(&conn, &Visible::Projects(Vec::new()), &everything)
        .await
        .unwrap();
    assert!(none.0.is_empty());

    // Dead letters: task 4's was replayed. The replay's QUEUED step marks it, and from then on
    // only task 3's counts, in the analysis and for the alert, while the replay still waits.
    let (total, _) = statistics::dead_letters(&conn, &mine).await.unwrap();
    assert_eq!(total, 2, "not replayed yet");
    let unreplayed = || conditions::unreplayed_dead_letters(&conn, P, m(60));
    assert_eq!(unreplayed().await.unwrap(), 2);
    let requeue = |task_n, attempt| Requeued {
        task_id: task(task_n),
        run_id: task(9000),
        attempt,
        at: now,
    };
    assert_eq!(
        replays::mark(&conn, &[requeue(4, 1)]).await.unwrap(),
        0,
        "a requeue supersedes earlier attempts only"
    );
    assert_eq!(replays::mark(&conn, &[requeue(4, 2)]).await.unwrap(), 1);
    assert_eq!(
        replays::mark(&conn, &[requeue(4, 2)]).await.unwrap(),
        0,
        "marked once"
    );
    assert_eq!(unreplayed().await.unwrap(), 1);
    let (total, groups) = statistics::dead_letters(&conn, &mine).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].reason, "exit_code_3");
    assert_eq!(groups[0].count, 1);
    let oldest = groups[0].oldest.unwrap();
    assert!(
        (oldest - m(19)).num_milliseconds().abs() < 5,
        "{oldest} vs {}",
        m(19)
    );
    let (total, groups) = statistics::dead_letters(&conn, &Visible::All)
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(groups.len(), 2);
    // The replay's own ending counts nothing against the marked dead letter, and a replay
    // heard of only through its ended attempt (its QUEUED step not applied) supersedes too.
    let replay_of_4 = ended(P, "ci", "doomed", 4, 2, Succeeded, Some(0), "", "", now);
    let replay_of_3 = ended(P, "ci", "doomed", 3, 3, Succeeded, Some(0), "", "", now);
    executions::upsert(&conn, &[replay_of_4, replay_of_3])
        .await
        .unwrap();
    assert_eq!(statistics::dead_letters(&conn, &mine).await.unwrap().0, 0);
    assert_eq!(unreplayed().await.unwrap(), 0);
}

#[tokio::test]
async fn retry_statistics_from_history_on_postgres() {
    statistics_from_history(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn retry_statistics_from_history_on_sqlite() {
    statistics_from_history(TestDatabase::sqlite()).await;
}

/// The scheduler's wait-state queries: queued tasks in claim order, open tasks per node and
/// status, and what holds a project's running slots.
async fn wait_state_queries(db: TestDatabase) {
    let engine = engine(&db, Settings::default()).await;
    let project = "00000000-0000-7000-8000-000000000001";
    for (n, definition) in [
        (
            1,
            json!({"nodes": [{"id": "test", "run": "x", "shards": 4, "concurrency": 1}]}),
        ),
        (
            2,
            json!({"nodes": [{"id": "wide", "run": "x", "shards": 2}]}),
        ),
    ] {
        let request = switchyard_proto::events::v1::RunRequested {
            run_id: run_id(n),
            project_id: project.into(),
            workflow: "w".into(),
            workflow_version: 1,
            definition_json: definition.to_string(),
            ..Default::default()
        };
        switchyard_scheduler::engine::Engine::accept(&engine.db, &request)
            .await
            .unwrap();
    }
    limits::set(&engine.db, project, 2, "test", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        claim(&engine).await.len(),
        2,
        "node limit 1 + one more under the project's 2"
    );
    let waiting = diagnosis::waiting(&engine.db, &run_id(1), 2).await.unwrap();
    assert_eq!(waiting.len(), 2, "bounded by the limit asked for");
    assert!(
        waiting
            .iter()
            .all(|t| t.status == "queued" && t.node == "test")
    );
    let open = diagnosis::open_by_node(&engine.db, &run_id(1))
        .await
        .unwrap();
    assert_eq!(open.get("test"), Some(&(3, 1)));
    let (holders, total) = diagnosis::project_holders(&engine.db, project, 10)
        .await
        .unwrap();
    assert_eq!(total, 2);
    let mut held: Vec<(String, String, u32)> = holders;
    held.sort();
    assert_eq!(
        held,
        [
            (run_id(1), "test".to_owned(), 1),
            (run_id(2), "wide".to_owned(), 1)
        ]
    );
    let (top, total) = diagnosis::project_holders(&engine.db, project, 1)
        .await
        .unwrap();
    assert_eq!(
        (top.len(), total),
        (1, 2),
        "the list is bounded, the total is not"
    );
}

#[tokio::test]
async fn wait_state_queries_on_postgres() {
    wait_state_queries(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn wait_state_queries_on_sqlite() {
    wait_state_queries(TestDatabase::sqlite()).await;
}
