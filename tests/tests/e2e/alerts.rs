//! Alerts end to end, through the gateway and the real services with a short evaluation
//! interval: a rule whose webhook names a metadata address is refused (400, JSON, nothing
//! stored); a run that dead-letters fires one alert, audited, delivered once to a local webhook
//! receiver (which fails the first attempt, so the retry is what arrives) however many rounds
//! pass; acknowledging works once; replaying the dead letter clears the condition, the alert
//! resolves itself (`resolved_by = "auto"`) and the receiver gets one `resolved` delivery;
//! resolving by hand records the caller, and resolving twice is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchyard_test_support::{BOOTSTRAP_TOKEN, TestDatabase, eventually};

use crate::runs::setup_full;

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);
/// Evaluation rounds in this test.
const ROUND: Duration = Duration::from_millis(300);

/// What the receiver saw: every attempt, and the deliveries it accepted.
#[derive(Default)]
struct Received {
    attempts: Vec<String>,
    accepted: Vec<Value>,
}

/// A webhook receiver on loopback that fails its first request with a 500.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let event = headers
                    .get("x-switchyard-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut seen = state.lock().unwrap();
                seen.attempts.push(event);
                if seen.attempts.len() == 1 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                seen.accepted
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn accepted(seen: &Arc<Mutex<Received>>, event: &str) -> Vec<Value> {
    let seen = seen.lock().unwrap();
    seen.accepted
        .iter()
        .filter(|p| p["event"] == event)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_fires_once_is_delivered_and_resolves_itself() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(
        &db,
        |_| {},
        |_| {},
        |m| {
            m.alerts.evaluation_interval = ROUND;
            m.alerts.min_sample = 1;
            m.alerts.delivery_interval = Duration::from_millis(50);
            m.alerts.webhook_initial_backoff = Duration::from_millis(200);
            m.alerts.webhook_timeout = Duration::from_secs(5);
            // The receiver is on loopback, which the default policy refuses.
            m.alerts.webhook_urls.allow_loopback = true;
        },
    )
    .await;
    let ci = Some(s.ci.as_str());
    let rules = format!("/api/v1/projects/{}/alert-rules", s.project);

    // A metadata address is refused however the rest of the rule looks, and nothing is kept.
    let refused = s
        .api
        .post(
            &rules,
            ci,
            json!({"name": "steal", "kind": "dead_letter_count", "threshold": 1,
                   "webhooks": ["http://169.254.169.254/latest/meta-data/iam"]}),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.code(), "invalid_argument");
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("metadata"), "{message}");
    let bad_kind = s
        .api
        .post(
            &rules,
            ci,
            json!({"name": "x", "kind": "vibes", "threshold": 1}),
        )
        .await;
    assert_eq!(
        (bad_kind.status, bad_kind.code()),
        (400, "invalid_argument")
    );
    let listed = s.api.get(&rules, ci).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["items"], json!([]), "nothing stored");

    let (hook, seen) = receiver().await;
    let rule = s
        .api
        .post(
            &rules,
            ci,
            json!({"name": "dead letters", "kind": "dead_letter_count", "threshold": 1,
                   "window_seconds": 900, "webhooks": [hook]}),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let rule_id = rule.body["id"].as_str().unwrap().to_owned();
    assert_eq!(rule.body["enabled"], true);

    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("fixed");
    s.workflow(
        "gate",
        json!({"nodes": [{"id": "check", "run": format!("test -f {}", marker.display())}]}),
    )
    .await;
    let run = s.start("gate").await;
    let failed = s.finished(&run).await;
    assert_eq!(failed["tasks"]["dead"], 1, "{failed:?}");

    let firing_path = format!(
        "/api/v1/monitoring/alerts?project_id={}&state=firing",
        s.project
    );
    let alert = eventually("the alert fires", Duration::from_secs(30), || async {
        let reply = s.api.get(&firing_path, ci).await;
        reply.body["items"].as_array()?.first().cloned()
    })
    .await;
    let alert_id = alert["id"].as_str().unwrap().to_owned();
    assert_eq!(alert["rule_id"], rule_id.as_str());
    assert_eq!(alert["kind"], "dead_letter_count");
    assert_eq!(alert["dedupe_key"], format!("{rule_id}:project").as_str());
    assert_eq!(alert["resolved_by"], Value::Null);

    // The receiver refused the first attempt; the retry is delivered.
    let delivered = eventually(
        "the firing notification arrives after a retry",
        Duration::from_secs(30),
        || async {
            let firing = accepted(&seen, "firing");
            (!firing.is_empty()).then_some(firing)
        },
    )
    .await;
    assert_eq!(delivered[0]["alert_id"], alert_id.as_str());
    assert_eq!(delivered[0]["state"], "firing");
    assert_eq!(delivered[0]["project_id"], s.project.as_str());
    assert_eq!(delivered[0]["rule_name"], "dead letters");
    assert!(delivered[0]["fired_at"].is_string());
    // Several evaluation rounds later there is still one alert and one delivery (waiting is
    // the point here: nothing may happen).
    tokio::time::sleep(ROUND * 6).await;
    assert_eq!(accepted(&seen, "firing").len(), 1);
    assert_eq!(
        seen.lock().unwrap().attempts,
        ["firing", "firing"],
        "one failed attempt, one retry"
    );
    let all = s
        .api
        .get(
            &format!("/api/v1/monitoring/alerts?project_id={}", s.project),
            ci,
        )
        .await;
    assert_eq!(
        all.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        all.body
    );

    // Firing is audited by the service itself.
    let audit_path = format!("/api/v1/audit/events?action=alert.fired&resource_id={alert_id}");
    let event = eventually("alert.fired audited", Duration::from_secs(20), || async {
        let reply = s.api.get(&audit_path, ADMIN).await;
        reply.body["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(event["actor_id"], "monitoring");
    assert_eq!(event["project_id"], s.project.as_str());

    // Acknowledged once; a second acknowledgement is refused with the state named.
    let ack_path = format!("/api/v1/monitoring/alerts/{alert_id}/acknowledge");
    let ack = s.api.post(&ack_path, ci, json!({})).await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);
    assert_eq!(ack.body["state"], "acknowledged");
    assert!(ack.body["acknowledged_at"].is_string());
    let again = s.api.post(&ack_path, ci, json!({})).await;
    assert_eq!((again.status, again.code()), (409, "failed_precondition"));

    // Replaying the dead letter (now fixed) clears the condition: the alert resolves itself.
    std::fs::write(&marker, "").unwrap();
    let letters = s
        .api
        .get(&format!("/api/v1/monitoring/dead-letter?run_id={run}"), ci)
        .await;
    let letter = letters.body["items"][0]["id"].as_str().unwrap().to_owned();
    let retry = s
        .api
        .post(
            &format!("/api/v1/monitoring/dead-letter/{letter}/retry"),
            ci,
            json!({}),
        )
        .await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    let resolved_path = format!(
        "/api/v1/monitoring/alerts?project_id={}&state=resolved",
        s.project
    );
    let resolved = eventually(
        "the alert resolves itself",
        Duration::from_secs(60),
        || async {
            let reply = s.api.get(&resolved_path, ci).await;
            reply.body["items"].as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(resolved["id"], alert_id.as_str());
    assert_eq!(resolved["resolved_by"], "auto");
    assert!(resolved["resolved_at"].is_string());
    let notice = eventually(
        "the resolved notification arrives",
        Duration::from_secs(30),
        || async {
            let resolved = accepted(&seen, "resolved");
            (!resolved.is_empty()).then_some(resolved)
        },
    )
    .await;
    assert_eq!(notice[0]["alert_id"], alert_id.as_str());
    assert_eq!(notice[0]["resolved_by"], "auto");
    tokio::time::sleep(ROUND * 4).await;
    assert_eq!(accepted(&seen, "resolved").len(), 1);
    assert_eq!(accepted(&seen, "firing").len(), 1, "nothing fired again");

    // By hand: resolving a resolved alert is refused; an unknown id is not found.
    let resolve = |id: &str| format!("/api/v1/monitoring/alerts/{id}/resolve");
    let twice = s.api.post(&resolve(&alert_id), ci, json!({})).await;
    assert_eq!((twice.status, twice.code()), (409, "failed_precondition"));
    let unknown = s
        .api
        .post(
            &resolve("0192f1a4-0000-7000-8000-00000000dead"),
            ci,
            json!({}),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let garbage = s.api.post(&resolve("nope"), ci, json!({})).await;
    assert_eq!(garbage.status, 400, "{:?}", garbage.body);
    let bad_state = s
        .api
        .get("/api/v1/monitoring/alerts?state=sleeping", ci)
        .await;
    assert_eq!(
        (bad_state.status, bad_state.code()),
        (400, "invalid_argument")
    );

    // A failure-rate rule (the dead-lettered attempt is one of two ended) fires; resolved by
    // hand, the alert records who resolved it.
    let rate = s
        .api
        .post(
            &rules,
            ci,
            json!({"name": "failing", "kind": "failure_rate", "threshold": 0.25}),
        )
        .await;
    assert_eq!(rate.status, 201, "{:?}", rate.body);
    let rate_id = rate.body["id"].as_str().unwrap().to_owned();
    let firing = eventually("the rate alert fires", Duration::from_secs(30), || async {
        let reply = s.api.get(&firing_path, ci).await;
        reply.body["items"]
            .as_array()?
            .iter()
            .find(|a| a["rule_id"] == rate_id.as_str())
            .cloned()
    })
    .await;
    let manual = s
        .api
        .post(&resolve(firing["id"].as_str().unwrap()), ci, json!({}))
        .await;
    assert_eq!(manual.status, 200, "{:?}", manual.body);
    assert_eq!(manual.body["state"], "resolved");
    let by = manual.body["resolved_by"].as_str().unwrap_or_default();
    assert!(!by.is_empty() && by != "auto", "{by}");

    // Rules: listed, updated, deleted.
    let listed = s.api.get(&rules, ci).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2));
    let disabled = s
        .api
        .put(
            &format!("{rules}/{rate_id}"),
            ci,
            json!({"name": "failing", "kind": "failure_rate", "threshold": 0.5,
                   "enabled": false}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(
        (&disabled.body["enabled"], &disabled.body["threshold"]),
        (&json!(false), &json!(0.5))
    );
    let elsewhere =
        format!("/api/v1/projects/0192f1a4-0000-7000-8000-00000000beef/alert-rules/{rate_id}");
    let wrong = s.api.delete(&elsewhere, ci).await;
    assert_eq!(
        wrong.status, 404,
        "a rule is deleted through its own project only"
    );
    let deleted = s.api.delete(&format!("{rules}/{rate_id}"), ci).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let gone = s.api.delete(&format!("{rules}/{rate_id}"), ci).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
    s.stop().await;
}

/// AGENT_POOL_EMPTY asks the scheduler for its agents under monitoring's own service
/// principal: with one live agent, a threshold of 2 fires and a threshold of 1 clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_pool_rule_counts_live_agents_from_the_scheduler() {
    let db = TestDatabase::postgres().await;
    let s = setup_full(
        &db,
        |_| {},
        |_| {},
        |m| m.alerts.evaluation_interval = ROUND,
    )
    .await;
    let ci = Some(s.ci.as_str());
    // The agent is live once it registered.
    eventually("the agent registered", Duration::from_secs(30), || async {
        let reply = s.api.get("/api/v1/agents", ADMIN).await;
        (reply.body["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let rules = format!("/api/v1/projects/{}/alert-rules", s.project);
    // Reading is not enough to change alerting.
    let reader = s
        .api
        .post(
            "/api/v1/auth/service-tokens",
            ADMIN,
            json!({"name": "r", "project_id": s.project, "scopes": ["runs:read"]}),
        )
        .await;
    let reader = reader.body["token"].as_str().unwrap().to_owned();
    let body = json!({"name": "pool", "kind": "agent_pool_empty", "threshold": 2});
    let refused = s.api.post(&rules, Some(&reader), body.clone()).await;
    assert_eq!((refused.status, refused.code()), (403, "permission_denied"));
    assert_eq!(s.api.get(&rules, Some(&reader)).await.status, 200);
    let rule = s.api.post(&rules, ci, body).await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let rule_id = rule.body["id"].as_str().unwrap().to_owned();
    let alerts = format!("/api/v1/monitoring/alerts?project_id={}", s.project);
    let firing = eventually("the pool alert fires", Duration::from_secs(30), || async {
        let reply = s.api.get(&alerts, ci).await;
        reply.body["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(firing["state"], "firing");
    assert!(
        firing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("1 live agent")),
        "{firing:?}"
    );
    let lowered = s
        .api
        .put(
            &format!("{rules}/{rule_id}"),
            ci,
            json!({"name": "pool", "kind": "agent_pool_empty", "threshold": 1}),
        )
        .await;
    assert_eq!(lowered.status, 200, "{:?}", lowered.body);
    let resolved = eventually("the pool alert clears", Duration::from_secs(30), || async {
        let reply = s.api.get(&alerts, ci).await;
        let first = reply.body["items"].as_array()?.first().cloned()?;
        (first["state"] == "resolved").then_some(first)
    })
    .await;
    assert_eq!(resolved["resolved_by"], "auto");
    s.stop().await;
}
