//! `GET /api/v1/runs/{id}/events` end to end: a real agent runs the run while a client reads
//! its Server-Sent Events; refusals come as JSON errors before any stream; open streams end
//! when the gateway or the control plane stops, without holding up the drain.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::controlplane::v1::run_service_client::RunServiceClient;
use switchyard_proto::controlplane::v1::{Principal, RunStatus, WatchRunRequest};
use switchyard_runtime::auth::CallContext;
use switchyard_test_support::api::spawn_api_with;
use switchyard_test_support::cluster::channel;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, spawn_api};

use crate::runs::setup_with;

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

/// The order a completed run goes through.
const ORDER: [&str; 5] = [
    "queued",
    "provisioning",
    "running",
    "reporting",
    "completed",
];

#[derive(Debug)]
struct SseEvent {
    name: String,
    id: String,
    data: Value,
}

/// Parses a whole SSE body: blank-line separated blocks; comments (keep-alives) skipped.
fn parse(body: &str) -> Vec<SseEvent> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then(|| SseEvent {
                name,
                id,
                data: serde_json::from_str(&data).unwrap(),
            })
        })
        .collect()
}

async fn open(api: &Api, run: &str, token: &str) -> reqwest::Response {
    let response = api
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run}/events"),
            Some(token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    response
}

/// Reads the stream to its end: a server that did not close it fails the test here.
async fn read_to_end(response: reqwest::Response) -> Vec<SseEvent> {
    let body = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the stream closes once the run is final")
        .unwrap();
    parse(&body)
}

/// Reads until `count` events have arrived (the stream stays open).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<SseEvent> {
    let mut body = String::new();
    loop {
        let events = parse(&body);
        if events.len() >= count {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream is still open");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn statuses(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.name == "status")
        .map(|e| e.data["status"].as_str().unwrap().to_owned())
        .collect()
}

/// A real agent runs a run whose first task outlasts the gateway's request timeout; the stream
/// follows it to `completed` in state-machine order, then says `end` and closes. A stream
/// opened on the finished run gives its final status and `end` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_follows_a_real_run_to_completed_then_closes() {
    let db = TestDatabase::postgres().await;
    let request_timeout = Duration::from_secs(2);
    let s = Box::pin(setup_with(&db, |config| {
        config.http.request_timeout = request_timeout;
    }))
    .await;
    s.workflow(
        "slow",
        json!({"nodes": [
            {"id": "build", "run": "sleep 3"},
            {"id": "report", "needs": ["build"], "run": "echo '{\"reported\": true}' > $SWITCHYARD_OUTPUTS"}]}),
    )
    .await;
    let run = s.start("slow").await;
    let opened = Instant::now();
    let events = read_to_end(open(&s.api, &run, &s.ci).await).await;
    assert!(
        opened.elapsed() > request_timeout,
        "the stream outlived the request timeout"
    );

    let seen = statuses(&events);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("completed"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s == "running"), "{seen:?}");
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| ORDER.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "state-machine order, no duplicates: {seen:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last.name, "end", "{events:?}");
    assert_eq!(last.data, json!({"id": run, "status": "completed"}));
    assert_eq!(events.iter().filter(|e| e.name == "end").count(), 1);
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());

    // Each status event is the run as GET /runs/{id} shows it, without the task counts.
    let mut record = s
        .api
        .get(&format!("/api/v1/runs/{run}"), Some(&s.ci))
        .await
        .body;
    record.as_object_mut().unwrap().remove("tasks");
    let final_status = &events[events.len() - 2];
    assert_eq!(final_status.data, record);
    assert_eq!(final_status.data["final_state"]["reported"], true);

    let again = read_to_end(open(&s.api, &run, &s.ci).await).await;
    let names: Vec<&str> = again.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["status", "end"]);
    assert_eq!(again[0].data["status"], "completed");
    s.stop().await;
}

/// Unknown runs, missing tokens, foreign scopes and malformed ids answer with their status
/// and the JSON error body, never a 200 stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refusals_are_json_errors_before_any_stream() {
    let db = TestDatabase::postgres().await;
    let api = spawn_api(&db).await;
    let (project, ci) = project_with_run_token(&api).await;
    let run = queued_run(&api, &project, &ci).await;
    let reader = token(&api, &project, &["workflows:read"]).await;
    let unknown = "01900000-0000-7000-8000-000000000000";
    for (path, token, status, code) in [
        (
            format!("/api/v1/runs/{unknown}/events"),
            ADMIN,
            404,
            "not_found",
        ),
        (
            format!("/api/v1/runs/{run}/events"),
            None,
            401,
            "unauthenticated",
        ),
        (
            format!("/api/v1/runs/{run}/events"),
            Some("syt_nope"),
            401,
            "unauthenticated",
        ),
        (
            format!("/api/v1/runs/{run}/events"),
            Some(reader.as_str()),
            403,
            "permission_denied",
        ),
        (
            "/api/v1/runs/not-an-id/events".to_owned(),
            ADMIN,
            400,
            "invalid_argument",
        ),
    ] {
        let reply = api.get(&path, token).await;
        assert_eq!(reply.status, status, "{path}: {:?}", reply.body);
        assert_eq!(reply.code(), code, "{path}: {:?}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{path}"
        );
    }
    api.stop().await;
}

