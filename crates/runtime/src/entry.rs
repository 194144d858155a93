//! The body of every service binary's `main`: flags, config (bad config: one line on stderr,
//! exit 64), telemetry, signals, serve, and a one-line error with a sysexits code on failure.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RuntimeError;
use crate::config::{self, TelemetryConfig, Validate};
use crate::shutdown::{self, Shutdown};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A Switchyard service. Configuration: defaults, then --config (TOML), then SWITCHYARD_* variables."
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = config::CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    dump_config: bool,
}

/// A binary's configuration: whatever else it holds, it says how to log.
pub trait BinaryConfig: Serialize + DeserializeOwned + Default + Validate {
    fn telemetry(&self) -> &TelemetryConfig;
}

/// Runs a service to completion. `serve` returns after shutdown and drain.
pub fn run<C, F, Fut>(service: &'static str, serve: F) -> ExitCode
where
    C: BinaryConfig,
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), RuntimeError>>,
{
    let args = Args::parse();
    let config: C = match config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return fail(service, &error),
    };
    if args.dump_config {
        match serde_json::to_string_pretty(&config) {
            Ok(json) => {
                #[allow(clippy::print_stdout)] // the flag's whole purpose
                {
                    println!("{json}");
                }
                return ExitCode::SUCCESS;
            }
            Err(error) => return fail(service, &RuntimeError::Config(error.to_string())),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(
                service,
                &RuntimeError::Config(format!("tokio runtime: {error}")),
            );
        }
    };
    let code = runtime.block_on(async move {
        let guard = match telemetry::init(service, config.telemetry()) {
            Ok(guard) => guard,
            Err(error) => return fail(service, &error),
        };
        let shutdown = Shutdown::new();
        shutdown::on_signals(shutdown.clone());
        let result = serve(config, shutdown).await;
        guard.shutdown(Duration::from_secs(5));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "service failed");
                fail(service, &error)
            }
        }
    });
    shutdown::end_runtime(runtime);
    code
}

/// One line on stderr, and the error's exit code.
fn fail(service: &str, error: &RuntimeError) -> ExitCode {
    eprintln!("switchyard-{service}: error: {error}");
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
}
