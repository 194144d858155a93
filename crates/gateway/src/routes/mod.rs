//! The HTTP API of API.md. Routes and the OpenAPI document come from the same declarations
//! (utoipa-axum's `routes!`), so the document cannot list an endpoint the server lacks, nor
//! miss one it serves.

mod alerts;
mod apis;
mod audit;
mod common;
mod datasets;
mod diagnosis;
mod engine;
mod environments;
mod health;
mod limits;
mod monitoring;
pub mod run_events;
mod runs;
mod schedules;
mod stuck;
mod suites;
mod tenancy;
mod tokens;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchyard API", version = "v1", description = "Durable run orchestration for CI. See API.md for the contract."),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorObject, crate::error::ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes and the document that describes them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::status))
        .routes(routes!(health::metrics))
        .routes(routes!(tenancy::create_org))
        .routes(routes!(tenancy::create_project))
        .routes(routes!(tenancy::get_project))
        .routes(routes!(tenancy::create_user))
        .routes(routes!(tokens::login))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(
            workflows::put_workflow,
            workflows::get_workflow,
            workflows::delete_workflow
        ))
        .routes(routes!(environments::put_environment))
        .routes(routes!(environments::list_environments))
        .routes(routes!(suites::put_suite))
        .routes(routes!(suites::list_suites))
        .routes(routes!(suites::ingest_features, suites::list_features))
        .routes(routes!(datasets::create_dataset, datasets::list_datasets))
        .routes(routes!(datasets::create_version, datasets::list_versions))
        .routes(routes!(datasets::put_expectations))
        .routes(routes!(datasets::check_version))
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(run_events::run_events))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(engine::list_tasks))
        .routes(routes!(engine::run_logs))
        .routes(routes!(engine::list_agents))
        .routes(routes!(
            schedules::create_schedule,
            schedules::list_schedules
        ))
        .routes(routes!(
            schedules::update_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(limits::get_limits, limits::put_limits))
        .routes(routes!(engine::list_dead_letters))
        .routes(routes!(engine::retry_dead_letter))
        .routes(routes!(engine::retry_dead_letters))
        .routes(routes!(monitoring::active_tasks))
        .routes(routes!(monitoring::task_history))
        .routes(routes!(stuck::stuck_tasks))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::resolve_alert))
        .routes(routes!(alerts::acknowledge_alert))
        .routes(routes!(alerts::create_rule, alerts::list_rules))
        .routes(routes!(alerts::update_rule, alerts::delete_rule))
        .routes(routes!(diagnosis::run_diagnosis))
        .routes(routes!(diagnosis::retry_statistics))
        .routes(routes!(diagnosis::dead_letter_analysis))
        .routes(routes!(apis::create_check))
        .routes(routes!(apis::update_check, apis::delete_check))
        .routes(routes!(apis::health))
        .routes(routes!(apis::usage))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::export))
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (routes, document) = api();
    let document = Arc::new(document);
    let max_body = state.config.http.max_body_bytes;
    routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method and path of API.md's table that this slice serves is in the document.
    #[test]
    fn the_document_lists_the_contract_paths() {
        let (_, document) = api();
        let json = serde_json::to_value(&document).expect("serializes");
        let paths = json["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/api/v1/orgs", "post"),
            ("/api/v1/orgs/{org_id}/projects", "post"),
            ("/api/v1/projects/{project_id}", "get"),
            ("/api/v1/orgs/{org_id}/users", "post"),
            ("/api/v1/auth/login", "post"),
            ("/api/v1/auth/service-tokens", "post"),
            ("/api/v1/auth/service-tokens", "get"),
            ("/api/v1/auth/service-tokens/{token_id}", "delete"),
            ("/api/v1/projects/{project_id}/workflows/{name}", "put"),
            ("/api/v1/projects/{project_id}/workflows/{name}", "get"),
            ("/api/v1/projects/{project_id}/workflows/{name}", "delete"),
            ("/api/v1/projects/{project_id}/runs", "post"),
            ("/api/v1/projects/{project_id}/runs", "get"),
            ("/api/v1/runs/{run_id}", "get"),
            ("/api/v1/runs/{run_id}/cancel", "post"),
            ("/api/v1/runs/{run_id}/events", "get"),
            ("/api/v1/runs/{run_id}/tasks", "get"),
            ("/api/v1/agents", "get"),
            ("/api/v1/projects/{project_id}/schedules", "post"),
            ("/api/v1/projects/{project_id}/schedules", "get"),
            ("/api/v1/projects/{project_id}/schedules/{id}", "delete"),
            ("/api/v1/projects/{project_id}/limits", "put"),
            ("/api/v1/monitoring/dead-letter", "get"),
            ("/api/v1/monitoring/dead-letter/{id}/retry", "post"),
            ("/api/v1/monitoring/tasks/active", "get"),
            ("/api/v1/monitoring/tasks/history", "get"),
            ("/api/v1/monitoring/tasks/stuck", "get"),
            ("/api/v1/monitoring/alerts", "get"),
            ("/api/v1/monitoring/alerts/{id}/resolve", "post"),
            ("/api/v1/monitoring/alerts/{id}/acknowledge", "post"),
            ("/api/v1/projects/{project_id}/alert-rules", "post"),
            ("/api/v1/projects/{project_id}/alert-rules", "get"),
            ("/api/v1/projects/{project_id}/alert-rules/{id}", "put"),
            ("/api/v1/projects/{project_id}/alert-rules/{id}", "delete"),
            ("/api/v1/runs/{run_id}/diagnosis", "get"),
            ("/api/v1/monitoring/retry-statistics", "get"),
            ("/api/v1/monitoring/dead-letter/analysis", "get"),
            ("/api/v1/monitoring/apis/health", "get"),
            ("/api/v1/monitoring/apis/usage", "get"),
            ("/api/v1/monitoring/apis/checks", "post"),
            ("/api/v1/monitoring/apis/checks/{id}", "put"),
            ("/api/v1/monitoring/apis/checks/{id}", "delete"),
            ("/api/v1/projects/{project_id}/features", "post"),
            ("/api/v1/projects/{project_id}/features", "get"),
            ("/api/v1/projects/{project_id}/suites/{name}", "put"),
            ("/api/v1/projects/{project_id}/environments/{name}", "put"),
            ("/api/v1/projects/{project_id}/datasets", "post"),
            ("/api/v1/datasets/{dataset_id}/versions", "post"),
            ("/api/v1/datasets/{dataset_id}/expectations", "put"),
            ("/api/v1/dataset-versions/{version_id}/check", "post"),
            ("/api/v1/audit/events", "get"),
            ("/api/v1/audit/verify", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/api/v1/status", "get"),
            ("/metrics", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
    }
}