/// One caller keeps at most `http.event_streams_per_caller` streams open: past it, 429 with
/// `retry-after` and the JSON error, before any stream; another token still gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_one_token_cannot_hold_more_than_its_share_of_streams() {
    let db = TestDatabase::postgres().await;
    let api = spawn_api_with(&db, |config| config.http.event_streams_per_caller = 2).await;
    let (project, ci) = project_with_run_token(&api).await;
    let run = queued_run(&api, &project, &ci).await;
    let other = token(&api, &project, &["runs:read"]).await;

    let held = [open(&api, &run, &ci).await, open(&api, &run, &ci).await];
    // Status and headers first: a stream not refused would never end its body.
    let refused = api
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run}/events"),
            Some(&ci),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let header = |name: &str| refused.headers().get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("retry-after"), Some("5"));
    assert_eq!(header("content-type"), Some("application/json"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("2 open event streams"), "{message}");

    let mut others = open(&api, &run, &other).await;
    let first = read_events(&mut others, 1).await;
    assert_eq!(first[0].name, "status", "{first:?}");
    drop(held);
    api.stop().await;
}

/// Stopping the gateway ends its open streams with an `error` event, and stopping the control
/// plane ends its `WatchRun` streams with UNAVAILABLE: neither drain waits out its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_end_when_the_gateway_or_control_plane_stops() {
    let db = TestDatabase::postgres().await;
    let api = spawn_api(&db).await;
    let (project, ci) = project_with_run_token(&api).await;
    let run = queued_run(&api, &project, &ci).await;

    let mut http = open(&api, &run, &ci).await;
    let first = read_events(&mut http, 1).await;
    // The scheduler takes the run (`provisioning`) but no agent runs it: it stays open.
    let open_statuses = ["queued", "provisioning"];
    assert!(
        open_statuses.contains(&statuses(&first)[0].as_str()),
        "{first:?}"
    );
    let mut watch = RunServiceClient::new(channel(&api.cluster.control_plane));
    let mut grpc = watch
        .watch_run(admin_request(WatchRunRequest {
            run_id: run.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let current = grpc.message().await.unwrap().unwrap().run.unwrap();
    let open_statuses = [RunStatus::Queued as i32, RunStatus::Provisioning as i32];
    assert!(open_statuses.contains(&current.status), "{current:?}");

    let Api {
        cluster, gateway, ..
    } = api;
    let stopping = Instant::now();
    gateway.stop().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    let rest = read_to_end(http).await;
    let last = rest.last().expect("an error event");
    assert_eq!(last.name, "error", "{rest:?}");
    assert_eq!(last.data["error"]["code"], "unavailable");

    let stopping = Instant::now();
    cluster.control_plane.stop().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // A status change may still be on its way before the end.
        while let Some(message) = grpc.message().await? {
            let status = message.run.unwrap().status;
            assert!(open_statuses.contains(&status), "{status}");
        }
        Ok::<_, tonic::Status>(())
    })
    .await
    .expect("the watch ends with the service");
    assert_eq!(
        ended.expect_err("not a clean end").code(),
        tonic::Code::Unavailable
    );
    for service in [cluster.scheduler, cluster.monitoring, cluster.audit] {
        service.stop().await.unwrap();
    }
}

async fn project_with_run_token(api: &Api) -> (String, String) {
    let org = api
        .post("/api/v1/orgs", ADMIN, json!({"name": "sse"}))
        .await;
    let org = org.body["id"].as_str().unwrap().to_owned();
    let project = api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            ADMIN,
            json!({"name": "web"}),
        )
        .await;
    let project = project.body["id"].as_str().unwrap().to_owned();
    let ci = token(api, &project, &["runs:write", "workflows:write"]).await;
    (project, ci)
}

async fn token(api: &Api, project: &str, scopes: &[&str]) -> String {
    let reply = api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "t", "project_id": project, "scopes": scopes}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["token"].as_str().unwrap().to_owned()
}

/// A run that stays open (`queued`, then `provisioning`): no agent takes its task.
async fn queued_run(api: &Api, project: &str, ci: &str) -> String {
    let put = api
        .put(
            &format!("/api/v1/projects/{project}/workflows/idle"),
            Some(ci),
            json!({"nodes": [{"id": "build", "run": "true"}]}),
        )
        .await;
    assert!(matches!(put.status, 200 | 201), "{:?}", put.body);
    let run = api
        .post(
            &format!("/api/v1/projects/{project}/runs"),
            Some(ci),
            json!({"workflow": "idle"}),
        )
        .await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    run.body["id"].as_str().unwrap().to_owned()
}

/// A gRPC request as the platform admin, the way the gateway forwards one.
fn admin_request<T>(message: T) -> tonic::Request<T> {
    let ctx = CallContext {
        principal: Some(Principal {
            actor: Some(Actor {
                r#type: ActorType::Service as i32,
                id: "test".into(),
                display_name: "test".into(),
            }),
            platform_admin: true,
            ..Principal::default()
        }),
        ..CallContext::default()
    };
    let mut request = tonic::Request::new(message);
    ctx.write_to(request.metadata_mut());
    request
}
