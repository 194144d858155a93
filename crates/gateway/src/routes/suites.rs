//! Suites and BDD ingestion: Gherkin files in, parsed features out.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{List, PageQuery, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSuite {
    /// Refuse runs of this suite whose environment's dataset fails its expectations.
    #[serde(default)]
    pub require_dataset_health: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suite {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub require_dataset_health: bool,
}

impl From<pb::Suite> for Suite {
    fn from(s: pb::Suite) -> Suite {
        Suite {
            id: s.id,
            project_id: s.project_id,
            name: s.name,
            require_dataset_health: s.require_dataset_health,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GherkinFile {
    /// Relative path ending in `.feature`; it names the feature within its suite.
    pub path: String,
    pub content: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestFeatures {
    pub files: Vec<GherkinFile>,
    /// Suite name (created when missing); `default` when left out.
    pub suite: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    /// As written: `Given`, `When`, `Then`, `And`, `But`, `*`.
    pub keyword: String,
    pub text: String,
    pub doc_string: Option<String>,
    /// Data table rows, when the step has one.
    pub table: Option<Vec<Vec<String>>>,
    pub line: u32,
}

impl From<pb::Step> for Step {
    fn from(s: pb::Step) -> Step {
        Step {
            keyword: s.keyword,
            text: s.text,
            doc_string: (!s.doc_string.is_empty()).then_some(s.doc_string),
            table: s.table.map(rows),
            line: s.line,
        }
    }
}

fn rows(table: pb::DataTable) -> Vec<Vec<String>> {
    table.rows.into_iter().map(|r| r.cells).collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Examples {
    pub name: String,
    pub tags: Vec<String>,
    /// First row is the header.
    pub table: Vec<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Scenario {
    pub name: String,
    /// The `Rule:` the scenario sits under, if any.
    pub rule: Option<String>,
    pub rule_background: Vec<Step>,
    pub tags: Vec<String>,
    /// `Scenario Outline`: run once per examples row.
    pub outline: bool,
    pub steps: Vec<Step>,
    pub examples: Vec<Examples>,
    pub line: u32,
}

impl From<pb::Scenario> for Scenario {
    fn from(s: pb::Scenario) -> Scenario {
        Scenario {
            name: s.name,
            rule: (!s.rule.is_empty()).then_some(s.rule),
            rule_background: s.rule_background.into_iter().map(Into::into).collect(),
            tags: s.tags,
            outline: s.outline,
            steps: s.steps.into_iter().map(Into::into).collect(),
            examples: s
                .examples
                .into_iter()
                .map(|e| Examples {
                    name: e.name,
                    tags: e.tags,
                    table: e.table.map(rows).unwrap_or_default(),
                })
                .collect(),
            line: s.line,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Feature {
    pub id: String,
    pub suite_id: String,
    pub path: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub background: Vec<Step>,
    pub scenarios: Vec<Scenario>,
    pub updated_at: Option<String>,
    /// SHA-256 of the file as last ingested.
    pub digest: String,
    /// On ingestion: `created`, `updated` or `unchanged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

impl From<pb::Feature> for Feature {
    fn from(f: pb::Feature) -> Feature {
        Feature {
            updated_at: time(f.updated_at.as_ref()),
            id: f.id,
            suite_id: f.suite_id,
            path: f.path,
            name: f.name,
            description: f.description,
            tags: f.tags,
            background: f.background.into_iter().map(Into::into).collect(),
            scenarios: f.scenarios.into_iter().map(Into::into).collect(),
            digest: f.digest,
            change: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ingested {
    pub suite: Suite,
    pub features: Vec<Feature>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeatureQuery {
    /// Suite name; `default` when left out.
    pub suite: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Creates a suite or changes its dataset gate.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/suites/{name}", tag = "suites",
    params(("project_id" = String, Path), ("name" = String, Path)),
    request_body = PutSuite,
    responses((status = 200, body = Suite), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_suite(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
    Json(body): Json<PutSuite>,
) -> ApiResult<axum::Json<Suite>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::PutSuiteRequest {
            project_id,
            name,
            require_dataset_health: body.require_dataset_health,
        },
    );
    let suite = state
        .upstreams
        .suites()
        .put_suite(request)
        .await?
        .into_inner();
    let suite = suite.suite.ok_or_else(|| ApiError::not_found("suite"))?;
    Ok(axum::Json(suite.into()))
}

/// The project's suites by name.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/suites", tag = "suites",
    params(("project_id" = String, Path)),
    responses((status = 200, body = List<Suite>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_suites(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<List<Suite>>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ListSuitesRequest { project_id });
    let suites = state
        .upstreams
        .suites()
        .list_suites(request)
        .await?
        .into_inner()
        .suites;
    Ok(axum::Json(List::new(
        suites.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// Parses Gherkin `.feature` files and stores their features in a suite. All or nothing: a
/// malformed file answers 422 naming its path and line, and nothing is stored. Re-ingesting a
/// path updates that feature.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/features", tag = "suites",
    params(("project_id" = String, Path)),
    request_body = IngestFeatures,
    responses((status = 200, body = Ingested), (status = 422, body = crate::error::ErrorBody),
        (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn ingest_features(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<IngestFeatures>,
) -> ApiResult<axum::Json<Ingested>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::IngestFeaturesRequest {
            project_id,
            suite: body.suite.unwrap_or_default(),
            files: body
                .files
                .into_iter()
                .map(|f| pb::GherkinFile {
                    path: f.path,
                    content: f.content,
                })
                .collect(),
        },
    );
    let response = state
        .upstreams
        .suites()
        .ingest_features(request)
        .await?
        .into_inner();
    let suite = response.suite.ok_or_else(|| ApiError::not_found("suite"))?;
    let mut changes = response.changes.into_iter();
    let features = response
        .features
        .into_iter()
        .map(|f| Feature {
            change: changes.next(),
            ..f.into()
        })
        .collect();
    Ok(axum::Json(Ingested {
        suite: suite.into(),
        features,
    }))
}

/// A suite's features with their scenarios and steps, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/features", tag = "suites",
    params(("project_id" = String, Path), FeatureQuery),
    responses((status = 200, body = List<Feature>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_features(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<FeatureQuery>,
) -> ApiResult<axum::Json<List<Feature>>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListFeaturesRequest {
            project_id,
            suite: query.suite.unwrap_or_default(),
            page: Some(page.to_proto()),
        },
    );
    let response = state
        .upstreams
        .suites()
        .list_features(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        response.features.into_iter().map(Into::into).collect(),
        response.page,
    )))
}
