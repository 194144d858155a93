//! Database connections: PostgreSQL with one schema per service, or SQLite with one file per
//! service. Startup checks that the database answers, within a deadline, and reports failures
//! as one line naming host, database and cause.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

use crate::RuntimeError;
use crate::config::DatabaseConfig;

/// Where a URL points, for error messages (never includes credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub database: String,
}

impl Target {
    pub fn of(url: &str) -> Target {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            return Target {
                host: "local file".into(),
                database: path.to_owned(),
            };
        }
        match url::Url::parse(url) {
            Ok(parsed) => Target {
                host: format!(
                    "{}:{}",
                    parsed.host_str().unwrap_or("localhost"),
                    parsed.port().unwrap_or(5432)
                ),
                database: parsed.path().trim_start_matches('/').to_owned(),
            },
            Err(_) => Target {
                host: "unparseable url".into(),
                database: String::new(),
            },
        }
    }
}

/// Opens the pool and checks that the database answers within `connect_timeout`.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, RuntimeError> {
    connect_with(config, &[]).await
}

/// The same, with server settings for every connection of this pool (PostgreSQL; SQLite has
/// none): for queries that need a setting the rest of the service should not have.
pub async fn connect_with(
    config: &DatabaseConfig,
    settings: &[(&'static str, &'static str)],
) -> Result<DatabaseConnection, RuntimeError> {
    let target = Target::of(&config.url);
    let unavailable = |cause: String| RuntimeError::DatabaseUnavailable {
        host: target.host.clone(),
        database: target.database.clone(),
        cause,
    };
    let url = if config.is_sqlite() {
        prepare_sqlite(&config.url).map_err(&unavailable)?
    } else {
        config.url.clone()
    };

    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.max_connections)
        .min_connections(0)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false);
    if config.is_sqlite() {
        // One writer at a time; a short busy wait instead of instant SQLITE_BUSY errors.
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        options.set_schema_search_path(config.schema.clone());
        // Named for the schema (the service that owns the connection), so that
        // `pg_stat_activity` tells an operator which service a busy or stuck backend serves.
        options.set_application_name(application_name(&config.schema));
        if !settings.is_empty() {
            let settings = settings.to_vec();
            options.map_sqlx_postgres_opts(move |o| o.options(settings.iter().copied()));
        }
        // A connection idle for a while is pinged before use, under a short deadline: after a
        // database restart a half-open socket fails fast and the pool opens a fresh one
        // instead of hanging the request.
        let idle = config.ping_after_idle;
        let deadline = config.ping_timeout;
        options.test_before_acquire(false);
        options.map_sqlx_postgres_before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for < idle {
                    return Ok(true);
                }
                use sea_orm::sqlx::Connection;
                Ok(matches!(
                    tokio::time::timeout(deadline, conn.ping()).await,
                    Ok(Ok(()))
                ))
            })
        });
    }

    let db = tokio::time::timeout(config.connect_timeout, Database::connect(options))
        .await
        .map_err(|_| unavailable(format!("no answer within {:?}", config.connect_timeout)))?
        .map_err(|e| unavailable(root_cause(&e)))?;
    tokio::time::timeout(config.connect_timeout, db.ping())
        .await
        .map_err(|_| unavailable(format!("no answer within {:?}", config.connect_timeout)))?
        .map_err(|e| unavailable(root_cause(&e)))?;
    Ok(db)
}

/// PostgreSQL keeps the first 63 bytes of an application name.
const MAX_APPLICATION_NAME: usize = 63;

