//! Fresh, isolated databases for tests.

use std::sync::Mutex;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use switchyard_runtime::config::DatabaseConfig;

/// `SWITCHYARD_TEST_DATABASE_URL`, else the local trust-auth PostgreSQL's `switchyard_test`.
pub fn database_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/switchyard_test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Hands out per-service database configs that no other test shares, and removes them on
/// drop: PostgreSQL schemas `t<random>_<service>`, or SQLite files in a temporary directory.
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
                db.close().await
            })?;
            Ok::<_, anyhow::Error>(())
        });
        if let Ok(Err(error)) = handle.join() {
            eprintln!("test schema cleanup failed: {error}");
        }
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
