//! The scheduler's artifact retention against PostgreSQL, with `file://` objects in a temp
//! directory: completions record their artifacts (only those under the attempt's own keys),
//! old objects are deleted and their rows marked, recent ones are kept, an object already gone
//! counts as deleted, a failing store keeps the row for the next round (and its run waits for
//! it), an empty database is fine, and a round that finds another replica holding the job
//! skips.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use switchyard_proto::events::v1::RunRequested;
use switchyard_scheduler::engine::maintenance::objects::ObjectStores;
use switchyard_scheduler::engine::maintenance::{
    ArtifactsDeleted, Deleted, artifact_retention, retention,
};
use switchyard_scheduler::engine::report::TaskResult;
use switchyard_scheduler::engine::{AgentScope, Completion, Engine, Settings};
use switchyard_scheduler::store::entity::{artifact, run};
use switchyard_scheduler_migration::Migrator;
use switchyard_test_support::TestDatabase;

const FORTNIGHT: Duration = Duration::from_secs(14 * 24 * 3600);
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

async fn engine(db: &TestDatabase) -> Engine {
    let config = db.config("scheduler");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    Engine::new(conn, Settings::default())
}

fn run_id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// Starts a one-task run, claims its task and completes it reporting `names`: each as
/// `<root>/<run>/<task>-<attempt>/<name>`, written to disk unless listed in `absent`, plus
/// `extra` locations as they are. Returns the attempt's directory.
async fn run_with_artifacts(
    engine: &Engine,
    root: &Path,
    run: &str,
    names: &[&str],
    absent: &[&str],
    extra: &[&str],
) -> PathBuf {
    let request = RunRequested {
        run_id: run.to_owned(),
        project_id: "00000000-0000-7000-8000-000000000001".into(),
        workflow: "w".into(),
        workflow_version: 1,
        definition_json: json!({"nodes": [{"id": "t", "run": "x"}]}).to_string(),
        ..RunRequested::default()
    };
    Engine::accept(&engine.db, &request).await.unwrap();
    let labels = BTreeMap::new();
    let agent = AgentScope {
        agent_id: "agent-1",
        org_id: "",
        project_id: "",
        labels: &labels,
    };
    let leased = engine.claim(&agent, 1).await.unwrap();
    let task = &leased[0];
    let dir = root
        .join(run)
        .join(format!("{}-{}", task.uuid, task.attempt));
    std::fs::create_dir_all(&dir).unwrap();
    let mut artifacts = Vec::new();
    for name in names {
        let path = dir.join(name);
        if !absent.contains(name) {
            std::fs::write(&path, name.as_bytes()).unwrap();
        }
        artifacts.push(
            json!({"name": name, "location": format!("file://{}", path.display()),
            "size_bytes": name.len(), "sha256": "0".repeat(64)}),
        );
    }
    for location in extra {
        artifacts.push(json!({"name": "x", "location": location, "size_bytes": 1, "sha256": ""}));
    }
    engine
        .complete(Completion {
            agent_id: "agent-1".into(),
            task_id: task.uuid.clone(),
            attempt: task.attempt as u32,
            result: TaskResult {
                artifacts,
                ..TaskResult::default()
            },
            ..Completion::default()
        })
        .await
        .unwrap();
    dir
}

async fn rows(engine: &Engine, run: &str) -> Vec<artifact::Model> {
    artifact::Entity::find()
        .filter(artifact::Column::RunId.eq(run))
        .all(&engine.db)
        .await
        .unwrap()
}

/// `(name, deleted?)` of a run's artifact rows.
async fn states(engine: &Engine, run: &str) -> BTreeSet<(String, bool)> {
    rows(engine, run)
        .await
        .into_iter()
        .map(|a| (a.name, a.deleted_at.is_some()))
        .collect()
}

async fn age_artifacts(engine: &Engine, run: &str, days: i64) {
    artifact::Entity::update_many()
        .col_expr(
            artifact::Column::CreatedAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::days(days)),
        )
        .filter(artifact::Column::RunId.eq(run))
        .exec(&engine.db)
        .await
        .unwrap();
}

