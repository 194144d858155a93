//! Delivers one destination's pending outbox events to its consumer, in id order and in
//! batches, until shutdown.
//!
//! On PostgreSQL one relay per destination delivers at a time, across replicas: the one that
//! holds the destination's lead (see [`super::lead`]). It reads a batch, delivers it, and
//! deletes it (or marks it, when `outbox.keep_delivered` keeps delivered events for
//! debugging), each a statement of its own: nothing stays open during the delivery call. A
//! crash mid-delivery leaves the rows pending, and the consumer de-duplicates the
//! redelivery. SQLite (embedded mode) is one process with one relay per destination.

use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use super::entity::{Column, Entity as Outbox};
use super::lead::Lead;
use super::rows::{LeadRows, Rows, SeaRows, readable};
use super::wire::{EncodedEvents, SinkClient};
use crate::config::OutboxConfig;
use crate::db::is_postgres;
use crate::metrics::{OUTBOX_BACKLOG, OUTBOX_DELIVERED, OUTBOX_FAILURES};
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("consumer refused the batch: {0}")]
    Consumer(#[from] tonic::Status),
    #[error("consumer did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct Relay {
    db: DatabaseConnection,
    destination: String,
    sink: SinkClient,
    config: OutboxConfig,
    service: &'static str,
    lead: Lead,
}

/// Spawns the relay for `destination` on the current runtime.
pub fn spawn_relay(
    service: &'static str,
    db: DatabaseConnection,
    destination: &str,
    sink: SinkClient,
    config: OutboxConfig,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let relay = Relay::new(service, db, destination, sink, config);
    tokio::spawn(relay.run(shutdown))
}

impl Relay {
    pub fn new(
        service: &'static str,
        db: DatabaseConnection,
        destination: &str,
        sink: SinkClient,
        config: OutboxConfig,
    ) -> Self {
        Relay {
            db,
            destination: destination.to_owned(),
            sink,
            config,
            service,
            lead: Lead::default(),
        }
    }

