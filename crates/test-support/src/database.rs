//! Fresh, isolated databases for tests.

use std::sync::Mutex;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use switchyard_runtime::config::DatabaseConfig;

/// `SWITCHYARD_TEST_DATABASE_URL`, else the local trust-auth PostgreSQL's `switchyard_test`.
pub fn database_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/switchyard_test".into())
}

/// `SWITCHYARD_TEST_REDIS_URL`, else the local Redis: what services next to a test's
/// PostgreSQL schemas use.
pub fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Hands out per-service database configs that no other test shares, and removes them on
/// drop: PostgreSQL schemas `t<random>_<service>` (with the Redis keys services keep under
/// them), or SQLite files in a temporary directory.
pub struct TestDatabase {
    pub backend: Backend,
    prefix: String,
    schemas: Mutex<Vec<String>>,
    dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn postgres() -> TestDatabase {
        crate::init();
        ensure_database_exists().await;
        TestDatabase::new(Backend::Postgres)
    }

    pub fn sqlite() -> TestDatabase {
        crate::init();
        TestDatabase::new(Backend::Sqlite)
    }

    fn new(backend: Backend) -> TestDatabase {
        let id = uuid::Uuid::new_v4().simple().to_string();
        TestDatabase {
            backend,
            prefix: format!("t{}", &id[..12]),
            schemas: Mutex::default(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The database config for `service` (same service name: same schema or file).
    pub fn config(&self, service: &str) -> DatabaseConfig {
        let name = format!("{}_{}", self.prefix, service.replace('-', "_"));
        match self.backend {
            Backend::Postgres => {
                let mut schemas = self.schemas.lock().unwrap();
                if !schemas.contains(&name) {
                    schemas.push(name.clone());
                }
                DatabaseConfig {
                    url: database_url(),
                    schema: name,
                    max_connections: 8,
                    ..DatabaseConfig::default()
                }
            }
            Backend::Sqlite => DatabaseConfig {
                url: format!("sqlite://{}/{name}.db", self.dir.path().display()),
                schema: name,
                max_connections: 4,
                ..DatabaseConfig::default()
            },
        }
    }

    /// A connection to `service`'s schema with `M`'s migrations applied, as the service would
    /// leave it at startup.
    pub async fn migrated<M: sea_orm_migration::MigratorTrait>(
        &self,
        service: &str,
    ) -> DatabaseConnection {
        let conn = self.connect(service).await;
        switchyard_runtime::migrate::run::<M>(&conn, &self.config(service))
            .await
            .unwrap();
        conn
    }

    /// The pattern of the Redis keys that services on this guard's schemas keep (monitoring's
    /// active-task view has no expiry: it lives as long as its deployment), built the way
    /// the services build their key prefixes, so the guard removes what its tests left.
    fn redis_keys(&self) -> String {
        let schemas = format!("{}_", self.prefix);
        format!(
            "{}*",
            switchyard_monitoring::active::key_prefix(&database_url(), &schemas)
        )
    }

    /// A direct connection to `service`'s database, for assertions and tampering.
    pub async fn connect(&self, service: &str) -> DatabaseConnection {
        switchyard_runtime::db::connect(&self.config(service))
            .await
            .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap_or_else(|e| e.into_inner()));
        if schemas.is_empty() {
            return;
        }
        let redis_keys = self.redis_keys();
        // Drop runs outside async context (and during unwinding): clean up on a thread with its
        // own runtime and wait for it, so schemas never outlive the test.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let db = Database::connect(database_url()).await?;
                for schema in schemas {
                    db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await?;
                }
                db.close().await?;
                delete_redis_keys(&redis_keys).await
            })?;
            Ok::<_, anyhow::Error>(())
        });
        if let Ok(Err(error)) = handle.join() {
            eprintln!("test schema cleanup failed: {error}");
        }
    }
}

/// Deletes the keys matching `pattern` from the test Redis (see [`redis_url`]). No Redis (a
/// machine running only SQLite tests) leaves nothing to delete: it is not an error.
async fn delete_redis_keys(pattern: &str) -> anyhow::Result<()> {
    let Ok(client) = redis::Client::open(redis_url().as_str()) else {
        return Ok(());
    };
    let connect = client.get_multiplexed_async_connection();
    let Ok(Ok(mut conn)) = tokio::time::timeout(std::time::Duration::from_secs(2), connect).await
    else {
        return Ok(());
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Creates the test database once per machine (concurrent creators tolerate each other).
async fn ensure_database_exists() {
    let url = database_url();
    if Database::connect(url.as_str()).await.is_ok() {
        return;
    }
    let (server, name) = url.rsplit_once('/').unwrap();
    let admin = Database::connect(format!("{server}/postgres")).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {server} ({e}); start it (see README) or set SWITCHYARD_TEST_DATABASE_URL")
    });
    let _ = admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key as monitoring names it under `service`'s schema of `db`.
    fn view_key(db: &TestDatabase, service: &str) -> String {
        let schema = db.config(service).schema;
        let prefix = switchyard_monitoring::active::key_prefix(&database_url(), &schema);
        format!("{prefix}:active:epoch")
    }

    async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(conn)
            .await
            .unwrap()
            == 1
    }

    #[tokio::test]
    async fn dropping_the_guard_deletes_the_redis_keys_of_its_own_schemas_only() {
        let mine = TestDatabase::postgres().await;
        let other = TestDatabase::postgres().await;
        let client = redis::Client::open(redis_url().as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let (my_key, other_key) = (
            view_key(&mine, "monitoring"),
            view_key(&other, "monitoring"),
        );
        for key in [&my_key, &other_key] {
            redis::cmd("SET")
                .arg(key)
                .arg("1")
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
        drop(mine);
        assert!(
            !exists(&mut conn, &my_key).await,
            "{my_key} outlived its guard"
        );
        assert!(
            exists(&mut conn, &other_key).await,
            "another guard's key went too"
        );
        drop(other);
        assert!(
            !exists(&mut conn, &other_key).await,
            "{other_key} outlived its guard"
        );
    }
}