async fn age_run(engine: &Engine, run: &str, days: i64) {
    let row = run::Entity::find_by_id(run.to_owned())
        .one(&engine.db)
        .await
        .unwrap()
        .unwrap();
    let mut aged: run::ActiveModel = row.into();
    aged.finished_at = Set(Some(chrono::Utc::now() - chrono::Duration::days(days)));
    aged.update(&engine.db).await.unwrap();
}

async fn run_exists(engine: &Engine, run: &str) -> bool {
    run::Entity::find_by_id(run.to_owned())
        .one(&engine.db)
        .await
        .unwrap()
        .is_some()
}

/// One artifact retention round. The job's lock is per schema, and nothing else in this
/// test's schema runs the job, so the round always gets it.
async fn artifact_round(engine: &Engine, stores: &ObjectStores) -> ArtifactsDeleted {
    artifact_retention(engine, stores, FORTNIGHT)
        .await
        .unwrap()
        .expect("the job is this test's own")
}

/// One run retention round (see [`artifact_round`]).
async fn run_round(engine: &Engine) -> Deleted {
    retention(engine, MONTH)
        .await
        .unwrap()
        .expect("the job is this test's own")
}

/// The public id of a task row.
async fn recorded_task(engine: &Engine, id: i64) -> String {
    switchyard_scheduler::store::entity::task::Entity::find_by_id(id)
        .one(&engine.db)
        .await
        .unwrap()
        .unwrap()
        .uuid
}

fn set(items: &[(&str, bool)]) -> BTreeSet<(String, bool)> {
    items.iter().map(|(n, d)| ((*n).to_owned(), *d)).collect()
}

