//! The agent: registers with the scheduler, long-polls for as many tasks as it has free
//! slots, runs each (see [`runner`]), heartbeats its leases (stopping what the scheduler says
//! was cancelled or lost), reports each result, and on shutdown finishes its tasks within a
//! grace period or hands them back.

pub mod artifacts;
pub mod runner;
pub mod tail;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::scheduler::v1::worker_service_client::WorkerServiceClient;
use switchyard_proto::scheduler::v1::{
    CompleteTaskRequest, HeartbeatRequest, LeaseRef, PollTasksRequest, RegisterAgentRequest,
    ReleaseTasksRequest,
};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::shutdown::Shutdown;
use tokio::sync::{Mutex, Notify, watch};

use runner::Stop;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The scheduler's gRPC URL.
    pub scheduler: String,
    /// A service token with the `agents` scope.
    pub token: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Tasks run at once.
    pub capacity: u32,
    pub work_dir: PathBuf,
    /// Where artifacts are stored: `file:///absolute/path` or `s3://bucket/prefix`.
    pub artifact_store: String,
    /// Object-store options (`aws_endpoint`, `aws_allow_http`, ...), laid over `AWS_*` from
    /// the environment.
    pub artifact_store_options: Vec<(String, String)>,
    /// How long one poll waits for work.
    pub poll_wait: Duration,
    pub tail_bytes: usize,
    pub kill_grace: Duration,
    /// On shutdown, how long running tasks may take before they are stopped and handed back.
    pub shutdown_grace: Duration,
}

