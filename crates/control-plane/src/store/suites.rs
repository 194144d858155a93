//! Suites and their BDD features: a feature row per (suite, path), its scenarios in file
//! order, each with its ordered steps.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entity::{feature, scenario, scenario_step, suite};
use super::new_id;
use super::page::Page;
use crate::domain::gherkin::{FeatureDoc, StepDoc};
use crate::error::{Error, Result, conflict_or};

/// Rows per multi-row insert: well under both databases' bound-parameter limits.
const INSERT_CHUNK: usize = 500;

pub async fn find_suite<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<Option<suite::Model>> {
    Ok(suite::Entity::find()
        .filter(suite::Column::ProjectId.eq(project_id))
        .filter(suite::Column::Name.eq(name))
        .one(conn)
        .await?)
}

/// Creates the suite or changes its gate. Returns the suite and whether anything changed.
pub async fn put_suite<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
    require_dataset_health: bool,
) -> Result<(suite::Model, bool)> {
    let now = Utc::now();
    match find_suite(conn, project_id, name).await? {
        Some(existing) if existing.require_dataset_health == require_dataset_health => {
            Ok((existing, false))
        }
        Some(existing) => {
            let mut active: suite::ActiveModel = existing.into();
            active.require_dataset_health = Set(require_dataset_health);
            active.updated_at = Set(now);
            Ok((active.update(conn).await?, true))
        }
        None => {
            let created = suite::ActiveModel {
                id: Set(new_id()),
                project_id: Set(project_id.to_owned()),
                name: Set(name.to_owned()),
                require_dataset_health: Set(require_dataset_health),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(conn)
            .await
            .map_err(|e| conflict_or(e, || format!("suite `{name}` was created concurrently")))?;
            Ok((created, true))
        }
    }
}

pub async fn list_suites<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
) -> Result<Vec<suite::Model>> {
    Ok(suite::Entity::find()
        .filter(suite::Column::ProjectId.eq(project_id))
        .order_by_asc(suite::Column::Name)
        .all(conn)
        .await?)
}

/// What storing one parsed file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    Updated,
    Unchanged,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Created => "created",
            Stored::Updated => "updated",
            Stored::Unchanged => "unchanged",
        }
    }
}

