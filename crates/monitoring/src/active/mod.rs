//! The active-task view: the attempts leased now, kept in Redis (in memory in embedded mode,
//! which has no Redis) so that listing them costs PostgreSQL nothing. Ingest writes it (a
//! LEASED step adds the attempt, an ending removes it and leaves a short-lived tombstone so a
//! late LEASED cannot bring it back; an attempt that ended before its LEASED was sent was
//! never added, and its ending touches nothing, see `ingest`); `reconcile` rebuilds it from
//! the scheduler's durable queue at startup, periodically and at once when it finds the view
//! flushed.
//!
//! Keys, all under one prefix per deployment (`switchyard:{database}:{schema}` by default, so
//! deployments and tests sharing a Redis never meet):
//! - `{prefix}:active:{project}`: hash, field `task_id:attempt` → encoded `ActiveTask`
//!   (see `codec`, the one place values are made and read);
//! - `{prefix}:active:projects`: set of projects with entries, for org-wide listings;
//! - `{prefix}:ended:{period}`: set of the attempts (`task_id:attempt`) that ended in one
//!   period of `active.tombstone_ttl`, their tombstones; expires two periods later;
//! - `{prefix}:active:epoch`: set by a completed rebuild; its absence means the view was
//!   flushed (or never built) and must be rebuilt.
//!
//! Every batch of changes is one round trip (one Lua script, atomic: the tombstone check and
//! the add cannot be split by an ending).

pub mod codec;
pub mod config;
pub mod detect;
mod in_memory;
mod in_redis;
pub mod ingest;
pub mod reconcile;
pub mod scheduler;
pub mod stuck;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_proto::monitoring::v1::ActiveTask;
use switchyard_runtime::cache::Cache;

/// One change to the view.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The attempt runs: add or refresh it, unless it is tombstoned as ended.
    Put(Box<ActiveTask>),
    /// The attempt ended: remove it and tombstone it.
    End {
        project_id: String,
        task_id: String,
        attempt: u32,
    },
    /// The scheduler no longer leases it (reconciliation): remove it.
    Remove {
        project_id: String,
        task_id: String,
        attempt: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
enum Backend {
    Redis(in_redis::RedisView),
    Memory(in_memory::MemoryView),
}

/// The view, cheap to clone (replicas of one process share it).
#[derive(Clone)]
pub struct ActiveView {
    backend: Backend,
    /// Set when a write failed: the view may miss changes, so the next flush check rebuilds.
    dirty: Arc<AtomicBool>,
}

impl ActiveView {
    /// On the service's cache: Redis when it has one, else a map of this process.
    pub fn new(cache: &Cache, prefix: &str, tombstone_ttl: Duration) -> ActiveView {
        let backend = match cache {
            Cache::Redis { pool, timeout } => Backend::Redis(in_redis::RedisView::new(
                pool.clone(),
                *timeout,
                prefix,
                tombstone_ttl,
            )),
            Cache::Memory(_) => Backend::Memory(in_memory::MemoryView::new(tombstone_ttl)),
        };
        ActiveView {
            backend,
            dirty: Arc::default(),
        }
    }

    /// A view in this process's memory (embedded mode, tests).
    pub fn memory(tombstone_ttl: Duration) -> ActiveView {
        ActiveView {
            backend: Backend::Memory(in_memory::MemoryView::new(tombstone_ttl)),
            dirty: Arc::default(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    /// Applies `ops` in one round trip. Within one call an end wins over a put of the same
    /// attempt whatever their order; a call names an attempt at most once otherwise (ingest
    /// folds its batch per attempt, reconciliation lists each entry once), which lets Redis
    /// apply the puts, then the ends, then the removes, each as a few commands. Answers
    /// whether the view's epoch is there (`false`: it was flushed and needs a rebuild).
    pub async fn apply(&self, ops: &[Op]) -> Result<bool, ViewError> {
        let result = match &self.backend {
            Backend::Redis(view) => view.apply(ops).await,
            Backend::Memory(view) => Ok(view.apply(ops)),
        };
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The entries of these projects (`None`: of every project), undecodable ones skipped
    /// and logged.
    pub async fn entries(&self, projects: Option<&[String]>) -> Result<Vec<ActiveTask>, ViewError> {
        let raw = match &self.backend {
            Backend::Redis(view) => view.entries(projects).await?,
            Backend::Memory(view) => view.entries(projects),
        };
        Ok(raw
            .into_iter()
            .filter_map(|(key, bytes)| match codec::decode(&bytes) {
                Ok(task) => Some(task),
                Err(error) => {
                    tracing::warn!(%key, %error, "active task entry skipped");
                    None
                }
            })
            .collect())
    }

    /// Whether the view was built and not flushed since; a failed write counts as flushed.
    pub async fn intact(&self) -> Result<bool, ViewError> {
        if self.dirty.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match &self.backend {
            Backend::Redis(view) => view.epoch_present().await,
            Backend::Memory(view) => Ok(view.epoch_present()),
        }
    }

    /// Marks the view built (after a rebuild applied without error).
    pub async fn mark_built(&self) -> Result<(), ViewError> {
        match &self.backend {
            Backend::Redis(view) => view.set_epoch().await?,
            Backend::Memory(view) => view.set_epoch(),
        }
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// The key prefix of a deployment: its database and schema, so deployments and tests that
/// share a Redis (each test has its own schema) never read each other's views.
pub fn key_prefix(database_url: &str, schema: &str) -> String {
    let database = url::Url::parse(database_url)
        .ok()
        .and_then(|u| {
            u.path()
                .trim_start_matches('/')
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "default".into());
    format!("switchyard:{database}:{schema}")
}

#[cfg(test)]
mod tests;
