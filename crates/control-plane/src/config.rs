//! The control-plane service's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct ControlPlaneConfig {
        grpc_port: 7010,
        metrics_port: 9010,
        schema: "control_plane",
        /// `SWITCHYARD_BOOTSTRAP_TOKEN`: a credential with this exact value is a platform
        /// admin, so that a fresh deployment can be set up without editing the database.
        pub bootstrap_token: Option<String>,
        pub auth: AuthConfig,
        pub datasets: DatasetsConfig,
    }
}

/// Where dataset versions may be read from, and how much of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetsConfig {
    /// Directories `file://` locations may point into. Empty: local files are refused, so a
    /// caller cannot make the control plane read its own host's files.
    pub local_roots: Vec<std::path::PathBuf>,
    /// Largest dataset version read for a check, in bytes.
    pub max_bytes: u64,
    /// How long one fetch may take.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Options handed to the object store (`aws_endpoint`, `aws_region`, ...); `AWS_*`
    /// environment variables are read as well.
    pub object_store: std::collections::BTreeMap<String, String>,
    /// Allow `http(s)://` locations on link-local addresses (cloud metadata services live
    /// there; refused unless this is set).
    pub allow_link_local: bool,
}

impl Default for DatasetsConfig {
    fn default() -> Self {
        DatasetsConfig {
            local_roots: Vec::new(),
            max_bytes: 256 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(60),
            object_store: Default::default(),
            allow_link_local: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC key for access tokens (at least 32 bytes). Every replica needs the same key.
    /// Unset: derived from the bootstrap token when there is one, else random per process
    /// (access tokens then die with the process; fine for `switchyard dev`).
    pub signing_key: Option<String>,
    /// Lifetime of an access token issued by a password login.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// How long the gateway may cache an authentication answer. Revocation drops the cached
    /// answer at once; this bounds how long a missed drop can last.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How often expired service tokens are deactivated (once across replicas).
    #[serde(with = "humantime_serde")]
    pub expiry_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            signing_key: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            cache_ttl: Duration::from_secs(5),
            expiry_interval: Duration::from_secs(3600),
        }
    }
}

impl Validate for ControlPlaneConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.base().validate();
        if let Some(token) = &self.bootstrap_token
            && token.len() < 16
        {
            problems.push("bootstrap_token must be at least 16 characters".into());
        }
        if let Some(key) = &self.auth.signing_key
            && key.len() < 32
        {
            problems.push("auth.signing_key must be at least 32 bytes".into());
        }
        if self.auth.access_token_ttl < Duration::from_secs(60) {
            problems.push("auth.access_token_ttl must be at least 1m".into());
        }
        if self.auth.expiry_interval.is_zero() {
            problems.push("auth.expiry_interval must be greater than zero".into());
        }
        if self.auth.cache_ttl > Duration::from_secs(60) {
            problems.push("auth.cache_ttl must be at most 60s (it bounds how long a revoked token may still work)".into());
        }
        if self.datasets.max_bytes == 0 {
            problems.push("datasets.max_bytes must be greater than 0".into());
        }
        for root in &self.datasets.local_roots {
            if !root.is_absolute() {
                problems.push(format!(
                    "datasets.local_roots: `{}` must be an absolute path",
                    root.display()
                ));
            }
        }
        problems
    }
}

impl AuthConfig {
    /// The access-token signing key: configured, derived from the bootstrap token, or random.
    pub fn signing_key(&self, bootstrap_token: Option<&str>) -> Vec<u8> {
        use sha2::Digest as _;
        if let Some(key) = &self.signing_key {
            return key.as_bytes().to_vec();
        }
        if let Some(bootstrap) = bootstrap_token {
            let mut hasher = sha2::Sha256::new();
            hasher.update(b"switchyard access-token key\0");
            hasher.update(bootstrap.as_bytes());
            return hasher.finalize().to_vec();
        }
        tracing::warn!(
            "no auth.signing_key or bootstrap token: access tokens are signed with a random key and end with this process"
        );
        let mut key = vec![0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        key
    }
}
