//! sea-orm entities of the control-plane schema (see the migrations for indexes and why).

use switchyard_runtime::entity;

entity!(organization, "organizations", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub created_at: DateTimeUtc,
});

entity!(project, "projects", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: DateTimeUtc,
});

entity!(environment, "environments", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub variables_json: String,
    pub dataset_version_id: String,
    pub updated_at: DateTimeUtc,
});

entity!(user, "users", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTimeUtc,
});

entity!(service_token, "service_tokens", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub project_id: String,
    /// Space-separated scope names.
    pub scopes: String,
    pub token_hash: String,
    pub created_by: String,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
});

entity!(workflow, "workflows", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub latest_version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
});

entity!(workflow_version, "workflow_versions", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workflow_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    pub definition_json: String,
    pub digest: String,
    pub created_at: DateTimeUtc,
});

entity!(run, "runs", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub workflow: String,
    pub workflow_id: String,
    pub version: i32,
    pub status: String,
    pub environment: String,
    pub suite: String,
    pub params_json: String,
    pub initial_state_json: String,
    pub current_state_json: String,
    pub final_state_json: String,
    pub shards_json: String,
    pub coverage_json: String,
    pub reason: String,
    pub idempotency_key: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub cancel_requested_at: Option<DateTimeUtc>,
});

entity!(suite, "suites", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub require_dataset_health: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

entity!(feature, "features", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub suite_id: String,
    pub path: String,
    pub name: String,
    pub description: String,
    pub tags_json: String,
    pub background_json: String,
    pub digest: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

entity!(scenario, "scenarios", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub feature_id: String,
    pub position: i32,
    pub name: String,
    pub rule: String,
    pub rule_background_json: String,
    pub tags_json: String,
    pub outline: bool,
    pub examples_json: String,
    pub line: i32,
});

entity!(scenario_step, "scenario_steps", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub scenario_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    pub keyword: String,
    pub text: String,
    pub doc_string: Option<String>,
    pub table_json: String,
    pub line: i32,
});

entity!(dataset, "datasets", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// Tagged JSON list of `domain::expectations::Expectation`.
    pub expectations_json: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

entity!(dataset_version, "dataset_versions", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub dataset_id: String,
    pub version: String,
    pub location: String,
    /// `csv` or `jsonl`.
    pub format: String,
    pub created_at: DateTimeUtc,
});
