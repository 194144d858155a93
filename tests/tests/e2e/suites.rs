//! Suites through the HTTP API: Gherkin ingestion (parsed structure, re-ingestion updates,
//! a malformed file stores nothing) and the dataset gate (expectations over CSV and JSON
//! lines; a failing dataset refuses the run with every failed expectation, audited).

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_test_support::cluster::data_root;

use super::gateway::run_count;
use switchyard_test_support::{Api, BOOTSTRAP_TOKEN, TestDatabase, eventually, spawn_api};

const ADMIN: Option<&str> = Some(BOOTSTRAP_TOKEN);

const CHECKOUT: &str = r#"@shop
Feature: Checkout
  Paying for the cart.

  Background:
    Given a signed-in customer

  Scenario: Pay by card
    When the customer pays with:
      | card             | expiry |
      | 4111111111111111 | 12/30  |
    Then a receipt is sent:
      """
      Thank you
      """

  @slow
  Scenario Outline: Shipping
    Given a cart worth <total>
    Then shipping costs <shipping>

    Examples: Europe
      | total | shipping |
      | 10    | 5        |
      | 100   | 0        |
"#;

const LOGIN: &str = "Feature: Login\n  Scenario: Good password\n    Given a user\n    When they log in\n    Then they see the dashboard\n    But no warning\n";

/// A project and a token for it with `scopes`.
async fn new_project(api: &Api, org: &str, scopes: &[&str]) -> (String, String) {
    let org = api.post("/api/v1/orgs", ADMIN, json!({"name": org})).await;
    assert_eq!(org.status, 201, "{:?}", org.body);
    let org = org.body["id"].as_str().unwrap();
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
            json!({"name": "ci", "project_id": project, "scopes": scopes}),
        )
        .await;
    assert_eq!(token.status, 201, "{:?}", token.body);
    (project, token.body["token"].as_str().unwrap().to_owned())
}

fn files(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(path, content)| json!({"path": path, "content": content}))
            .collect(),
    )
}

