//! `switchyard-scheduler`: the scheduler service binary.

fn main() -> std::process::ExitCode {
    switchyard_runtime::entry::run("scheduler", switchyard_scheduler::serve)
}
