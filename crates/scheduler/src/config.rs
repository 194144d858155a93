//! The scheduler service's configuration.

use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct SchedulerConfig {
        grpc_port: 7020,
        metrics_port: 9020,
        schema: "scheduler",
    }
}

impl Validate for SchedulerConfig {
    fn validate(&self) -> Vec<String> {
        self.base().validate()
    }
}
