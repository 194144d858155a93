//! The startup and shutdown sequence every service follows, in one place:
//!
//! 1. bind the gRPC and metrics listeners (a taken port fails before any real work);
//! 2. serve health (NOT_SERVING) and reflection at once;
//! 3. connect to the database within a deadline, migrate under the lock;
//! 4. let the service build its handlers and background tasks;
//! 5. report SERVING, and keep checking the database (NOT_SERVING while it is unreachable);
//! 6. on shutdown: NOT_SERVING, stop accepting, drain within the grace period, stop tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::cache::Cache;
use crate::config::BaseConfig;
use crate::grpc::{GrpcServer, Readiness};
use crate::shutdown::Shutdown;
use crate::{RuntimeError, db, metrics, migrate};

/// What a service's builder receives.
pub struct Context {
    pub service: &'static str,
    /// Unique per process start; names this instance in logs and lifecycle events.
    pub instance_id: String,
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub grpc_addr: SocketAddr,
    pub shutdown: Shutdown,
}

/// What a service's builder returns.
pub struct Built {
    pub routes: Routes,
    /// Fully qualified gRPC service names to report SERVING for.
    pub health_names: Vec<&'static str>,
    /// Background work (outbox relays, periodic jobs); each must end soon after shutdown.
    pub tasks: Vec<JoinHandle<()>>,
}

/// A service that is up and ready.
pub struct Running {
    pub service: &'static str,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub shutdown: Shutdown,
    grpc: JoinHandle<Result<(), RuntimeError>>,
    metrics: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Running {
    /// Waits until shutdown has been requested and everything has drained.
    pub async fn wait(self) -> Result<(), RuntimeError> {
        let grpc = self.grpc.await;
        self.shutdown.cancel();
        stop_tasks(self.service, self.tasks, self.grace).await;
        let _ = self.metrics.await;
        tracing::info!(service = self.service, "stopped");
        match grpc {
            Ok(result) => result,
            Err(join) => Err(RuntimeError::Config(format!(
                "grpc server task failed: {join}"
            ))),
        }
    }

    /// Requests shutdown and waits for the drain, leaving the handle in place (its ports are
    /// free again afterwards): for tests that restart a service where it stood.
    pub async fn halt(&mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.grpc).await;
        stop_tasks(self.service, std::mem::take(&mut self.tasks), self.grace).await;
        let _ = (&mut self.metrics).await;
        tracing::info!(service = self.service, "halted");
    }

    /// Requests shutdown and waits for the drain.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Waits for the background tasks to end after shutdown, all of them within one `grace`
/// (not one grace each, which many stuck tasks would multiply), and aborts the ones still
/// running then, so that nothing of a stopped service keeps running (or keeps its database
/// connections) behind its back. Returns how many were aborted.
async fn stop_tasks(
    service: &'static str,
    mut tasks: Vec<JoinHandle<()>>,
    grace: Duration,
) -> usize {
    let all = futures::future::join_all(tasks.iter_mut());
    if tokio::time::timeout(grace, all).await.is_ok() {
        return 0;
    }
    let stuck: Vec<_> = tasks.iter().filter(|t| !t.is_finished()).collect();
    for task in &stuck {
        task.abort();
    }
    tracing::warn!(
        service,
        tasks = stuck.len(),
        grace_ms = grace.as_millis() as u64,
        "background tasks did not stop within the grace period, aborted them"
    );
    stuck.len()
}

/// Starts a service: see the module docs for the sequence. Returns once it reports SERVING.
pub async fn launch<M, B, F>(
    service: &'static str,
    config: BaseConfig<'_>,
    shutdown: Shutdown,
    build: B,
) -> Result<Running, RuntimeError>
where
    M: MigratorTrait,
    B: FnOnce(Context) -> F,
    F: Future<Output = Result<Built, RuntimeError>>,
{
    let grpc_listener = GrpcServer::bind(config.grpc.listen).await?;
    let metrics_listener = metrics::bind(config.metrics.listen).await?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| RuntimeError::Bind {
            addr: config.metrics.listen,
            source,
        })?;
    // A child token: a failed startup stops what it started without stopping its siblings in
    // embedded mode.
    let shutdown = shutdown.child_token();
    let metrics = tokio::spawn(metrics::serve(metrics_listener, shutdown.clone()));
    tracing::info!(service, addr = %metrics_addr, "metrics listening");
    let server = grpc_listener
        .start(service, config.grpc, shutdown.clone())
        .await?;

