//! `switchyard-gateway`: the HTTP/JSON gateway binary.

fn main() -> std::process::ExitCode {
    switchyard_runtime::entry::run("gateway", switchyard_gateway::serve)
}
