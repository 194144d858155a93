//! DatasetService: datasets, their versions and expectations, and the health check that the
//! run gate (see [`ControlPlaneApi::dataset_gate`]) relies on.

use switchyard_proto::controlplane::v1::dataset_service_server::DatasetService;
use switchyard_proto::controlplane::v1::{self as pb, *};
use switchyard_proto::events::v1::Outcome;
use switchyard_runtime::auth::{CallContext, Scope};
use switchyard_runtime::error::violation;
use switchyard_runtime::outbox::AuditFact;
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::domain::expectations::{self, DataFormat, Expectation, Verdict};
use crate::domain::names;
use crate::error::Error;
use crate::state::{Attempt, audit, check_id, success};
use crate::store;
use crate::store::entity::{dataset, dataset_version, environment, project, suite};

/// Longest version label.
const MAX_VERSION_CHARS: usize = 100;

#[tonic::async_trait]
impl DatasetService for ControlPlaneApi {
    async fn create_dataset(
        &self,
        request: Request<CreateDatasetRequest>,
    ) -> Result<Response<CreateDatasetResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesWrite,
                Attempt::new("dataset.create", "dataset", &req.name),
            )
            .await?;
        names::check("dataset name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let dataset = store::datasets::create(&txn, &project.id, &req.name).await?;
        let fact = success(
            "dataset.created",
            "dataset",
            &dataset.id,
            &project.org_id,
            &project.id,
        );
        audit(&txn, &ctx, fact, &serde_json::json!({ "name": req.name })).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateDatasetResponse {
            dataset: Some(dataset_message(&dataset)?),
        }))
    }

    async fn create_dataset_version(
        &self,
        request: Request<CreateDatasetVersionRequest>,
    ) -> Result<Response<CreateDatasetVersionResponse>, Status> {
        let (ctx, req) = context(request)?;
        let (project, dataset) = self
            .authorized_dataset(
                &ctx,
                &req.dataset_id,
                Scope::SuitesWrite,
                "dataset.version_create",
            )
            .await?;
        let label = req.version.trim();
        if label.is_empty()
            || label.chars().count() > MAX_VERSION_CHARS
            || label.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "version",
                "invalid_version",
                format!("version must be 1-{MAX_VERSION_CHARS} printable characters"),
            )
            .into());
        }
        let format = match DataFormat_::try_from(req.format) {
            Ok(DataFormat_::Csv) => DataFormat::Csv,
            Ok(DataFormat_::JsonLines) => DataFormat::JsonLines,
            _ => {
                return Err(Error::invalid(
                    "format",
                    "invalid_format",
                    "format must be csv or jsonl",
                )
                .into());
            }
        };
        self.state
            .data
            .check(&req.location)
            .map_err(|m| Error::invalid("location", "invalid_location", m))?;
        let state = &self.state;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let version =
            store::datasets::create_version(&txn, &dataset.id, label, &req.location, format)
                .await?;
        let fact = success(
            "dataset.version_created",
            "dataset_version",
            &version.id,
            &project.org_id,
            &project.id,
        );
        let details = serde_json::json!({
            "dataset": dataset.name,
            "version": version.version,
            "location": version.location,
            "format": version.format,
        });
        audit(&txn, &ctx, fact, &details).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateDatasetVersionResponse {
            version: Some(version_message(&version)),
        }))
    }

    async fn put_expectations(
        &self,
        request: Request<PutExpectationsRequest>,
    ) -> Result<Response<PutExpectationsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let (project, dataset) = self
            .authorized_dataset(
                &ctx,
                &req.dataset_id,
                Scope::SuitesWrite,
                "dataset.expectations_put",
            )
            .await?;
        let mut wanted = Vec::with_capacity(req.expectations.len());
        let mut problems = Vec::new();
        for (index, e) in req.expectations.iter().enumerate() {
            match from_proto(e) {
                Some(e) => wanted.push((index, e)),
                None => problems.push(violation(
                    &format!("expectations[{index}]"),
                    "required",
                    "an expectation must set exactly one kind",
                )),
            }
        }
        let list: Vec<Expectation> = wanted.iter().map(|(_, e)| e.clone()).collect();
        for (position, message) in expectations::validate(&list) {
            let index = wanted.get(position).map_or(position, |(i, _)| *i);
            problems.push(violation(
                &format!("expectations[{index}]"),
                "invalid_expectation",
                message,
            ));
        }
        if !problems.is_empty() {
            return Err(Error::InvalidArgument {
                message: format!("{} expectations are invalid", problems.len()),
                violations: problems,
            }
            .into());
        }
        let state = &self.state;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let dataset = store::datasets::put_expectations(&txn, dataset, &list).await?;
        let fact = success(
            "dataset.expectations_put",
            "dataset",
            &dataset.id,
            &project.org_id,
            &project.id,
        );
        let labels: Vec<String> = list.iter().map(Expectation::label).collect();
        audit(
            &txn,
            &ctx,
            fact,
            &serde_json::json!({ "expectations": labels }),
        )
        .await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(PutExpectationsResponse {
            dataset: Some(dataset_message(&dataset)?),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<ListDatasetsRequest>,
    ) -> Result<Response<ListDatasetsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesRead,
                Attempt::new("dataset.list", "project", &req.project_id),
            )
            .await?;
        let datasets = store::datasets::list(&self.state.db, &project.id).await?;
        Ok(Response::new(ListDatasetsResponse {
            datasets: datasets
                .iter()
                .map(dataset_message)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn list_dataset_versions(
        &self,
        request: Request<ListDatasetVersionsRequest>,
    ) -> Result<Response<ListDatasetVersionsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let (_, dataset) = self
            .authorized_dataset(
                &ctx,
                &req.dataset_id,
                Scope::SuitesRead,
                "dataset.version_list",
            )
            .await?;
        let versions = store::datasets::list_versions(&self.state.db, &dataset.id).await?;
        Ok(Response::new(ListDatasetVersionsResponse {
            versions: versions.iter().map(version_message).collect(),
        }))
    }

    async fn check_dataset_version(
        &self,
        request: Request<CheckDatasetVersionRequest>,
    ) -> Result<Response<CheckDatasetVersionResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("dataset_version_id", &req.dataset_version_id)?;
        let version = store::datasets::get_version(&self.state.db, &req.dataset_version_id).await?;
        let (_, dataset) = self
            .authorized_dataset(
                &ctx,
                &version.dataset_id,
                Scope::SuitesRead,
                "dataset.check",
            )
            .await?;
        let verdicts = self.evaluate(&dataset, &version).await?;
        Ok(Response::new(CheckDatasetVersionResponse {
            healthy: verdicts.iter().all(|v| v.passed),
            results: verdicts.iter().map(result_message).collect(),
            version: Some(version_message(&version)),
        }))
    }
}

