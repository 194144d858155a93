//! Applies a service's migrations at startup so that many replicas starting at once apply them
//! exactly once.
//!
//! On PostgreSQL the replicas serialise on an advisory lock held on one dedicated connection
//! (sea-orm-migration takes none itself). Each migration runs in its own transaction, and the
//! applied versions are recorded in the schema's `seaql_migrations` table, so a replica that
//! dies mid-way releases the lock with its session and the next one carries on where it
//! stopped. SQLite is single-process (embedded mode) and needs no lock.

pub mod columns;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;

use crate::RuntimeError;
use crate::config::DatabaseConfig;
use crate::db;

/// Creates the service's schema if needed and applies pending migrations under the lock.
pub async fn run<M: MigratorTrait>(
    pool: &DatabaseConnection,
    config: &DatabaseConfig,
) -> Result<(), RuntimeError> {
    let failed = |cause: String| RuntimeError::Migration {
        schema: config.schema.clone(),
        cause,
    };
    if !db::is_postgres(pool) {
        return M::up(pool, None).await.map_err(|e| failed(e.to_string()));
    }

    let lock = dedicated_connection(config).await?;
    let key = lock_key(&config.schema);
    let acquired = query_bool(&lock, &format!("SELECT pg_try_advisory_lock({key})")).await?;
    if !acquired {
        tracing::info!(schema = %config.schema, "another replica is migrating, waiting for the migration lock");
        lock.execute_unprepared(&format!("SELECT pg_advisory_lock({key})"))
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    let outcome = migrate_locked::<M>(pool, &config.schema).await;
    // Closing the session also releases the lock; unlock explicitly so a pooled proxy
    // (pgbouncer in session mode) cannot keep it.
    if let Err(error) = lock
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({key})"))
        .await
    {
        tracing::warn!(%error, "could not release the migration lock, closing its connection");
    }
    let _ = lock.close().await;
    outcome.map_err(|e| failed(e.to_string()))
}

async fn migrate_locked<M: MigratorTrait>(
    pool: &DatabaseConnection,
    schema: &str,
) -> Result<(), sea_orm::DbErr> {
    pool.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    let pending = M::get_pending_migrations(pool).await?.len();
    if pending > 0 {
        tracing::info!(schema, pending, "applying migrations");
        M::up(pool, None).await?;
        tracing::info!(schema, pending, "migrations applied");
    }
    Ok(())
}

async fn dedicated_connection(config: &DatabaseConfig) -> Result<DatabaseConnection, RuntimeError> {
    let target = db::Target::of(&config.url);
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .map_err(|e| RuntimeError::DatabaseUnavailable {
            host: target.host,
            database: target.database,
            cause: db::root_cause(&e),
        })
}

async fn query_bool(conn: &DatabaseConnection, sql: &str) -> Result<bool, RuntimeError> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?
        .ok_or_else(|| RuntimeError::Database(sea_orm::DbErr::RecordNotFound(sql.into())))?;
    Ok(row.try_get_by_index::<bool>(0)?)
}

/// A stable 63-bit key per schema (FNV-1a), independent of PostgreSQL's hash functions.
pub fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"switchyard-migrate:".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_ne!(lock_key("audit"), lock_key("scheduler"));
        assert_eq!(lock_key("audit"), lock_key("audit"));
        assert!(lock_key("audit") >= 0);
    }
}
