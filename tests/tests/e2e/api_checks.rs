//! API checks, API usage and Prometheus metrics end to end: a local HTTP server registered as
//! a check goes healthy and, once stopped, unhealthy with an error; a gRPC check against a
//! running service's health endpoint is healthy; bad definitions are refused and change
//! nothing; requests through the gateway show up in the usage with their errors; and a scrape
//! after a run with a retry shows the task histograms, the retry counter and the queue depth.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_test_support::{BOOTSTRAP_TOKEN, TestDatabase, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runs::{Setup, setup_full};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

/// Probes every 200 ms, may probe loopback (the test's server and services), the gateway
/// reports usage every second and the scheduler refreshes the queue depth every second.
async fn setup(db: &TestDatabase) -> Setup {
    setup_full(
        db,
        |gateway| gateway.usage.interval = Duration::from_secs(1),
        |scheduler| scheduler.engine.queue_depth_interval = Duration::from_secs(1),
        |monitoring| {
            monitoring.checks.tick = Duration::from_millis(200);
            monitoring.checks.target_policy.allow_loopback = true;
            monitoring.alerts.evaluation_interval = Duration::from_millis(200);
        },
    )
    .await
}

/// A tiny HTTP server answering 200 to everything, until the task is aborted.
async fn http_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 2048];
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