#[tokio::test]
async fn old_artifact_objects_are_deleted_recent_kept_and_runs_go_after_them() {
    old_artifacts_go_recent_stay(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn old_artifact_objects_are_deleted_and_runs_go_after_them_on_sqlite() {
    old_artifacts_go_recent_stay(TestDatabase::sqlite()).await;
}

async fn old_artifacts_go_recent_stay(db: TestDatabase) {
    let engine = engine(&db).await;
    let stores = ObjectStores::new(&BTreeMap::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("artifacts");
    assert_eq!(
        artifact_round(&engine, &stores).await,
        ArtifactsDeleted::default(),
        "an empty database is nothing to do"
    );

    let (old, recent) = (run_id(1), run_id(2));
    let old_dir = run_with_artifacts(
        &engine,
        &root,
        &old,
        &["report.txt", "gone.txt"],
        &["gone.txt"],
        &["file:///etc/hostname", "https://example.com/x"],
    )
    .await;
    let recent_dir = run_with_artifacts(&engine, &root, &recent, &["new.txt"], &[], &[]).await;
    assert_eq!(
        states(&engine, &old).await,
        set(&[("report.txt", false), ("gone.txt", false)]),
        "locations outside the attempt's keys are not recorded"
    );
    let recorded = rows(&engine, &old).await;
    let task_ids: BTreeSet<i64> = recorded.iter().map(|a| a.task_id).collect();
    assert_eq!(task_ids.len(), 1);
    assert!(recorded.iter().all(|a| a.project_id.ends_with("000001")));
    age_artifacts(&engine, &old, 20).await;

    let deleted = artifact_round(&engine, &stores).await;
    assert_eq!(
        deleted,
        ArtifactsDeleted {
            deleted: 2,
            failed: 0
        },
        "an object already gone counts as deleted"
    );
    assert!(!old_dir.join("report.txt").exists());
    assert!(recent_dir.join("new.txt").exists());
    assert_eq!(
        states(&engine, &old).await,
        set(&[("report.txt", true), ("gone.txt", true)])
    );
    assert_eq!(states(&engine, &recent).await, set(&[("new.txt", false)]));
    assert_eq!(
        artifact_round(&engine, &stores).await,
        ArtifactsDeleted::default(),
        "deleted rows are not handled twice"
    );

    // Both runs are past run retention; the recent one still has a live object and waits.
    age_run(&engine, &old, 40).await;
    age_run(&engine, &recent, 40).await;
    let runs = run_round(&engine).await;
    assert_eq!(
        runs,
        Deleted {
            runs: 1,
            tasks: 1,
            dead_letters: 0
        }
    );
    assert!(!run_exists(&engine, &old).await);
    assert!(rows(&engine, &old).await.is_empty(), "rows go with the run");
    assert!(run_exists(&engine, &recent).await);
    assert_eq!(states(&engine, &recent).await, set(&[("new.txt", false)]));
}

#[tokio::test]
async fn a_failing_artifact_store_keeps_the_row_and_the_run_for_the_next_round() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db).await;
    let stores = ObjectStores::new(&BTreeMap::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("artifacts");
    let run = run_id(3);
    let dir = run_with_artifacts(&engine, &root, &run, &["stuck.txt"], &["stuck.txt"], &[]).await;
    // A directory where the object is: the store cannot delete it.
    std::fs::create_dir_all(dir.join("stuck.txt").join("inner")).unwrap();
    age_artifacts(&engine, &run, 20).await;
    age_run(&engine, &run, 40).await;

    assert_eq!(
        artifact_round(&engine, &stores).await,
        ArtifactsDeleted {
            deleted: 0,
            failed: 1
        }
    );
    assert_eq!(states(&engine, &run).await, set(&[("stuck.txt", false)]));
    assert_eq!(
        run_round(&engine).await,
        Deleted::default(),
        "the run waits for its objects"
    );
    assert!(run_exists(&engine, &run).await);

    std::fs::remove_dir_all(dir.join("stuck.txt")).unwrap();
    assert_eq!(
        artifact_round(&engine, &stores).await,
        ArtifactsDeleted {
            deleted: 1,
            failed: 0
        }
    );
    assert_eq!(run_round(&engine).await.runs, 1);
    assert!(!run_exists(&engine, &run).await);
}

#[tokio::test]
async fn artifact_retention_skips_while_another_replica_holds_the_job() {
    let db = TestDatabase::postgres().await;
    let engine = engine(&db).await;
    let stores = ObjectStores::new(&BTreeMap::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("artifacts");
    let run = run_id(4);
    let dir = run_with_artifacts(&engine, &root, &run, &["a.txt"], &[], &[]).await;
    age_artifacts(&engine, &run, 20).await;

    let holder = sea_orm::TransactionTrait::begin(&engine.db).await.unwrap();
    switchyard_runtime::db::hold_job_lock(&holder, "scheduler.artifact_retention")
        .await
        .unwrap();
    assert_eq!(
        artifact_retention(&engine, &stores, FORTNIGHT)
            .await
            .unwrap(),
        None
    );
    assert!(dir.join("a.txt").exists(), "nothing deleted while skipped");
    assert_eq!(states(&engine, &run).await, set(&[("a.txt", false)]));
    holder.commit().await.unwrap();

    assert_eq!(artifact_round(&engine, &stores).await.deleted, 1);
    assert!(!dir.join("a.txt").exists());
}

/// The whole chain: a real agent stores a task's artifact in its default `file://` store,
/// the scheduler records what it reported, and retention deletes that very object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_artifact_is_recorded_and_deleted_by_retention() {
    let db = TestDatabase::postgres().await;
    let s = crate::runs::setup(&db).await;
    s.workflow(
        "build",
        json!({"nodes": [{"id": "build", "run": "echo built > $SWITCHYARD_ARTIFACTS/app.txt"}]}),
    )
    .await;
    let run = s.start("build").await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "completed", "{done:?}");
    let engine = engine(&db).await;
    let recorded = rows(&engine, &run).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let artifact = &recorded[0];
    assert_eq!(artifact.name, "app.txt");
    assert_eq!(artifact.size_bytes, 6);
    assert_eq!(
        artifact.sha256, "56f6e6304d02d413bb7d5d463ac5cdc58551266dc7269b467fc385815f39b913",
        "sha256 of \"built\\n\""
    );
    let path = PathBuf::from(artifact.location.strip_prefix("file://").unwrap());
    assert!(
        artifact.location.ends_with(&format!(
            "/{run}/{}-1/app.txt",
            recorded_task(&engine, artifact.task_id).await
        )),
        "{}",
        artifact.location
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"built\n");

    let stores = ObjectStores::new(&BTreeMap::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let deleted = loop {
        // Retention of zero: everything recorded so far is due.
        if let Some(done) = artifact_retention(&engine, &stores, Duration::ZERO)
            .await
            .unwrap()
        {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job lock stayed taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(deleted.deleted, 1);
    assert!(!path.exists());
    s.stop().await;
}
