//! Fires due cron schedules: each becomes a `ScheduleFired` event for the control plane (which
//! creates the run), written in the transaction that moves the schedule to its next time.
//! Every replica runs the loop; due rows are locked with SKIP LOCKED, so each fire happens once.

use std::time::Duration;

use chrono::Utc;
use sea_orm::Set;
use switchyard_proto::events::v1::{ScheduleFired, event::Payload};
use switchyard_runtime::outbox::{self, destination};
use switchyard_runtime::shutdown::Shutdown;

use super::Engine;
use crate::SERVICE;
use crate::domain::cron;
use crate::error::Result;
use crate::store::entity::schedule;
use crate::store::schedules;

/// Fires what is due now; returns how many fired.
pub async fn fire_due(engine: &Engine) -> Result<u32> {
    let txn = switchyard_runtime::db::write_txn(&engine.db).await?;
    let now = Utc::now();
    let due = schedules::due(&txn, now, 100).await?;
    let mut fired = 0;
    for row in due {
        let next = cron::parse(&row.cron)
            .ok()
            .and_then(|c| cron::next_after(&c, now));
        let fire_time = row.next_fire_at;
        let event = outbox::event(
            SERVICE,
            Payload::ScheduleFired(ScheduleFired {
                schedule_id: row.id.clone(),
                project_id: row.project_id.clone(),
                workflow: row.workflow.clone(),
                params_json: row.params_json.clone(),
                fire_key: format!("{}@{}", row.id, fire_time.to_rfc3339()),
                fire_time: Some(switchyard_runtime::time::to_proto(fire_time)),
            }),
        );
        outbox::enqueue(&txn, destination::CONTROL_PLANE, &[event]).await?;
        let mut active: schedule::ActiveModel = row.clone().into();
        active.last_fired_at = Set(Some(now));
        match next {
            // Missed fires (the scheduler was down) collapse into this one.
            Some(next) => active.next_fire_at = Set(next),
            None => {
                tracing::warn!(schedule_id = %row.id, cron = %row.cron, "schedule has no next time; paused");
                active.paused = Set(true);
            }
        }
        schedules::update(&txn, active).await?;
        tracing::info!(schedule_id = %row.id, workflow = %row.workflow, "schedule fired");
        fired += 1;
    }
    txn.commit().await?;
    Ok(fired)
}

pub fn spawn(
    engine: Engine,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) = fire_due(&engine).await {
                tracing::warn!(%error, "firing schedules failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
