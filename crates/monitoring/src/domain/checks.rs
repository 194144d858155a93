//! What an API check is and what makes one valid: a name, a protocol (HTTP: a URL answered
//! with 2xx; gRPC: a `host:port` answering the standard `grpc.health.v1` Check with SERVING),
//! a probe interval and a timeout. Pure: the target's address policy (no link-local or cloud
//! metadata addresses unless allowed) is applied by the caller through `domain::url_policy`.

use std::time::Duration;

pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_NAME: usize = 100;
const MAX_TARGET: usize = 2048;

/// How a check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }

    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "http" => Some(Protocol::Http),
            "grpc" => Some(Protocol::Grpc),
            _ => None,
        }
    }
}

/// A valid check definition. `url` is what the address policy judges: the HTTP URL itself,
/// or `http://host:port` for a gRPC target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    pub protocol: Protocol,
    pub target: String,
    pub url: url::Url,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Why a definition is refused: the field and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a definition. `interval` and `timeout` default when `None`: 60 s, and 5 s capped
/// at half the interval (so a default never collides with a short interval).
pub fn validate(
    name: &str,
    protocol: Option<Protocol>,
    target: &str,
    interval: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<CheckSpec, Invalid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("name must be 1 to {MAX_NAME} printable characters"),
        ));
    }
    let protocol = protocol.ok_or_else(|| invalid("protocol", "protocol must be HTTP or GRPC"))?;
    let target = target.trim();
    if target.is_empty() || target.len() > MAX_TARGET {
        return Err(invalid(
            "target",
            format!("target must be 1 to {MAX_TARGET} characters"),
        ));
    }
    let url = match protocol {
        Protocol::Http => http_target(target)?,
        Protocol::Grpc => grpc_target(target)?,
    };
    let interval = interval.unwrap_or(DEFAULT_INTERVAL);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(invalid("interval", "interval must be between 5s and 1h"));
    }
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT.min(interval / 2));
    if timeout < MIN_TIMEOUT || timeout >= interval {
        return Err(invalid(
            "timeout",
            "timeout must be at least 100ms and shorter than the interval",
        ));
    }
    Ok(CheckSpec {
        name: name.to_owned(),
        protocol,
        target: target.to_owned(),
        url,
        interval,
        timeout,
    })
}

fn http_target(target: &str) -> Result<url::Url, Invalid> {
    let url = url::Url::parse(target)
        .map_err(|_| invalid("target", "target must be an http(s) URL for an HTTP check"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "target",
            "target must be an http(s) URL with a host for an HTTP check",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials would be stored and shown with the check.
        return Err(invalid("target", "target must not carry credentials"));
    }
    Ok(url)
}

/// `host:port` (IPv6 in brackets), no scheme and no path.
fn grpc_target(target: &str) -> Result<url::Url, Invalid> {
    let refuse = || {
        invalid(
            "target",
            "target must be host:port for a gRPC check, e.g. api.internal:7010",
        )
    };
    if target.contains("://") || target.contains('/') || target.contains('@') {
        return Err(refuse());
    }
    let (host, port) = target.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    if host.is_empty() || port == 0 {
        return Err(refuse());
    }
    let url = url::Url::parse(&format!("http://{host}:{port}")).map_err(|_| refuse())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(target: &str) -> Result<CheckSpec, Invalid> {
        validate("api", Some(Protocol::Http), target, None, None)
    }

    #[test]
    fn checks_default_their_interval_and_timeout() {
        let spec = http("https://api.example.com/healthz").expect("valid");
        assert_eq!(spec.interval, Duration::from_secs(60));
        assert_eq!(spec.timeout, Duration::from_secs(5));
        let short = validate(
            "api",
            Some(Protocol::Http),
            "http://10.0.0.1/",
            Some(Duration::from_secs(5)),
            None,
        )
        .expect("valid");
        assert_eq!(short.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn checks_name_the_bad_field() {
        let field = |r: Result<CheckSpec, Invalid>| r.err().map(|e| e.field);
        assert_eq!(
            field(validate("", Some(Protocol::Http), "http://a/", None, None)),
            Some("name")
        );
        assert_eq!(
            field(validate("x", None, "http://a/", None, None)),
            Some("protocol")
        );
        assert_eq!(field(http("ftp://a/")), Some("target"));
        assert_eq!(field(http("not a url")), Some("target"));
        assert_eq!(field(http("http://user:pw@a/")), Some("target"));
        let interval = |s| {
            validate(
                "x",
                Some(Protocol::Http),
                "http://a/",
                Some(Duration::from_secs(s)),
                None,
            )
        };
        assert_eq!(field(interval(4)), Some("interval"));
        assert_eq!(field(interval(3601)), Some("interval"));
        assert!(interval(3600).is_ok());
        let timeout = validate(
            "x",
            Some(Protocol::Http),
            "http://a/",
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(10)),
        );
        assert_eq!(field(timeout), Some("timeout"));
    }

    #[test]
    fn grpc_targets_are_host_and_port() {
        let grpc = |t: &str| validate("g", Some(Protocol::Grpc), t, None, None);
        let spec = grpc("scheduler.internal:7020").expect("valid");
        assert_eq!(spec.url.as_str(), "http://scheduler.internal:7020/");
        assert!(grpc("[::1]:7020").is_ok());
        for bad in [
            "scheduler",
            "http://a:1",
            "a:0",
            "a:99999",
            ":7020",
            "a:1/x",
            "u@a:1",
        ] {
            assert!(grpc(bad).is_err(), "{bad} was accepted");
        }
    }
}
