//! Datasets, their versions and expectations, and the health check runs are gated on.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::ToSchema;

use super::common::{List, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// One expectation over a dataset version's rows, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// Inclusive bounds; no `max` means no upper bound.
    RowCountBetween {
        min: u64,
        max: Option<u64>,
    },
    ColumnNotNull {
        column: String,
    },
    /// Nulls are not compared.
    ColumnUnique {
        column: String,
    },
    /// Nulls pass (add `column_not_null` to forbid them).
    ColumnValuesInSet {
        column: String,
        values: Vec<String>,
    },
    /// The whole value must match; nulls pass.
    ColumnMatchesRegex {
        column: String,
        pattern: String,
    },
}

impl From<Expectation> for pb::Expectation {
    fn from(e: Expectation) -> pb::Expectation {
        use pb::expectation::Kind;
        let kind = match e {
            Expectation::RowCountBetween { min, max } => {
                Kind::RowCountBetween(pb::RowCountBetween { min, max })
            }
            Expectation::ColumnNotNull { column } => {
                Kind::ColumnNotNull(pb::ColumnNotNull { column })
            }
            Expectation::ColumnUnique { column } => Kind::ColumnUnique(pb::ColumnUnique { column }),
            Expectation::ColumnValuesInSet { column, values } => {
                Kind::ColumnValuesInSet(pb::ColumnValuesInSet { column, values })
            }
            Expectation::ColumnMatchesRegex { column, pattern } => {
                Kind::ColumnMatchesRegex(pb::ColumnMatchesRegex { column, pattern })
            }
        };
        pb::Expectation { kind: Some(kind) }
    }
}

