//! Alert conditions, one module per kind. Each answers, for one rule, the findings that hold
//! now (an empty list: the condition is clear) or an error when it cannot tell (the evaluator
//! then leaves that rule's alerts as they are rather than resolve them on missing data).
//!
//! Adding a kind: a module here with an `evaluate`, its arm in [`evaluate`] and in
//! [`supported`], and its threshold rule in `domain::alert::rule_spec` if it is not a count.

mod agent_pool;
mod api_checks;
mod dead_letters;
mod failure_rate;
mod stuck_tasks;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use switchyard_runtime::grpc::GrpcChannel;
use tokio::sync::OnceCell;

use super::config::AlertsConfig;
use crate::domain::alert::{Finding, Kind};
use crate::store::alert_entity::alert_rule;

/// What conditions read, shared by every rule of one evaluation round. Answers from other
/// services are fetched at most once per round, on first use.
pub struct Inputs<'a> {
    pub db: &'a DatabaseConnection,
    pub scheduler: &'a GrpcChannel,
    pub config: &'a AlertsConfig,
    pub now: DateTime<Utc>,
    live_agents: OnceCell<Result<u64, String>>,
}

impl<'a> Inputs<'a> {
    pub fn new(
        db: &'a DatabaseConnection,
        scheduler: &'a GrpcChannel,
        config: &'a AlertsConfig,
        now: DateTime<Utc>,
    ) -> Self {
        Inputs {
            db,
            scheduler,
            config,
            now,
            live_agents: OnceCell::new(),
        }
    }

    /// The start of `rule`'s window.
    pub fn since(&self, rule: &alert_rule::Model) -> DateTime<Utc> {
        self.now - chrono::Duration::milliseconds(rule.window_ms.max(0))
    }
}

/// Whether rules of `kind` can be evaluated by this build.
pub fn supported(kind: Kind) -> bool {
    match kind {
        Kind::FailureRate
        | Kind::DeadLetterCount
        | Kind::AgentPoolEmpty
        | Kind::StuckTasks
        | Kind::ApiCheckFailing => true,
    }
}

/// The findings of `rule` now, or why they cannot be known.
pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Vec<Finding>, String> {
    let kind = Kind::parse(&rule.kind).ok_or_else(|| format!("unknown kind {:?}", rule.kind))?;
    let finding = match kind {
        Kind::FailureRate => failure_rate::evaluate(inputs, rule).await?,
        Kind::DeadLetterCount => dead_letters::evaluate(inputs, rule).await?,
        Kind::AgentPoolEmpty => agent_pool::evaluate(inputs, rule).await?,
        Kind::StuckTasks => stuck_tasks::evaluate(inputs, rule).await?,
        // One finding per failing check, each its own alert.
        Kind::ApiCheckFailing => return api_checks::evaluate(inputs, rule).await,
    };
    Ok(finding.into_iter().collect())
}
