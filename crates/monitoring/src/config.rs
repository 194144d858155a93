//! The monitoring service's configuration.

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct MonitoringConfig {
        grpc_port: 7030,
        metrics_port: 9030,
        schema: "monitoring",
        /// gRPC endpoint of the control plane, which knows which organization a project
        /// belongs to (monitoring authorizes reads on it).
        pub control_plane: ControlPlaneEndpoint,
    }
}

/// A gRPC URL with a default (`Default` is what the config macro fills fields with).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct ControlPlaneEndpoint(pub String);

impl Default for ControlPlaneEndpoint {
    fn default() -> Self {
        ControlPlaneEndpoint("http://127.0.0.1:7010".into())
    }
}

impl std::ops::Deref for ControlPlaneEndpoint {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Validate for MonitoringConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.base().validate();
        if !(self.control_plane.starts_with("http://")
            || self.control_plane.starts_with("https://"))
        {
            problems.push(format!(
                "control_plane must be an http(s) URL, got {:?}",
                self.control_plane.0
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_config_wants_an_http_control_plane() {
        assert!(MonitoringConfig::default().validate().is_empty());
        let config = MonitoringConfig {
            control_plane: ControlPlaneEndpoint("control-plane:7010".into()),
            ..MonitoringConfig::default()
        };
        assert_eq!(
            config.validate(),
            ["control_plane must be an http(s) URL, got \"control-plane:7010\""]
        );
    }
}
