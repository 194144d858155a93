//! `switchyard-monitoring`: the monitoring service binary.

fn main() -> std::process::ExitCode {
    switchyard_runtime::entry::run("monitoring", switchyard_monitoring::serve)
}
