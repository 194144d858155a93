//! `switchyard workflow apply -f file`: store a definition (JSON or YAML).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;

use super::http::{Client, Connection};

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Store a workflow definition; a changed one becomes a new version.
    Apply {
        #[arg(long)]
        project: String,
        /// Name; the file name without its extension when left out.
        #[arg(long)]
        name: Option<String>,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

pub async fn run(connection: &Connection, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        WorkflowCommand::Apply {
            project,
            name,
            file,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .context("cannot name the workflow after the file; pass --name")?
                    .to_owned(),
            };
            let yaml = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            let content_type = if yaml {
                "application/yaml"
            } else {
                "application/json"
            };
            let stored = client
                .send(
                    Method::PUT,
                    &format!("/api/v1/projects/{project}/workflows/{name}"),
                    None,
                    Some((text, content_type)),
                )
                .await?;
            println!("workflow {name} version {}", stored["version"]);
            Ok(ExitCode::SUCCESS)
        }
    }
}
