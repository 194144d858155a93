//! Which replica delivers a destination's events on PostgreSQL: the one whose relay holds the
//! destination's advisory lock, on a connection of its own taken out of the pool.
//!
//! The lock lives as long as that connection's session, so nothing stays open while a batch
//! is on its way to the consumer: the relay reads its rows with one statement, delivers them,
//! and retires them with another. (Row locks would need a transaction held open across the
//! delivery call, whose transaction id holds back what vacuum and page pruning may remove in
//! the whole database for as long as the consumer takes.) One relay delivers at a time, so
//! a destination's events go out in id order across replicas too. If the leading replica
//! dies, its connection closes, the lock goes with it, and another replica's relay takes the
//! lead at its next poll; a batch it was delivering is delivered again, which consumers
//! de-duplicate by event id.
//!
//! The connection commits without waiting for the WAL flush: what a relay writes is only the
//! retiring of delivered rows (or a failed attempt's counter), and losing that in a database
//! crash means the rows are delivered again. A flush costs one to two milliseconds on the
//! disks we run on (`pg_test_fsync`), during which the relay delivers nothing; the control
//! plane's relay to the scheduler is on every run's path to its first task.

use sea_orm::DbErr;
use sea_orm::sqlx::{self, PgConnection, PgPool};

use crate::db::driver_error;

/// The destination's lock key, keyed by schema too: deployments (and tests) that share a
/// database each have their own relays.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(\
    hashtextextended('switchyard-outbox:' || current_schema() || ':' || $1, 0))";

/// The relay's connection, and whether it holds the lead.
#[derive(Default)]
pub(crate) struct Lead {
    conn: Option<PgConnection>,
    leading: bool,
}

impl Lead {
    /// The leading connection for `destination`, after taking the lead if this relay does
    /// not hold it yet; `None` while another replica's relay leads. A standby keeps its
    /// connection to try again at its next poll.
    pub(crate) async fn connection(
        &mut self,
        pool: &PgPool,
        destination: &str,
    ) -> Result<Option<&mut PgConnection>, DbErr> {
        if !self.leading {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    // Out of the pool for good: the session's lock and setting must never
                    // reach another user of the pool.
                    let mut conn = pool.acquire().await.map_err(driver_error)?.detach();
                    sqlx::query("SET synchronous_commit = off")
                        .execute(&mut conn)
                        .await
                        .map_err(driver_error)?;
                    self.conn.insert(conn)
                }
            };
            self.leading = sqlx::query_scalar::<_, bool>(TRY_LOCK)
                .bind(destination)
                .fetch_one(conn)
                .await
                .map_err(driver_error)?;
            if self.leading {
                tracing::debug!(%destination, "outbox relay leads its destination");
            }
        }
        Ok(if self.leading {
            self.conn.as_mut()
        } else {
            None
        })
    }

    /// Gives up the connection, and with it the lead, after it failed: a new one is made at
    /// the next poll. Closing the session releases the lock even if the server never hears
    /// from this process again.
    pub(crate) fn step_down(&mut self) {
        self.conn = None;
        self.leading = false;
    }
}
