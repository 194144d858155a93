//! The view's operations on both backends: real Redis (127.0.0.1:6379 or
//! `SWITCHYARD_TEST_REDIS_URL`, a unique prefix per test, deleted after) and memory.

use std::time::Duration;

use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_runtime::cache::Cache;
use switchyard_runtime::config::RedisConfig;

use super::reconcile::diff;
use super::*;

fn task(project: &str, n: u32, attempt: u32) -> ActiveTask {
    ActiveTask {
        task_id: format!("0190-task-{n:04}"),
        run_id: "run".into(),
        project_id: project.into(),
        node: "build".into(),
        attempt,
        agent_id: "agent-1".into(),
        workflow: "ci".into(),
        ..ActiveTask::default()
    }
}

fn end(t: &ActiveTask) -> Op {
    Op::End {
        project_id: t.project_id.clone(),
        task_id: t.task_id.clone(),
        attempt: t.attempt,
    }
}

fn sorted(mut tasks: Vec<ActiveTask>) -> Vec<ActiveTask> {
    tasks.sort_by_key(codec::field_of);
    tasks
}

async fn redis_view() -> (ActiveView, String, Cache) {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let cache = Cache::from_config(&RedisConfig {
        url: Some(url),
        ..RedisConfig::default()
    })
    .expect("redis pool");
    let prefix = format!("switchyard-test:{}", uuid::Uuid::now_v7());
    let view = ActiveView::new(&cache, &prefix, Duration::from_secs(60));
    (view, prefix, cache)
}

/// Deletes every key of the test's prefix (never anything else in a shared Redis).
async fn delete_prefix(cache: &Cache, prefix: &str) {
    let Cache::Redis { pool, .. } = cache else {
        return;
    };
    let mut conn = pool.get().await.expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await
            .expect("del");
    }
}

async fn exercise(view: &ActiveView) {
    let (a1, a2, b1) = (task("pa", 1, 1), task("pa", 2, 1), task("pb", 3, 1));
    assert!(
        !view.intact().await.expect("epoch"),
        "a new view is not built"
    );
    view.apply(&[
        Op::Put(Box::new(a1.clone())),
        Op::Put(Box::new(a2.clone())),
        Op::Put(Box::new(b1.clone())),
    ])
    .await
    .expect("apply");
    assert_eq!(
        sorted(view.entries(None).await.expect("all")),
        sorted(vec![a1.clone(), a2.clone(), b1.clone()])
    );
    assert_eq!(
        view.entries(Some(&["pb".into(), "nobody".into()]))
            .await
            .expect("pb"),
        vec![b1.clone()]
    );
    // An ending removes the attempt; a LEASED delivered late does not bring it back, but
    // the next attempt of the same task is a different entry.
    let retry = task("pa", 1, 2);
    view.apply(&[
        end(&a1),
        Op::Put(Box::new(a1.clone())),
        Op::Put(Box::new(retry.clone())),
    ])
    .await
    .expect("apply");
    view.apply(&[Op::Put(Box::new(a1.clone()))])
        .await
        .expect("apply");
    assert_eq!(
        sorted(view.entries(Some(&["pa".into()])).await.expect("pa")),
        sorted(vec![a2.clone(), retry.clone()])
    );
    // Reconciliation: the queue says a2 ended (removed), b1 heartbeated (refreshed, its
    // workflow kept), a1 is listed by a queue read before its end (tombstoned: skipped).
    let beat = prost_types::Timestamp {
        seconds: 1_800_000_000,
        nanos: 0,
    };
    let b1_queue = ActiveTask {
        workflow: String::new(),
        last_heartbeat_at: Some(beat),
        ..b1.clone()
    };
    let snapshot = view.entries(None).await.expect("all");
    let ops = diff(&snapshot, &[b1_queue, a1.clone(), retry.clone()]);
    view.apply(&ops).await.expect("apply");
    view.mark_built().await.expect("epoch");
    let b1_now = ActiveTask {
        last_heartbeat_at: Some(beat),
        ..b1.clone()
    };
    assert_eq!(
        sorted(view.entries(None).await.expect("all")),
        sorted(vec![retry.clone(), b1_now])
    );
    assert!(view.intact().await.expect("epoch"));
    assert!(
        view.apply(&[end(&retry)]).await.expect("apply"),
        "apply reports the epoch"
    );
}