use switchyard_proto::controlplane::v1::DataFormat as DataFormat_;

impl ControlPlaneApi {
    /// Loads a dataset and authorizes `scope` on its project (404 missing, 403 foreign).
    async fn authorized_dataset(
        &self,
        ctx: &CallContext,
        dataset_id: &str,
        scope: Scope,
        action: &str,
    ) -> Result<(project::Model, dataset::Model), Error> {
        check_id("dataset_id", dataset_id)?;
        let dataset = store::datasets::get(&self.state.db, dataset_id).await?;
        let project = self
            .state
            .project(
                ctx,
                &dataset.project_id,
                scope,
                Attempt::new(action, "dataset", &dataset.id),
            )
            .await?;
        Ok((project, dataset))
    }

    /// Fetches a version's data and evaluates the dataset's expectations over it. Data that
    /// cannot be fetched fails every expectation with the reason (the gate must not pass on
    /// data it could not see).
    async fn evaluate(
        &self,
        dataset: &dataset::Model,
        version: &dataset_version::Model,
    ) -> Result<Vec<Verdict>, Error> {
        let expectations = store::datasets::expectations(dataset)?;
        let format = DataFormat::parse(&version.format).ok_or_else(|| {
            Error::Internal(format!(
                "version {} has format {}",
                version.id, version.format
            ))
        })?;
        let started = std::time::Instant::now();
        let verdicts = match self.state.data.fetch(&version.location).await {
            Ok(bytes) => {
                let size = bytes.len();
                let verdicts = tokio::task::spawn_blocking(move || {
                    expectations::evaluate(&bytes, format, &expectations)
                })
                .await
                .map_err(|e| Error::Internal(format!("evaluation failed: {e}")))?;
                tracing::info!(dataset_version_id = %version.id, bytes = size, elapsed_ms = started.elapsed().as_millis() as u64, "dataset evaluated");
                verdicts
            }
            Err(reason) => expectations
                .into_iter()
                .map(|expectation| Verdict {
                    expectation,
                    passed: false,
                    message: format!("the data could not be read: {reason}"),
                })
                .collect(),
        };
        Ok(verdicts)
    }

