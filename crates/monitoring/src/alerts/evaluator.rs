//! The evaluator: every `alerts.evaluation_interval`, every enabled rule's condition is
//! evaluated and reconciled with the rule's open alerts — a finding without an open alert
//! fires one, an open alert whose finding is gone is resolved (`resolved_by = "auto"`), each
//! change audited and its webhooks queued in the round's transaction.
//!
//! Once across replicas: on PostgreSQL the round first takes the job lock in its transaction
//! (a replica that finds it taken skips the round), then reads the conditions on other pooled
//! connections and writes in the locked transaction. SQLite has one process and a single
//! writer: the conditions are read first and the write transaction is opened only to apply
//! them, so ingestion is not held up by the scheduler call. Even if two rounds did overlap,
//! the open-alert unique index keeps a condition to one alert.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::shutdown::Shutdown;

use super::conditions::{self, Inputs};
use super::config::AlertsConfig;
use super::notify::{self, By};
use crate::domain::alert::{Finding, State, dedupe_key};
use crate::error::Result;
use crate::store::alert_entity::alert_rule;
use crate::store::alerts::{open, rules};

pub const JOB: &str = "monitoring.alerts.evaluate";
/// Gauge of alerts by `state`.
pub const ALERTS_GAUGE: &str = "switchyard_alerts";

/// What a round changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub rules: usize,
    pub fired: usize,
    pub resolved: usize,
    /// Rules whose condition could not be evaluated (left as they were).
    pub unknown: usize,
}

/// One evaluation round. `None` when another replica has this round.
pub async fn round(
    db: &DatabaseConnection,
    scheduler: &GrpcChannel,
    config: &AlertsConfig,
) -> Result<Option<Round>> {
    let locked = if switchyard_runtime::db::is_postgres(db) {
        let txn = switchyard_runtime::db::write_txn(db).await?;
        if !switchyard_runtime::db::try_job_lock(&txn, JOB).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        Some(txn)
    } else {
        None
    };
    let now = Utc::now();
    let enabled = rules::enabled(db).await?;
    let inputs = Inputs::new(db, scheduler, config, now);
    let mut summary = Round {
        rules: enabled.len(),
        ..Round::default()
    };
    let mut evaluated = Vec::with_capacity(enabled.len());
    for rule in &enabled {
        match conditions::evaluate(&inputs, rule).await {
            Ok(findings) => evaluated.push((rule, findings)),
            Err(error) => {
                summary.unknown += 1;
                tracing::warn!(%error, rule_id = %rule.id, kind = %rule.kind, "alert condition could not be evaluated; its alerts are left as they are");
            }
        }
    }
    let txn = match locked {
        Some(txn) => txn,
        None => switchyard_runtime::db::write_txn(db).await?,
    };
    for (rule, findings) in evaluated {
        let (fired, resolved) = reconcile(&txn, rule, &findings, now).await?;
        summary.fired += fired;
        summary.resolved += resolved;
    }
    txn.commit().await?;
    Ok(Some(summary))
}

/// Fires what holds without an open alert and resolves open alerts that no longer hold.
/// Returns (fired, resolved).
pub async fn reconcile<C: ConnectionTrait>(
    conn: &C,
    rule: &alert_rule::Model,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> Result<(usize, usize)> {
    let open_alerts = open::open_for_rule(conn, &rule.id).await?;
    let open_keys: HashSet<&str> = open_alerts.iter().map(|a| a.dedupe_key.as_str()).collect();
    let mut holding = HashSet::new();
    let mut fired = 0;
    for finding in findings {
        let key = dedupe_key(&rule.id, &finding.subject);
        if !holding.insert(key.clone()) || open_keys.contains(key.as_str()) {
            continue;
        }
        if let Some(row) = open::fire(conn, rule, &key, &finding.message, now).await? {
            tracing::info!(alert_id = %row.id, rule_id = %rule.id, dedupe_key = %key, "alert fired");
            notify::changed(conn, By::Evaluator, "firing", Some(rule), &row, now).await?;
            fired += 1;
        }
    }
    let mut resolved = 0;
    for alert in open_alerts
        .iter()
        .filter(|a| !holding.contains(&a.dedupe_key))
    {
        if let Some(row) = open::resolve(conn, &alert.id, notify::AUTO, now).await? {
            tracing::info!(alert_id = %row.id, rule_id = %rule.id, "alert resolved: condition cleared");
            notify::changed(conn, By::Evaluator, "resolved", Some(rule), &row, now).await?;
            resolved += 1;
        }
    }
    Ok((fired, resolved))
}

/// Sets the alerts gauge from the table (every state, zero included).
pub async fn update_gauge(db: &DatabaseConnection) -> Result<()> {
    let counts = open::count_by_state(db).await?;
    for state in State::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map(|(_, n)| *n)
            .unwrap_or(0);
        metrics::gauge!(ALERTS_GAUGE, "service" => crate::SERVICE, "state" => state.as_str())
            .set(n as f64);
    }
    Ok(())
}

/// `# HELP` for the gauge.
pub fn describe() {
    let _ = switchyard_runtime::metrics::handle();
    metrics::describe_gauge!(
        ALERTS_GAUGE,
        "alerts by state (firing, acknowledged, resolved)"
    );
}

/// Runs [`round`] every `config.evaluation_interval` until shutdown.
pub async fn run_periodically(
    db: DatabaseConnection,
    scheduler: GrpcChannel,
    config: AlertsConfig,
    shutdown: Shutdown,
) {
    describe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.evaluation_interval.max(Duration::from_millis(100))) => {}
            _ = shutdown.cancelled() => return,
        }
        match round(&db, &scheduler, &config).await {
            Ok(Some(r)) if r.fired + r.resolved > 0 => {
                tracing::info!(
                    rules = r.rules,
                    fired = r.fired,
                    resolved = r.resolved,
                    unknown = r.unknown,
                    "alert rules evaluated"
                )
            }
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!("alert evaluation: another replica has this round"),
            Err(error) => tracing::warn!(%error, "alert evaluation failed; retrying next interval"),
        }
        if let Err(error) = update_gauge(&db).await {
            tracing::debug!(%error, "alerts gauge not updated");
        }
    }
}
