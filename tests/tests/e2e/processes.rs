//! The service binaries as an operator runs them: exit codes, one-line errors, SIGTERM drain,
//! and `switchyard dev`.

use std::process::Stdio;
use std::time::Duration;

use switchyard_test_support::api::Http;
use switchyard_test_support::{TestDatabase, binary, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn service(name: &str) -> Command {
    let mut command = Command::new(binary(&format!("switchyard-{name}")));
    command
        .env_remove("SWITCHYARD_CONFIG")
        .env("SWITCHYARD_GRPC__LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_METRICS__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_and_exit_69() {
    for name in ["audit", "control-plane", "scheduler", "monitoring"] {
        let output = service(name)
            .env(
                "SWITCHYARD_DATABASE__URL",
                "postgres://postgres@127.0.0.1:1/ledger",
            )
            .env("SWITCHYARD_DATABASE__CONNECT_TIMEOUT", "2s")
            .env("RUST_LOG", "off")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(69), "{name}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(
            stderr.contains("127.0.0.1:1") && stderr.contains("ledger"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn a_bad_config_value_names_the_key_and_exits_64() {
    let output = service("audit")
        .env("SWITCHYARD_GRPC__REQUEST_TIMEOUT", "soon")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("grpc.request_timeout"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let db = TestDatabase::postgres().await;
    for name in ["audit", "scheduler"] {
        let database = db.config(name);
        let port = switchyard_test_support::reserve_port().port();
        let mut child = service(name)
            .env("SWITCHYARD_GRPC__LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_DATABASE__URL", &database.url)
            .env("SWITCHYARD_DATABASE__SCHEMA", &database.schema)
            .env("SWITCHYARD_OUTBOX__AUDIT_ENDPOINT", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        eventually(
            "the service to report SERVING",
            Duration::from_secs(30),
            || {
                let endpoint = endpoint.clone();
                async move {
                    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
                    let mut client =
                        HealthClient::new(switchyard_runtime::grpc::channel(&endpoint).ok()?);
                    let status = client
                        .check(HealthCheckRequest::default())
                        .await
                        .ok()?
                        .into_inner()
                        .status;
                    (status == 1).then_some(())
                }
            },
        )
        .await;
        let pid = child.id().unwrap().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("exits within the grace period")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{name} exits 0 after SIGTERM");
    }
}

/// `switchyard dev` on a data directory, started and ready, with what it printed.
struct Dev {
    child: tokio::process::Child,
    printed: Vec<String>,
    /// The gateway at the printed URL.
    http: Http,
    token: String,
}

impl Dev {
    /// Starts it on free ports; `bootstrap` fixes the admin token (else dev makes one).
    async fn start(dir: &std::path::Path, bootstrap: Option<&str>) -> Dev {
        let mut command = Command::new(binary("switchyard"));
        command
            .args(["dev", "--port-base", "0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env_remove("SWITCHYARD_BOOTSTRAP_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = bootstrap {
            command.env("SWITCHYARD_BOOTSTRAP_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let done = line.contains("Press Ctrl-C");
                printed.push(line);
                if done {
                    return;
                }
            }
        })
        .await;
        assert!(ready.is_ok(), "dev printed: {printed:?}");
        // The URL and bootstrap token as printed, as a newcomer copies them.
        let printed_value = |key: &str| {
            printed
                .iter()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(&format!("export {key}="))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("{key} in {printed:?}"))
        };
        let url = printed_value("SWITCHYARD_URL");
        let token = printed_value("SWITCHYARD_TOKEN");
        Dev {
            child,
            printed,
            http: Http::new(url),
            token,
        }
    }

    /// A new organisation and a project in it; the project's id.
    async fn project(&self) -> String {
        let token = Some(self.token.as_str());
        let org = self
            .http
            .post("/api/v1/orgs", token, serde_json::json!({"name": "acme"}))
            .await;
        assert_eq!(org.status, 201, "{org:?}");
        let path = format!("/api/v1/orgs/{}/projects", org.body["id"].as_str().unwrap());
        let project = self
            .http
            .post(&path, token, serde_json::json!({"name": "web"}))
            .await;
        project.body["id"].as_str().unwrap().to_owned()
    }

    /// Ctrl-C; waits for the process to end and returns its exit code.
    async fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap()
            .code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_dev_starts_everything_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), None).await;
    let printed = &dev.printed;
    for name in ["control-plane", "scheduler", "monitoring", "audit"] {
        assert!(
            printed
                .iter()
                .any(|l| l.trim_start().starts_with(name) && l.contains("grpc 127.0.0.1:")),
            "{name} in {printed:?}"
        );
    }
    for db in [
        "audit.db",
        "control-plane.db",
        "scheduler.db",
        "monitoring.db",
    ] {
        assert!(dir.path().join(db).is_file(), "{db}");
    }
    // The printed URL and bootstrap token work as printed.
    let (url, token) = (dev.http.base.clone(), dev.token.clone());
    let ready = dev.http.get("/readyz", None).await;
    assert_eq!(ready.status, 200);
    let project = dev.project().await;

    // The CLI, as a CI job uses it, against dev's own agent: real commands run.
    let cli = |args: &[&str]| {
        let mut command = Command::new(binary("switchyard"));
        command
            .args(args)
            .env("SWITCHYARD_URL", &url)
            .env("SWITCHYARD_TOKEN", &token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        command
    };
    let definition = dir.path().join("hello.yaml");
    std::fs::write(
        &definition,
        "nodes:\n  - id: greet\n    run: echo hello from $SWITCHYARD_NODE\n  - id: check\n    needs: [greet]\n    run: test \"$SWITCHYARD_ATTEMPT\" = 1\n",
    )
    .unwrap();
    let failing = dir.path().join("broken.json");
    std::fs::write(&failing, r#"{"nodes": [{"id": "fail", "run": "exit 7"}]}"#).unwrap();
    for file in [&definition, &failing] {
        let applied = cli(&["workflow", "apply", "--project", &project, "-f"])
            .arg(file)
            .output()
            .await
            .unwrap();
        assert!(applied.status.success(), "{applied:?}");
    }
    let passed = cli(&[
        "run",
        "start",
        "--project",
        &project,
        "--workflow",
        "hello",
        "--param",
        "branch=main",
        "--wait",
    ])
    .output()
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&passed.stdout).into_owned();
    assert_eq!(passed.status.code(), Some(0), "{out}");
    assert!(out.contains("completed"), "{out}");
    let run_id = out.split_whitespace().nth(1).unwrap().to_owned();
    let logs = cli(&["run", "logs", &run_id]).output().await.unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(logs.contains("hello from greet"), "{logs}");
    let failed = cli(&[
        "run",
        "start",
        "--project",
        &project,
        "--workflow",
        "broken",
        "--wait",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    // `run watch` follows the event stream: a live run to its end, a finished one at once.
    let started = cli(&["run", "start", "--project", &project, "--workflow", "hello"])
        .output()
        .await
        .unwrap();
    let live = String::from_utf8_lossy(&started.stdout).into_owned();
    let live = live.split_whitespace().nth(1).unwrap().to_owned();
    let watched = cli(&["run", "watch", &live]).output().await.unwrap();
    let out = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert_eq!(watched.status.code(), Some(0), "{watched:?}");
    assert!(out.ends_with(&format!("run {live} completed\n")), "{out}");
    let failed_id = String::from_utf8_lossy(&failed.stdout).into_owned();
    let failed_id = failed_id.split_whitespace().nth(1).unwrap().to_owned();
    let watched = cli(&["run", "watch", &failed_id]).output().await.unwrap();
    let out = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert_eq!(watched.status.code(), Some(1), "{watched:?}");
    assert!(
        out.starts_with(&format!("run {failed_id} failed\n")),
        "{out}"
    );
    let unknown = cli(&["run", "watch", "01900000-0000-7000-8000-000000000000"])
        .output()
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(10), "{unknown:?}");
    let refused = cli(&[
        "run",
        "start",
        "--project",
        &project,
        "--workflow",
        "missing",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(10), "{refused:?}");

    assert_eq!(dev.interrupt().await, Some(0));
}

/// Ctrl-C while a task runs: dev's agent lets it finish and reports it before the services
/// stop, so after a restart the run is complete, on its first attempt, at once (not after its
/// lease expired and a second attempt ran it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_dev_ctrl_c_reports_the_task_in_hand_before_the_services_stop() {
    let dir = tempfile::tempdir().unwrap();
    let token = "dev-ctrl-c-test";
    let dev = Dev::start(dir.path(), Some(token)).await;
    let project = dev.project().await;
    let put = dev
        .http
        .put(
            &format!("/api/v1/projects/{project}/workflows/slow"),
            Some(token),
            serde_json::json!({"nodes": [{"id": "work", "run": "sleep 2"}]}),
        )
        .await;
    assert!((200..300).contains(&put.status), "{put:?}");
    let run = dev
        .http
        .post(
            &format!("/api/v1/projects/{project}/runs"),
            Some(token),
            serde_json::json!({"workflow": "slow"}),
        )
        .await;
    let run_id = run.body["id"].as_str().unwrap().to_owned();
    let (tasks, run_path) = (
        format!("/api/v1/runs/{run_id}/tasks"),
        format!("/api/v1/runs/{run_id}"),
    );
    eventually("the task to run", Duration::from_secs(30), || async {
        let tasks = dev.http.get(&tasks, Some(token)).await.body;
        let leased = tasks["items"]
            .as_array()?
            .iter()
            .any(|t| t["status"] == "leased");
        leased.then_some(())
    })
    .await;
    assert_eq!(dev.interrupt().await, Some(0));

    let dev = Dev::start(dir.path(), Some(token)).await;
    let status = eventually("the run to be final", Duration::from_secs(10), || async {
        let run = dev.http.get(&run_path, Some(token)).await.body;
        let status = run["status"].as_str()?.to_owned();
        matches!(status.as_str(), "completed" | "failed" | "infra_failed").then_some(status)
    })
    .await;
    assert_eq!(status, "completed");
    let tasks = dev.http.get(&tasks, Some(token)).await.body["items"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["attempt"], 1, "{tasks:?}");
    assert_eq!(tasks[0]["exit_code"], 0, "{tasks:?}");
    // The gateway's last usage report (its 10 s window had not come round) reached
    // monitoring before the services stopped: the one PUT of the first start is counted.
    let usage = dev
        .http
        .get("/api/v1/monitoring/apis/usage", Some(token))
        .await;
    let routes = usage.body["routes"].as_array().cloned().unwrap_or_default();
    assert!(
        routes
            .iter()
            .any(|r| r["method"] == "PUT" && r["requests"].as_u64() >= Some(1)),
        "{usage:?}"
    );
    assert_eq!(dev.interrupt().await, Some(0));
}
