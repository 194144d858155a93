//! API_CHECK_FAILING: the project's registered API checks whose latest probe failed, one
//! alert per check (its id is the subject), so a second failing check fires on its own and
//! each resolves when its check passes again.

use super::Inputs;
use crate::domain::alert::{self, Finding};
use crate::store::alert_entity::alert_rule;
use crate::store::checks;

pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Vec<Finding>, String> {
    let failing: Vec<(String, String, String)> =
        checks::failing_checks(inputs.db, &rule.project_id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(check, error)| (check.id, check.name, error))
            .collect();
    Ok(alert::api_checks(&failing, rule.threshold))
}
