//! The control-plane service's configuration.

use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct ControlPlaneConfig {
        grpc_port: 7010,
        metrics_port: 9010,
        schema: "control_plane",
    }
}

impl Validate for ControlPlaneConfig {
    fn validate(&self) -> Vec<String> {
        self.base().validate()
    }
}