fn expectation(e: pb::Expectation) -> Option<Expectation> {
    use pb::expectation::Kind;
    Some(match e.kind? {
        Kind::RowCountBetween(k) => Expectation::RowCountBetween {
            min: k.min,
            max: k.max,
        },
        Kind::ColumnNotNull(k) => Expectation::ColumnNotNull { column: k.column },
        Kind::ColumnUnique(k) => Expectation::ColumnUnique { column: k.column },
        Kind::ColumnValuesInSet(k) => Expectation::ColumnValuesInSet {
            column: k.column,
            values: k.values,
        },
        Kind::ColumnMatchesRegex(k) => Expectation::ColumnMatchesRegex {
            column: k.column,
            pattern: k.pattern,
        },
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dataset {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub expectations: Vec<Expectation>,
}

impl From<pb::Dataset> for Dataset {
    fn from(d: pb::Dataset) -> Dataset {
        Dataset {
            id: d.id,
            project_id: d.project_id,
            name: d.name,
            expectations: d.expectations.into_iter().filter_map(expectation).collect(),
        }
    }
}

/// `csv` (first row is the header, an empty field is null) or `jsonl` (one object per line).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// A label unique within the dataset, e.g. `2026-11-23` or `v3`.
    pub version: String,
    /// `file:///path` (inside the control plane's `datasets.local_roots`), `s3://bucket/key`
    /// or `https://host/path`.
    pub location: String,
    pub format: DataFormat,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetVersion {
    pub id: String,
    pub dataset_id: String,
    pub version: String,
    pub location: String,
    pub format: Option<DataFormat>,
    pub created_at: Option<String>,
}

impl From<pb::DatasetVersion> for DatasetVersion {
    fn from(v: pb::DatasetVersion) -> DatasetVersion {
        let format = match pb::DataFormat::try_from(v.format) {
            Ok(pb::DataFormat::Csv) => Some(DataFormat::Csv),
            Ok(pb::DataFormat::JsonLines) => Some(DataFormat::Jsonl),
            _ => None,
        };
        DatasetVersion {
            created_at: time(v.created_at.as_ref()),
            id: v.id,
            dataset_id: v.dataset_id,
            version: v.version,
            location: v.location,
            format,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutExpectations {
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpectationResult {
    pub expectation: Option<Expectation>,
    pub passed: bool,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub healthy: bool,
    pub results: Vec<ExpectationResult>,
    pub version: Option<DatasetVersion>,
}

/// Creates a dataset (expectations are set separately).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/datasets", tag = "datasets",
    params(("project_id" = String, Path)), request_body = CreateDataset,
    responses((status = 201, body = Dataset), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<CreateDataset>,
) -> ApiResult<(StatusCode, axum::Json<Dataset>)> {
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateDatasetRequest {
            project_id,
            name: body.name,
        },
    );
    let dataset = state
        .upstreams
        .datasets()
        .create_dataset(request)
        .await?
        .into_inner()
        .dataset
        .ok_or_else(|| ApiError::not_found("dataset"))?;
    Ok((StatusCode::CREATED, axum::Json(dataset.into())))
}

/// The project's datasets with their expectations.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/datasets", tag = "datasets",
    params(("project_id" = String, Path)),
    responses((status = 200, body = List<Dataset>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_datasets(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<List<Dataset>>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ListDatasetsRequest { project_id });
    let datasets = state
        .upstreams
        .datasets()
        .list_datasets(request)
        .await?
        .into_inner()
        .datasets;
    Ok(axum::Json(List::new(
        datasets.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// Registers a version: where its data lives and in which format (not read until checked).
#[utoipa::path(post, path = "/api/v1/datasets/{dataset_id}/versions", tag = "datasets",
    params(("dataset_id" = String, Path)), request_body = CreateVersion,
    responses((status = 201, body = DatasetVersion), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(dataset_id): Path<String>,
    Json(body): Json<CreateVersion>,
) -> ApiResult<(StatusCode, axum::Json<DatasetVersion>)> {
    let format = match body.format {
        DataFormat::Csv => pb::DataFormat::Csv,
        DataFormat::Jsonl => pb::DataFormat::JsonLines,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateDatasetVersionRequest {
            dataset_id,
            version: body.version,
            location: body.location,
            format: format as i32,
        },
    );
    let version = state
        .upstreams
        .datasets()
        .create_dataset_version(request)
        .await?
        .into_inner()
        .version
        .ok_or_else(|| ApiError::not_found("dataset version"))?;
    Ok((StatusCode::CREATED, axum::Json(version.into())))
}

/// A dataset's versions, newest first.
#[utoipa::path(get, path = "/api/v1/datasets/{dataset_id}/versions", tag = "datasets",
    params(("dataset_id" = String, Path)),
    responses((status = 200, body = List<DatasetVersion>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(dataset_id): Path<String>,
) -> ApiResult<axum::Json<List<DatasetVersion>>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ListDatasetVersionsRequest { dataset_id });
    let versions = state
        .upstreams
        .datasets()
        .list_dataset_versions(request)
        .await?
        .into_inner()
        .versions;
    Ok(axum::Json(List::new(
        versions.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// Replaces the dataset's expectations; every invalid one is listed (400).
#[utoipa::path(put, path = "/api/v1/datasets/{dataset_id}/expectations", tag = "datasets",
    params(("dataset_id" = String, Path)), request_body = PutExpectations,
    responses((status = 200, body = Dataset), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_expectations(
    State(state): State<AppState>,
    caller: Caller,
    Path(dataset_id): Path<String>,
    Json(body): Json<PutExpectations>,
) -> ApiResult<axum::Json<Dataset>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::PutExpectationsRequest {
            dataset_id,
            expectations: body.expectations.into_iter().map(Into::into).collect(),
        },
    );
    let dataset = state
        .upstreams
        .datasets()
        .put_expectations(request)
        .await?
        .into_inner()
        .dataset
        .ok_or_else(|| ApiError::not_found("dataset"))?;
    Ok(axum::Json(dataset.into()))
}

/// Reads the version's data now and evaluates every expectation of its dataset.
#[utoipa::path(post, path = "/api/v1/dataset-versions/{version_id}/check", tag = "datasets",
    params(("version_id" = String, Path)),
    responses((status = 200, body = Check), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn check_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(version_id): Path<String>,
) -> ApiResult<axum::Json<Check>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::CheckDatasetVersionRequest {
            dataset_version_id: version_id,
        },
    );
    let check = state
        .upstreams
        .datasets()
        .check_dataset_version(request)
        .await?
        .into_inner();
    Ok(axum::Json(Check {
        healthy: check.healthy,
        results: check
            .results
            .into_iter()
            .map(|r| ExpectationResult {
                expectation: r.expectation.and_then(expectation),
                passed: r.passed,
                message: r.message,
            })
            .collect(),
        version: check.version.map(Into::into),
    }))
}
