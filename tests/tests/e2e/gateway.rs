//! The HTTP API as a CI client uses it: bootstrap → organization → project → service token →
//! workflow → run `queued` → the audit trail shows it. And every refusal a CI script can meet:
//! each with its status and JSON error, changing nothing.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_test_support::api::spawn_api_with;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, eventually, spawn_api};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

fn workflow() -> Value {
    json!({"nodes": [
        {"id": "build", "run": "make build", "timeout_s": 600},
        {"id": "test", "needs": ["build"], "run": "make test SHARD=$SWITCHYARD_SHARD_INDEX",
         "shards": 4, "allow_partial": true,
         "retry": {"max_attempts": 3, "initial_backoff_ms": 1000, "max_backoff_ms": 60000,
                   "non_retryable_exit_codes": [2]}},
        {"id": "report", "needs": ["test"], "run": "make report"}
    ]})
}

/// An organization and project made with the bootstrap token, and a project token.
struct Tenant {
    org: String,
    project: String,
    token: String,
    token_id: String,
}

async fn tenant(api: &Api, name: &str, scopes: &[&str]) -> Tenant {
    let org = api.post("/api/v1/orgs", ADMIN, json!({"name": name})).await;
    assert_eq!(org.status, 201, "{:?}", org.body);
    let org = org.body["id"].as_str().unwrap().to_owned();
    let project = api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            ADMIN,
            json!({"name": "web"}),
        )
        .await;
    assert_eq!(project.status, 201, "{:?}", project.body);
    assert_eq!(project.body["org_id"], org.as_str());
    let project = project.body["id"].as_str().unwrap().to_owned();
    let token = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "ci", "project_id": project, "scopes": scopes}),
        )
        .await;
    assert_eq!(token.status, 201, "{:?}", token.body);
    Tenant {
        org,
        project,
        token: token.body["token"].as_str().unwrap().to_owned(),
        token_id: token.body["id"].as_str().unwrap().to_owned(),
    }
}

