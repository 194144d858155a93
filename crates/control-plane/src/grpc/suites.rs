//! SuiteService: suites (with their dataset gate) and BDD ingestion of Gherkin files.

use sha2::Digest as _;
use switchyard_proto::controlplane::v1::suite_service_server::SuiteService;
use switchyard_proto::controlplane::v1::*;
use switchyard_runtime::auth::Scope;
use switchyard_runtime::error::violation;
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::domain::gherkin::{self, FeatureDoc, StepDoc};
use crate::domain::names;
use crate::error::Error;
use crate::state::{Attempt, audit, success};
use crate::store::entity::{scenario, scenario_step, suite};
use crate::store::suites::{FullFeature, Stored};
use crate::store::{self, page::Page};

/// The suite features land in when the caller names none.
pub const DEFAULT_SUITE: &str = "default";

#[tonic::async_trait]
impl SuiteService for ControlPlaneApi {
    async fn put_suite(
        &self,
        request: Request<PutSuiteRequest>,
    ) -> Result<Response<PutSuiteResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesWrite,
                Attempt::new("suite.put", "suite", &req.name),
            )
            .await?;
        names::check("suite name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let (suite, changed) =
            store::suites::put_suite(&txn, &project.id, &req.name, req.require_dataset_health)
                .await?;
        if changed {
            let fact = success(
                "suite.put",
                "suite",
                &suite.id,
                &project.org_id,
                &project.id,
            );
            let details = serde_json::json!({
                "name": suite.name,
                "require_dataset_health": suite.require_dataset_health,
            });
            audit(&txn, &ctx, fact, &details).await?;
        }
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(PutSuiteResponse {
            suite: Some(suite_message(&suite)),
        }))
    }

    async fn list_suites(
        &self,
        request: Request<ListSuitesRequest>,
    ) -> Result<Response<ListSuitesResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesRead,
                Attempt::new("suite.list", "project", &req.project_id),
            )
            .await?;
        let suites = store::suites::list_suites(&self.state.db, &project.id).await?;
        Ok(Response::new(ListSuitesResponse {
            suites: suites.iter().map(suite_message).collect(),
        }))
    }

    async fn ingest_features(
        &self,
        request: Request<IngestFeaturesRequest>,
    ) -> Result<Response<IngestFeaturesResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let suite_name = if req.suite.is_empty() {
            DEFAULT_SUITE
        } else {
            req.suite.as_str()
        };
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesWrite,
                Attempt::new("feature.ingest", "suite", suite_name),
            )
            .await?;
        names::check("suite", suite_name)
            .map_err(|m| Error::invalid("suite", "invalid_name", m))?;
        // Every file is parsed before anything is written: one bad file stores nothing.
        let parsed = parse_all(&req.files)?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let suite = match store::suites::find_suite(&txn, &project.id, suite_name).await? {
            Some(suite) => suite,
            None => {
                let (suite, _) =
                    store::suites::put_suite(&txn, &project.id, suite_name, false).await?;
                let fact = success(
                    "suite.put",
                    "suite",
                    &suite.id,
                    &project.org_id,
                    &project.id,
                );
                let details =
                    serde_json::json!({ "name": suite.name, "require_dataset_health": false });
                audit(&txn, &ctx, fact, &details).await?;
                suite
            }
        };
        let mut rows = Vec::with_capacity(parsed.len());
        let mut changes = Vec::with_capacity(parsed.len());
        for file in &parsed {
            let (row, stored) =
                store::suites::put_feature(&txn, &suite, &file.path, &file.digest, &file.doc)
                    .await?;
            if stored != Stored::Unchanged {
                let fact = success(
                    "feature.ingested",
                    "feature",
                    &row.id,
                    &project.org_id,
                    &project.id,
                );
                let details = serde_json::json!({
                    "suite": suite.name,
                    "path": row.path,
                    "change": stored.as_str(),
                    "scenarios": file.doc.scenarios.len(),
                    "digest": row.digest,
                });
                audit(&txn, &ctx, fact, &details).await?;
            }
            rows.push(row);
            changes.push(stored.as_str().to_owned());
        }
        let features = store::suites::load(&txn, rows).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(IngestFeaturesResponse {
            features: features.iter().map(feature_message).collect(),
            suite: Some(suite_message(&suite)),
            changes,
        }))
    }

    async fn list_features(
        &self,
        request: Request<ListFeaturesRequest>,
    ) -> Result<Response<ListFeaturesResponse>, Status> {
        let (ctx, req) = context(request)?;
        let suite_name = if req.suite.is_empty() {
            DEFAULT_SUITE
        } else {
            req.suite.as_str()
        };
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::SuitesRead,
                Attempt::new("feature.list", "suite", suite_name),
            )
            .await?;
        let db = &self.state.db;
        let suite = store::suites::get_suite(db, &project.id, suite_name).await?;
        let page = Page::from_proto(req.page.as_ref())?;
        let mut rows = store::suites::list_features(db, &suite.id, &page).await?;
        let page = page.finish(&mut rows, |f| &f.id);
        let features = store::suites::load(db, rows).await?;
        Ok(Response::new(ListFeaturesResponse {
            features: features.iter().map(feature_message).collect(),
            page: Some(page),
        }))
    }
}