impl AgentConfig {
    pub fn new(scheduler: &str, token: &str, dir: &std::path::Path) -> AgentConfig {
        AgentConfig {
            scheduler: scheduler.to_owned(),
            token: token.to_owned(),
            name: "agent".into(),
            labels: BTreeMap::new(),
            capacity: 4,
            work_dir: dir.join("work"),
            artifact_store: artifacts::local_url(dir),
            artifact_store_options: Vec::new(),
            poll_wait: Duration::from_secs(20),
            tail_bytes: 32 * 1024,
            kill_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The scheduler's worker API with the agent's bearer token on every call.
#[derive(Clone)]
struct Client {
    inner: WorkerServiceClient<GrpcChannel>,
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    fn request<T>(&self, message: T) -> (WorkerServiceClient<GrpcChannel>, tonic::Request<T>) {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        (self.inner.clone(), request)
    }

    async fn register_agent(
        &self,
        m: RegisterAgentRequest,
    ) -> Result<
        tonic::Response<switchyard_proto::scheduler::v1::RegisterAgentResponse>,
        tonic::Status,
    > {
        let (mut c, r) = self.request(m);
        c.register_agent(r).await
    }

    async fn poll_tasks(
        &self,
        m: PollTasksRequest,
    ) -> Result<tonic::Response<switchyard_proto::scheduler::v1::PollTasksResponse>, tonic::Status>
    {
        let (mut c, r) = self.request(m);
        c.poll_tasks(r).await
    }

    async fn heartbeat(
        &self,
        m: HeartbeatRequest,
    ) -> Result<tonic::Response<switchyard_proto::scheduler::v1::HeartbeatResponse>, tonic::Status>
    {
        let (mut c, r) = self.request(m);
        c.heartbeat(r).await
    }

    async fn complete_task(
        &self,
        m: CompleteTaskRequest,
    ) -> Result<tonic::Response<switchyard_proto::scheduler::v1::CompleteTaskResponse>, tonic::Status>
    {
        let (mut c, r) = self.request(m);
        c.complete_task(r).await
    }

    async fn release_tasks(
        &self,
        m: ReleaseTasksRequest,
    ) -> Result<tonic::Response<switchyard_proto::scheduler::v1::ReleaseTasksResponse>, tonic::Status>
    {
        let (mut c, r) = self.request(m);
        c.release_tasks(r).await
    }
}

/// A task attempt in hand: the switch that stops it.
struct Running {
    stop: watch::Sender<Option<Stop>>,
}

/// Tasks in hand, by (task id, attempt): after a lost lease the same task can come back at a
/// new attempt while the old attempt is still reporting, and each must keep its own entry.
type InHand = HashMap<(String, u32), Running>;

fn lease_refs(tasks: &InHand) -> Vec<LeaseRef> {
    tasks
        .keys()
        .map(|(task_id, attempt)| LeaseRef {
            task_id: task_id.clone(),
            attempt: *attempt,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("scheduler refused: {0}")]
    Refused(#[from] tonic::Status),
}

/// Runs the agent until `shutdown`, then drains.
pub async fn run(config: AgentConfig, shutdown: Shutdown) -> Result<(), AgentError> {
    let artifacts =
        artifacts::ArtifactStore::open(&config.artifact_store, &config.artifact_store_options)
            .map_err(|e| AgentError::Config(e.to_string()))?;
    tracing::info!(artifact_store = %config.artifact_store, "artifact store opened");
    let channel = switchyard_runtime::grpc::channel(&config.scheduler)
        .map_err(|e| AgentError::Config(format!("scheduler URL: {e}")))?;
    let header = format!("Bearer {}", config.token)
        .parse()
        .map_err(|_| AgentError::Config("the token has characters a header cannot carry".into()))?;
    let client = Client {
        inner: WorkerServiceClient::new(channel),
        bearer: header,
    };
    let (agent_id, heartbeat) = register(&client, &config, &shutdown).await?;
    tracing::info!(%agent_id, capacity = config.capacity, "agent registered");
    let running: Arc<Mutex<InHand>> = Arc::default();
    let slot_freed = Arc::new(Notify::new());
    let beats = tokio::spawn(heartbeats(
        client.clone(),
        agent_id.clone(),
        heartbeat,
        running.clone(),
        shutdown.clone(),
    ));
    let settings = Arc::new(runner::Settings {
        work_dir: config.work_dir.clone(),
        artifacts,
        tail_bytes: config.tail_bytes,
        kill_grace: config.kill_grace,
    });
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let free = config
            .capacity
            .saturating_sub(running.lock().await.len() as u32);
        if free == 0 {
            tokio::select! {
                _ = slot_freed.notified() => {}
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let poll = PollTasksRequest {
            agent_id: agent_id.clone(),
            max_tasks: free,
            wait: prost_types::Duration::try_from(config.poll_wait).ok(),
        };
        let tasks = tokio::select! {
            answer = client.poll_tasks(poll) => answer,
            _ = shutdown.cancelled() => break,
        };
        let tasks = match tasks {
            Ok(answer) => {
                failures = 0;
                answer.into_inner().tasks
            }
            Err(status) => {
                failures += 1;
                let pause = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(%status, failures, "poll failed");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        for task in tasks {
            let (stop, stopped) = watch::channel(None);
            running
                .lock()
                .await
                .insert((task.task_id.clone(), task.attempt), Running { stop });
            tracing::info!(task_id = %task.task_id, node = %task.node, shard = task.shard_index, attempt = task.attempt, "task started");
            let (client, agent_id, settings, running, slot_freed) = (
                client.clone(),
                agent_id.clone(),
                settings.clone(),
                running.clone(),
                slot_freed.clone(),
            );
            tokio::spawn(async move {
                let report = runner::run(&task, &agent_id, &settings, stopped).await;
                tracing::info!(task_id = %task.task_id, exit_code = report.exit_code, timed_out = report.timed_out, cancelled = report.cancelled, "task finished");
                report_completion(&client, report).await;
                running
                    .lock()
                    .await
                    .remove(&(task.task_id.clone(), task.attempt));
                slot_freed.notify_one();
            });
        }
    }
    drain(&client, &agent_id, &running, config.shutdown_grace).await;
    beats.abort();
    Ok(())
}

async fn register(
    client: &Client,
    config: &AgentConfig,
    shutdown: &Shutdown,
) -> Result<(String, Duration), AgentError> {
    let request = RegisterAgentRequest {
        name: config.name.clone(),
        labels: config.labels.clone().into_iter().collect(),
        capacity: config.capacity,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut failures = 0u32;
    loop {
        match client.register_agent(request.clone()).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let interval = answer
                    .heartbeat_interval
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(Duration::from_secs(10))
                    .max(Duration::from_millis(100));
                return Ok((answer.agent_id, interval));
            }
            // A wrong token or a bad request will not get better by retrying.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated
                        | tonic::Code::PermissionDenied
                        | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(status.into());
            }
            Err(status) => {
                failures += 1;
                tracing::warn!(%status, failures, "scheduler not reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))) => {}
                    _ = shutdown.cancelled() => return Err(status.into()),
                }
            }
        }
    }
}

/// Extends the leases in hand; stops the tasks the scheduler says were cancelled or lost.
async fn heartbeats(
    client: Client,
    agent_id: String,
    interval: Duration,
    running: Arc<Mutex<InHand>>,
    shutdown: Shutdown,
) {
    loop {
        tokio::time::sleep(interval).await;
        let leases = lease_refs(&*running.lock().await);
        if leases.is_empty() {
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        let answer = client
            .heartbeat(HeartbeatRequest {
                agent_id: agent_id.clone(),
                leases,
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                let tasks = running.lock().await;
                for lease in answer.cancelled.iter().chain(&answer.lost) {
                    if let Some(task) = tasks.get(&(lease.task_id.clone(), lease.attempt)) {
                        tracing::info!(task_id = %lease.task_id, "stopping task the scheduler no longer wants");
                        let _ = task.stop.send(Some(Stop::Cancel));
                    }
                }
            }
            Err(status) => tracing::warn!(%status, "heartbeat failed"),
        }
    }
}

/// Reports a result, retrying while the scheduler is unreachable; a refusal (stale lease) is
/// final.
async fn report_completion(client: &Client, report: CompleteTaskRequest) {
    let mut failures = 0u32;
    loop {
        match client.complete_task(report.clone()).await {
            Ok(_) => return,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                ) && failures < 30 =>
            {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
            }
            Err(status) => {
                tracing::warn!(%status, task_id = ?report.lease.as_ref().map(|l| &l.task_id), "completion refused");
                return;
            }
        }
    }
}

/// Lets running tasks finish within `grace`; hands back and stops the rest.
async fn drain(client: &Client, agent_id: &str, running: &Arc<Mutex<InHand>>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if running.lock().await.is_empty() {
            tracing::info!("agent drained");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tasks = running.lock().await;
    let leases = lease_refs(&tasks);
    tracing::warn!(
        tasks = leases.len(),
        "grace period over: handing tasks back"
    );
    let released = client
        .release_tasks(ReleaseTasksRequest {
            agent_id: agent_id.to_owned(),
            leases,
        })
        .await;
    if let Err(status) = released {
        tracing::warn!(%status, "tasks not handed back; their leases will expire");
    }
    for task in tasks.values() {
        let _ = task.stop.send(Some(Stop::Cancel));
    }
}
