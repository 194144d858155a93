//! The monitoring service's configuration.

use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct MonitoringConfig {
        grpc_port: 7030,
        metrics_port: 9030,
        schema: "monitoring",
    }
}

impl Validate for MonitoringConfig {
    fn validate(&self) -> Vec<String> {
        self.base().validate()
    }
}
