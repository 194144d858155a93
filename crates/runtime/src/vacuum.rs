//! Vacuuming a service's own tables when the database does not. Queue tables churn: every
//! claim and every completion leaves a dead row version behind, and an outbox deletes what it
//! delivered. With PostgreSQL's `autovacuum` off (some CI and hand-configured servers turn it
//! off) nothing reclaims them: heap and indexes fill with dead entries that every claim walks
//! past, and the planner's statistics go stale, so the engine slows without bound (in the
//! monitoring benchmark, on a server with autovacuum off, create-to-start p50 doubled and
//! throughput halved over 200,000 tasks a cluster, the claim reading three times as many
//! blocks, the scheduler's `tasks` table holding two dead rows per live one).
//!
//! So every service looks at its own schema every `database.vacuum_interval` (a minute, as
//! autovacuum's naptime) and, only while the server's autovacuum is off, does what autovacuum
//! would have done, by the server's own autovacuum thresholds: `VACUUM (ANALYZE)` on the tables
//! with enough dead rows, `ANALYZE` on those that only changed enough. `SKIP_LOCKED` leaves a
//! table that another replica is vacuuming at that moment, so replicas do not queue behind each
//! other. Where autovacuum is on, this does nothing. SQLite needs none of it (it has no dead
//! row versions to reclaim).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::shutdown::Shutdown;

/// The tables of the connection's schema that autovacuum would take now, by the server's own
/// thresholds (`autovacuum_vacuum_threshold` + `autovacuum_vacuum_scale_factor` × live rows
/// of dead rows; `autovacuum_analyze_*` of rows changed since the last analyze), which stay
/// configured while autovacuum is off. Most dead rows first; `vacuum` tells which need more
/// than an `ANALYZE` (a table that only grew, such as a history, needs no vacuum to stay
/// fast, and vacuuming it each time would read it again and again).
const DUE: &str = "\
    SELECT name, qualified, dead > vacuum_at AS vacuum FROM ( \
        SELECT relname::text AS name, format('%I.%I', schemaname, relname) AS qualified, \
               n_dead_tup AS dead, n_mod_since_analyze AS changed, \
               current_setting('autovacuum_vacuum_threshold')::float8 \
                 + current_setting('autovacuum_vacuum_scale_factor')::float8 * n_live_tup \
                 AS vacuum_at, \
               current_setting('autovacuum_analyze_threshold')::float8 \
                 + current_setting('autovacuum_analyze_scale_factor')::float8 * n_live_tup \
                 AS analyze_at \
        FROM pg_stat_user_tables WHERE schemaname = current_schema()) AS tables \
    WHERE dead > vacuum_at OR changed > analyze_at \
    ORDER BY dead DESC";

/// Whether the server's autovacuum is on (`SHOW autovacuum`). Autovacuum also needs
/// `track_counts`; a server without it has no dead-row counts for this module either.
pub async fn autovacuum_is_on(db: &DatabaseConnection) -> Result<bool, sea_orm::DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('autovacuum') = 'on' AS on",
        ))
        .await?;
    match row {
        Some(row) => row.try_get("", "on"),
        None => Ok(true),
    }
}

/// What one look did: the tables vacuumed (and analyzed), and those only analyzed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub vacuumed: Vec<String>,
    pub analyzed: Vec<String>,
}

/// Vacuums or analyzes the tables of the connection's schema that are due, whatever
/// autovacuum's setting. PostgreSQL only.
pub async fn vacuum_due_tables(db: &DatabaseConnection) -> Result<Done, sea_orm::DbErr> {
    let due = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, DUE))
        .await?;
    let mut done = Done::default();
    for row in due {
        let name: String = row.try_get("", "name")?;
        // Quoted as identifiers by `format('%I.%I')`.
        let qualified: String = row.try_get("", "qualified")?;
        // Outside a transaction: VACUUM cannot run inside one.
        if row.try_get("", "vacuum")? {
            db.execute_unprepared(&format!("VACUUM (ANALYZE, SKIP_LOCKED) {qualified}"))
                .await?;
            done.vacuumed.push(name);
        } else {
            db.execute_unprepared(&format!("ANALYZE (SKIP_LOCKED) {qualified}"))
                .await?;
            done.analyzed.push(name);
        }
    }
    Ok(done)
}

/// One look: vacuums what is due when autovacuum is off. `warned` remembers that the
/// operator was told autovacuum is off, so the warning is given once per change.
async fn round(db: &DatabaseConnection, warned: &mut bool) -> Result<(), sea_orm::DbErr> {
    if autovacuum_is_on(db).await? {
        *warned = false;
        return Ok(());
    }
    if !*warned {
        tracing::warn!(
            "the database's autovacuum is off: this service vacuums its own tables when they need it"
        );
        *warned = true;
    }
    let started = Instant::now();
    let done = vacuum_due_tables(db).await?;
    if done != Done::default() {
        tracing::debug!(
            vacuumed = %done.vacuumed.join(","),
            analyzed = %done.analyzed.join(","),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tables vacuumed"
        );
    }
    Ok(())
}

/// Looks every `interval` until shutdown (PostgreSQL, non-zero interval; otherwise returns at
/// once). A failed look is logged and tried again next time.
pub async fn keep(db: DatabaseConnection, interval: Duration, shutdown: Shutdown) {
    if db.get_database_backend() != DbBackend::Postgres || interval.is_zero() {
        return;
    }
    let mut warned = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        // A long VACUUM must not hold up the drain: shutdown drops the round.
        let outcome = tokio::select! {
            outcome = round(&db, &mut warned) => outcome,
            () = shutdown.cancelled() => return,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "vacuuming the service's tables failed");
        }
    }
}
