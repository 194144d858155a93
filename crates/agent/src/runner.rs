//! Runs one leased task: `sh -c <command>` in a fresh work directory, in its own process
//! group, with the task's environment and the `SWITCHYARD_*` variables; keeps the output's
//! tail; stops the whole group on timeout or when told to; collects outputs, test results
//! and artifacts the command left behind.
//!
//! What a command may leave (paths given in its environment):
//! - `$SWITCHYARD_OUTPUTS`: a JSON object merged into the run's state;
//! - `$SWITCHYARD_RESULTS`: `{"passed", "failed", "skipped", "coverage": [{"path",
//!   "covered_lines", "executable_lines"}]}`;
//! - `$SWITCHYARD_ARTIFACTS/`: files stored in the artifact store with their SHA-256 (see
//!   [`crate::artifacts`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use switchyard_proto::scheduler::v1::{
    CompleteTaskRequest, FileCoverageReport, LeaseRef, LeasedTask, TestCounts,
};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::watch;

use crate::artifacts::ArtifactStore;
use crate::tail::Tail;

/// Why the agent stopped a task itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The run was cancelled (or the lease lost): stop now.
    Cancel,
}

pub struct Settings {
    pub work_dir: PathBuf,
    pub artifacts: ArtifactStore,
    pub tail_bytes: usize,
    /// Time between SIGTERM and SIGKILL when stopping a process group.
    pub kill_grace: Duration,
}

/// Runs the task to its end and returns the completion to report.
pub async fn run(
    task: &LeasedTask,
    agent_id: &str,
    settings: &Settings,
    mut stop: watch::Receiver<Option<Stop>>,
) -> CompleteTaskRequest {
    let started = std::time::SystemTime::now();
    let dir = settings
        .work_dir
        .join(format!("{}-{}", task.task_id, task.attempt));
    let mut report = CompleteTaskRequest {
        agent_id: agent_id.to_owned(),
        lease: Some(LeaseRef {
            task_id: task.task_id.clone(),
            attempt: task.attempt,
        }),
        started_at: Some(started.into()),
        ..CompleteTaskRequest::default()
    };
    let outputs = dir.join(".switchyard-outputs.json");
    let results = dir.join(".switchyard-results.json");
    let artifacts = dir.join(".switchyard-artifacts");
    if let Err(error) = tokio::fs::create_dir_all(&artifacts).await {
        report.exit_code = 127;
        report.log_tail = format!("switchyard-agent: cannot create {}: {error}", dir.display());
        return report;
    }
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&task.command)
        .current_dir(&dir)
        .envs(&task.environment)
        .env("SWITCHYARD_RUN_ID", &task.run_id)
        .env("SWITCHYARD_TASK_ID", &task.task_id)
        .env("SWITCHYARD_NODE", &task.node)
        .env("SWITCHYARD_SHARD_INDEX", task.shard_index.to_string())
        .env("SWITCHYARD_SHARD_COUNT", task.shard_count.to_string())
        .env("SWITCHYARD_ATTEMPT", task.attempt.to_string())
        .env("SWITCHYARD_ITERATION", task.iteration.to_string())
        .env("SWITCHYARD_OUTPUTS", &outputs)
        .env("SWITCHYARD_RESULTS", &results)
        .env("SWITCHYARD_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: stopping the task stops everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            report.exit_code = 127;
            report.log_tail = format!("switchyard-agent: cannot start sh: {error}");
            return report;
        }
    };
    let pid = child.id();
    let (tail_tx, mut tail_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    for pipe in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tail_tx.clone();
        tokio::spawn(async move {
            let mut pipe = pipe;
            let mut buffer = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut buffer).await {
                if n == 0 || tx.send(buffer[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tail_tx);
    let mut tail = Tail::new(settings.tail_bytes);
    let timeout = task
        .timeout
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(3600));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut stopped_by: Option<&str> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(chunk) = tail_rx.recv() => tail.push(&chunk),
            _ = &mut deadline, if stopped_by.is_none() => {
                stopped_by = Some("timeout");
                report.timed_out = true;
                stop_group(pid, settings.kill_grace).await;
            }
            changed = stop.changed(), if stopped_by.is_none() => {
                if changed.is_err() || stop.borrow().is_some() {
                    stopped_by = Some("cancel");
                    report.cancelled = true;
                    stop_group(pid, settings.kill_grace).await;
                }
            }
        }
    };
    // Drain what the pipes still hold.
    while let Ok(Some(chunk)) =
        tokio::time::timeout(Duration::from_millis(200), tail_rx.recv()).await
    {
        tail.push(&chunk);
    }
    report.exit_code = match status {
        Ok(status) => status.code().unwrap_or(-1),
        Err(_) => -1,
    };
    if let Some(why) = stopped_by {
        tail.push(format!("\n[switchyard-agent: stopped by {why}]\n").as_bytes());
    }
    report.log_tail = tail.text();
    report.outputs_json = read_outputs(&outputs).await;
    if let Some((tests, coverage)) = read_results(&results).await {
        report.tests = Some(tests);
        report.coverage = coverage;
    }
    report.artifacts = settings.artifacts.store_dir(&artifacts, task).await;
    report.finished_at = Some(std::time::SystemTime::now().into());
    if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
        tracing::debug!(%error, dir = %dir.display(), "work directory not removed");
    }
    report
}

/// SIGTERM to the group, SIGKILL after the grace period if anything is left.
async fn stop_group(pid: Option<u32>, grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    tokio::time::sleep(grace).await;
    let _ = killpg(group, Signal::SIGKILL);
}

async fn read_outputs(path: &Path) -> String {
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        return String::new();
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value @ serde_json::Value::Object(_)) => value.to_string(),
        _ => {
            tracing::warn!(path = %path.display(), "outputs file is not a JSON object; ignored");
            String::new()
        }
    }
}

#[derive(serde::Deserialize)]
struct Results {
    #[serde(default)]
    passed: u32,
    #[serde(default)]
    failed: u32,
    #[serde(default)]
    skipped: u32,
    #[serde(default)]
    coverage: Vec<FileCoverage>,
}

#[derive(serde::Deserialize)]
struct FileCoverage {
    path: String,
    #[serde(default)]
    covered_lines: Vec<u32>,
    #[serde(default)]
    executable_lines: Vec<u32>,
}

async fn read_results(path: &Path) -> Option<(TestCounts, Vec<FileCoverageReport>)> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    let results: Results = match serde_json::from_str(&text) {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "results file unreadable; ignored");
            return None;
        }
    };
    Some((
        TestCounts {
            passed: results.passed,
            failed: results.failed,
            skipped: results.skipped,
        },
        results
            .coverage
            .into_iter()
            .map(|f| FileCoverageReport {
                path: f.path,
                covered_lines: f.covered_lines,
                executable_lines: f.executable_lines,
            })
            .collect(),
    ))
}
