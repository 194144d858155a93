//! Deleting artifact objects by their URL: `file://` through the local filesystem, `s3://`
//! through the `object_store` crate with the configured options over `AWS_*` from the
//! environment. One store per bucket is opened and kept. An object already gone counts as
//! deleted. Knows nothing about rows or retention periods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("not a URL: {0}")]
    NotUrl(#[from] url::ParseError),
    #[error("unsupported artifact location scheme `{0}`")]
    Scheme(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// The object stores artifacts live in, opened on first use.
pub struct ObjectStores {
    options: Vec<(String, String)>,
    opened: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStores {
    /// Stores with `configured` options (`artifacts.object_store`) laid over `AWS_*` from
    /// the environment.
    pub fn new(configured: &BTreeMap<String, String>) -> ObjectStores {
        let mut options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        options.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
        ObjectStores {
            options,
            opened: Mutex::default(),
        }
    }

    /// Deletes the object at `location`; `Ok` when it is gone, also when it already was.
    pub async fn delete(&self, location: &str) -> Result<(), DeleteError> {
        let url = Url::parse(location)?;
        let (store, path) = self.resolve(&url)?;
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        if url.scheme() == "file" {
            tidy_local(&url).await;
        }
        Ok(())
    }

    fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), DeleteError> {
        if !matches!(url.scheme(), "file" | "s3" | "s3a") {
            return Err(DeleteError::Scheme(url.scheme().to_owned()));
        }
        let origin = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let mut opened = self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = opened.get(&origin) {
            let (_, path) =
                object_store::ObjectStoreScheme::parse(url).map_err(object_store::Error::from)?;
            return Ok((store.clone(), path));
        }
        let (store, path) = object_store::parse_url_opts(url, self.options.iter().cloned())?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        opened.insert(origin, store.clone());
        Ok((store, path))
    }
}

/// Removes the attempt's and the run's directories once empty (the agent's key layout
/// `<run>/<task>-<attempt>/<name>`); never anything above them, nor anything not empty.
async fn tidy_local(url: &Url) {
    let Ok(file) = url.to_file_path() else {
        return;
    };
    for dir in file.ancestors().skip(1).take(2) {
        if tokio::fs::remove_dir(dir).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn artifact_objects_are_deleted_by_url_and_missing_ones_count_as_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let attempt = root.join("artifacts").join("run").join("task-1");
        std::fs::create_dir_all(&attempt).expect("mkdir");
        std::fs::write(attempt.join("a.txt"), b"a").expect("write");
        std::fs::write(attempt.join("b.txt"), b"b").expect("write");
        let stores = ObjectStores::new(&BTreeMap::new());
        let url = |name: &str| format!("file://{}/{name}", attempt.display());

        stores.delete(&url("a.txt")).await.expect("deleted");
        assert!(!attempt.join("a.txt").exists());
        assert!(attempt.is_dir(), "b.txt is still there");
        stores.delete(&url("a.txt")).await.expect("already gone");
        stores.delete(&url("b.txt")).await.expect("deleted");
        assert!(
            !root.join("artifacts").join("run").exists(),
            "empty dirs tidied"
        );
        assert!(root.join("artifacts").is_dir(), "the store's root stays");

        assert!(matches!(
            stores.delete("https://example.com/x").await,
            Err(DeleteError::Scheme(_))
        ));
        assert!(matches!(
            stores.delete("nope").await,
            Err(DeleteError::NotUrl(_))
        ));
    }
}