    let started = async {
        let db = db::connect(config.database).await?;
        tracing::info!(service, database = %crate::config::redact_url(&config.database.url), schema = %config.database.schema, "database connected");
        migrate::run::<M>(&db, config.database).await?;
        let cache = Cache::from_config(config.redis).map_err(|e| RuntimeError::Redis(e.to_string()))?;
        if let Err(error) = cache.ping().await {
            // Redis only accelerates: warn and go on, the services fall back to the database.
            tracing::warn!(%error, "redis is not answering, continuing without it");
        }
        let context = Context {
            service,
            instance_id: uuid::Uuid::now_v7().to_string(),
            db: db.clone(),
            cache,
            grpc_addr: server.addr,
            shutdown: shutdown.clone(),
        };
        let built = build(context).await?;
        Ok::<_, RuntimeError>((db, built))
    }
    .await;

    let (db, built) = match started {
        Ok(ok) => ok,
        Err(error) => {
            shutdown.cancel();
            let _ = server.task.await;
            let _ = metrics.await;
            return Err(error);
        }
    };
    server.routes.install(built.routes);
    server.readiness.set_serving(&built.health_names).await;
    let mut tasks = built.tasks;
    tasks.push(tokio::spawn(crate::vacuum::keep(
        db.clone(),
        config.database.vacuum_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(watch_database(
        db,
        server.readiness.clone(),
        config.database.ping_timeout,
        shutdown.clone(),
    )));
    tracing::info!(service, grpc = %server.addr, metrics = %metrics_addr, "ready");
    Ok(Running {
        service,
        grpc_addr: server.addr,
        metrics_addr,
        shutdown,
        grpc: server.task,
        metrics,
        tasks,
        grace: config.grpc.shutdown_grace,
    })
}

/// Reports NOT_SERVING while the database does not answer, SERVING again when it does.
async fn watch_database(
    db: DatabaseConnection,
    readiness: Readiness,
    deadline: Duration,
    shutdown: Shutdown,
) {
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
        let now_healthy = db::is_healthy(&db, deadline).await;
        if now_healthy != healthy && !shutdown.is_cancelled() {
            if now_healthy {
                tracing::info!("database answers again, serving");
                readiness.set_serving(&[]).await;
            } else {
                tracing::warn!("database stopped answering, reporting not serving");
                readiness.set_not_serving().await;
            }
            healthy = now_healthy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tasks_that_stop_are_not_aborted() {
        let shutdown = Shutdown::new();
        let tasks = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { shutdown.cancelled().await })
            })
            .collect();
        shutdown.cancel();
        assert_eq!(stop_tasks("t", tasks, Duration::from_secs(5)).await, 0);
    }

    /// Three stuck tasks cost one grace period, not three, and do not outlive the service.
    #[tokio::test(start_paused = true)]
    async fn stuck_tasks_share_one_grace_period_and_are_aborted() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks: Vec<JoinHandle<()>> = (0..3)
            .map(|_| {
                let tx = tx.clone();
                // Holds its sender until dropped: the channel closes only once all are gone.
                tokio::spawn(async move {
                    let _tx = tx;
                    std::future::pending::<()>().await
                })
            })
            .collect();
        drop(tx);
        tasks.push(tokio::spawn(async {}));
        let started = tokio::time::Instant::now();
        assert_eq!(stop_tasks("t", tasks, Duration::from_secs(5)).await, 3);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Every stuck task was dropped (aborted), so the last sender went with it.
        assert_eq!(rx.recv().await, None);
    }
}