    /// Delivers until `shutdown`; never returns an error (it retries with backoff instead).
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut failures: u32 = 0;
        let mut last_housekeeping = Instant::now() - Duration::from_secs(3600);
        // Woken right after commits that add events for this destination (PostgreSQL).
        let woken = std::sync::Arc::new(tokio::sync::Notify::new());
        let listener = super::wake::spawn_listener(
            &self.db,
            &self.destination,
            woken.clone(),
            shutdown.clone(),
        );
        tracing::info!(service = self.service, destination = %self.destination, "outbox relay started");
        while !shutdown.is_cancelled() {
            if last_housekeeping.elapsed() >= Duration::from_secs(5) {
                self.housekeeping().await;
                last_housekeeping = Instant::now();
            }
            let pause = match self.deliver_batch().await {
                Ok(delivered) => {
                    if failures > 0 {
                        tracing::info!(destination = %self.destination, failures, "outbox delivery recovered");
                    }
                    failures = 0;
                    if delivered == self.config.batch_size as usize {
                        continue; // more are probably waiting
                    }
                    self.config.poll_interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!(OUTBOX_FAILURES, "service" => self.service, "destination" => self.destination.clone())
                        .increment(1);
                    let pause =
                        backoff(failures, self.config.poll_interval, self.config.max_backoff);
                    // First failure and then every tenth, so an outage does not flood the log.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(%error, destination = %self.destination, failures, retry_in_ms = pause.as_millis() as u64, "outbox delivery failed");
                    }
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // A failing consumer keeps its backoff: a wake-up does not hammer it.
                _ = woken.notified(), if failures == 0 => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        tracing::info!(service = self.service, destination = %self.destination, "outbox relay stopped");
    }

    /// Delivers at most one batch. Returns how many events were delivered (none while another
    /// replica's relay leads the destination, see [`super::lead`]).
    pub async fn deliver_batch(&mut self) -> Result<usize, RelayError> {
        if !is_postgres(&self.db) {
            // SQLite (embedded mode): one process, one relay per destination.
            let mut rows = SeaRows(self.db.clone());
            return self.deliver(&mut rows).await;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        // Taken out for the batch: `deliver` borrows the whole relay.
        let mut lead = std::mem::take(&mut self.lead);
        let outcome = match lead.connection(&pool, &self.destination).await {
            Ok(Some(conn)) => self.deliver(&mut LeadRows(conn)).await,
            Ok(None) => Ok(0),
            Err(error) => Err(error.into()),
        };
        if matches!(outcome, Err(RelayError::Database(_))) {
            lead.step_down();
        }
        self.lead = lead;
        outcome
    }

    /// Reads a batch from `rows`, delivers it and retires it there.
    async fn deliver<R: Rows>(&mut self, rows: &mut R) -> Result<usize, RelayError> {
        let batch = rows
            .pending(&self.destination, self.config.batch_size)
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let (ids, events): (Vec<i64>, Vec<Vec<u8>>) = batch.into_iter().unzip();
        let count = events.len();
        // The stored bytes go out as they are (see `wire`).
        let mut outcome = self.call(EncodedEvents { events }).await;
        if let Err(RelayError::Consumer(status)) = &outcome
            && matches!(
                status.code(),
                tonic::Code::Internal | tonic::Code::InvalidArgument
            )
        {
            // The consumer could not read the batch: send it again without the rows that do
            // not decode (only possible if one was altered by hand), rather than block the
            // queue behind them forever. They stay visible with their error.
            if let Some(readable) = readable(rows.payloads(&ids).await?) {
                outcome = self.call(readable).await;
            }
        }
        match outcome {
            Ok(()) => {
                rows.settle(&ids, !self.config.keep_delivered.is_zero())
                    .await?;
                metrics::counter!(OUTBOX_DELIVERED, "service" => self.service, "destination" => self.destination.clone())
                    .increment(count as u64);
                Ok(count)
            }
            Err(error) => {
                // Best effort: a failure here only loses the counter; the rows stay pending.
                let message: String = error.to_string().chars().take(500).collect();
                if let Err(db_error) = rows.record_failure(&ids, &message).await {
                    tracing::debug!(error = %db_error, "could not record the failed delivery attempt");
                }
                Err(error)
            }
        }
    }

    async fn call(&mut self, events: EncodedEvents) -> Result<(), RelayError> {
        let call = self.sink.deliver(events);
        match tokio::time::timeout(self.config.delivery_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(RelayError::Consumer(status)),
            Err(_) => Err(RelayError::Timeout(self.config.delivery_timeout)),
        }
    }

    /// Updates the backlog gauge and deletes delivered events past their keep period.
    async fn housekeeping(&self) {
        let pending = Outbox::find()
            .filter(Column::Destination.eq(self.destination.as_str()))
            .filter(Column::DeliveredAt.is_null())
            .count(&self.db)
            .await;
        if let Ok(pending) = pending {
            metrics::gauge!(OUTBOX_BACKLOG, "service" => self.service, "destination" => self.destination.clone())
                .set(pending as f64);
        }
        // Also with `keep_delivered` at zero: rows marked while it was set still go.
        let keep = chrono::Duration::from_std(self.config.keep_delivered)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        let cleanup = Outbox::delete_many()
            .filter(Column::Destination.eq(self.destination.as_str()))
            .filter(Column::DeliveredAt.lt(Utc::now() - keep))
            .exec(&self.db)
            .await;
        match cleanup {
            Ok(result) if result.rows_affected > 0 => {
                tracing::debug!(deleted = result.rows_affected, destination = %self.destination, "delivered outbox events cleaned up");
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "outbox cleanup failed"),
        }
    }
}

/// Exponential backoff from `base`, doubling per failure up to `max`, with full jitter over the
/// upper half so that replicas do not retry in lockstep.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let capped = exp.min(max).max(base);
    let half = capped / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(failures in 1u32..100, base_ms in 1u64..2000, max_ms in 1u64..120_000) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms.max(base_ms));
            let pause = backoff(failures, base, max);
            prop_assert!(pause <= max.max(base));
            prop_assert!(pause >= max.max(base).min(base.saturating_mul(1 << (failures.min(16) - 1))) / 2);
        }
    }

    #[test]
    fn backoff_grows_with_failures() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        assert!(backoff(1, base, max) <= Duration::from_millis(100));
        assert!(backoff(8, base, max) >= Duration::from_millis(6400));
    }
}