/// `switchyard-<schema>`, cut to what PostgreSQL keeps (on a character boundary).
pub fn application_name(schema: &str) -> String {
    let mut name = format!("switchyard-{schema}");
    let mut end = name.len().min(MAX_APPLICATION_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// Adds `mode=rwc` (create the file) and makes sure the directory exists.
fn prepare_sqlite(url: &str) -> Result<String, String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// The innermost message of a database error, on one line.
pub fn root_cause(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message = inner.to_string();
        source = inner.source();
    }
    message.replace('\n', " ")
}

/// True when the connection answers a trivial query within `deadline`.
pub async fn is_healthy(db: &DatabaseConnection, deadline: Duration) -> bool {
    matches!(tokio::time::timeout(deadline, db.ping()).await, Ok(Ok(())))
}

/// `true` for PostgreSQL, where row locks and advisory locks exist.
pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// An error of a statement run on a connection sea-orm does not wrap, as sea-orm reports its
/// own (so `DbErr::sql_err` tells unique violations apart the same way).
pub fn driver_error(error: sea_orm::sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error)))
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so the busy timeout applies: a deferred transaction that reads and
/// then writes fails at once with `SQLITE_BUSY` when another writer committed in between.
/// On PostgreSQL it is a plain `BEGIN`.
pub async fn write_txn(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Lets `txn` commit without waiting for its WAL to reach the disk (PostgreSQL's
/// `synchronous_commit = off`, for this transaction only; SQLite: nothing to change).
///
/// Only for writes whose loss in a database crash is harmless, such as a batch of events
/// that could have been lost anyway before it was written (the outbox relay's own
/// connection commits this way throughout, see `outbox::lead`). A flush costs one to two milliseconds on
/// the disks we run on (`pg_test_fsync`), and flushes queue behind each other, so every
/// commit that need not wait spares the ones that must. A server crash loses at most the
/// last few hundred milliseconds of such commits, never a later synchronous one: the WAL is
/// flushed in order.
pub async fn without_flush_wait(txn: &sea_orm::DatabaseTransaction) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    txn.execute_unprepared("SET LOCAL synchronous_commit = off")
        .await?;
    Ok(())
}

/// A periodic job's advisory-lock key, keyed by schema too: deployments (and tests) that
/// share a database each run their own jobs.
const JOB_KEY: &str = "hashtextextended('switchyard-job:' || current_schema() || ':' || $1, 0)";

/// Waits for the lock of a periodic job and holds it for the rest of `txn` (what another
/// replica mid-round looks like, for tests and tools). SQLite: nothing to hold.
pub async fn hold_job_lock(
    txn: &sea_orm::DatabaseTransaction,
    job: &str,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        format!("SELECT pg_advisory_xact_lock({JOB_KEY})"),
        [job.into()],
    ))
    .await?;
    Ok(())
}

/// Takes the lock of a periodic job for the rest of `txn`, so that one replica runs it this
/// round: `false` when another replica holds it (PostgreSQL transaction-scoped advisory lock).
/// SQLite is single-process: always `true`.
pub async fn try_job_lock(
    txn: &sea_orm::DatabaseTransaction,
    job: &str,
) -> Result<bool, sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(true);
    }
    let row = txn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({JOB_KEY}) AS locked"),
            [job.into()],
        ))
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<bool>("", "locked").ok())
        .unwrap_or(false))
}

/// A plain sea-orm entity (no relations: services check ownership themselves) in a module of
/// its own: `entity!(task, "tasks", { #[sea_orm(primary_key)] pub id: i64, ... });`. The
/// calling crate depends on sea-orm.
#[macro_export]
macro_rules! entity {
    ($module:ident, $table:literal, { $($body:tt)* }) => {
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model { $($body)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_host_and_database_without_credentials() {
        let t = Target::of("postgres://user:secret@db.internal:6543/switchyard?sslmode=require");
        assert_eq!(t.host, "db.internal:6543");
        assert_eq!(t.database, "switchyard");
        let t = Target::of("sqlite:///var/lib/sy/audit.db?mode=rwc");
        assert_eq!(t.database, "/var/lib/sy/audit.db");
    }

    #[test]
    fn application_names_carry_the_schema_within_postgres_limit() {
        assert_eq!(application_name("scheduler"), "switchyard-scheduler");
        let long = application_name(&"é".repeat(40));
        assert!(long.len() <= MAX_APPLICATION_NAME, "{}", long.len());
        assert!(long.starts_with("switchyard-éé"));
    }

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/x.db", dir.path().display());
        let prepared = prepare_sqlite(&url).expect("prepared");
        assert!(prepared.ends_with("?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
    }

    #[tokio::test]
    async fn unreachable_postgres_is_one_line_naming_host_and_database() {
        let config = DatabaseConfig {
            url: "postgres://postgres@127.0.0.1:1/nowhere".into(),
            connect_timeout: Duration::from_secs(2),
            ..DatabaseConfig::default()
        };
        let error = connect(&config)
            .await
            .expect_err("port 1 refuses")
            .to_string();
        assert!(error.contains("127.0.0.1:1"), "{error}");
        assert!(error.contains("nowhere"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
