//! FAILURE_RATE: failed attempts over ended attempts of the project in the window (see
//! `store::alerts::conditions` for which statuses count), once `alerts.min_sample` ended.

use super::Inputs;
use crate::domain::alert::{self, Finding};
use crate::store::alert_entity::alert_rule;
use crate::store::alerts::conditions;

pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Option<Finding>, String> {
    let (failed, ended) =
        conditions::failure_counts(inputs.db, &rule.project_id, inputs.since(rule))
            .await
            .map_err(|e| e.to_string())?;
    Ok(alert::failure_rate(
        failed,
        ended,
        rule.threshold,
        inputs.config.min_sample,
    ))
}