async fn ci_client_flow(db: TestDatabase) {
    let api = spawn_api(&db).await;
    let t = tenant(&api, "acme", &["runs:write", "workflows:write"]).await;
    let ci = Some(t.token.as_str());
    assert!(t.token.starts_with("syt_"));

    let project = api
        .get(&format!("/api/v1/projects/{}", t.project), ci)
        .await;
    assert_eq!(project.status, 200, "{:?}", project.body);
    assert_eq!(project.body["name"], "web");
    assert!(project.body["created_at"].as_str().unwrap().ends_with('Z'));

    let path = format!("/api/v1/projects/{}/workflows/pipeline", t.project);
    let put = api.put(&path, ci, workflow()).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(put.body["version"], 1);
    let again = api.put(&path, ci, workflow()).await;
    assert_eq!(
        (again.status, &again.body["version"]),
        (200, &json!(1)),
        "unchanged definition keeps its version"
    );
    let yaml = "nodes:\n  - id: build\n    run: make build\n";
    let v2 = api
        .send(
            api.request(reqwest::Method::PUT, &path, ci)
                .header("content-type", "application/yaml")
                .body(yaml),
        )
        .await;
    assert_eq!(
        (v2.status, &v2.body["version"]),
        (201, &json!(2)),
        "{:?}",
        v2.body
    );
    let v1 = api.get(&format!("{path}?version=1"), ci).await;
    assert_eq!(v1.body["definition"]["nodes"][1]["shards"], 4);

    let runs = format!("/api/v1/projects/{}/runs", t.project);
    let run = api
        .post(
            &runs,
            ci,
            json!({"workflow": "pipeline", "version": 1, "params": {"branch": "main"}}),
        )
        .await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    assert_eq!(run.body["status"], "queued");
    assert_eq!(run.body["version"], 1);
    let run_id = run.body["id"].as_str().unwrap().to_owned();

    // The scheduler takes the run from the control plane's outbox and reports it back.
    let got = eventually(
        "the scheduler took the run",
        Duration::from_secs(20),
        || async {
            let reply = api.get(&format!("/api/v1/runs/{run_id}"), ci).await;
            (reply.body["status"] == "provisioning").then_some(reply)
        },
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["params"]["branch"], "main");
    // No agent here: the first node's task waits in the queue.
    assert_eq!(got.body["tasks"]["total"], 1, "{:?}", got.body);
    assert_eq!(got.body["tasks"]["queued"], 1);
    assert!(got.header("x-request-id").is_some_and(|id| !id.is_empty()));
    let echoed = api
        .send(
            api.request(reqwest::Method::GET, &format!("/api/v1/runs/{run_id}"), ci)
                .header("x-request-id", "ci-job-42"),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("ci-job-42"));

    let listed = api.get(&format!("{runs}?status=provisioning"), ci).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["id"], run_id.as_str());
    assert_eq!(listed.body["next_cursor"], Value::Null);

    // The audit trail shows the run, who created it, and from which request.
    let audit_path = format!("/api/v1/audit/events?action=run.created&resource_id={run_id}");
    let event = eventually(
        "run.created in the audit trail",
        Duration::from_secs(20),
        || async {
            let reply = api.get(&audit_path, ADMIN).await;
            reply.body["items"]
                .as_array()
                .and_then(|items| items.first().cloned())
        },
    )
    .await;
    assert_eq!(event["actor_type"], "service_token");
    assert_eq!(event["actor_id"], t.token_id.as_str());
    assert_eq!(event["project_id"], t.project.as_str());
    assert_eq!(event["outcome"], "success");
    assert!(
        event["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let verify = api.get("/api/v1/audit/verify", ADMIN).await;
    assert_eq!(verify.body["ok"], true, "{:?}", verify.body);
    assert!(verify.body["checked"].as_u64().unwrap() >= 5);

    // The CI token is not an admin: the audit trail is closed to it.
    assert_eq!(api.get("/api/v1/audit/events", ci).await.status, 403);

    // Cancelling a run the scheduler holds: accepted now, `cancelled` once the scheduler has
    // stopped its tasks and said so.
    let cancel = api
        .post(&format!("/api/v1/runs/{run_id}/cancel"), ci, json!({}))
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    let cancelled = eventually("the run is cancelled", Duration::from_secs(20), || async {
        let reply = api.get(&format!("/api/v1/runs/{run_id}"), ci).await;
        (reply.body["status"] == "cancelled").then_some(reply)
    })
    .await;
    assert!(
        cancelled.body["finished_at"].is_string(),
        "{:?}",
        cancelled.body
    );
    let again = api
        .post(&format!("/api/v1/runs/{run_id}/cancel"), ci, json!({}))
        .await;
    assert_eq!((again.status, again.code()), (409, "failed_precondition"));
    api.stop().await;
}

#[tokio::test]
async fn ci_client_flow_on_postgres_and_redis() {
    Box::pin(ci_client_flow(TestDatabase::postgres().await)).await;
}

#[tokio::test]
async fn ci_client_flow_on_sqlite() {
    Box::pin(ci_client_flow(TestDatabase::sqlite())).await;
}

/// How many runs the project has (as the bootstrap admin sees them).
pub(crate) async fn run_count(api: &Api, project: &str) -> usize {
    let reply = api
        .get(&format!("/api/v1/projects/{project}/runs"), ADMIN)
        .await;
    reply.body["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn every_refusal_has_its_status_and_changes_nothing() {
    let db = TestDatabase::postgres().await;
    let api = spawn_api_with(&db, |c| c.http.max_body_bytes = 4096).await;
    let a = tenant(&api, "alpha", &["runs:write", "workflows:write"]).await;
    let b = tenant(&api, "beta", &["runs:write"]).await;
    let ok = Some(a.token.as_str());
    let workflows = format!("/api/v1/projects/{}/workflows/pipeline", a.project);
    assert_eq!(api.put(&workflows, ok, workflow()).await.status, 201);
    let runs = format!("/api/v1/projects/{}/runs", a.project);
    let start = json!({"workflow": "pipeline"});

    // Missing, malformed, unknown tokens: 401 with the JSON error body.
    let missing = api.post(&runs, None, start.clone()).await;
    assert_eq!((missing.status, missing.code()), (401, "unauthenticated"));
    assert!(missing.header("x-request-id").is_some());
    let typo = format!("{}x", &a.token[..a.token.len() - 1]);
    assert_eq!(
        api.post(&runs, Some(&typo), start.clone()).await.status,
        401
    );
    assert_eq!(
        api.post(&runs, Some("not-a-token"), start.clone())
            .await
            .status,
        401
    );
    let basic = api
        .send(
            api.request(reqwest::Method::GET, &runs, None)
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_eq!(basic.status, 401);

    // Another project's token: 403, and the refusal is audited as denied.
    let foreign = api.post(&runs, Some(&b.token), start.clone()).await;
    assert_eq!(
        (foreign.status, foreign.code()),
        (403, "permission_denied"),
        "{:?}",
        foreign.body
    );
    let b_reads_a = api
        .get(&format!("/api/v1/projects/{}", a.project), Some(&b.token))
        .await;
    assert_eq!(b_reads_a.status, 403);
    assert!(b_reads_a.body["error"].get("details").is_some());

    // A token without the scope: 403.
    let reader = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "ro", "project_id": a.project, "scopes": ["runs:read"]}),
        )
        .await;
    let reader = reader.body["token"].as_str().unwrap().to_owned();
    let no_scope = api.post(&runs, Some(&reader), start.clone()).await;
    assert_eq!(no_scope.status, 403);
    assert!(
        no_scope.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("runs:write")
    );
    assert_eq!(
        api.get(&runs, Some(&reader)).await.status,
        200,
        "read scope reads"
    );

    // Malformed JSON, wrong shapes, oversized bodies: 400 / 413, never 500.
    let broken = api
        .send(
            api.request(reqwest::Method::POST, &runs, ok)
                .header("content-type", "application/json")
                .body("{\"workflow\": "),
        )
        .await;
    assert_eq!(
        (broken.status, broken.code()),
        (400, "invalid_argument"),
        "{:?}",
        broken.body
    );
    let wrong_type = api.post(&runs, ok, json!({"workflow": 7})).await;
    assert_eq!(wrong_type.status, 400);
    let bad_params = api
        .post(&runs, ok, json!({"workflow": "pipeline", "params": [1, 2]}))
        .await;
    assert_eq!(bad_params.status, 400);
    let huge = api
        .post(
            &runs,
            ok,
            json!({"workflow": "pipeline", "params": {"blob": "x".repeat(10_000)}}),
        )
        .await;
    assert_eq!(
        (huge.status, huge.code()),
        (413, "payload_too_large"),
        "{:?}",
        huge.body
    );
    let unknown_workflow = api.post(&runs, ok, json!({"workflow": "nope"})).await;
    assert_eq!(unknown_workflow.status, 404);
    let bad_id = api.get("/api/v1/runs/not-an-id", ok).await;
    assert_eq!(bad_id.status, 400);
    let unknown_route = api.get("/api/v1/nothing-here", ok).await;
    assert_eq!(
        (unknown_route.status, unknown_route.code()),
        (404, "not_found")
    );

    // An invalid workflow: 422 listing every problem, and no new version.
    let invalid = json!({"nodes": [
        {"id": "a", "run": "x", "shards": 0},
        {"id": "b", "run": "x", "needs": ["ghost"]},
        {"id": "c", "run": "x", "needs": ["d"]},
        {"id": "d", "run": "x", "needs": ["c"]},
        {"id": "e", "run": "x", "retry": {"max_attempts": 0}}
    ]});
    let refused = api.put(&workflows, ok, invalid).await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "unprocessable"),
        "{:?}",
        refused.body
    );
    let reasons: Vec<&str> = refused.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["zero_shards", "invalid_retry", "unknown_dependency"],
        "cycles are checked once ids resolve"
    );
    let cyclic = json!({"nodes": [{"id": "c", "run": "x", "needs": ["d"]}, {"id": "d", "run": "x", "needs": ["c"]}]});
    let refused = api.put(&workflows, ok, cyclic).await;
    assert_eq!(refused.body["error"]["details"][0]["reason"], "cycle");
    assert_eq!(api.get(&workflows, ok).await.body["version"], 1);

    assert_eq!(
        run_count(&api, &a.project).await,
        0,
        "no refused request created a run"
    );

    // Revocation wins at once, even with the answer cached a moment ago.
    assert_eq!(api.get(&runs, ok).await.status, 200);
    let revoked = api
        .delete(
            &format!("/api/v1/auth/service-tokens/{}", a.token_id),
            ADMIN,
        )
        .await;
    assert_eq!(revoked.status, 204);
    let after = api.get(&runs, ok).await;
    assert_eq!(after.status, 401, "{:?}", after.body);
    assert!(
        after.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let listed = api
        .get(
            &format!("/api/v1/auth/service-tokens?org_id={}", a.org),
            ADMIN,
        )
        .await;
    let token = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == a.token_id.as_str())
        .cloned()
        .unwrap();
    assert!(token["revoked_at"].is_string());
    assert!(token["last_used_at"].is_string());
    assert!(token.get("token").is_none(), "no secret in lists");

    // An expiring token works until it expires, then answers 401.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let expiring = api
        .post("/api/v1/auth/service-tokens", ADMIN, json!({"name": "short", "project_id": b.project, "scopes": ["runs:read"], "expires_at": soon}))
        .await;
    assert_eq!(expiring.status, 201, "{:?}", expiring.body);
    let expiring = expiring.body["token"].as_str().unwrap().to_owned();
    let b_runs = format!("/api/v1/projects/{}/runs", b.project);
    assert_eq!(api.get(&b_runs, Some(&expiring)).await.status, 200);
    eventually(
        "the expired token is refused",
        Duration::from_secs(10),
        || async { (api.get(&b_runs, Some(&expiring)).await.status == 401).then_some(()) },
    )
    .await;
    let past = api
        .post("/api/v1/auth/service-tokens", ADMIN, json!({"name": "old", "project_id": b.project, "scopes": ["runs:read"], "expires_at": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!(past.status, 400);

    // Denied calls are in the audit trail.
    let denied = eventually("denied calls audited", Duration::from_secs(20), || async {
        let reply = api
            .get("/api/v1/audit/events?action=run.create", ADMIN)
            .await;
        let items = reply.body["items"].as_array()?.clone();
        (items.len() >= 2).then_some(items)
    })
    .await;
    assert!(denied.iter().all(|e| e["outcome"] == "denied"));
    // Including calls with no token at all (an anonymous actor must not poison the outbox).
    let anonymous = eventually(
        "anonymous refusal audited",
        Duration::from_secs(20),
        || async {
            let reply = api
                .get(
                    "/api/v1/audit/events?action=auth.authenticate&actor=anonymous",
                    ADMIN,
                )
                .await;
            reply.body["items"]
                .as_array()
                .filter(|items| !items.is_empty())
                .cloned()
        },
    )
    .await;
    assert_eq!(anonymous[0]["outcome"], "denied");
    api.stop().await;
}

#[tokio::test]
async fn users_log_in_and_act_by_role() {
    let db = TestDatabase::sqlite();
    let api = spawn_api(&db).await;
    let t = tenant(&api, "gamma", &["runs:read"]).await;
    let users = format!("/api/v1/orgs/{}/users", t.org);
    let created = api
        .post(
            &users,
            ADMIN,
            json!({"username": "vera", "password": "a long passphrase", "role": "viewer"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["role"], "viewer");
    let weak = api
        .post(
            &users,
            ADMIN,
            json!({"username": "wes", "password": "short", "role": "viewer"}),
        )
        .await;
    assert_eq!(weak.status, 400);
    let taken = api
        .post(
            &users,
            ADMIN,
            json!({"username": "vera", "password": "a long passphrase", "role": "admin"}),
        )
        .await;
    assert_eq!(taken.status, 409);

    let wrong = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "vera", "password": "wrong password"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthenticated"));
    let nobody = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await;
    assert_eq!(nobody.status, 401);
    let login = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "vera", "password": "a long passphrase"}),
        )
        .await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let viewer = Some(access.as_str());
    assert_eq!(
        api.get(&format!("/api/v1/projects/{}", t.project), viewer)
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(&format!("/api/v1/projects/{}/runs", t.project), viewer)
            .await
            .status,
        200
    );
    let write = api
        .put(
            &format!("/api/v1/projects/{}/workflows/w", t.project),
            viewer,
            workflow(),
        )
        .await;
    assert_eq!(write.status, 403, "viewers do not write");
    let org = api
        .post("/api/v1/orgs", viewer, json!({"name": "mine"}))
        .await;
    assert_eq!(org.status, 403, "only platform admins create organizations");
    api.stop().await;
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let db = TestDatabase::sqlite();
    let api = spawn_api_with(&db, |c| {
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let t = tenant(&api, "delta", &["runs:read"]).await;
    let path = format!("/api/v1/projects/{}/runs", t.project);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(api.get(&path, Some(&t.token)).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("a request over the burst is limited");
    assert_eq!(limited.code(), "resource_exhausted");
    assert!(
        limited
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
    api.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document_are_public() {
    let db = TestDatabase::sqlite();
    let api = spawn_api(&db).await;
    assert_eq!(api.get("/healthz", None).await.status, 200);
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    assert_eq!(ready.body["services"].as_array().unwrap().len(), 4);
    let status = api.get("/api/v1/status", None).await;
    assert!(status.body["version"].is_string());
    let document = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(document.status, 200);
    assert!(document.body["openapi"].as_str().unwrap().starts_with("3."));
    assert!(document.body["paths"]["/api/v1/projects/{project_id}/runs"]["post"].is_object());
    let metrics = api.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("gateway_http_requests_total"), "{text}");

    // With a service down, readiness says which one and answers 503.
    let Api {
        cluster,
        gateway,
        http,
    } = api;
    cluster.monitoring.stop().await.unwrap();
    let reply = reqwest::get(format!("{}/readyz", http.base)).await.unwrap();
    assert_eq!(reply.status().as_u16(), 503);
    let body: Value = reply.json().await.unwrap();
    let down: Vec<&Value> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "serving")
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["name"], "monitoring");
    gateway.stop().await.unwrap();
    for service in [cluster.control_plane, cluster.scheduler, cluster.audit] {
        service.stop().await.unwrap();
    }
}
