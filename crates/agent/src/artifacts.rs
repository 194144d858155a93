//! The artifact store: where the files a task leaves in `$SWITCHYARD_ARTIFACTS/` go. One
//! `object_store` behind a URL — `file:///absolute/path` (the default: the agent's own
//! artifact directory) or `s3://bucket/prefix` — with keys
//! `<prefix>/<run_id>/<task_id>-<attempt>/<name>`.
//!
//! Files are streamed (a plain put up to one part, a multipart upload past it), hashed on the
//! way, and reported with their object URL, size and SHA-256. A file over the limits, with a
//! name an object key cannot carry as is, or whose upload fails, is logged and left out: the
//! task's result is reported all the same. This module owns the store and its keys; it knows
//! nothing about leases or the scheduler.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::{Path, PathPart};
use sha2::{Digest, Sha256};
use switchyard_proto::scheduler::v1::{Artifact, LeasedTask};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

#[cfg(test)]
mod tests;

/// Uploads that fail in a row before the rest of an attempt's artifacts are skipped.
const GIVE_UP_AFTER: u32 = 3;

/// How much of a task's output the agent stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Files stored per task attempt; the rest are skipped.
    pub max_files: usize,
    /// Largest single file stored.
    pub max_file_bytes: u64,
    /// Bytes stored per task attempt, all files together.
    pub max_total_bytes: u64,
    /// Bytes buffered before an upload turns multipart, and the size of each part (S3 wants
    /// at least 5 MiB per part).
    pub part_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 1000,
            max_file_bytes: 5 << 30,
            max_total_bytes: 20 << 30,
            part_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("artifact store `{url}` is not a URL: {source}")]
    NotUrl {
        url: String,
        source: url::ParseError,
    },
    #[error(
        "unsupported artifact store scheme `{0}`; use file:///absolute/path or s3://bucket/prefix"
    )]
    Scheme(String),
    #[error("artifact store `{url}`: {problem}")]
    Invalid { url: String, problem: String },
    #[error("unknown artifact store option `{0}` (see object_store's AmazonS3ConfigKey)")]
    UnknownOption(String),
    #[error("artifact store options apply to s3:// stores only, got `{0}`")]
    OptionsWithoutS3(String),
    #[error("cannot open artifact store `{url}`: {source}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot create artifact directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An opened artifact store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// `scheme://host` of every location this store reports.
    origin: String,
    prefix: Path,
    limits: Limits,
}

/// The default store: `file://` URL of `<dir>/artifacts`, made absolute.
pub fn local_url(dir: &FsPath) -> String {
    let path = dir.join("artifacts");
    let path = std::path::absolute(&path).unwrap_or(path);
    Url::from_file_path(&path)
        .map(String::from)
        .unwrap_or_else(|()| format!("file://{}", path.display()))
}

