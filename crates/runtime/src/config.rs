//! Configuration loading: defaults, then an optional TOML file, then `SWITCHYARD_*`
//! environment variables (nested keys split on `__`, e.g. `SWITCHYARD_DATABASE__URL`), then
//! validation. A bad value fails with a message naming the key.
//!
//! Each service owns one config struct built from the sections defined here.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// Environment variable naming the TOML file, when no `--config` flag is given.
pub const CONFIG_FILE_ENV: &str = "SWITCHYARD_CONFIG";
const ENV_PREFIX: &str = "SWITCHYARD_";

/// Semantic checks that serde cannot express. Each problem names its key.
pub trait Validate {
    fn validate(&self) -> Vec<String>;
}

/// Loads `T` from its defaults, the TOML file (`file`, else `$SWITCHYARD_CONFIG`), and the
/// environment; then validates it.
pub fn load<T>(file: Option<&Path>) -> Result<T, RuntimeError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
    load_from(file.as_deref(), Env::prefixed(ENV_PREFIX))
}

fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, RuntimeError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let defaults = T::default();
    // Only variables that name one of this config's sections are read, so that variables meant
    // for another service or for the CLI (SWITCHYARD_BOOTSTRAP_TOKEN...) are not "unknown keys".
    let sections = section_names(&defaults)?;
    // Lowercased up front so that errors name keys as they are written in the TOML file.
    let env = env
        .map(|key| key.as_str().to_ascii_lowercase().into())
        .split("__")
        .filter(move |key| sections.contains(first_segment(key.as_str())));
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(RuntimeError::Config(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let config: T = figment
        .merge(env)
        .extract()
        .map_err(|e| RuntimeError::Config(one_line(&e)))?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(RuntimeError::Config(problems.join("; ")))
    }
}

fn section_names<T: Serialize>(defaults: &T) -> Result<HashSet<String>, RuntimeError> {
    match serde_json::to_value(defaults) {
        Ok(serde_json::Value::Object(map)) => Ok(map.keys().cloned().collect()),
        _ => Err(RuntimeError::Config(
            "config defaults are not a table".into(),
        )),
    }
}

fn first_segment(key: &str) -> &str {
    key.split(['.', '_']).next().unwrap_or(key)
}

/// Figment errors can chain several; join them so startup prints exactly one line, each
/// naming the key as written in the TOML file and where the bad value came from.
fn one_line(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if e.path.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{}: {}{source}", e.path.join("."), e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The gRPC server: address, limits and shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// Upper bound for any call; a shorter `grpc-timeout` from the caller wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
    /// In-flight calls per connection before new ones are shed with RESOURCE_EXHAUSTED.
    pub concurrency_limit_per_connection: usize,
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// How long in-flight calls may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl GrpcConfig {
    pub fn on_port(port: u16) -> Self {
        GrpcConfig {
            listen: loopback(port),
            ..GrpcConfig::default()
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: loopback(0),
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            max_concurrent_streams: 1024,
            concurrency_limit_per_connection: 512,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Validate for GrpcConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.request_timeout.is_zero() {
            problems.push("grpc.request_timeout must be greater than zero".into());
        }
        if self.max_message_bytes < 4096 {
            problems.push("grpc.max_message_bytes must be at least 4096".into());
        }
        if self.max_concurrent_streams == 0 {
            problems.push("grpc.max_concurrent_streams must be at least 1".into());
        }
        if self.concurrency_limit_per_connection == 0 {
            problems.push("grpc.concurrency_limit_per_connection must be at least 1".into());
        }
        problems
    }
}

/// The Prometheus `/metrics` HTTP endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

impl MetricsConfig {
    pub fn on_port(port: u16) -> Self {
        MetricsConfig {
            listen: loopback(port),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig::on_port(0)
    }
}

/// PostgreSQL (production) or SQLite (embedded mode).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user@host:port/db` or `sqlite:///path/to/file.db`.
    pub url: String,
    /// PostgreSQL schema owned by this service (ignored for SQLite).
    pub schema: String,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Deadline for the liveness ping of a pooled connection that has been idle, so that a
    /// half-open connection after a database restart fails fast and is replaced.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Pooled connections idle longer than this are pinged before use.
    #[serde(with = "humantime_serde")]
    pub ping_after_idle: Duration,
    /// How often the service looks for tables of its schema that need vacuuming while the
    /// server's autovacuum is off (see `crate::vacuum`); zero never looks. PostgreSQL only.
    #[serde(with = "humantime_serde")]
    pub vacuum_interval: Duration,
}

impl DatabaseConfig {
    pub fn postgres(schema: &str) -> Self {
        DatabaseConfig {
            schema: schema.to_owned(),
            ..DatabaseConfig::default()
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://postgres@127.0.0.1:5432/switchyard".into(),
            schema: "public".into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            ping_after_idle: Duration::from_secs(10),
            vacuum_interval: Duration::from_secs(60),
        }
    }
}

impl Validate for DatabaseConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://")
            || self.is_sqlite())
        {
            problems.push(format!(
                "database.url must start with postgres:// or sqlite:, got {:?}",
                redact_url(&self.url)
            ));
        }
        let valid_schema = !self.schema.is_empty()
            && self.schema.len() <= 63
            && self
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !self.schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid_schema {
            problems.push(format!(
                "database.schema must be a lowercase identifier (a-z, 0-9, _), got {:?}",
                self.schema
            ));
        }
        if self.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".into());
        }
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("acquire_timeout", self.acquire_timeout),
            ("ping_timeout", self.ping_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("database.{key} must be greater than zero"));
            }
        }
        problems
    }
}

