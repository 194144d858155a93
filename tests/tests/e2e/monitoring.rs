//! Monitoring's execution history through the real event sink and the gateway: lifecycle
//! events delivered over gRPC in batches — with duplicates, a batch delivered twice, and
//! finishes arriving before their LEASED, across and within batches — become one history row
//! per ended attempt that never moves backwards, and running attempts entries of the active
//! view that a late LEASED never reopens; history and active tasks read back through the HTTP
//! API with each token seeing only its tenancy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchyard_proto::events::v1::event_sink_client::EventSinkClient;
use switchyard_proto::events::v1::{
    DeliverRequest, Event, RunStatusChanged, TaskLifecycle, TaskPhase, event::Payload,
};
use switchyard_runtime::time::to_proto;
use switchyard_test_support::cluster::channel;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, eventually, spawn_api};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An organization with a project, and a token for each scope of access.
struct Tenant {
    org: String,
    project: String,
    token: String,
}

async fn tenant(api: &Api, name: &str) -> Tenant {
    let org = api.post("/api/v1/orgs", ADMIN, json!({"name": name})).await;
    let org = org.body["id"].as_str().unwrap().to_owned();
    let project = api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            ADMIN,
            json!({"name": "web"}),
        )
        .await;
    let project = project.body["id"].as_str().unwrap().to_owned();
    let token = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "ci", "project_id": project, "scopes": ["runs:read"]}),
        )
        .await;
    assert_eq!(token.status, 201, "{:?}", token.body);
    Tenant {
        org,
        project,
        token: token.body["token"].as_str().unwrap().to_owned(),
    }
}

/// One attempt's identity; events about it are built from it.
#[derive(Clone)]
struct Attempt {
    task: String,
    run: String,
    project: String,
    node: &'static str,
    shard: u32,
    attempt: u32,
}

fn at(base: DateTime<Utc>, seconds: i64) -> Option<prost_types::Timestamp> {
    Some(to_proto(base + chrono::Duration::seconds(seconds)))
}

fn event(payload: Payload) -> Event {
    Event {
        id: id(),
        source: "scheduler".into(),
        occurred_at: Some(to_proto(Utc::now())),
        payload: Some(payload),
    }
}

fn lifecycle(a: &Attempt, phase: TaskPhase, base: DateTime<Utc>) -> Event {
    let finished = phase != TaskPhase::Leased;
    event(Payload::TaskLifecycle(TaskLifecycle {
        task_id: a.task.clone(),
        run_id: a.run.clone(),
        project_id: a.project.clone(),
        // LEASED may come without the workflow.
        workflow: if finished {
            "pipeline".into()
        } else {
            String::new()
        },
        node: a.node.into(),
        shard_index: a.shard,
        shard_count: 2,
        attempt: a.attempt,
        iteration: 0,
        phase: phase as i32,
        agent_id: "agent-1".into(),
        exit_code: (phase == TaskPhase::RetryScheduled).then_some(1),
        error: match phase {
            TaskPhase::RetryScheduled => "exit code 1".into(),
            TaskPhase::LeaseExpired => "lease expired".into(),
            _ => String::new(),
        },
        retry_reason: match phase {
            TaskPhase::RetryScheduled => "exit_code_1".into(),
            TaskPhase::LeaseExpired => "lease_expired".into(),
            _ => String::new(),
        },
        queued_at: at(base, 0),
        started_at: at(base, 2),
        finished_at: if finished { at(base, 7) } else { None },
        not_before: if finished { at(base, 9) } else { None },
        // These attempts' LEASED steps are sent (some late).
        leased_unsent: false,
    }))
}

