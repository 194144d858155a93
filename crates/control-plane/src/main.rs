//! `switchyard-control-plane`: the control-plane service binary.

fn main() -> std::process::ExitCode {
    switchyard_runtime::entry::run("control-plane", switchyard_control_plane::serve)
}