/// A URL with its password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Redis. Without a URL the services use an in-process cache (embedded mode, tests).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            pool_size: 16,
            timeout: Duration::from_millis(500),
        }
    }
}

impl Validate for RedisConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            problems.push(format!(
                "redis.url must start with redis:// or rediss://, got {:?}",
                redact_url(url)
            ));
        }
        if self.pool_size == 0 {
            problems.push("redis.pool_size must be at least 1".into());
        }
        problems
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One compact line per event.
    Compact,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,switchyard_audit=debug`. `RUST_LOG` wins.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (e.g. `http://otel-collector:4317`); unset disables export.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Compact,
            log_filter: "info".into(),
            otlp_endpoint: None,
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.otlp_endpoint must be an http(s) URL, got {endpoint:?}"
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!("telemetry.log_filter is invalid: {e}"));
        }
        problems
    }
}

/// A sibling service's gRPC URL in a service's config: a transparent string that defaults to
/// the local service and is checked (http or https) by the owning config's `validate`.
macro_rules! service_endpoint {
    ($(#[$doc:meta])* $name:ident, $key:literal, $default:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Default for $name {
            fn default() -> Self {
                $name($default.into())
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl $name {
            /// The problem with the URL, for a service's `validate`.
            pub fn problem(&self) -> Option<String> {
                (!(self.0.starts_with("http://") || self.0.starts_with("https://")))
                    .then(|| format!(concat!($key, " must be an http(s) URL, got {:?}"), self.0))
            }
        }
    };
}

service_endpoint!(
    /// The control plane's gRPC URL, for services that ask it who a caller is or which
    /// organization a project belongs to. Defaults to the local control plane.
    ControlPlaneEndpoint,
    "control_plane",
    "http://127.0.0.1:7010"
);

service_endpoint!(
    /// The scheduler's gRPC URL, for services that ask it about live queue state (agents,
    /// limits, waiting tasks). Defaults to the local scheduler.
    SchedulerEndpoint,
    "scheduler",
    "http://127.0.0.1:7020"
);

/// Delivery of this service's outbox to its consumers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// gRPC endpoint of the audit service.
    pub audit_endpoint: String,
    /// gRPC endpoints of the other consumers, for the services that emit to them.
    pub scheduler_endpoint: String,
    pub control_plane_endpoint: String,
    pub monitoring_endpoint: String,
    pub batch_size: u32,
    /// How often an idle relay looks for new events.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest wait between retries while a consumer is down.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Deadline for one batch delivery.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Delivered events are kept this long (for debugging), then deleted. Zero, the default,
    /// deletes them as they are delivered: about a third of the database's work of marking
    /// them and deleting them later. The consumers keep what the events said.
    #[serde(with = "humantime_serde")]
    pub keep_delivered: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            audit_endpoint: "http://127.0.0.1:7040".into(),
            scheduler_endpoint: "http://127.0.0.1:7020".into(),
            control_plane_endpoint: "http://127.0.0.1:7010".into(),
            monitoring_endpoint: "http://127.0.0.1:7030".into(),
            batch_size: 200,
            poll_interval: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(10),
            keep_delivered: Duration::ZERO,
        }
    }
}

impl Validate for OutboxConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, endpoint) in [
            ("audit_endpoint", &self.audit_endpoint),
            ("scheduler_endpoint", &self.scheduler_endpoint),
            ("control_plane_endpoint", &self.control_plane_endpoint),
            ("monitoring_endpoint", &self.monitoring_endpoint),
        ] {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                problems.push(format!(
                    "outbox.{key} must be an http(s) URL, got {endpoint:?}"
                ));
            }
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            problems.push("outbox.batch_size must be between 1 and 10000".into());
        }
        if self.poll_interval.is_zero() {
            problems.push("outbox.poll_interval must be greater than zero".into());
        }
        problems
    }
}

/// The sections every service has. Service configs embed it field by field (serde cannot
/// combine `flatten` with `deny_unknown_fields`) and hand it to the host through this view.
#[derive(Debug, Clone, Copy)]
pub struct BaseConfig<'a> {
    pub grpc: &'a GrpcConfig,
    pub metrics: &'a MetricsConfig,
    pub database: &'a DatabaseConfig,
    pub redis: &'a RedisConfig,
    pub telemetry: &'a TelemetryConfig,
    pub outbox: &'a OutboxConfig,
}

