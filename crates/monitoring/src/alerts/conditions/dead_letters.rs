//! DEAD_LETTER_COUNT: tasks of the project dead-lettered in the window and not replayed since.
//! Counting only unreplayed ones lets the alert clear when an operator replays them.

use super::Inputs;
use crate::domain::alert::{self, Finding};
use crate::store::alert_entity::alert_rule;
use crate::store::alerts::conditions;

pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Option<Finding>, String> {
    let count =
        conditions::unreplayed_dead_letters(inputs.db, &rule.project_id, inputs.since(rule))
            .await
            .map_err(|e| e.to_string())?;
    Ok(alert::dead_letters(count, rule.threshold))
}
