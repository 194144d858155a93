//! `switchyard`: embedded mode for trying Switchyard on one machine, and client commands.

// Printing results is this binary's job.
#![allow(clippy::print_stdout)]

mod client;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Durable run orchestration for CI"
)]
struct Cli {
    #[command(flatten)]
    connection: client::http::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process on SQLite, with an in-process cache.
    Dev(commands::dev::DevArgs),
    /// Inspect the audit trail.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Start, follow, read and cancel runs.
    #[command(subcommand)]
    Run(client::run::RunCommand),
    /// Store workflow definitions.
    #[command(subcommand)]
    Workflow(client::workflow::WorkflowCommand),
    /// Service tokens.
    #[command(subcommand)]
    Token(client::token::TokenCommand),
    /// Dead letters.
    #[command(subcommand)]
    Dlq(client::dlq::DlqCommand),
    /// Tasks running now and the execution history (monitoring).
    #[command(subcommand)]
    Tasks(client::tasks::TasksCommand),
    /// Alerts (list, acknowledge, resolve) and alert rules (monitoring).
    #[command(subcommand)]
    Alerts(client::alerts::AlertsCommand),
    /// API checks' health and API usage per route (monitoring).
    #[command(subcommand)]
    Apis(client::apis::ApisCommand),
    /// Retry statistics per workflow node: attempts, retry rate, success after retry, dead
    /// letters, top error reasons.
    Retries {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        /// RFC 3339: attempts that ended at or after this time (default: 7 days ago).
        #[arg(long)]
        since: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchyard: error: cannot start the async runtime: {error}");
            return ExitCode::from(70);
        }
    };
    let result = runtime.block_on(run(cli));
    switchyard_runtime::shutdown::end_runtime(runtime);
    match result {
        Ok(code) => code,
        Err(error) => {
            if let Some(code) = client::api_failure(&error) {
                return code;
            }
            eprintln!("switchyard: error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => commands::dev::run(args).await,
        Command::Audit(command) => commands::audit::run(command).await,
        Command::Run(command) => client::run::run(&cli.connection, command).await,
        Command::Workflow(command) => client::workflow::run(&cli.connection, command).await,
        Command::Token(command) => client::token::run(&cli.connection, command).await,
        Command::Dlq(command) => client::dlq::run(&cli.connection, command).await,
        Command::Tasks(command) => client::tasks::run(&cli.connection, command).await,
        Command::Apis(command) => client::apis::run(&cli.connection, command).await,
        Command::Alerts(command) => client::alerts::run(&cli.connection, command).await,
        Command::Retries {
            project,
            workflow,
            since,
            json,
        } => {
            let client = client::http::Client::new(&cli.connection)?;
            client::diagnosis::retries(
                &client,
                project.as_deref(),
                workflow.as_deref(),
                since.as_deref(),
                json,
            )
            .await
            .map(|()| ExitCode::SUCCESS)
        }
    }
}
