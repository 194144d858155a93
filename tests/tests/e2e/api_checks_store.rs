//! Monitoring's API check and API usage store against real databases: due checks are claimed
//! once (also by concurrent claimers), probe results update the check and count toward
//! availability, failing checks are listed for alerts, retention drops old probes and usage;
//! usage reports for the same minute add up, and percentiles come from the merged buckets.

use chrono::{Duration, Utc};
use sea_orm::DatabaseConnection;
use switchyard_monitoring::checks::cleanup;
use switchyard_monitoring::domain::usage::{BUCKETS, Histogram};
use switchyard_monitoring::domain::visibility::Visible;
use switchyard_monitoring::store::checks::{self, Check, ProbeResult};
use switchyard_monitoring::store::usage::{self, UsageDelta};
use switchyard_monitoring_migration::Migrator;
use switchyard_test_support::TestDatabase;

async fn store(db: &TestDatabase) -> DatabaseConnection {
    let config = db.config("monitoring");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    conn
}

fn check(n: u32, project: &str) -> Check {
    let now = Utc::now();
    Check {
        id: format!("00000000-0000-7000-8000-{n:012}"),
        org_id: "00000000-0000-7000-8000-00000000000f".into(),
        project_id: project.into(),
        name: format!("check-{n}"),
        protocol: "http".into(),
        target: "http://10.0.0.1/healthz".into(),
        interval_ms: 60_000,
        timeout_ms: 5_000,
        created_at: now,
        updated_at: now,
        next_probe_at: now - Duration::seconds(1),
        last_checked_at: None,
        last_ok: false,
        last_latency_ms: None,
        last_error: String::new(),
    }
}

const PROJECT: &str = "00000000-0000-7000-8000-0000000000aa";

fn probe(ok: bool, at: chrono::DateTime<Utc>) -> ProbeResult {
    ProbeResult {
        at,
        ok,
        latency_ms: 12,
        error: if ok {
            String::new()
        } else {
            "http status 503".into()
        },
    }
}