/// Stores the feature at `path` in the suite: new, replacing what the path held before (same
/// feature id), or nothing at all when the file is byte-for-byte the same.
pub async fn put_feature<C: ConnectionTrait>(
    conn: &C,
    suite: &suite::Model,
    path: &str,
    digest: &str,
    doc: &FeatureDoc,
) -> Result<(feature::Model, Stored)> {
    let now = Utc::now();
    let existing = feature::Entity::find()
        .filter(feature::Column::SuiteId.eq(&suite.id))
        .filter(feature::Column::Path.eq(path))
        .one(conn)
        .await?;
    let (row, stored) = match existing {
        Some(existing) if existing.digest == digest => return Ok((existing, Stored::Unchanged)),
        Some(existing) => {
            delete_scenarios(conn, &existing.id).await?;
            let mut active: feature::ActiveModel = existing.into();
            fill(&mut active, doc, digest);
            active.updated_at = Set(now);
            (active.update(conn).await?, Stored::Updated)
        }
        None => {
            let mut active = feature::ActiveModel {
                id: Set(new_id()),
                project_id: Set(suite.project_id.clone()),
                suite_id: Set(suite.id.clone()),
                path: Set(path.to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            };
            fill(&mut active, doc, digest);
            let row = active
                .insert(conn)
                .await
                .map_err(|e| conflict_or(e, || format!("`{path}` was ingested concurrently")))?;
            (row, Stored::Created)
        }
    };
    insert_scenarios(conn, &row.id, doc).await?;
    Ok((row, stored))
}

fn fill(active: &mut feature::ActiveModel, doc: &FeatureDoc, digest: &str) {
    active.name = Set(doc.name.clone());
    active.description = Set(doc.description.clone());
    active.tags_json = Set(to_json(&doc.tags));
    active.background_json = Set(to_json(&doc.background));
    active.digest = Set(digest.to_owned());
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain strings and vectors cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

async fn delete_scenarios<C: ConnectionTrait>(conn: &C, feature_id: &str) -> Result<()> {
    let ids: Vec<String> = scenario::Entity::find()
        .select_only()
        .column(scenario::Column::Id)
        .filter(scenario::Column::FeatureId.eq(feature_id))
        .into_tuple()
        .all(conn)
        .await?;
    for chunk in ids.chunks(INSERT_CHUNK) {
        scenario_step::Entity::delete_many()
            .filter(scenario_step::Column::ScenarioId.is_in(chunk.iter().cloned()))
            .exec(conn)
            .await?;
    }
    scenario::Entity::delete_many()
        .filter(scenario::Column::FeatureId.eq(feature_id))
        .exec(conn)
        .await?;
    Ok(())
}

async fn insert_scenarios<C: ConnectionTrait>(
    conn: &C,
    feature_id: &str,
    doc: &FeatureDoc,
) -> Result<()> {
    let mut scenarios = Vec::with_capacity(doc.scenarios.len());
    let mut steps = Vec::new();
    for (position, s) in doc.scenarios.iter().enumerate() {
        let id = new_id();
        scenarios.push(scenario::ActiveModel {
            id: Set(id.clone()),
            feature_id: Set(feature_id.to_owned()),
            position: Set(int(position)),
            name: Set(s.name.clone()),
            rule: Set(s.rule.clone()),
            rule_background_json: Set(to_json(&s.rule_background)),
            tags_json: Set(to_json(&s.tags)),
            outline: Set(s.outline),
            examples_json: Set(to_json(&s.examples)),
            line: Set(int(s.line as usize)),
        });
        for (position, step) in s.steps.iter().enumerate() {
            steps.push(scenario_step::ActiveModel {
                scenario_id: Set(id.clone()),
                position: Set(int(position)),
                keyword: Set(step.keyword.clone()),
                text: Set(step.text.clone()),
                doc_string: Set(step.doc_string.clone()),
                table_json: Set(to_json(&step.table)),
                line: Set(int(step.line as usize)),
            });
        }
    }
    while !scenarios.is_empty() {
        let rest = scenarios.split_off(scenarios.len().min(INSERT_CHUNK));
        scenario::Entity::insert_many(std::mem::replace(&mut scenarios, rest))
            .exec(conn)
            .await?;
    }
    while !steps.is_empty() {
        let rest = steps.split_off(steps.len().min(INSERT_CHUNK));
        scenario_step::Entity::insert_many(std::mem::replace(&mut steps, rest))
            .exec(conn)
            .await?;
    }
    Ok(())
}

fn int(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A stored feature with its scenarios (file order) and their steps (written order).
pub struct FullFeature {
    pub feature: feature::Model,
    pub scenarios: Vec<(scenario::Model, Vec<scenario_step::Model>)>,
}

impl FullFeature {
    pub fn background(&self) -> Vec<StepDoc> {
        serde_json::from_str(&self.feature.background_json).unwrap_or_default()
    }
}

/// Loads scenarios and steps for many features with two queries per chunk, not one per row.
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    features: Vec<feature::Model>,
) -> Result<Vec<FullFeature>> {
    let feature_ids: Vec<String> = features.iter().map(|f| f.id.clone()).collect();
    let mut scenarios: Vec<scenario::Model> = Vec::new();
    for chunk in feature_ids.chunks(INSERT_CHUNK) {
        scenarios.extend(
            scenario::Entity::find()
                .filter(scenario::Column::FeatureId.is_in(chunk.iter().cloned()))
                .order_by_asc(scenario::Column::Position)
                .all(conn)
                .await?,
        );
    }
    let scenario_ids: Vec<String> = scenarios.iter().map(|s| s.id.clone()).collect();
    let mut steps_by_scenario: HashMap<String, Vec<scenario_step::Model>> = HashMap::new();
    for chunk in scenario_ids.chunks(INSERT_CHUNK) {
        let steps = scenario_step::Entity::find()
            .filter(scenario_step::Column::ScenarioId.is_in(chunk.iter().cloned()))
            .order_by_asc(scenario_step::Column::Position)
            .all(conn)
            .await?;
        for step in steps {
            steps_by_scenario
                .entry(step.scenario_id.clone())
                .or_default()
                .push(step);
        }
    }
    let mut by_feature: HashMap<String, Vec<(scenario::Model, Vec<scenario_step::Model>)>> =
        HashMap::new();
    for s in scenarios {
        let steps = steps_by_scenario.remove(&s.id).unwrap_or_default();
        by_feature
            .entry(s.feature_id.clone())
            .or_default()
            .push((s, steps));
    }
    Ok(features
        .into_iter()
        .map(|feature| FullFeature {
            scenarios: by_feature.remove(&feature.id).unwrap_or_default(),
            feature,
        })
        .collect())
}

/// A suite's features, newest first.
pub async fn list_features<C: ConnectionTrait>(
    conn: &C,
    suite_id: &str,
    page: &Page,
) -> Result<Vec<feature::Model>> {
    let mut query = feature::Entity::find().filter(feature::Column::SuiteId.eq(suite_id));
    if let Some(before) = &page.before {
        query = query.filter(feature::Column::Id.lt(before.as_str()));
    }
    Ok(query
        .order_by_desc(feature::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?)
}

/// The suite named `name`, or `NotFound`.
pub async fn get_suite<C: ConnectionTrait>(
    conn: &C,
    project_id: &str,
    name: &str,
) -> Result<suite::Model> {
    find_suite(conn, project_id, name)
        .await?
        .ok_or_else(|| Error::not_found("suite", name))
}