async fn deliver(api: &Api, events: &[Event]) -> (u32, u32) {
    let mut sink = EventSinkClient::new(channel(&api.cluster.monitoring));
    let answer = sink
        .deliver(DeliverRequest {
            events: events.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.accepted, answer.duplicates)
}

fn items(reply: &switchyard_test_support::Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

/// `(task_id, attempt)` of each item, sorted.
fn keys(items: &[Value]) -> Vec<(String, u64)> {
    let mut keys: Vec<_> = items
        .iter()
        .map(|i| {
            (
                i["task_id"].as_str().unwrap().to_owned(),
                i["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn key(a: &Attempt) -> (String, u64) {
    (a.task.clone(), u64::from(a.attempt))
}

/// Waits for monitoring's first reconciliation of its active view with the scheduler: it
/// drops attempts the scheduler does not lease, which synthetic events (here and in
/// `active_tasks`) are, so they go in after it (the next one is `active.reconcile_interval`,
/// 30 s, away).
pub(crate) async fn first_reconciliation() {
    let series = format!(
        "{}{{service=\"monitoring\"}}",
        switchyard_monitoring::metrics::ACTIVE_RECONCILES
    );
    eventually(
        "monitoring reconciled its active view once",
        std::time::Duration::from_secs(20),
        || async {
            let text = switchyard_runtime::metrics::handle().render();
            text.lines()
                .any(|line| line.starts_with(&series))
                .then_some(())
        },
    )
    .await;
}

async fn monitoring_history(db: TestDatabase) {
    let api = spawn_api(&db).await;
    first_reconciliation().await;
    let a = tenant(&api, "acme").await;
    let b = tenant(&api, "globex").await;
    let (run, build, test) = (id(), id(), id());
    let attempt = |task: &str, node, shard, attempt, project: &str, run: &str| Attempt {
        task: task.to_owned(),
        run: run.to_owned(),
        project: project.to_owned(),
        node,
        shard,
        attempt,
    };
    let build1 = attempt(&build, "build", 0, 1, &a.project, &run);
    let build2 = attempt(&build, "build", 0, 2, &a.project, &run);
    let test0 = attempt(&test, "test", 0, 1, &a.project, &run);
    let test1 = attempt(&id(), "test", 1, 1, &a.project, &run);
    let foreign = attempt(&id(), "build", 0, 1, &b.project, &id());
    let base = Utc::now() - chrono::Duration::seconds(60);

    // Batch 1: a finish before its LEASED, an event twice, a heartbeat and a foreign payload.
    let leased_test0 = lifecycle(&test0, TaskPhase::Leased, base);
    let first = vec![
        lifecycle(&build1, TaskPhase::RetryScheduled, base),
        lifecycle(&build2, TaskPhase::Leased, base),
        leased_test0.clone(),
        leased_test0.clone(),
        lifecycle(&foreign, TaskPhase::Leased, base),
        lifecycle(&test0, TaskPhase::Heartbeat, base),
        event(Payload::RunStatusChanged(RunStatusChanged {
            run_id: run.clone(),
            status: "running".into(),
            ..RunStatusChanged::default()
        })),
    ];
    assert_eq!(deliver(&api, &first).await, (6, 1));
    // The relay retried the batch: nothing new.
    assert_eq!(deliver(&api, &first).await, (0, 7));
    // Batch 2: the late LEASED of the retried attempt, the retry's success, an attempt whose
    // lease expired with its LEASED after it in the same batch, and an old event again.
    let second = vec![
        lifecycle(&build1, TaskPhase::Leased, base),
        lifecycle(&build2, TaskPhase::Succeeded, base),
        lifecycle(&test1, TaskPhase::LeaseExpired, base),
        lifecycle(&test1, TaskPhase::Leased, base),
        leased_test0,
    ];
    assert_eq!(deliver(&api, &second).await, (4, 1));

    let ci = Some(a.token.as_str());
    let history = |query: String, token| {
        let api = &api;
        async move {
            api.get(&format!("/api/v1/monitoring/tasks/history?{query}"), token)
                .await
        }
    };
    let rows = items(&history(format!("run_id={run}"), ci).await);
    assert_eq!(
        keys(&rows),
        {
            let mut k = vec![key(&build1), key(&build2), key(&test1)];
            k.sort();
            k
        },
        "one row per ended attempt (the running one is in the active view): {rows:?}"
    );
    let row = |a: &Attempt| {
        rows.iter()
            .find(|r| r["task_id"] == a.task.as_str() && r["attempt"] == a.attempt)
            .unwrap()
            .clone()
    };
    let retried = row(&build1);
    assert_eq!(
        retried["status"], "retrying",
        "a late LEASED must not reopen it"
    );
    assert_eq!(retried["exit_code"], 1);
    assert_eq!(retried["error"], "exit code 1");
    assert_eq!(retried["retry_reason"], "exit_code_1");
    assert_eq!(retried["workflow"], "pipeline");
    assert_eq!(retried["agent_id"], "agent-1");
    assert_eq!(retried["project_id"], a.project.as_str());
    assert_eq!(retried["shard_count"], 2);
    assert_eq!(retried["wait_ms"], 2000);
    assert_eq!(retried["run_ms"], 5000);
    assert!(retried["finished_at"].as_str().unwrap().ends_with('Z'));
    let succeeded = row(&build2);
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(
        succeeded["workflow"], "pipeline",
        "the finish fills the workflow"
    );
    assert_eq!(succeeded["exit_code"], Value::Null);
    assert_eq!(succeeded["run_ms"], 5000);
    let expired = row(&test1);
    assert_eq!(expired["status"], "lease_expired");
    assert_eq!(expired["retry_reason"], "lease_expired");

    // Pages, filters.
    let page = history(format!("run_id={run}&limit=2"), ci).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = history(format!("run_id={run}&limit=2&cursor={cursor}"), ci).await;
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let mut paged = items(&page);
    paged.extend(items(&rest));
    assert_eq!(keys(&paged), keys(&rows));
    let only = items(&history(format!("run_id={run}&status=retrying"), ci).await);
    assert_eq!(keys(&only), vec![key(&build1)]);
    let since =
        (base + chrono::Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ended = items(&history(format!("project_id={}&since={since}", a.project), ci).await);
    assert_eq!(ended.len(), 3, "running attempts have not ended: {ended:?}");
    let later =
        (base + chrono::Duration::seconds(8)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(items(&history(format!("since={later}"), ci).await).is_empty());
    assert_eq!(history("status=leased".into(), ci).await.status, 400);
    assert_eq!(history("since=yesterday".into(), ci).await.status, 400);
    assert_eq!(history("cursor=abc".into(), ci).await.status, 400);

    // Active tasks: the running attempt only.
    let active = items(&api.get("/api/v1/monitoring/tasks/active", ci).await);
    assert_eq!(keys(&active), vec![key(&test0)]);
    assert_eq!(active[0]["status"], "running");
    assert_eq!(active[0]["agent_id"], "agent-1");
    assert!(active[0]["running_ms"].as_i64().unwrap() >= 58_000);
    assert_eq!(active[0]["workflow"], Value::Null);
    assert_eq!(active[0]["wait_ms"], 2000);
    let named = format!("/api/v1/monitoring/tasks/active?project_id={}", a.project);
    assert_eq!(keys(&items(&api.get(&named, ci).await)), vec![key(&test0)]);

    // Tenancy: the other organization's token sees its own attempt only (running: no history
    // row yet), and naming A's project is refused (and audited); no token at all is 401.
    let other = Some(b.token.as_str());
    assert!(items(&history(String::new(), other).await).is_empty());
    let active = items(&api.get("/api/v1/monitoring/tasks/active", other).await);
    assert_eq!(keys(&active), vec![key(&foreign)]);
    let refused = history(format!("project_id={}", a.project), other).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.code(), "permission_denied");
    assert_eq!(api.get(&named, other).await.status, 403);
    assert_eq!(history(String::new(), None).await.status, 401);
    assert_eq!(
        api.get("/api/v1/monitoring/tasks/active", None)
            .await
            .status,
        401
    );
    // An organization token sees its organization's projects; the platform admin everything.
    let org_token = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "ops", "org_id": a.org, "scopes": ["runs:read"]}),
        )
        .await;
    let org_token = org_token.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        keys(&items(&history(String::new(), Some(&org_token)).await)),
        keys(&rows)
    );
    assert_eq!(items(&history(String::new(), ADMIN).await).len(), 3);

    // A token of the project without `runs:read` is refused by monitoring itself, audited.
    let no_read = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "wf", "project_id": a.project, "scopes": ["workflows:read"]}),
        )
        .await;
    let no_read = no_read.body["token"].as_str().unwrap().to_owned();
    assert_eq!(history(String::new(), Some(&no_read)).await.status, 403);
    let named_history = format!("project_id={}", a.project);
    assert_eq!(history(named_history, Some(&no_read)).await.status, 403);
    eventually(
        "monitoring's refusals audited",
        Duration::from_secs(20),
        || async {
            let reply = api
                .get("/api/v1/audit/events?action=task.history", ADMIN)
                .await;
            let items = reply.body["items"].as_array()?.clone();
            (items.len() == 2 && items.iter().all(|e| e["outcome"] == "denied")).then_some(())
        },
    )
    .await;

    let audit = format!("/api/v1/audit/events?resource_id={}", a.project);
    eventually("the refusal audited", Duration::from_secs(20), || async {
        let reply = api.get(&audit, ADMIN).await;
        let items = reply.body["items"].as_array()?.clone();
        items
            .iter()
            .any(|e| e["outcome"] == "denied" && e["org_id"] == a.org.as_str())
            .then_some(())
    })
    .await;
    api.stop().await;
}

#[tokio::test]
async fn monitoring_history_on_postgres() {
    Box::pin(monitoring_history(TestDatabase::postgres().await)).await;
}

#[tokio::test]
async fn monitoring_history_on_sqlite() {
    Box::pin(monitoring_history(TestDatabase::sqlite())).await;
}
