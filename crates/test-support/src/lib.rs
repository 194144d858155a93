//! Shared test harness: real services on port 0, each against a fresh PostgreSQL schema
//! (dropped when the [`TestDatabase`] guard goes, even on panic) or a temporary SQLite
//! directory; typed clients; and condition waits with deadlines instead of sleeps.

#![allow(clippy::unwrap_used)] // test harness: a failed setup should fail the test loudly

pub mod api;
pub mod cluster;
pub mod database;
pub mod ports;
pub mod wait;

pub use api::{Api, Reply, spawn_api};
pub use cluster::{BOOTSTRAP_TOKEN, Cluster, spawn_audit, spawn_cluster};
pub use database::{Backend, TestDatabase};
pub use ports::reserve_port;
pub use wait::eventually;

/// Makes trace propagation work in tests without installing a global log subscriber
/// (set `SWITCHYARD_TEST_LOG=debug` to see service logs).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("SWITCHYARD_TEST_LOG") {
            let config = switchyard_runtime::config::TelemetryConfig {
                log_filter: filter,
                ..Default::default()
            };
            let _ = switchyard_runtime::telemetry::init("test", &config).map(std::mem::forget);
        } else {
            switchyard_runtime::telemetry::install_propagator();
        }
    });
}

/// A path next to the test binary's directory: where cargo puts this workspace's binaries.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`; `make test` does)",
        path.display()
    );
    path
}