async fn health(s: &Setup) -> Vec<Value> {
    let reply = s
        .api
        .get(
            &format!("/api/v1/monitoring/apis/health?project_id={}", s.project),
            ADMIN,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["items"].as_array().cloned().unwrap_or_default()
}

fn named<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.iter().find(|c| c["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_checks_follow_http_and_grpc_targets_on_postgres() {
    Box::pin(api_checks_follow_http_and_grpc_targets(
        TestDatabase::postgres().await,
    ))
    .await;
}

/// Embedded mode's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_checks_follow_http_and_grpc_targets_on_sqlite() {
    Box::pin(api_checks_follow_http_and_grpc_targets(
        TestDatabase::sqlite(),
    ))
    .await;
}

async fn api_checks_follow_http_and_grpc_targets(db: TestDatabase) {
    let s = setup(&db).await;
    let (addr, server) = http_server().await;
    let checks = "/api/v1/monitoring/apis/checks";
    let local = s
        .api
        .post(
            checks,
            ADMIN,
            json!({"project_id": s.project, "name": "local", "protocol": "http",
                   "target": format!("http://{addr}/healthz"), "interval_s": 5, "timeout_ms": 1000}),
        )
        .await;
    assert_eq!(local.status, 201, "{:?}", local.body);
    assert_eq!(local.body["interval_s"], 5);
    let scheduler = s.api.cluster.scheduler.grpc_addr;
    let grpc = s
        .api
        .post(
            checks,
            ADMIN,
            json!({"project_id": s.project, "name": "scheduler", "protocol": "grpc",
                   "target": format!("127.0.0.1:{}", scheduler.port()), "interval_s": 5}),
        )
        .await;
    assert_eq!(grpc.status, 201, "{:?}", grpc.body);

    // Bad definitions and callers are refused and change nothing.
    for (body, field) in [
        (
            json!({"project_id": s.project, "name": "x", "protocol": "ftp", "target": "http://a/"}),
            "protocol",
        ),
        (
            json!({"project_id": s.project, "name": "x", "protocol": "http", "target": "http://a/", "interval_s": 1}),
            "interval",
        ),
        (
            json!({"project_id": s.project, "name": "x", "protocol": "http",
                   "target": "http://169.254.169.254/latest/meta-data/"}),
            "metadata",
        ),
        (
            json!({"project_id": s.project, "name": "x", "protocol": "grpc", "target": "no-port"}),
            "host:port",
        ),
        (
            json!({"project_id": s.project, "name": "local", "protocol": "http", "target": "http://10.0.0.1/"}),
            "already has",
        ),
    ] {
        let reply = s.api.post(checks, ADMIN, body.clone()).await;
        assert!(
            matches!(reply.status, 400 | 409),
            "{body}: {:?}",
            reply.body
        );
        let text = reply.body.to_string();
        assert!(text.contains(field), "{body}: {text}");
    }
    let not_admin = s
        .api
        .post(
            checks,
            Some(&s.ci),
            json!({"project_id": s.project, "name": "ci", "protocol": "http", "target": "http://10.0.0.1/"}),
        )
        .await;
    assert_eq!(not_admin.status, 403, "{:?}", not_admin.body);
    assert_eq!(health(&s).await.len(), 2);

    let both = eventually(
        "both checks are healthy",
        Duration::from_secs(30),
        || async {
            let items = health(&s).await;
            let ok = |name| named(&items, name).is_some_and(|c| c["healthy"] == true);
            (ok("local") && ok("scheduler")).then_some(items)
        },
    )
    .await;
    for check in &both {
        assert_eq!(check["availability"], 1.0, "{check:?}");
        assert!(check["last_checked_at"].is_string(), "{check:?}");
        assert!(check["last_latency_ms"].is_i64(), "{check:?}");
    }

    // An API_CHECK_FAILING rule: one alert per failing check, none while both pass.
    let rules = format!("/api/v1/projects/{}/alert-rules", s.project);
    let rule = s
        .api
        .post(
            &rules,
            ADMIN,
            json!({"name": "checks", "kind": "api_check_failing", "threshold": 1}),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let rule_id = rule.body["id"].as_str().unwrap().to_owned();
    let firing_path = format!(
        "/api/v1/monitoring/alerts?project_id={}&state=firing",
        s.project
    );

    server.abort();
    let down = eventually(
        "the stopped server's check fails",
        Duration::from_secs(30),
        || async {
            let items = health(&s).await;
            named(&items, "local")
                .filter(|c| c["healthy"] == false)
                .cloned()
        },
    )
    .await;
    let error = down["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("connect"), "{down:?}");
    let availability = down["availability"].as_f64().unwrap();
    assert!(availability > 0.0 && availability < 1.0, "{down:?}");

    // The failing check is what the alert evaluator will see.
    let conn = db.connect("monitoring").await;
    let failing = switchyard_monitoring::store::checks::failing_checks(&conn, &s.project)
        .await
        .unwrap();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].0.name, "local");
    let alert = eventually(
        "the check's alert fires",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&firing_path, ADMIN).await;
            reply.body["items"].as_array()?.first().cloned()
        },
    )
    .await;
    let local_id = local.body["id"].as_str().unwrap();
    assert_eq!(alert["kind"], "api_check_failing");
    assert_eq!(
        alert["dedupe_key"],
        format!("{rule_id}:check:{local_id}").as_str()
    );
    assert!(
        alert["message"]
            .as_str()
            .unwrap_or_default()
            .contains("local"),
        "{alert:?}"
    );
    let firing = s.api.get(&firing_path, ADMIN).await;
    assert_eq!(
        firing.body["items"].as_array().map(Vec::len),
        Some(1),
        "only the failing check: {:?}",
        firing.body
    );

    let id = grpc.body["id"].as_str().unwrap();
    let gone = s.api.delete(&format!("{checks}/{id}"), ADMIN).await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    let again = s.api.delete(&format!("{checks}/{id}"), ADMIN).await;
    assert_eq!(again.status, 404, "{:?}", again.body);
    let left = health(&s).await;
    assert_eq!(left.len(), 1, "{left:?}");
    s.stop().await;
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Runs `promtool check metrics` on an exposition when promtool is installed.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: skipping the exposition check");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint findings print too, but only problems with the exposition fail the check.
    assert!(out.status.success(), "promtool check metrics: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_usage_and_task_metrics_follow_real_traffic_on_postgres() {
    Box::pin(api_usage_and_task_metrics_follow_real_traffic(
        TestDatabase::postgres().await,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_usage_and_task_metrics_follow_real_traffic_on_sqlite() {
    Box::pin(api_usage_and_task_metrics_follow_real_traffic(
        TestDatabase::sqlite(),
    ))
    .await;
}

async fn api_usage_and_task_metrics_follow_real_traffic(db: TestDatabase) {
    let s = setup(&db).await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(2);
    for _ in 0..5 {
        assert_eq!(s.api.get("/api/v1/no-such-thing", ADMIN).await.status, 404);
    }
    for _ in 0..3 {
        assert_eq!(s.api.get("/healthz", None).await.status, 200);
    }
    let path = format!(
        "/api/v1/monitoring/apis/usage?since={}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let routes = eventually(
        "the gateway's requests are in the usage",
        Duration::from_secs(30),
        || async {
            let reply = s.api.get(&path, ADMIN).await;
            let routes = reply.body["routes"].as_array()?.clone();
            let find = |route: &str| routes.iter().find(|r| r["route"] == route).cloned();
            let unmatched = find("unmatched")?;
            let healthz = find("/healthz")?;
            (unmatched["errors"].as_u64()? >= 5 && healthz["requests"].as_u64()? >= 3)
                .then_some((unmatched, healthz))
        },
    )
    .await;
    let (unmatched, healthz) = routes;
    assert_eq!(unmatched["method"], "GET");
    assert_eq!(unmatched["error_rate"], 1.0, "{unmatched:?}");
    assert_eq!(healthz["errors"], 0, "{healthz:?}");
    assert!(healthz["p50_ms"].as_f64().unwrap() > 0.0, "{healthz:?}");
    assert!(
        healthz["p99_ms"].as_f64().unwrap() >= healthz["p50_ms"].as_f64().unwrap(),
        "{healthz:?}"
    );
    let refused = s.api.get(&path, Some(&s.ci)).await;
    assert_eq!(
        refused.status, 403,
        "usage spans every tenant: {:?}",
        refused.body
    );
    let bad = s
        .api
        .get("/api/v1/monitoring/apis/usage?since=yesterday", ADMIN)
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    // A run with a retry, and a task no agent can take (it stays queued).
    s.workflow(
        "flaky",
        json!({"nodes": [{"id": "flaky", "run": "test \"$SWITCHYARD_ATTEMPT\" -ge 2",
            "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20}}]}),
    )
    .await;
    let run = s.start("flaky").await;
    assert_eq!(s.finished(&run).await["status"], "completed");
    s.workflow(
        "stuck",
        json!({"nodes": [{"id": "gpu", "run": "true", "labels": {"gpu": "h100"}}]}),
    )
    .await;
    s.start("stuck").await;

    let project = format!("project=\"{}\"", s.project);
    let monitoring = s.api.cluster.monitoring.metrics_addr;
    let text = eventually(
        "monitoring exports the task metrics",
        Duration::from_secs(30),
        || async {
            let text = scrape(monitoring).await;
            let has = |name: &str| {
                text.lines()
                    .any(|l| l.starts_with(name) && l.contains(&project))
            };
            // Both attempts' endings ingested: the run histogram counts two.
            let both_ended = text.lines().any(|l| {
                l.starts_with("switchyard_task_run_seconds_count")
                    && l.contains(&project)
                    && l.ends_with(" 2")
            });
            (has("switchyard_task_wait_seconds_bucket")
                && both_ended
                && has("switchyard_task_retries_total"))
            .then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("# HELP switchyard_task_wait_seconds "),
        "no HELP"
    );
    let retries = text
        .lines()
        .find(|l| l.starts_with("switchyard_task_retries_total") && l.contains(&project))
        .unwrap();
    assert!(retries.ends_with(" 1"), "{retries}");
    // Each attempt's wait counted once: on its LEASED, or on its ending when it ended before
    // the scheduler sent the LEASED.
    let waits = text
        .lines()
        .find(|l| l.starts_with("switchyard_task_wait_seconds_count") && l.contains(&project))
        .unwrap();
    assert!(waits.ends_with(" 2"), "{waits}");
    let scheduler = s.api.cluster.scheduler.metrics_addr;
    let text = eventually(
        "the scheduler exports the queue depth",
        Duration::from_secs(30),
        || async {
            let text = scrape(scheduler).await;
            text.lines()
                .any(|l| {
                    l.starts_with("switchyard_queue_depth{")
                        && l.contains(&project)
                        && l.ends_with(" 1")
                })
                .then_some(text)
        },
    )
    .await;
    assert!(text.contains("# HELP switchyard_queue_depth "));
    promtool_check(&text);
    s.stop().await;
}
