//! `switchyard-agent`: runs on a build machine and runs the scheduler's tasks there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchyard_agent::AgentConfig;

#[derive(Parser, Debug)]
#[command(version, about = "Runs Switchyard tasks on this machine")]
struct Args {
    /// The scheduler's gRPC URL.
    #[arg(
        long,
        env = "SWITCHYARD_SCHEDULER_URL",
        default_value = "http://127.0.0.1:7020"
    )]
    scheduler: String,
    /// A service token with the `agents` scope.
    #[arg(long, env = "SWITCHYARD_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Name shown in the agent list.
    #[arg(long, env = "SWITCHYARD_AGENT_NAME", default_value = "agent")]
    name: String,
    /// Labels tasks can require, `key=value`; repeat or separate with commas.
    #[arg(long = "label", env = "SWITCHYARD_AGENT_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Tasks run at once.
    #[arg(long, env = "SWITCHYARD_AGENT_CAPACITY", default_value_t = 4)]
    capacity: u32,
    /// Where work directories and stored artifacts go.
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_DIR",
        default_value = ".switchyard-agent"
    )]
    dir: PathBuf,
    /// Where task artifacts go: `file:///absolute/path` or `s3://bucket/prefix` (keys
    /// `<prefix>/<run>/<task>-<attempt>/<name>`). Default: `<dir>/artifacts`.
    #[arg(long, env = "SWITCHYARD_AGENT_ARTIFACT_STORE")]
    artifact_store: Option<String>,
    /// An object-store option `key=value` for the artifact store (`aws_endpoint`,
    /// `aws_allow_http`, `aws_region`, ...); repeat. `AWS_*` environment variables are read
    /// too; these win.
    #[arg(long = "artifact-store-option")]
    artifact_store_options: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut labels = BTreeMap::new();
    for label in &args.labels {
        let Some((key, value)) = label.split_once('=') else {
            eprintln!("switchyard-agent: label `{label}` is not key=value");
            return ExitCode::from(64);
        };
        labels.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    let mut artifact_store_options = Vec::new();
    for option in &args.artifact_store_options {
        let Some((key, value)) = option.split_once('=') else {
            eprintln!("switchyard-agent: artifact store option `{option}` is not key=value");
            return ExitCode::from(64);
        };
        artifact_store_options.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    if args.capacity == 0 {
        eprintln!("switchyard-agent: capacity must be at least 1");
        return ExitCode::from(64);
    }
    let mut config = AgentConfig::new(&args.scheduler, &args.token, &args.dir);
    config.name = args.name;
    config.labels = labels;
    config.capacity = args.capacity;
    if let Some(url) = args.artifact_store {
        config.artifact_store = url;
    }
    config.artifact_store_options = artifact_store_options;
    let telemetry = switchyard_runtime::config::TelemetryConfig::default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchyard-agent: cannot start the runtime: {error}");
            return ExitCode::from(71);
        }
    };
    runtime.block_on(async move {
        let guard = match switchyard_runtime::telemetry::init("agent", &telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("switchyard-agent: {error}");
                return ExitCode::from(64);
            }
        };
        let shutdown = switchyard_runtime::shutdown::Shutdown::new();
        switchyard_runtime::shutdown::on_signals(shutdown.clone());
        let outcome = switchyard_agent::run(config, shutdown).await;
        guard.shutdown(std::time::Duration::from_secs(2));
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error @ switchyard_agent::AgentError::Config(_)) => {
                eprintln!("switchyard-agent: {error}");
                ExitCode::from(64)
            }
            Err(error) => {
                eprintln!("switchyard-agent: {error}");
                ExitCode::from(69)
            }
        }
    })
}