impl ArtifactStore {
    /// Opens the store at `url`. `options` are object-store options (`aws_endpoint`,
    /// `aws_allow_http`, ...) laid over `AWS_*` from the environment. Checks everything that
    /// can be checked without a request; a `file://` directory is created.
    pub fn open(url: &str, options: &[(String, String)]) -> Result<ArtifactStore, StoreError> {
        let env = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v));
        ArtifactStore::open_with(url, env, options)
    }

    fn open_with(
        url: &str,
        env: impl Iterator<Item = (String, String)>,
        options: &[(String, String)],
    ) -> Result<ArtifactStore, StoreError> {
        let parsed = Url::parse(url).map_err(|source| StoreError::NotUrl {
            url: url.to_owned(),
            source,
        })?;
        let invalid = |problem: &str| StoreError::Invalid {
            url: url.to_owned(),
            problem: problem.to_owned(),
        };
        let host = parsed.host_str().unwrap_or_default();
        let mut all_options: Vec<(String, String)> = Vec::new();
        match parsed.scheme() {
            "file" => {
                if !host.is_empty() {
                    return Err(invalid(
                        "a file:// store names no host: file:///absolute/path",
                    ));
                }
                if !options.is_empty() {
                    return Err(StoreError::OptionsWithoutS3(url.to_owned()));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not a local directory path"))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|source| StoreError::Directory { path: dir, source })?;
            }
            "s3" | "s3a" => {
                if host.is_empty() {
                    return Err(invalid("name a bucket: s3://bucket/prefix"));
                }
                for (key, _) in options {
                    key.to_ascii_lowercase()
                        .parse::<object_store::aws::AmazonS3ConfigKey>()
                        .map_err(|_| StoreError::UnknownOption(key.clone()))?;
                }
                all_options.extend(env);
                all_options.extend(options.iter().cloned());
            }
            other => return Err(StoreError::Scheme(other.to_owned())),
        }
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, all_options).map_err(|source| {
                StoreError::Open {
                    url: url.to_owned(),
                    source,
                }
            })?;
        Ok(ArtifactStore {
            store: Arc::from(store),
            origin: format!("{}://{host}", parsed.scheme()),
            prefix,
            limits: Limits::default(),
        })
    }

    pub fn with_limits(self, limits: Limits) -> ArtifactStore {
        ArtifactStore { limits, ..self }
    }

    /// The object key of one artifact of one attempt.
    fn key(&self, task: &LeasedTask, name: &str) -> Path {
        let attempt = format!("{}-{}", task.task_id, task.attempt);
        self.prefix
            .clone()
            .join(PathPart::from(task.run_id.as_str()))
            .join(PathPart::from(attempt))
            .join(PathPart::from(name))
    }

    /// The URL a key is reported as, which the scheduler opens again to delete it.
    fn location(&self, key: &Path) -> String {
        match Url::parse(&format!("{}/", self.origin)) {
            Ok(mut url) => {
                url.set_path(&format!("/{key}"));
                url.into()
            }
            Err(_) => format!("{}/{key}", self.origin),
        }
    }

    /// Stores each file the command left in `from` (top level only; subdirectories and
    /// symlinks are not followed) and returns what was stored.
    pub async fn store_dir(&self, from: &FsPath, task: &LeasedTask) -> Vec<Artifact> {
        let mut stored = Vec::new();
        let mut total = 0u64;
        // A store that keeps failing would hold the task's result for every retry of every
        // file: after a few failures in a row, the rest of this attempt's files are skipped.
        let (mut failing, mut abandoned) = (0u32, 0u64);
        for (name, path, len) in self.candidates(from).await {
            if failing >= GIVE_UP_AFTER {
                abandoned += 1;
                continue;
            }
            if len > self.limits.max_file_bytes {
                tracing::warn!(artifact = %name, size_bytes = len, limit = self.limits.max_file_bytes, "artifact too large; skipped");
                continue;
            }
            if total.saturating_add(len) > self.limits.max_total_bytes {
                tracing::warn!(artifact = %name, size_bytes = len, limit = self.limits.max_total_bytes, "artifacts of this task over the total limit; skipped");
                continue;
            }
            let key = self.key(task, &name);
            let location = self.location(&key);
            match self.upload(&path, key).await {
                Ok((size_bytes, sha256)) => {
                    failing = 0;
                    total = total.saturating_add(size_bytes);
                    stored.push(Artifact {
                        name,
                        location,
                        size_bytes,
                        sha256,
                    });
                }
                Err(error) => {
                    failing += 1;
                    tracing::warn!(%error, artifact = %name, %location, "artifact upload failed");
                }
            }
        }
        if abandoned > 0 {
            tracing::warn!(
                skipped = abandoned,
                failures = failing,
                "artifact store keeps failing; the rest of this attempt's artifacts skipped"
            );
        }
        stored
    }

    /// Regular files at the top of `from` whose names can be keys, sorted by name, at most
    /// `max_files` of them; logs what is left out.
    async fn candidates(&self, from: &FsPath) -> Vec<(String, PathBuf, u64)> {
        let mut found = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(from).await else {
            return found;
        };
        let mut over_count = 0u64;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if !kind.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_key_safe(&name) {
                tracing::warn!(artifact = %name, "artifact name has characters an object key cannot carry as is (use letters, digits and ._-+=,@()); skipped");
                continue;
            }
            if found.len() >= self.limits.max_files {
                over_count += 1;
                continue;
            }
            let len = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
            found.push((name, entry.path(), len));
        }
        if over_count > 0 {
            tracing::warn!(
                skipped = over_count,
                limit = self.limits.max_files,
                "more artifact files than the limit; the rest skipped"
            );
        }
        found.sort();
        found
    }

    /// Streams one file to `key`; returns its size and SHA-256 (hex).
    async fn upload(&self, path: &FsPath, key: Path) -> std::io::Result<(u64, String)> {
        let file = tokio::fs::File::open(path).await?;
        // A file that grows after it was measured is cut at the limit, never read unbounded.
        let mut reader = file.take(self.limits.max_file_bytes);
        let mut writer = BufWriter::with_capacity(self.store.clone(), key, self.limits.part_bytes)
            .with_max_concurrency(2);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match reader.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) => {
                    abort(&mut writer).await;
                    return Err(error);
                }
            };
            hasher.update(&buffer[..read]);
            size += read as u64;
            if let Err(error) = writer.write_all(&buffer[..read]).await {
                abort(&mut writer).await;
                return Err(error);
            }
        }
        writer.shutdown().await?;
        Ok((size, hex::encode(hasher.finalize())))
    }
}

/// Drops a half-done multipart upload (nothing to do for a plain put not yet sent).
async fn abort(writer: &mut BufWriter) {
    if let Err(error) = writer.abort().await {
        tracing::debug!(%error, "multipart upload not aborted");
    }
}

/// Names that are the same as a file name, an object key segment and a URL path segment:
/// letters, digits and `._-+=,@()`, not `.` or `..`.
fn is_key_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+=,@()".contains(c))
}
