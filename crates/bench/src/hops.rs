//! Where create-to-start's time goes, read back from the services' own tables after a
//! latency workload: the control plane's run row (created when `POST /runs` is handled), the
//! scheduler's run row (created when the control plane's outbox relay has delivered the run
//! to the scheduler) and the scheduler's task row (queued when the scheduler started the
//! run, started when an agent's claim leased it). Each hop's median, in milliseconds; every
//! timestamp comes from this machine's clock. This is what located a latency cost in the
//! control plane → scheduler delivery rather than in the claim.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use switchyard_test_support::TestDatabase;

/// Medians of create-to-start's hops, milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hops {
    /// Control plane's run row → scheduler's run row: commit, wake-up, relay, gRPC.
    pub(crate) deliver_ms: f64,
    /// Scheduler's run row → its task queued: the scheduler starting the run.
    pub(crate) start_ms: f64,
    /// Task queued → leased to a waiting agent: wake-up and claim.
    pub(crate) claim_ms: f64,
}

impl Hops {
    /// The hops of the single-task (`one`) runs created since `since` in `db`'s cluster.
    pub(crate) async fn since(db: &TestDatabase, since: DateTime<Utc>) -> anyhow::Result<Hops> {
        let conn = switchyard_runtime::db::connect(&db.config("bench")).await?;
        let (control_plane, scheduler) = (
            db.config("control-plane").schema,
            db.config("scheduler").schema,
        );
        let median = |from: &str, to: &str| {
            format!(
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY \
                 extract(epoch FROM ({to}::timestamptz - {from}::timestamptz))::float8 * 1000)"
            )
        };
        let sql = format!(
            "SELECT {} AS deliver, {} AS start, {} AS claim \
             FROM \"{control_plane}\".runs r \
             JOIN \"{scheduler}\".runs s ON s.id = r.id \
             JOIN \"{scheduler}\".tasks t ON t.run_id = r.id \
             WHERE r.workflow = 'one' AND t.started_at IS NOT NULL \
               AND r.created_at::timestamptz >= $1",
            median("r.created_at", "s.created_at"),
            median("s.created_at", "t.queued_at"),
            median("t.queued_at", "t.started_at"),
        );
        let row = conn
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                [since.into()],
            ))
            .await?;
        let get = |name: &str| -> anyhow::Result<f64> {
            let value: Option<f64> = match &row {
                Some(row) => row.try_get("", name)?,
                None => None,
            };
            Ok(value.unwrap_or_default())
        };
        Ok(Hops {
            deliver_ms: get("deliver")?,
            start_ms: get("start")?,
            claim_ms: get("claim")?,
        })
    }

    /// "deliver 5.71, start 1.76, claim 2.13 ms".
    pub(crate) fn describe(&self) -> String {
        format!(
            "deliver {:.2}, start {:.2}, claim {:.2} ms",
            self.deliver_ms, self.start_ms, self.claim_ms
        )
    }
}
