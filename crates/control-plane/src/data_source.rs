//! Reads a dataset version's bytes from its location: `file://` inside the configured roots,
//! or an object store (`s3://`, `http(s)://`) through the `object_store` crate. Every refusal
//! is a sentence the caller can act on; nothing here knows about expectations.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt as _;
use url::Url;

use crate::config::DatasetsConfig;

pub struct DataSources {
    config: DatasetsConfig,
    /// Object-store options: the configured ones over `AWS_*` from the environment.
    options: Vec<(String, String)>,
}

/// Where a location points, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    Remote(Url),
}

impl DataSources {
    pub fn new(config: DatasetsConfig) -> DataSources {
        let mut options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        options.extend(config.object_store.clone());
        DataSources { config, options }
    }

    /// Checks a location's form and policy without reading it.
    pub fn check(&self, location: &str) -> Result<Source, String> {
        let url = Url::parse(location).map_err(|e| {
            format!(
                "`{location}` is not a URL ({e}); use file:///path, s3://bucket/key or https://…"
            )
        })?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| format!("`{location}` is not a local file path"))?;
                self.check_local(&path)?;
                Ok(Source::Local(path))
            }
            "s3" | "s3a" => {
                if url.host_str().unwrap_or_default().is_empty() || url.path().len() <= 1 {
                    return Err(format!("`{location}` must name a bucket and a key"));
                }
                Ok(Source::Remote(url))
            }
            "http" | "https" => {
                if url.host_str().is_none() || url.path().len() <= 1 {
                    return Err(format!("`{location}` must name a host and a path"));
                }
                Ok(Source::Remote(url))
            }
            other => Err(format!(
                "unsupported location scheme `{other}`; use file, s3, http or https"
            )),
        }
    }

    fn check_local(&self, path: &Path) -> Result<(), String> {
        if self.config.local_roots.is_empty() {
            return Err(
                "local dataset locations are disabled; set datasets.local_roots in the control-plane config"
                    .into(),
            );
        }
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err("a local location may not contain `..`".into());
        }
        if self
            .config
            .local_roots
            .iter()
            .any(|root| path.starts_with(root))
        {
            Ok(())
        } else {
            Err(format!(
                "`{}` is outside the allowed dataset directories",
                path.display()
            ))
        }
    }

    /// The bytes at `location`, at most `max_bytes` of them, within the fetch timeout.
    pub async fn fetch(&self, location: &str) -> Result<Vec<u8>, String> {
        let source = self.check(location)?;
        let fetch = async {
            match source {
                Source::Local(path) => self.read_local(&path).await,
                Source::Remote(url) => self.read_remote(&url).await,
            }
        };
        tokio::time::timeout(self.config.fetch_timeout, fetch)
            .await
            .map_err(|_| {
                format!(
                    "reading `{location}` took longer than {:?}",
                    self.config.fetch_timeout
                )
            })?
    }

    async fn read_local(&self, path: &Path) -> Result<Vec<u8>, String> {
        // Resolve symlinks before the root check, so a link cannot lead outside the roots.
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let roots_real: Vec<PathBuf> = self
            .config
            .local_roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        if !roots_real.iter().any(|root| real.starts_with(root)) {
            return Err(format!(
                "`{}` resolves outside the allowed dataset directories",
                path.display()
            ));
        }
        let size = tokio::fs::metadata(&real)
            .await
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?
            .len();
        self.check_size(size)?;
        tokio::fs::read(&real)
            .await
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    }

    async fn read_remote(&self, url: &Url) -> Result<Vec<u8>, String> {
        if matches!(url.scheme(), "http" | "https") && !self.config.allow_link_local {
            refuse_link_local(url).await?;
        }
        let mut options = self.options.clone();
        if url.scheme() == "http" {
            // The location itself says plain HTTP; the store refuses it unless told.
            options.push(("allow_http".into(), "true".into()));
        }
        let (store, path) = object_store::parse_url_opts(url, options)
            .map_err(|e| format!("cannot open `{url}`: {e}"))?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| format!("cannot read `{url}`: {e}"))?;
        self.check_size(meta.size)?;
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| format!("cannot read `{url}`: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("cannot read `{url}`: {e}"))?;
        self.check_size(bytes.len() as u64)?;
        Ok(bytes.to_vec())
    }

    fn check_size(&self, size: u64) -> Result<(), String> {
        if size > self.config.max_bytes {
            Err(format!(
                "the data is {size} bytes, more than datasets.max_bytes ({})",
                self.config.max_bytes
            ))
        } else {
            Ok(())
        }
    }
}

/// Cloud metadata services answer on link-local addresses; a dataset URL must not reach them.
async fn refuse_link_local(url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.trim_matches(|c| c == '[' || c == ']').parse() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    match addresses.iter().find(|ip| is_link_local(ip)) {
        Some(ip) => Err(format!(
            "`{host}` resolves to the link-local address {ip}, which dataset locations may not use"
        )),
        None => Ok(()),
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(roots: &[&str]) -> DataSources {
        DataSources::new(DatasetsConfig {
            local_roots: roots.iter().map(PathBuf::from).collect(),
            ..DatasetsConfig::default()
        })
    }

    #[test]
    fn locations_are_checked_for_form_and_policy() {
        let s = sources(&["/data"]);
        assert_eq!(
            s.check("file:///data/users.csv"),
            Ok(Source::Local(PathBuf::from("/data/users.csv")))
        );
        assert!(s.check("file:///etc/passwd").is_err());
        assert!(s.check("file:///data/../etc/passwd").is_err());
        assert!(s.check("s3://bucket/key.csv").is_ok());
        assert!(s.check("s3://bucket").is_err());
        assert!(s.check("https://example.com/data.csv").is_ok());
        assert!(s.check("ftp://example.com/data.csv").is_err());
        assert!(s.check("users.csv").is_err());
        let closed = sources(&[]);
        let refusal = closed
            .check("file:///data/users.csv")
            .expect_err("disabled");
        assert!(refusal.contains("datasets.local_roots"), "{refusal}");
    }

    #[test]
    fn link_local_addresses_are_recognised() {
        for ip in [
            "169.254.169.254",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(is_link_local(&ip), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!is_link_local(&ip), "{ip}");
        }
    }

    #[tokio::test]
    async fn local_files_are_read_within_the_roots_and_the_size_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let file = root.join("rows.csv");
        std::fs::write(&file, "id\n1\n").expect("write");
        let mut config = DatasetsConfig {
            local_roots: vec![root.clone()],
            ..DatasetsConfig::default()
        };
        let s = DataSources::new(config.clone());
        let url = format!("file://{}", file.display());
        assert_eq!(s.fetch(&url).await.as_deref(), Ok(&b"id\n1\n"[..]));
        let missing = s
            .fetch(&format!("file://{}/nope.csv", root.display()))
            .await;
        assert!(missing.is_err());
        config.max_bytes = 3;
        let small = DataSources::new(config);
        let refusal = small.fetch(&url).await.expect_err("too big");
        assert!(refusal.contains("max_bytes"), "{refusal}");
    }

    #[tokio::test]
    async fn a_symlink_cannot_lead_outside_the_roots() {
        let inside = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret.csv");
        std::fs::write(&secret, "id\n1\n").expect("write");
        let root = inside.path().canonicalize().expect("canonical");
        let link = root.join("link.csv");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let s = sources(&[root.to_str().expect("utf-8")]);
        let refusal = s
            .fetch(&format!("file://{}", link.display()))
            .await
            .expect_err("outside");
        assert!(refusal.contains("outside"), "{refusal}");
    }
}