async fn feature_paths(api: &Api, project: &str, token: Option<&str>) -> Vec<String> {
    let listed = api
        .get(
            &format!("/api/v1/projects/{project}/features?suite=acceptance"),
            token,
        )
        .await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let mut paths: Vec<String> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

async fn gherkin_ingestion(db: TestDatabase) {
    let api = spawn_api(&db).await;
    let (project, token) = new_project(&api, "bdd", &["suites:write"]).await;
    let ci = Some(token.as_str());
    let path = format!("/api/v1/projects/{project}/features");

    let first = api
        .post(
            &path,
            ci,
            json!({"suite": "acceptance", "files": files(&[
                ("shop/checkout.feature", CHECKOUT), ("login.feature", LOGIN)])}),
        )
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["suite"]["name"], "acceptance");
    let checkout = &first.body["features"][0];
    assert_eq!(checkout["change"], "created");
    assert_eq!(checkout["name"], "Checkout");
    assert_eq!(checkout["tags"], json!(["shop"]));
    assert_eq!(checkout["background"][0]["text"], "a signed-in customer");
    let card = &checkout["scenarios"][0];
    assert_eq!(card["name"], "Pay by card");
    assert_eq!(card["outline"], false);
    assert_eq!(card["steps"][0]["keyword"], "When");
    assert_eq!(
        card["steps"][0]["table"],
        json!([["card", "expiry"], ["4111111111111111", "12/30"]])
    );
    assert_eq!(
        card["steps"][1]["doc_string"].as_str().map(str::trim),
        Some("Thank you")
    );
    let outline = &checkout["scenarios"][1];
    assert_eq!(outline["outline"], true);
    assert_eq!(outline["tags"], json!(["slow"]));
    assert_eq!(outline["examples"][0]["name"], "Europe");
    assert_eq!(outline["examples"][0]["table"][2], json!(["100", "0"]));
    let login = &first.body["features"][1];
    let keywords: Vec<&str> = login["scenarios"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyword"].as_str().unwrap())
        .collect();
    assert_eq!(keywords, vec!["Given", "When", "Then", "But"]);
    let checkout_id = checkout["id"].as_str().unwrap().to_owned();

    // Re-ingesting updates in place: same feature id, new content, no duplicate.
    let changed = CHECKOUT.replace("Scenario: Pay by card", "Scenario: Pay by credit card");
    let second = api
        .post(
            &path,
            ci,
            json!({"suite": "acceptance", "files": files(&[
                ("shop/checkout.feature", &changed), ("login.feature", LOGIN)])}),
        )
        .await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(second.body["features"][0]["change"], "updated");
    assert_eq!(second.body["features"][0]["id"], checkout_id.as_str());
    assert_eq!(
        second.body["features"][0]["scenarios"][0]["name"],
        "Pay by credit card"
    );
    assert_eq!(
        second.body["features"][0]["scenarios"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(second.body["features"][1]["change"], "unchanged");
    assert_eq!(
        feature_paths(&api, &project, ci).await,
        vec!["login.feature", "shop/checkout.feature"]
    );

    // One malformed file refuses the whole request, naming file and line: the good new file
    // beside it is not stored either.
    let bad = "Feature: Broken\n  Scenario: one\n    Given a step\n\n  this is not gherkin\n";
    let refused = api
        .post(
            &path,
            ci,
            json!({"suite": "acceptance", "files": files(&[
                ("new.feature", LOGIN), ("broken.feature", bad)])}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "unprocessable"),
        "{:?}",
        refused.body
    );
    let detail = &refused.body["error"]["details"][0];
    assert_eq!(detail["field"], "files[1].content");
    let message = detail["message"].as_str().unwrap();
    assert!(message.starts_with("broken.feature:5:"), "{message}");
    assert_eq!(
        feature_paths(&api, &project, ci).await,
        vec!["login.feature", "shop/checkout.feature"],
        "nothing stored from a refused request"
    );

    // Malformed requests: no files, a bad path, a duplicate path.
    for (body, field) in [
        (json!({"files": []}), "files"),
        (
            json!({"files": files(&[("../x.feature", LOGIN)])}),
            "files[0]",
        ),
        (
            json!({"files": files(&[("a.feature", LOGIN), ("a.feature", LOGIN)])}),
            "files[1].path",
        ),
    ] {
        let reply = api.post(&path, ci, body).await;
        assert!(
            matches!(reply.status, 400 | 422),
            "{}: {:?}",
            reply.status,
            reply.body
        );
        assert_eq!(reply.body["error"]["details"][0]["field"], field);
    }
    // Without the suites scope: 403, and nothing stored.
    let (_, runs_only) = new_project(&api, "other", &["runs:write"]).await;
    let denied = api
        .post(
            &path,
            Some(runs_only.as_str()),
            json!({"files": files(&[("x.feature", LOGIN)])}),
        )
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);

    let audit = format!("/api/v1/audit/events?action=feature.ingested&resource_id={checkout_id}");
    let events = eventually(
        "feature.ingested audited",
        Duration::from_secs(20),
        || async {
            let reply = api.get(&audit, ADMIN).await;
            reply.body["items"]
                .as_array()
                .filter(|items| items.len() == 2)
                .cloned()
        },
    )
    .await;
    assert_eq!(events[0]["outcome"], "success");
    api.stop().await;
}

#[tokio::test]
async fn gherkin_ingestion_on_postgres() {
    Box::pin(gherkin_ingestion(TestDatabase::postgres().await)).await;
}

#[tokio::test]
async fn gherkin_ingestion_on_sqlite() {
    Box::pin(gherkin_ingestion(TestDatabase::sqlite())).await;
}

/// Writes `content` under the test data root and returns its `file://` URL.
fn data_file(name: &str, content: &str) -> String {
    let dir = data_root().join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    format!("file://{}", path.display())
}

#[tokio::test]
async fn the_dataset_gate_refuses_runs_on_unhealthy_data() {
    let db = TestDatabase::postgres().await;
    let api = spawn_api(&db).await;
    let (project, token) = new_project(
        &api,
        "data",
        &["suites:write", "runs:write", "workflows:write"],
    )
    .await;
    let ci = Some(token.as_str());
    let p = |rest: &str| format!("/api/v1/projects/{project}/{rest}");

    let dataset = api.post(&p("datasets"), ci, json!({"name": "users"})).await;
    assert_eq!(dataset.status, 201, "{:?}", dataset.body);
    let dataset = dataset.body["id"].as_str().unwrap().to_owned();

    // Invalid expectations are all listed, and nothing is stored.
    let bad = api
        .put(
            &format!("/api/v1/datasets/{dataset}/expectations"),
            ci,
            json!({"expectations": [
                {"type": "row_count_between", "min": 9, "max": 1},
                {"type": "column_matches_regex", "column": "email", "pattern": "("},
            ]}),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["error"]["details"].as_array().unwrap().len(), 2);
    let expectations = json!({"expectations": [
        {"type": "row_count_between", "min": 2, "max": 1000},
        {"type": "column_not_null", "column": "email"},
        {"type": "column_unique", "column": "id"},
        {"type": "column_values_in_set", "column": "plan", "values": ["free", "pro"]},
        {"type": "column_matches_regex", "column": "email", "pattern": "[^@ ]+@[^@ ]+"},
    ]});
    let put = api
        .put(
            &format!("/api/v1/datasets/{dataset}/expectations"),
            ci,
            expectations,
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.body["expectations"].as_array().unwrap().len(), 5);

    let versions = format!("/api/v1/datasets/{dataset}/versions");
    let good = data_file("good.csv", "id,email,plan\n1,a@x.io,free\n2,b@x.io,pro\n");
    let broken = data_file(
        "bad.csv",
        "id,email,plan\n1,a@x.io,free\n1,,gold\n3,nope,pro\n",
    );
    let jsonl = data_file(
        "users.jsonl",
        "{\"id\": 1, \"email\": \"a@x.io\", \"plan\": \"free\"}\n{\"id\": 2, \"email\": \"b@x.io\", \"plan\": \"pro\"}\n",
    );
    let mut ids = Vec::new();
    for (label, location, format) in [
        ("v1", &good, "csv"),
        ("v2", &broken, "csv"),
        ("v3", &jsonl, "jsonl"),
    ] {
        let made = api
            .post(
                &versions,
                ci,
                json!({"version": label, "location": location, "format": format}),
            )
            .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let outside = api
        .post(
            &versions,
            ci,
            json!({"version": "v9", "location": "file:///etc/passwd", "format": "csv"}),
        )
        .await;
    assert_eq!(
        (
            outside.status,
            &outside.body["error"]["details"][0]["field"]
        ),
        (400, &json!("location")),
        "{:?}",
        outside.body
    );

    let check = |id: &str| format!("/api/v1/dataset-versions/{id}/check");
    let healthy = api.post(&check(&ids[0]), ci, json!({})).await;
    assert_eq!(healthy.body["healthy"], true, "{:?}", healthy.body);
    let healthy_jsonl = api.post(&check(&ids[2]), ci, json!({})).await;
    assert_eq!(
        healthy_jsonl.body["healthy"], true,
        "{:?}",
        healthy_jsonl.body
    );
    let unhealthy = api.post(&check(&ids[1]), ci, json!({})).await;
    assert_eq!(unhealthy.body["healthy"], false);
    let failed: Vec<bool> = unhealthy.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(failed, vec![true, false, false, false, false]);

    for (name, version) in [("prod", &ids[0]), ("staging", &ids[1])] {
        let env = api
            .put(
                &p(&format!("environments/{name}")),
                ci,
                json!({"variables": {"REGION": "eu"}, "dataset_version_id": version}),
            )
            .await;
        assert_eq!(env.status, 201, "{:?}", env.body);
    }
    let envs = api.get(&p("environments"), ci).await;
    assert_eq!(envs.body["items"].as_array().unwrap().len(), 2);
    let gate = api
        .put(
            &p("suites/gated"),
            ci,
            json!({"require_dataset_health": true}),
        )
        .await;
    assert_eq!(gate.status, 200, "{:?}", gate.body);
    let workflow = json!({"nodes": [{"id": "test", "run": "make test"}]});
    assert_eq!(
        api.put(&p("workflows/tests"), ci, workflow).await.status,
        201
    );

    // Staging's data fails four expectations: the run is refused with all four, audited.
    let refused = api
        .post(
            &p("runs"),
            ci,
            json!({"workflow": "tests", "suite": "gated", "environment": "staging"}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "unprocessable"),
        "{:?}",
        refused.body
    );
    let details = refused.body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 4, "{details:?}");
    assert!(details.iter().all(|d| d["reason"] == "expectation_failed"));
    assert!(
        details[0]["message"]
            .as_str()
            .unwrap()
            .contains("column_not_null(email)"),
        "{details:?}"
    );
    // No environment, or an unknown suite: refused too.
    let no_env = api
        .post(
            &p("runs"),
            ci,
            json!({"workflow": "tests", "suite": "gated"}),
        )
        .await;
    assert_eq!(no_env.status, 422, "{:?}", no_env.body);
    let unknown = api
        .post(
            &p("runs"),
            ci,
            json!({"workflow": "tests", "suite": "nope"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    assert_eq!(run_count(&api, &project).await, 0, "no refused run exists");

    let accepted = api
        .post(
            &p("runs"),
            ci,
            json!({"workflow": "tests", "suite": "gated", "environment": "prod"}),
        )
        .await;
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);
    assert_eq!(run_count(&api, &project).await, 1);

    let audit =
        format!("/api/v1/audit/events?action=run.create&resource_type=run&project_id={project}");
    let refusal = eventually("gate refusal audited", Duration::from_secs(20), || async {
        let reply = api.get(&audit, ADMIN).await;
        reply.body["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|e| e["outcome"] == "failed" && e["details"]["environment"] == "staging")
                .cloned()
        })
    })
    .await;
    assert_eq!(refusal["details"]["reason"], "dataset_gate");
    assert_eq!(refusal["details"]["failed"].as_array().unwrap().len(), 4);

    // A dataset version of another project cannot be attached (404, nothing changes).
    let (other, other_token) =
        new_project(&api, "other-data", &["suites:write", "workflows:write"]).await;
    let foreign = api
        .put(
            &format!("/api/v1/projects/{other}/environments/x"),
            Some(other_token.as_str()),
            json!({"dataset_version_id": ids[0]}),
        )
        .await;
    assert_eq!(foreign.status, 404, "{:?}", foreign.body);
    let foreign_check = api
        .post(&check(&ids[0]), Some(other_token.as_str()), json!({}))
        .await;
    assert_eq!(foreign_check.status, 403, "{:?}", foreign_check.body);
    api.stop().await;
}

/// Serves `body` at `/data/users.jsonl` on a loopback port: an object-store location over
/// HTTP, read through the same `object_store` path as S3.
async fn serve_data(body: &'static str) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/data/users.jsonl",
        axum::routing::get(move || async move { body }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn object_store_locations_are_read_and_metadata_addresses_refused() {
    let db = TestDatabase::sqlite();
    let api = spawn_api(&db).await;
    let (project, token) = new_project(&api, "remote", &["suites:write"]).await;
    let ci = Some(token.as_str());
    let dataset = api
        .post(
            &format!("/api/v1/projects/{project}/datasets"),
            ci,
            json!({"name": "events"}),
        )
        .await;
    let dataset = dataset.body["id"].as_str().unwrap().to_owned();
    let put = api
        .put(
            &format!("/api/v1/datasets/{dataset}/expectations"),
            ci,
            json!({"expectations": [
                {"type": "row_count_between", "min": 3},
                {"type": "column_values_in_set", "column": "kind", "values": ["click", "view"]},
            ]}),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let addr =
        serve_data("{\"kind\": \"click\"}\n{\"kind\": \"view\"}\n{\"kind\": \"scroll\"}\n").await;
    let versions = format!("/api/v1/datasets/{dataset}/versions");
    let mut results = Vec::new();
    for (label, location) in [
        ("http", format!("http://{addr}/data/users.jsonl")),
        (
            "metadata",
            "http://169.254.169.254/latest/data.jsonl".to_owned(),
        ),
    ] {
        let version = api
            .post(
                &versions,
                ci,
                json!({"version": label, "location": location, "format": "jsonl"}),
            )
            .await;
        assert_eq!(version.status, 201, "{:?}", version.body);
        let id = version.body["id"].as_str().unwrap();
        let check = api
            .post(
                &format!("/api/v1/dataset-versions/{id}/check"),
                ci,
                json!({}),
            )
            .await;
        assert_eq!(check.status, 200, "{:?}", check.body);
        results.push(check.body);
    }
    // Read over HTTP: three rows pass the count, one value is outside the set.
    let over_http = &results[0]["results"];
    assert_eq!(over_http[0]["passed"], true, "{over_http:?}");
    assert_eq!(over_http[1]["passed"], false, "{over_http:?}");
    assert!(
        over_http[1]["message"].as_str().unwrap().contains("scroll"),
        "{over_http:?}"
    );
    // The metadata address is never contacted: every expectation fails with the reason.
    assert_eq!(results[1]["healthy"], false);
    let reason = results[1]["results"][0]["message"].as_str().unwrap();
    assert!(reason.contains("link-local"), "{reason}");
    api.stop().await;
}