impl BaseConfig<'_> {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.grpc.validate();
        problems.extend(self.database.validate());
        problems.extend(self.redis.validate());
        problems.extend(self.telemetry.validate());
        problems.extend(self.outbox.validate());
        problems
    }
}

/// Access to the base sections of any service config.
pub trait ServiceConfig {
    fn base(&self) -> BaseConfig<'_>;
}

/// Declares a service config struct with the base sections plus the service's own, its
/// `Default` (with the service's ports and schema) and `Validate`.
#[macro_export]
macro_rules! service_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            grpc_port: $grpc_port:expr,
            metrics_port: $metrics_port:expr,
            schema: $schema:expr,
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub grpc: $crate::config::GrpcConfig,
            pub metrics: $crate::config::MetricsConfig,
            pub database: $crate::config::DatabaseConfig,
            pub redis: $crate::config::RedisConfig,
            pub telemetry: $crate::config::TelemetryConfig,
            pub outbox: $crate::config::OutboxConfig,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    grpc: $crate::config::GrpcConfig::on_port($grpc_port),
                    metrics: $crate::config::MetricsConfig::on_port($metrics_port),
                    database: $crate::config::DatabaseConfig::postgres($schema),
                    redis: Default::default(),
                    telemetry: Default::default(),
                    outbox: Default::default(),
                    $( $field: Default::default(), )*
                }
            }
        }

        impl $crate::entry::BinaryConfig for $name {
            fn telemetry(&self) -> &$crate::config::TelemetryConfig {
                &self.telemetry
            }
        }

        impl $crate::config::ServiceConfig for $name {
            fn base(&self) -> $crate::config::BaseConfig<'_> {
                $crate::config::BaseConfig {
                    grpc: &self.grpc,
                    metrics: &self.metrics,
                    database: &self.database,
                    redis: &self.redis,
                    telemetry: &self.telemetry,
                    outbox: &self.outbox,
                }
            }
        }
    };
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    service_config! {
        /// A config shaped like a service's, for the loader tests.
        pub struct TestConfig {
            grpc_port: 7999,
            metrics_port: 9999,
            schema: "test_service",
            pub retention: RetentionSection,
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct RetentionSection {
        pub days: u32,
    }

    impl Validate for TestConfig {
        fn validate(&self) -> Vec<String> {
            self.base().validate()
        }
    }

    fn load_in_jail(file: Option<&str>) -> Result<TestConfig, RuntimeError> {
        load_from(file.map(Path::new), Env::prefixed(ENV_PREFIX))
    }

    // figment's Jail serializes these tests and restores the environment after each.
    #[test]
    fn defaults_validate() {
        figment::Jail::expect_with(|_jail| {
            let config = load_in_jail(None).map_err(|e| e.to_string())?;
            assert_eq!(config.grpc.listen.port(), 7999);
            assert_eq!(config.database.schema, "test_service");
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "svc.toml",
                "[database]\nschema = \"from_file\"\nmax_connections = 3\n[retention]\ndays = 7\n",
            )?;
            jail.set_env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "9");
            jail.set_env("SWITCHYARD_GRPC__REQUEST_TIMEOUT", "5s");
            let config = load_in_jail(Some("svc.toml")).map_err(|e| e.to_string())?;
            assert_eq!(config.database.schema, "from_file");
            assert_eq!(config.database.max_connections, 9);
            assert_eq!(config.grpc.request_timeout, Duration::from_secs(5));
            assert_eq!(config.retention.days, 7);
            Ok(())
        });
    }

    #[test]
    fn bad_env_value_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_GRPC__LISTEN", "not-an-address");
            let error = load_in_jail(None)
                .expect_err("bad address rejected")
                .to_string();
            assert!(error.contains("grpc.listen"), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("svc.toml", "[database]\nshema = \"typo\"\n")?;
            let error = load_in_jail(Some("svc.toml"))
                .expect_err("typo rejected")
                .to_string();
            assert!(error.contains("shema"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn variables_for_other_components_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_BOOTSTRAP_TOKEN", "sy_secret");
            jail.set_env("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:1");
            load_in_jail(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn semantic_problems_are_all_listed() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_DATABASE__URL", "mysql://x");
            jail.set_env("SWITCHYARD_DATABASE__SCHEMA", "Bad-Name");
            let error = load_in_jail(None).expect_err("rejected").to_string();
            assert!(error.contains("database.url"), "{error}");
            assert!(error.contains("database.schema"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        figment::Jail::expect_with(|_jail| {
            let error = load_in_jail(Some("nope.toml"))
                .expect_err("missing")
                .to_string();
            assert!(error.contains("nope.toml"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }
}
