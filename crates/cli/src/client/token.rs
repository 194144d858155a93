//! `switchyard token`: service tokens for CI and agents.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::http::{Client, Connection};
use super::print;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// Scopes, comma-separated (runs:write, workflows:write, suites:write, agents, admin...).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Tokens you may see, without secrets.
    List,
    /// Revoke a token; it stops working at once.
    Revoke { id: String },
}

pub async fn run(connection: &Connection, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        TokenCommand::Create {
            name,
            org,
            project,
            scopes,
            expires_at,
        } => {
            let body = json!({"name": name, "org_id": org, "project_id": project,
                              "scopes": scopes, "expires_at": expires_at});
            print(
                &client
                    .call(Method::POST, "/api/v1/auth/service-tokens", Some(body))
                    .await?,
            );
        }
        TokenCommand::List => {
            print(
                &client
                    .call(Method::GET, "/api/v1/auth/service-tokens", None)
                    .await?,
            );
        }
        TokenCommand::Revoke { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/auth/service-tokens/{id}"),
                    None,
                )
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
