//! `switchyard dlq`: dead letters and their replay.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::http::{Client, Connection};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters not yet replayed.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        run: Option<String>,
    },
    /// Replay dead letters (by id, or all of a run's): their runs resume.
    Retry {
        ids: Vec<String>,
        #[arg(long)]
        run: Option<String>,
    },
    /// Dead letters not yet replayed, counted by reason, with the oldest of each.
    Analysis {
        #[arg(long)]
        project: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(connection: &Connection, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        DlqCommand::List { project, run } => {
            let mut query = Vec::new();
            if let Some(project) = project {
                query.push(format!("project_id={project}"));
            }
            if let Some(run) = run {
                query.push(format!("run_id={run}"));
            }
            let path = format!("/api/v1/monitoring/dead-letter?{}", query.join("&"));
            let list = client.call(Method::GET, &path, None).await?;
            for letter in list["items"].as_array().into_iter().flatten() {
                let task = &letter["task"];
                println!(
                    "{}  run {} node {} shard {} attempt {}: {}",
                    letter["id"].as_str().unwrap_or(""),
                    task["run_id"].as_str().unwrap_or(""),
                    task["node"].as_str().unwrap_or(""),
                    task["shard_index"],
                    task["attempt"],
                    letter["last_error"].as_str().unwrap_or("")
                );
            }
        }
        DlqCommand::Retry { ids, run } => {
            let answer = if ids.len() == 1 && run.is_none() {
                client
                    .call(
                        Method::POST,
                        &format!("/api/v1/monitoring/dead-letter/{}/retry", ids[0]),
                        Some(json!({})),
                    )
                    .await?
            } else {
                client
                    .call(
                        Method::POST,
                        "/api/v1/monitoring/dead-letter/retry",
                        Some(json!({"ids": ids, "run_id": run})),
                    )
                    .await?
            };
            println!("{} dead letter(s) replayed", answer["retried"]);
        }
        DlqCommand::Analysis { project, json } => {
            super::diagnosis::dead_letters(&client, project.as_deref(), json).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
