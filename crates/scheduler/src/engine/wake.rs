//! Waking long-polling agents when tasks may have become ready.
//!
//! On this replica a commit wakes its waiting pollers at once (an in-process `Notify`). Other
//! replicas learn it through PostgreSQL `LISTEN/NOTIFY`: a publisher task sends one `NOTIFY`
//! at a time, and wake-ups that arrive while one is in flight fold into the next, so a burst
//! of commits costs one or two notifications, not one each (`NOTIFY` takes a global lock at
//! commit). A listener on every replica wakes its own pollers on each notification from
//! another replica. A lost notification costs only latency: pollers still re-check on a
//! short interval. SQLite (embedded mode) is one process and needs only the local path.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use sha2::{Digest, Sha256};
use switchyard_runtime::shutdown::Shutdown;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The wake-up signal of one replica.
#[derive(Clone, Default)]
pub struct Wake {
    local: Arc<Notify>,
    /// Tells the publisher (if any) that a notification is due; a stored permit folds bursts.
    publish: Arc<Notify>,
}

impl Wake {
    /// A future that completes at the next wake-up. It counts from its creation, so create it
    /// before checking for work and await it after: a commit in between is not missed.
    pub fn notified(&self) -> Notified<'_> {
        self.local.notified()
    }

    /// Wakes pollers here and, through the publisher, on every other replica.
    pub fn notify_waiters(&self) {
        self.local.notify_waiters();
        self.publish.notify_one();
    }

    /// Starts the cross-replica path on PostgreSQL (nothing to do on SQLite). The publisher
    /// and the listener stop at shutdown.
    pub async fn spawn_postgres(
        &self,
        db: &DatabaseConnection,
        shutdown: Shutdown,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, sea_orm::DbErr> {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(Vec::new());
        }
        let channel = channel(db).await?;
        let replica = uuid::Uuid::new_v4().to_string();
        let publisher = tokio::spawn(publish(
            self.publish.clone(),
            db.clone(),
            channel.clone(),
            replica.clone(),
            shutdown.clone(),
        ));
        let listener = tokio::spawn(listen(
            self.local.clone(),
            db.clone(),
            channel,
            replica,
            shutdown,
        ));
        Ok(vec![publisher, listener])
    }
}

/// One channel per schema: replicas of one deployment share it; other deployments (and other
/// tests) in the same database do not hear it.
async fn channel(db: &DatabaseConnection) -> Result<String, sea_orm::DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT current_schema()::text AS schema",
        ))
        .await?;
    let schema: String = row
        .and_then(|r| r.try_get("", "schema").ok())
        .unwrap_or_default();
    let digest = hex::encode(Sha256::digest(schema.as_bytes()));
    Ok(format!("switchyard_ready_{}", &digest[..16]))
}

async fn publish(
    due: Arc<Notify>,
    db: DatabaseConnection,
    channel: String,
    replica: String,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = due.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        let statement = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.clone().into(), replica.clone().into()],
        );
        if let Err(error) = db.execute_raw(statement).await {
            // Other replicas fall back to their re-check interval.
            tracing::warn!(%error, "wake-up notification not sent");
        }
    }
}

async fn listen(
    local: Arc<Notify>,
    db: DatabaseConnection,
    channel: String,
    replica: String,
    shutdown: Shutdown,
) {
    use sea_orm::sqlx::postgres::PgListener;
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut listener = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
            listener.listen(&channel).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = match subscribed.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "wake-up listener not connected; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        tracing::debug!(%channel, "listening for wake-ups from other replicas");
        // Whatever was sent while we were not listening is lost: look once now.
        local.notify_waiters();
        loop {
            let received = tokio::select! {
                received = listener.recv() => received,
                _ = shutdown.cancelled() => return,
            };
            match received {
                // Our own notifications: the local path already woke our pollers.
                Ok(notification) if notification.payload() == replica => {}
                Ok(_) => local.notify_waiters(),
                Err(error) => {
                    tracing::warn!(%error, "wake-up listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}