async fn checks_are_claimed_probed_and_cleaned(db: TestDatabase) {
    let conn = store(&db).await;
    let now = Utc::now();
    for n in 1..=3 {
        checks::save(&conn, &check(n, PROJECT), true).await.unwrap();
    }
    let claimed = checks::claim_due(&conn, now, 2).await.unwrap();
    assert_eq!(claimed.len(), 2, "the limit holds");
    let rest = checks::claim_due(&conn, now, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "claimed checks are not due again");
    assert!(checks::claim_due(&conn, now, 10).await.unwrap().is_empty());
    assert_eq!(
        checks::claim_due(&conn, now + Duration::seconds(61), 10)
            .await
            .unwrap()
            .len(),
        3,
        "due again one interval later"
    );

    let one = &check(1, PROJECT).id;
    let two = &check(2, PROJECT).id;
    for ok in [true, true, true, false] {
        checks::record(&conn, one, &probe(ok, now)).await.unwrap();
    }
    checks::record(&conn, two, &probe(true, now)).await.unwrap();
    // A probe 25 hours ago does not count toward availability.
    checks::record(&conn, two, &probe(false, now - Duration::hours(25)))
        .await
        .unwrap();
    checks::record(&conn, two, &probe(true, now)).await.unwrap();
    let tallies = checks::availability(
        &conn,
        &[one.clone(), two.clone(), check(3, PROJECT).id],
        now - Duration::hours(24),
    )
    .await
    .unwrap();
    assert_eq!(tallies.get(one), Some(&(4, 3)));
    assert_eq!(tallies.get(two), Some(&(2, 2)));
    assert_eq!(tallies.get(&check(3, PROJECT).id), None, "never probed");

    let failing = checks::failing_checks(&conn, PROJECT).await.unwrap();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].0.id, *one);
    assert_eq!(failing[0].1, "http status 503");
    assert!(
        checks::failing_checks(&conn, "00000000-0000-7000-8000-0000000000bb")
            .await
            .unwrap()
            .is_empty()
    );

    let listed = checks::list(&conn, &Visible::Projects(vec![PROJECT.into()]))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        checks::list(&conn, &Visible::Projects(vec![]))
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: the 25-hour-old probe goes, the rest stay.
    let cut = cleanup::apply(&conn, now - Duration::hours(24), now - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(cut, Some((1, 0)));

    assert!(checks::delete(&conn, one).await.unwrap());
    assert!(!checks::delete(&conn, one).await.unwrap(), "once");
    // A result for a deleted check records nothing.
    checks::record(&conn, one, &probe(true, now)).await.unwrap();
    let after = checks::availability(&conn, std::slice::from_ref(one), now - Duration::hours(1))
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test]
async fn api_checks_store_claims_records_and_cleans_on_postgres() {
    checks_are_claimed_probed_and_cleaned(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn api_checks_store_claims_records_and_cleans_on_sqlite() {
    checks_are_claimed_probed_and_cleaned(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_checks_concurrent_claimers_share_due_checks_on_postgres() {
    let db = TestDatabase::postgres().await;
    let conn = store(&db).await;
    for n in 1..=40 {
        checks::save(&conn, &check(n, PROJECT), true).await.unwrap();
    }
    let now = Utc::now();
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { checks::claim_due(&conn, now, 15).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for claimer in claimers {
        ids.extend(claimer.await.unwrap().into_iter().map(|c| c.id));
    }
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a check was claimed twice");
    assert_eq!(total, 40, "every due check was claimed");
}

fn delta(minute: chrono::DateTime<Utc>, route: &str, requests: u64, bucket: usize) -> UsageDelta {
    let mut latency = Histogram::default();
    latency.0[bucket] = requests;
    UsageDelta {
        minute,
        route: route.into(),
        method: "GET".into(),
        requests,
        errors: requests / 10,
        latency,
    }
}

async fn usage_adds_up(db: TestDatabase) {
    let conn = store(&db).await;
    let minute = usage::minute_of(Utc::now());
    let earlier = minute - Duration::minutes(5);
    // Two reports for the same minute, in one batch and in two statements.
    usage::add(
        &conn,
        &usage::fold(vec![
            delta(minute, "/api/v1/runs/{run_id}", 40, 2),
            delta(minute, "/api/v1/runs/{run_id}", 40, 2),
        ]),
    )
    .await
    .unwrap();
    usage::add(&conn, &[delta(minute, "/api/v1/runs/{run_id}", 20, 9)])
        .await
        .unwrap();
    usage::add(&conn, &[delta(earlier, "/healthz", 10, 0)])
        .await
        .unwrap();
    usage::add(&conn, &[delta(minute - Duration::days(8), "/old", 5, 0)])
        .await
        .unwrap();

    let recent = usage::totals(&conn, minute).await.unwrap();
    assert_eq!(recent.len(), 1, "{recent:?}");
    let runs = &recent[0];
    assert_eq!((runs.requests, runs.errors), (100, 10));
    assert_eq!(runs.latency.total(), 100);
    assert_eq!(runs.latency.0[2], 80);
    assert_eq!(runs.latency.0[9], 20);
    // p50 among the fast 80; p95 among the slow 20 (500 ms, 1 s].
    let p50 = runs.latency.quantile(0.5).unwrap();
    assert!((2.5..=5.0).contains(&p50), "{p50}");
    let p95 = runs.latency.quantile(0.95).unwrap();
    assert!((500.0..=1000.0).contains(&p95), "{p95}");

    let all = usage::totals(&conn, minute - Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].route, "/api/v1/runs/{run_id}", "busiest first");
    assert_eq!(all[1].latency.0[..BUCKETS].iter().sum::<u64>(), 10);

    let cut = cleanup::apply(
        &conn,
        Utc::now() - Duration::hours(24),
        Utc::now() - Duration::days(7),
    )
    .await
    .unwrap();
    assert_eq!(cut, Some((0, 1)), "only the 8-day-old minute goes");
}

#[tokio::test]
async fn api_usage_store_adds_minutes_up_on_postgres() {
    usage_adds_up(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn api_usage_store_adds_minutes_up_on_sqlite() {
    usage_adds_up(TestDatabase::sqlite()).await;
}
