//! Compiles every contract under `proto/` with a vendored `protoc`, so a fresh machine needs
//! no system package.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An explicit PROTOC wins; otherwise use the vendored binary. The path goes through the
    // builder rather than `set_var`, which edition 2024 marks unsafe.
    let protoc = match std::env::var_os("PROTOC") {
        Some(_) => None,
        None => Some(protoc_bin_vendored::protoc_bin_path()?),
    };
    compile(protoc)
}

fn compile(protoc: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = [
        "switchyard/common/v1/common.proto",
        "switchyard/events/v1/events.proto",
        "switchyard/audit/v1/audit.proto",
        "switchyard/controlplane/v1/tenancy.proto",
        "switchyard/controlplane/v1/identity.proto",
        "switchyard/controlplane/v1/workflows.proto",
        "switchyard/controlplane/v1/runs.proto",
        "switchyard/controlplane/v1/suites.proto",
        "switchyard/scheduler/v1/scheduler.proto",
        "switchyard/scheduler/v1/worker.proto",
        "switchyard/monitoring/v1/monitoring.proto",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("switchyard_descriptor.bin");
    let mut config = tonic_prost_build::Config::new();
    if let Some(protoc) = protoc {
        config.protoc_executable(protoc);
    }
    tonic_prost_build::configure()
        // Domain RPCs that later work fills in answer UNIMPLEMENTED until then.
        .generate_default_stubs(true)
        .file_descriptor_set_path(&descriptor)
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
