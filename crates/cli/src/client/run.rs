//! `switchyard run`: start (and wait for) runs, read, list, watch and cancel them, show their
//! logs. Watching reads the run's event stream (`super::watch`); `--wait` polls.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{Client, Connection};
use super::print;

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Start a run; with --wait, follow it and exit with a code for its final status.
    Start {
        #[arg(long)]
        project: String,
        #[arg(long)]
        workflow: String,
        /// A workflow version; the latest when left out.
        #[arg(long)]
        version: Option<u32>,
        /// A parameter, `key=value` (the value is JSON when it parses as JSON); repeat.
        #[arg(long = "param")]
        params: Vec<String>,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        suite: Option<String>,
        /// A retried start with the same key returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Higher runs' tasks are leased first (-1000..=1000; 0 when left out).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Wait for the final status. Exit codes: 0 completed, 1 failed, 2 partial_failed,
        /// 3 timed_out, 4 infra_failed, 5 cancelled.
        #[arg(long)]
        wait: bool,
    },
    /// A run's record.
    Get { run_id: String },
    /// A project's runs, newest first.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print each status change as it happens, until the run is final. Exit codes as for
    /// `start --wait`: 0 completed, 1 failed, 2 partial_failed, 3 timed_out, 4 infra_failed,
    /// 5 cancelled.
    Watch { run_id: String },
    /// Ask a run to stop.
    Cancel { run_id: String },
    /// The end of each task's output.
    Logs { run_id: String },
    /// Why the run is not running (or that nothing waits): missing agents, full limits,
    /// backoffs, upstream nodes, in plain words.
    Why {
        run_id: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// The exit code a final status maps to.
pub fn exit_code(status: &str) -> Option<u8> {
    Some(match status {
        "completed" => 0,
        "failed" => 1,
        "partial_failed" => 2,
        "timed_out" => 3,
        "infra_failed" => 4,
        "cancelled" => 5,
        _ => return None,
    })
}

pub fn parse_params(pairs: &[String]) -> anyhow::Result<Value> {
    let mut params = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--param `{pair}` is not key=value");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        params.insert(key.trim().to_owned(), value);
    }
    Ok(Value::Object(params))
}

pub async fn run(connection: &Connection, command: RunCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        RunCommand::Start {
            project,
            workflow,
            version,
            params,
            environment,
            suite,
            idempotency_key,
            priority,
            wait,
        } => {
            let mut body = json!({"workflow": workflow, "params": parse_params(&params)?});
            for (key, value) in [
                ("environment", environment),
                ("suite", suite),
                ("idempotency_key", idempotency_key),
            ] {
                if let Some(value) = value {
                    body[key] = Value::String(value);
                }
            }
            if let Some(version) = version {
                body["version"] = json!(version);
            }
            if let Some(priority) = priority {
                body["priority"] = json!(priority);
            }
            let run = client
                .call(
                    Method::POST,
                    &format!("/api/v1/projects/{project}/runs"),
                    Some(body),
                )
                .await?;
            let id = run["id"]
                .as_str()
                .context("the API returned no run id")?
                .to_owned();
            println!("run {id} {}", run["status"].as_str().unwrap_or("?"));
            if !wait {
                return Ok(ExitCode::SUCCESS);
            }
            follow(&client, &id).await
        }
        RunCommand::Get { run_id } => {
            print(
                &client
                    .call(Method::GET, &format!("/api/v1/runs/{run_id}"), None)
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::List {
            project,
            status,
            limit,
        } => {
            let mut path = format!("/api/v1/projects/{project}/runs?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let list = client.call(Method::GET, &path, None).await?;
            for run in list["items"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<15} {:<20} v{:<3} {}",
                    run["id"].as_str().unwrap_or(""),
                    run["status"].as_str().unwrap_or(""),
                    run["workflow"].as_str().unwrap_or(""),
                    run["version"],
                    run["created_at"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Watch { run_id } => super::watch::watch(&client, &run_id).await,
        RunCommand::Cancel { run_id } => {
            let run = client
                .call(
                    Method::POST,
                    &format!("/api/v1/runs/{run_id}/cancel"),
                    Some(json!({})),
                )
                .await?;
            println!(
                "run {run_id} cancel requested ({})",
                run["status"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Logs { run_id } => {
            let logs = client
                .call(Method::GET, &format!("/api/v1/runs/{run_id}/logs"), None)
                .await?;
            for task in logs["items"].as_array().into_iter().flatten() {
                println!(
                    "==> {} shard {} attempt {} ({})",
                    task["node"].as_str().unwrap_or(""),
                    task["shard_index"],
                    task["attempt"],
                    task["status"].as_str().unwrap_or("")
                );
                println!("{}", task["log_tail"].as_str().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Why { run_id, json } => {
            super::diagnosis::why(&client, &run_id, json).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints each status change until the run is final; the exit code says how it ended.
async fn follow(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    let mut failures = 0u32;
    loop {
        match client
            .call(Method::GET, &format!("/api/v1/runs/{id}"), None)
            .await
        {
            Ok(run) => {
                failures = 0;
                let status = run["status"].as_str().unwrap_or("").to_owned();
                if status != last {
                    let tasks = &run["tasks"];
                    println!(
                        "run {id} {status} (tasks: {} total, {} running, {} succeeded, {} failed, {} dead)",
                        tasks["total"],
                        tasks["running"],
                        tasks["succeeded"],
                        tasks["failed"],
                        tasks["dead"]
                    );
                    last = status.clone();
                }
                if let Some(code) = exit_code(&status) {
                    if let Some(reason) = run["reason"].as_str() {
                        println!("reason: {reason}");
                    }
                    return Ok(ExitCode::from(code));
                }
            }
            // A gateway restart must not fail a CI job that only waits.
            Err(error) if failures < 30 && super::http_transient(&error) => failures += 1,
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_json_when_they_can() {
        let params = parse_params(&[
            "branch=main".into(),
            "shards=4".into(),
            "dry={\"a\":1}".into(),
        ])
        .expect("valid");
        assert_eq!(
            params,
            json!({"branch": "main", "shards": 4, "dry": {"a": 1}})
        );
        assert!(parse_params(&["novalue".into()]).is_err());
    }

    #[test]
    fn every_final_status_has_its_own_exit_code() {
        let codes: Vec<u8> = [
            "completed",
            "failed",
            "partial_failed",
            "timed_out",
            "infra_failed",
            "cancelled",
        ]
        .iter()
        .filter_map(|s| exit_code(s))
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(exit_code("running"), None);
    }
}