/// One file, parsed and fingerprinted.
struct ParsedFile {
    path: String,
    digest: String,
    doc: FeatureDoc,
}

/// Parses every file; refuses the whole request with one violation per bad file.
fn parse_all(files: &[GherkinFile]) -> Result<Vec<ParsedFile>, Error> {
    if files.is_empty() {
        return Err(Error::invalid(
            "files",
            "required",
            "files must list at least one .feature file",
        ));
    }
    if files.len() > gherkin::MAX_FILES {
        return Err(Error::invalid(
            "files",
            "too_many",
            format!("at most {} files per request", gherkin::MAX_FILES),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut parsed = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if !seen.insert(file.path.as_str()) {
            problems.push(violation(
                &format!("files[{index}].path"),
                "duplicate_path",
                format!("`{}` appears more than once", file.path),
            ));
            continue;
        }
        match gherkin::parse(&file.path, &file.content) {
            Ok(doc) => parsed.push(ParsedFile {
                path: file.path.clone(),
                digest: hex::encode(sha2::Sha256::digest(file.content.as_bytes())),
                doc,
            }),
            Err(error) => {
                let (field, reason) = if error.line == 0 {
                    (format!("files[{index}]"), "invalid_file")
                } else {
                    (format!("files[{index}].content"), "gherkin_syntax")
                };
                problems.push(violation(&field, reason, error.to_string()));
            }
        }
    }
    if problems.is_empty() {
        return Ok(parsed);
    }
    let message = match problems.as_slice() {
        [only] => format!("nothing was stored: {}", only.message),
        many => format!(
            "nothing was stored: {} files are not valid Gherkin",
            many.len()
        ),
    };
    Err(Error::Unprocessable {
        message,
        violations: problems,
    })
}

fn suite_message(m: &suite::Model) -> Suite {
    Suite {
        id: m.id.clone(),
        project_id: m.project_id.clone(),
        name: m.name.clone(),
        require_dataset_health: m.require_dataset_health,
    }
}

fn feature_message(f: &FullFeature) -> Feature {
    Feature {
        id: f.feature.id.clone(),
        suite_id: f.feature.suite_id.clone(),
        path: f.feature.path.clone(),
        name: f.feature.name.clone(),
        description: f.feature.description.clone(),
        tags: json_list(&f.feature.tags_json),
        background: f.background().iter().map(step_doc_message).collect(),
        scenarios: f
            .scenarios
            .iter()
            .map(|(s, steps)| scenario_message(s, steps))
            .collect(),
        updated_at: Some(to_proto(f.feature.updated_at)),
        digest: f.feature.digest.clone(),
    }
}

fn scenario_message(s: &scenario::Model, steps: &[scenario_step::Model]) -> Scenario {
    let examples: Vec<gherkin::ExamplesDoc> =
        serde_json::from_str(&s.examples_json).unwrap_or_default();
    let rule_background: Vec<StepDoc> =
        serde_json::from_str(&s.rule_background_json).unwrap_or_default();
    Scenario {
        name: s.name.clone(),
        tags: json_list(&s.tags_json),
        steps: steps.iter().map(step_row_message).collect(),
        outline: s.outline,
        examples: examples
            .into_iter()
            .map(|e| Examples {
                name: e.name,
                tags: e.tags,
                table: Some(table(e.table)),
            })
            .collect(),
        line: u32::try_from(s.line).unwrap_or_default(),
        rule: s.rule.clone(),
        rule_background: rule_background.iter().map(step_doc_message).collect(),
    }
}

fn step_row_message(s: &scenario_step::Model) -> Step {
    let rows: Vec<Vec<String>> = serde_json::from_str(&s.table_json).unwrap_or_default();
    Step {
        keyword: s.keyword.clone(),
        text: s.text.clone(),
        doc_string: s.doc_string.clone().unwrap_or_default(),
        table: (!rows.is_empty()).then(|| table(rows)),
        line: u32::try_from(s.line).unwrap_or_default(),
    }
}

fn step_doc_message(s: &StepDoc) -> Step {
    Step {
        keyword: s.keyword.clone(),
        text: s.text.clone(),
        doc_string: s.doc_string.clone().unwrap_or_default(),
        table: (!s.table.is_empty()).then(|| table(s.table.clone())),
        line: s.line,
    }
}

fn table(rows: Vec<Vec<String>>) -> DataTable {
    DataTable {
        rows: rows.into_iter().map(|cells| TableRow { cells }).collect(),
    }
}

fn json_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}
