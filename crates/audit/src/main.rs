//! `switchyard-audit`: the audit service binary.

fn main() -> std::process::ExitCode {
    switchyard_runtime::entry::run("audit", switchyard_audit::serve)
}
