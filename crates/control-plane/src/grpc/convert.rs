//! Store models → protobuf messages.

use switchyard_proto::controlplane::v1 as pb;
use switchyard_runtime::time::to_proto;

use crate::domain::run_status::RunStatus;
use crate::store::entity::{environment, organization, project, run, service_token, user};
use crate::store::workflows::Versioned;

pub fn organization(m: &organization::Model) -> pb::Organization {
    pb::Organization {
        id: m.id.clone(),
        name: m.name.clone(),
        created_at: Some(to_proto(m.created_at)),
    }
}

pub fn project(m: &project::Model) -> pb::Project {
    pb::Project {
        id: m.id.clone(),
        org_id: m.org_id.clone(),
        name: m.name.clone(),
        created_at: Some(to_proto(m.created_at)),
    }
}

pub fn environment(m: &environment::Model) -> pb::Environment {
    pb::Environment {
        id: m.id.clone(),
        project_id: m.project_id.clone(),
        name: m.name.clone(),
        variables: serde_json::from_str(&m.variables_json).unwrap_or_default(),
        dataset_version_id: m.dataset_version_id.clone(),
        updated_at: Some(to_proto(m.updated_at)),
    }
}

pub fn role_name(role: pb::Role) -> &'static str {
    match role {
        pb::Role::Admin => "admin",
        pb::Role::Maintainer => "maintainer",
        pb::Role::Viewer => "viewer",
        pb::Role::Unspecified => "",
    }
}

pub fn role_from_name(name: &str) -> pb::Role {
    match name {
        "admin" => pb::Role::Admin,
        "maintainer" => pb::Role::Maintainer,
        "viewer" => pb::Role::Viewer,
        _ => pb::Role::Unspecified,
    }
}

pub fn user(m: &user::Model) -> pb::User {
    pb::User {
        id: m.id.clone(),
        org_id: m.org_id.clone(),
        username: m.username.clone(),
        role: role_from_name(&m.role) as i32,
        created_at: Some(to_proto(m.created_at)),
    }
}

pub fn service_token(m: &service_token::Model) -> pb::ServiceToken {
    pb::ServiceToken {
        id: m.id.clone(),
        name: m.name.clone(),
        org_id: m.org_id.clone(),
        project_id: m.project_id.clone(),
        scopes: m.scopes.split_whitespace().map(str::to_owned).collect(),
        expires_at: m.expires_at.map(to_proto),
        created_at: Some(to_proto(m.created_at)),
        last_used_at: m.last_used_at.map(to_proto),
        revoked_at: m.revoked_at.map(to_proto),
    }
}

pub fn workflow(v: &Versioned) -> pb::Workflow {
    pb::Workflow {
        project_id: v.workflow.project_id.clone(),
        name: v.workflow.name.clone(),
        version: u32::try_from(v.version.version).unwrap_or_default(),
        definition_json: v.version.definition_json.clone(),
        created_at: Some(to_proto(v.version.created_at)),
        deleted_at: v.workflow.deleted_at.map(to_proto),
    }
}

pub fn run(m: &run::Model) -> pb::Run {
    let status = RunStatus::parse(&m.status)
        .map(RunStatus::to_proto)
        .unwrap_or(pb::RunStatus::Unspecified);
    let duration_ms = match (m.started_at, m.finished_at) {
        (Some(start), Some(end)) => u64::try_from((end - start).num_milliseconds()).ok(),
        (None, Some(end)) => u64::try_from((end - m.created_at).num_milliseconds()).ok(),
        _ => None,
    };
    pb::Run {
        id: m.id.clone(),
        project_id: m.project_id.clone(),
        workflow: m.workflow.clone(),
        version: u32::try_from(m.version).unwrap_or_default(),
        status: status as i32,
        environment: m.environment.clone(),
        params_json: m.params_json.clone(),
        initial_state_json: m.initial_state_json.clone(),
        current_state_json: m.current_state_json.clone(),
        final_state_json: m.final_state_json.clone(),
        created_at: Some(to_proto(m.created_at)),
        started_at: m.started_at.map(to_proto),
        finished_at: m.finished_at.map(to_proto),
        duration_ms,
        // Task counts, shard results and coverage arrive with the scheduler's reports.
        tasks: Some(pb::TaskCounts::default()),
        shards: serde_json::from_str::<Vec<ShardJson>>(&m.shards_json)
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        coverage: serde_json::from_str::<CoverageJson>(&m.coverage_json)
            .ok()
            .map(Into::into),
        reason: m.reason.clone(),
    }
}

/// Shard results as the scheduler reports them (`RunStatusChanged.shards_json`).
#[derive(serde::Deserialize)]
struct ShardJson {
    node: String,
    shard_index: u32,
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl From<ShardJson> for pb::ShardResult {
    fn from(s: ShardJson) -> Self {
        pb::ShardResult {
            node: s.node,
            shard_index: s.shard_index,
            passed: s.passed,
            failed: s.failed,
            skipped: s.skipped,
        }
    }
}

#[derive(serde::Deserialize)]
struct CoverageJson {
    files: Vec<FileCoverageJson>,
    total_percent: f64,
}

#[derive(serde::Deserialize)]
struct FileCoverageJson {
    path: String,
    lines_covered: u32,
    lines_total: u32,
}

impl From<CoverageJson> for pb::Coverage {
    fn from(c: CoverageJson) -> Self {
        pb::Coverage {
            files: c
                .files
                .into_iter()
                .map(|f| pb::FileCoverage {
                    path: f.path,
                    lines_covered: f.lines_covered,
                    lines_total: f.lines_total,
                })
                .collect(),
            total_percent: c.total_percent,
        }
    }
}
