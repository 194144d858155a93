//! A completion arriving through the worker API (gRPC, as agents send it) while a lease
//! sweeper on another replica finds the same lease expired, many times over: either the
//! completion wins and the task stays succeeded, or it is refused with FAILED_PRECONDITION
//! and the task goes round again at the next attempt. Nothing that won is ever undone.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use switchyard_proto::scheduler::v1::worker_service_client::WorkerServiceClient;
use switchyard_proto::scheduler::v1::{
    CompleteTaskRequest, LeaseRef, LeasedTask, PollTasksRequest, RegisterAgentRequest,
};
use switchyard_scheduler::engine::{Engine, Settings};
use switchyard_scheduler::store::attempts;
use switchyard_scheduler::store::entity::task;
use switchyard_test_support::TestDatabase;
use switchyard_test_support::cluster::channel;
use tonic::metadata::MetadataValue;

use crate::runs::setup;

const ROUNDS: usize = 20;

struct Worker {
    client: WorkerServiceClient<switchyard_runtime::grpc::GrpcChannel>,
    bearer: MetadataValue<tonic::metadata::Ascii>,
    agent_id: String,
}

impl Worker {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    async fn poll(&self) -> LeasedTask {
        let request = self.request(PollTasksRequest {
            agent_id: self.agent_id.clone(),
            max_tasks: 1,
            wait: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
        });
        let tasks = self.client.clone().poll_tasks(request).await.unwrap();
        tasks
            .into_inner()
            .tasks
            .pop()
            .expect("a task within the poll")
    }

    async fn complete(&self, task: &LeasedTask) -> Result<(), tonic::Status> {
        let request = self.request(CompleteTaskRequest {
            agent_id: self.agent_id.clone(),
            lease: Some(LeaseRef {
                task_id: task.task_id.clone(),
                attempt: task.attempt,
            }),
            exit_code: 0,
            ..CompleteTaskRequest::default()
        });
        self.client.clone().complete_task(request).await.map(|_| ())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_racing_a_sweeper_through_grpc_are_never_undone() {
    let db = TestDatabase::postgres().await;
    let s = setup(&db).await;
    // This test is the only agent.
    s.agent_stop.cancel();
    s.workflow("one", json!({"nodes": [{"id": "t", "run": "true"}]}))
        .await;
    let token = s
        .api
        .post(
            "/api/v1/auth/service-tokens",
            Some(switchyard_test_support::BOOTSTRAP_TOKEN),
            json!({"name": "racer", "project_id": s.project, "scopes": ["agents"]}),
        )
        .await;
    let bearer = format!("Bearer {}", token.body["token"].as_str().unwrap());
    let mut worker = Worker {
        client: WorkerServiceClient::new(channel(&s.api.cluster.scheduler)),
        bearer: bearer.parse().unwrap(),
        agent_id: String::new(),
    };
    worker.agent_id = worker
        .client
        .clone()
        .register_agent(worker.request(RegisterAgentRequest {
            name: "racer".into(),
            capacity: 1,
            version: "test".into(),
            ..RegisterAgentRequest::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    // A second replica's sweeper on the same database.
    let db_config = db.config("scheduler");
    let conn = switchyard_runtime::db::connect(&db_config).await.unwrap();
    let sweeper = Engine::new(conn.clone(), Settings::default());

    let (mut completion_won, mut sweeper_won) = (0, 0);
    let mut runs = Vec::new();
    for _ in 0..ROUNDS {
        let run = s.start("one").await;
        let leased = worker.poll().await;
        assert_eq!(leased.run_id, run);
        // The lease is past its expiry as the completion arrives.
        task::Entity::update_many()
            .col_expr(
                task::Column::LeaseExpiresAt,
                Some(chrono::Utc::now() - chrono::Duration::seconds(1)).into(),
            )
            .filter(task::Column::Uuid.eq(leased.task_id.as_str()))
            .exec(&conn)
            .await
            .unwrap();
        let (completed, swept) = tokio::join!(worker.complete(&leased), sweeper.sweep());
        swept.unwrap();
        let row = task::Entity::find()
            .filter(task::Column::Uuid.eq(leased.task_id.as_str()))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        match completed {
            Ok(()) => {
                completion_won += 1;
                assert_eq!(
                    (row.status.as_str(), row.attempt),
                    ("succeeded", leased.attempt as i32),
                    "an accepted completion stands"
                );
            }
            Err(status) => {
                sweeper_won += 1;
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert_eq!(
                    row.attempt,
                    leased.attempt as i32 + 1,
                    "the task goes round again"
                );
                // Finish the next attempt so the run completes.
                let again = worker.poll().await;
                assert_eq!(
                    (again.task_id.as_str(), again.attempt),
                    (leased.task_id.as_str(), leased.attempt + 1)
                );
                worker.complete(&again).await.unwrap();
            }
        }
        let ended = attempts::for_run(&conn, &run).await.unwrap();
        let outcomes: Vec<(i32, &str)> = ended
            .iter()
            .map(|a| (a.attempt, a.outcome.as_str()))
            .collect();
        assert!(
            outcomes == [(1, "succeeded")] || outcomes == [(1, "retrying"), (2, "succeeded")],
            "{outcomes:?}"
        );
        runs.push(run);
    }
    for run in &runs {
        let done = s.finished(run).await;
        assert_eq!(done["status"], "completed", "{done:?}");
        crate::invariants::check_run(&s.api, &db, run).await;
    }
    eprintln!("race: completion won {completion_won}, sweeper won {sweeper_won} of {ROUNDS}");
    assert_eq!(completion_won + sweeper_won, ROUNDS);
    s.stop().await;
}
