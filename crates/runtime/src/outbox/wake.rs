//! Waking a destination's relay right after the commit that gave it events, instead of at its
//! next poll. On PostgreSQL, `enqueue` issues `NOTIFY` inside the caller's transaction: the
//! server delivers it at commit and never for a rolled-back transaction, and folds repeats
//! within one transaction into one. Each relay listens on its destination's channel (one per
//! schema and destination, so other deployments in the same database stay quiet). A lost
//! notification costs only latency: relays still poll.
//!
//! Audit records and task lifecycle events are not latency-sensitive and are the most
//! frequent, so they do not notify (see [`wakes`]). SQLite (embedded mode) relies on polling.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use tokio::sync::Notify;

use super::destination;
use crate::shutdown::Shutdown;

/// Whether commits wake this destination's relay. Only the run hand-offs a CI client waits on
/// (control plane ⇄ scheduler) do: `NOTIFY` serialises the commits that send it, and audit
/// records and task lifecycle events ride on every mutation and every claim and completion,
/// where that would cost far more than the relay's poll interval saves.
fn wakes(destination: &str) -> bool {
    matches!(
        destination,
        destination::SCHEDULER | destination::CONTROL_PLANE
    )
}

/// The channel name, computed the same way by the notifier and the listener.
const CHANNEL: &str = "'switchyard_outbox_' || left(md5(current_schema() || ':' || $1), 20)";

/// Inside the caller's transaction: wake `destination`'s relay once this commits.
pub(crate) async fn notify<C: ConnectionTrait>(
    conn: &C,
    destination: &str,
) -> Result<(), sea_orm::DbErr> {
    if conn.get_database_backend() != DatabaseBackend::Postgres || !wakes(destination) {
        return Ok(());
    }
    conn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT pg_notify({CHANNEL}, '')"),
        [destination.into()],
    ))
    .await?;
    Ok(())
}

/// Listens for `destination`'s wake-ups (PostgreSQL only) and hands each to `woken` as a
/// stored permit, so one that arrives while the relay is busy is not lost. Reconnects after
/// a lost connection, waking the relay once since notifications may have been missed.
pub(crate) fn spawn_listener(
    db: &DatabaseConnection,
    destination: &str,
    woken: Arc<Notify>,
    shutdown: Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    // Destinations that never notify (see `notify`) need no listener, nor a connection for one.
    if db.get_database_backend() != DatabaseBackend::Postgres || !wakes(destination) {
        return None;
    }
    let db = db.clone();
    let destination = destination.to_owned();
    Some(tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            match subscribe(&db, &destination).await {
                Ok(mut listener) => {
                    woken.notify_one();
                    loop {
                        let received = tokio::select! {
                            received = listener.recv() => received,
                            _ = shutdown.cancelled() => return,
                        };
                        match received {
                            Ok(_) => woken.notify_one(),
                            Err(error) => {
                                tracing::warn!(%error, %destination, "outbox listener lost its connection; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %destination, "outbox listener not connected; relying on polling");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }))
}

async fn subscribe(
    db: &DatabaseConnection,
    destination: &str,
) -> Result<sea_orm::sqlx::postgres::PgListener, sea_orm::DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!("SELECT {CHANNEL} AS channel"),
            [destination.into()],
        ))
        .await?;
    let channel: String = row
        .and_then(|r| r.try_get("", "channel").ok())
        .ok_or_else(|| sea_orm::DbErr::Custom("no outbox channel name".into()))?;
    let mut listener =
        sea_orm::sqlx::postgres::PgListener::connect_with(db.get_postgres_connection_pool())
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    listener
        .listen(&channel)
        .await
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    Ok(listener)
}