    /// The gate of a suite with `require_dataset_health`: passes, or refuses the run with 422
    /// listing every failed expectation and records the refusal in the audit trail.
    pub(crate) async fn dataset_gate(
        &self,
        ctx: &CallContext,
        project: &project::Model,
        suite: &suite::Model,
        environment: Option<&environment::Model>,
    ) -> Result<(), Error> {
        let refusal = match environment {
            None => Some(vec![violation(
                "environment",
                "dataset_required",
                format!(
                    "suite `{}` requires dataset health: name an environment with a dataset version",
                    suite.name
                ),
            )]),
            Some(env) if env.dataset_version_id.is_empty() => Some(vec![violation(
                "environment",
                "dataset_required",
                format!(
                    "suite `{}` requires dataset health, and environment `{}` has no dataset version",
                    suite.name, env.name
                ),
            )]),
            Some(env) => {
                match store::datasets::find_version_in_project(
                    &self.state.db,
                    &project.id,
                    &env.dataset_version_id,
                )
                .await?
                {
                    None => Some(vec![violation(
                        "environment",
                        "dataset_missing",
                        format!(
                            "environment `{}` names dataset version {}, which does not exist in this project",
                            env.name, env.dataset_version_id
                        ),
                    )]),
                    Some((dataset, version)) => {
                        let verdicts = self.evaluate(&dataset, &version).await?;
                        let failed: Vec<_> = verdicts
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| !v.passed)
                            .map(|(i, v)| {
                                violation(
                                    &format!("expectations[{i}]"),
                                    "expectation_failed",
                                    format!(
                                        "{} {}: {}",
                                        dataset.name,
                                        v.expectation.label(),
                                        v.message
                                    ),
                                )
                            })
                            .collect();
                        (!failed.is_empty()).then_some(failed)
                    }
                }
            }
        };
        let Some(violations) = refusal else {
            return Ok(());
        };
        let fact = AuditFact {
            action: "run.create",
            resource_type: "run",
            resource_id: "",
            org_id: &project.org_id,
            project_id: &project.id,
            outcome: Outcome::Failed,
        };
        let details = serde_json::json!({
            "reason": "dataset_gate",
            "suite": suite.name,
            "environment": environment.map(|e| e.name.as_str()),
            "failed": violations.iter().map(|v| v.message.as_str()).collect::<Vec<_>>(),
        });
        self.state.audit_alone(ctx, fact, &details).await;
        Err(Error::Unprocessable {
            message: format!(
                "run refused: the dataset gate of suite `{}` failed ({} problem{})",
                suite.name,
                violations.len(),
                if violations.len() == 1 { "" } else { "s" }
            ),
            violations,
        })
    }
}

fn from_proto(e: &pb::Expectation) -> Option<Expectation> {
    use pb::expectation::Kind;
    Some(match e.kind.as_ref()? {
        Kind::RowCountBetween(k) => Expectation::RowCountBetween {
            min: k.min,
            max: k.max,
        },
        Kind::ColumnNotNull(k) => Expectation::ColumnNotNull {
            column: k.column.clone(),
        },
        Kind::ColumnUnique(k) => Expectation::ColumnUnique {
            column: k.column.clone(),
        },
        Kind::ColumnValuesInSet(k) => Expectation::ColumnValuesInSet {
            column: k.column.clone(),
            values: k.values.clone(),
        },
        Kind::ColumnMatchesRegex(k) => Expectation::ColumnMatchesRegex {
            column: k.column.clone(),
            pattern: k.pattern.clone(),
        },
    })
}

fn to_proto_expectation(e: &Expectation) -> pb::Expectation {
    use pb::expectation::Kind;
    let kind = match e {
        Expectation::RowCountBetween { min, max } => Kind::RowCountBetween(RowCountBetween {
            min: *min,
            max: *max,
        }),
        Expectation::ColumnNotNull { column } => Kind::ColumnNotNull(ColumnNotNull {
            column: column.clone(),
        }),
        Expectation::ColumnUnique { column } => Kind::ColumnUnique(ColumnUnique {
            column: column.clone(),
        }),
        Expectation::ColumnValuesInSet { column, values } => {
            Kind::ColumnValuesInSet(ColumnValuesInSet {
                column: column.clone(),
                values: values.clone(),
            })
        }
        Expectation::ColumnMatchesRegex { column, pattern } => {
            Kind::ColumnMatchesRegex(ColumnMatchesRegex {
                column: column.clone(),
                pattern: pattern.clone(),
            })
        }
    };
    pb::Expectation { kind: Some(kind) }
}

fn dataset_message(m: &dataset::Model) -> Result<Dataset, Error> {
    Ok(Dataset {
        id: m.id.clone(),
        project_id: m.project_id.clone(),
        name: m.name.clone(),
        expectations: store::datasets::expectations(m)?
            .iter()
            .map(to_proto_expectation)
            .collect(),
    })
}

fn version_message(m: &dataset_version::Model) -> DatasetVersion {
    let format = match DataFormat::parse(&m.format) {
        Some(DataFormat::Csv) => DataFormat_::Csv,
        Some(DataFormat::JsonLines) => DataFormat_::JsonLines,
        None => DataFormat_::Unspecified,
    };
    DatasetVersion {
        id: m.id.clone(),
        dataset_id: m.dataset_id.clone(),
        version: m.version.clone(),
        location: m.location.clone(),
        format: format as i32,
        created_at: Some(to_proto(m.created_at)),
    }
}

fn result_message(v: &Verdict) -> ExpectationResult {
    ExpectationResult {
        expectation: Some(to_proto_expectation(&v.expectation)),
        passed: v.passed,
        message: v.message.clone(),
    }
}