#[tokio::test]
async fn active_view_on_memory() {
    exercise(&ActiveView::memory(Duration::from_secs(60))).await;
}

#[tokio::test]
async fn active_view_on_redis() {
    let (view, prefix, cache) = redis_view().await;
    assert_eq!(view.kind(), "redis");
    exercise(&view).await;
    delete_prefix(&cache, &prefix).await;
    assert!(!view.intact().await.expect("epoch"), "a flush is noticed");
    assert!(view.entries(None).await.expect("all").is_empty());
}

/// The script applies a call's puts, ends and removes as a few variadic commands per project,
/// 1,000 elements at a time: batches past that size, over several projects, land whole, and
/// an end beats a put of the same attempt wherever it stands in the call.
#[tokio::test]
async fn active_view_on_redis_applies_batches_larger_than_one_chunk() {
    let (view, prefix, cache) = redis_view().await;
    let tasks: Vec<ActiveTask> = (0..2500)
        .map(|n| task(if n % 5 == 0 { "pb" } else { "pa" }, n, 1))
        .collect();
    let mut ops: Vec<Op> = tasks.iter().map(|t| Op::Put(Box::new(t.clone()))).collect();
    // Ended in the same call as its put, before and after it.
    let (early, late) = (task("pa", 9001, 1), task("pc", 9002, 1));
    ops.insert(0, end(&early));
    ops.insert(1, Op::Put(Box::new(early.clone())));
    ops.push(Op::Put(Box::new(late.clone())));
    ops.push(end(&late));
    view.apply(&ops).await.expect("apply");
    assert_eq!(
        sorted(view.entries(None).await.expect("all")),
        sorted(tasks.clone())
    );
    let pb = view.entries(Some(&["pb".into()])).await.expect("pb");
    assert_eq!(pb.len(), 500);
    // Ending 1,500 of them (all of pb's among them) leaves the rest, and pb's hash empty.
    let (ended, kept): (Vec<ActiveTask>, Vec<ActiveTask>) = tasks
        .iter()
        .cloned()
        .partition(|t| t.project_id == "pb" || t.task_id.as_str() < "0190-task-1250");
    assert!(ended.len() > 1000, "{}", ended.len());
    view.apply(&ended.iter().map(end).collect::<Vec<_>>())
        .await
        .expect("apply");
    assert_eq!(
        sorted(view.entries(None).await.expect("all")),
        sorted(kept.clone())
    );
    assert!(
        view.entries(Some(&["pb".into()]))
            .await
            .expect("pb")
            .is_empty()
    );
    // Late LEASED for every ended attempt: all tombstoned, nothing comes back.
    view.apply(
        &ended
            .iter()
            .map(|t| Op::Put(Box::new(t.clone())))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("apply");
    assert_eq!(sorted(view.entries(None).await.expect("all")), sorted(kept));
    delete_prefix(&cache, &prefix).await;
}

/// Tombstones on Redis live in one set per period of the ttl: an ending made in one period
/// still blocks a late LEASED in the next, and is gone (set and all) two periods on.
#[tokio::test]
async fn active_tombstones_on_redis_last_one_to_two_ttls_in_one_set_per_period() {
    let (_, prefix, cache) = redis_view().await;
    let ttl = Duration::from_millis(400);
    let view = ActiveView::new(&cache, &prefix, ttl);
    let Cache::Redis { pool, .. } = &cache else {
        panic!("a Redis cache");
    };
    let late = task("pa", 1, 1);
    let ended: Vec<ActiveTask> = (2..50).map(|n| task("pa", n, 1)).collect();
    let mut ops: Vec<Op> = ended.iter().map(end).collect();
    ops.push(end(&late));
    view.apply(&ops).await.expect("apply");
    let tombstone_keys = || async {
        let mut conn = pool.get().await.expect("redis connection");
        redis::cmd("KEYS")
            .arg(format!("{prefix}:ended:*"))
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect("keys")
    };
    assert_eq!(tombstone_keys().await.len(), 1, "one set for 49 endings");
    // Blocked throughout the ttl, whichever period boundary falls inside it.
    for _ in 0..4 {
        view.apply(&[Op::Put(Box::new(late.clone()))])
            .await
            .expect("apply");
        assert!(view.entries(None).await.expect("all").is_empty());
        tokio::time::sleep(ttl / 4).await;
    }
    // Two periods after the ending, the tombstone is forgotten and the set expired.
    tokio::time::sleep(ttl * 2).await;
    view.apply(&[Op::Put(Box::new(late.clone()))])
        .await
        .expect("apply");
    assert_eq!(view.entries(None).await.expect("all"), vec![late]);
    assert!(
        tombstone_keys().await.is_empty(),
        "the period's set expired"
    );
    delete_prefix(&cache, &prefix).await;
}

#[tokio::test]
async fn active_view_skips_undecodable_entries_on_redis() {
    let (view, prefix, cache) = redis_view().await;
    let good = task("pa", 1, 1);
    view.apply(&[Op::Put(Box::new(good.clone()))])
        .await
        .expect("apply");
    if let Cache::Redis { pool, .. } = &cache {
        let mut conn = pool.get().await.expect("redis connection");
        redis::cmd("HSET")
            .arg(format!("{prefix}:active:pa"))
            .arg("garbage:0000000001")
            .arg(b"{not protobuf}".as_slice())
            .query_async::<()>(&mut conn)
            .await
            .expect("hset");
    }
    assert_eq!(view.entries(None).await.expect("all"), vec![good]);
    delete_prefix(&cache, &prefix).await;
}

#[test]
fn active_reconcile_diff_adds_missing_removes_stale_and_leaves_equal_alone() {
    let (kept, stale, missing) = (task("p", 1, 1), task("p", 2, 1), task("p", 3, 1));
    let ops = diff(
        &[kept.clone(), stale.clone()],
        &[kept.clone(), missing.clone()],
    );
    assert_eq!(
        ops,
        vec![
            Op::Put(Box::new(missing)),
            Op::Remove {
                project_id: "p".into(),
                task_id: stale.task_id.clone(),
                attempt: 1
            }
        ]
    );
    let same = std::slice::from_ref(&kept);
    assert!(diff(same, same).is_empty());
}

#[test]
fn active_key_prefixes_name_the_database_and_schema() {
    assert_eq!(
        key_prefix("postgres://u@h:5432/switchyard", "monitoring"),
        "switchyard:switchyard:monitoring"
    );
    assert_eq!(key_prefix("not a url", "s"), "switchyard:default:s");
}

#[test]
fn active_reconcile_leaves_attempts_whose_leased_step_may_come_to_that_step() {
    use super::reconcile::to_reconcile;
    use switchyard_proto::scheduler::v1::LeasedAttempt;
    let listed = |n: u32, pending: bool| LeasedAttempt {
        task_id: format!("0190-task-{n:04}"),
        project_id: "p".into(),
        attempt: 1,
        lifecycle_pending: pending,
        ..LeasedAttempt::default()
    };
    let viewed = task("p", 2, 1);
    let leased = [listed(1, false), listed(2, true), listed(3, true)];
    let ids = |tasks: Vec<ActiveTask>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    assert_eq!(
        ids(to_reconcile(std::slice::from_ref(&viewed), &leased, false)),
        ["0190-task-0001", "0190-task-0002"],
        "a pending attempt is added only by its LEASED step, and kept when the view has it"
    );
    assert_eq!(
        ids(to_reconcile(&[], &leased, true)).len(),
        3,
        "a rebuild adds every leased attempt"
    );
    // What is left out is neither added nor, when in the view, removed.
    let ops = diff(
        std::slice::from_ref(&viewed),
        &to_reconcile(std::slice::from_ref(&viewed), &leased, false),
    );
    assert!(ops.iter().all(|op| !matches!(op, Op::Remove { .. })));
}
