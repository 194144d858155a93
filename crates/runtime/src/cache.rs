//! A small byte cache: Redis in production, an in-process map in embedded mode and when no
//! Redis is configured. Redis is an accelerator: callers treat every error as a miss and go
//! to PostgreSQL, so an outage costs latency, never correctness.
//!
//! Values are bytes; callers serialize explicitly (protobuf or JSON) and decode in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::{Pool, Runtime};

use crate::config::RedisConfig;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis pool: {0}")]
    Pool(String),
    #[error("redis command: {0}")]
    Command(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub enum Cache {
    Redis { pool: Pool, timeout: Duration },
    Memory(Arc<Mutex<HashMap<String, Entry>>>),
}

#[derive(Clone)]
pub struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

impl Cache {
    /// Redis when `config.url` is set (connections are opened lazily), else in-process.
    pub fn from_config(config: &RedisConfig) -> Result<Cache, CacheError> {
        let Some(url) = &config.url else {
            return Ok(Cache::memory());
        };
        let pool = deadpool_redis::Config::from_url(url.clone())
            .builder()
            .map_err(|e| CacheError::Pool(e.to_string()))?
            .max_size(config.pool_size)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| CacheError::Pool(e.to_string()))?;
        Ok(Cache::Redis {
            pool,
            timeout: config.timeout,
        })
    }

    /// The process's in-memory cache. One map per process, like one Redis per deployment:
    /// in embedded mode a key that control-plane drops (a revoked token) is gone for the
    /// gateway too.
    pub fn memory() -> Cache {
        static SHARED: std::sync::OnceLock<Arc<Mutex<HashMap<String, Entry>>>> =
            std::sync::OnceLock::new();
        Cache::Memory(SHARED.get_or_init(Arc::default).clone())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Redis { .. } => "redis",
            Cache::Memory(_) => "memory",
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self {
            Cache::Redis { pool, timeout } => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(key);
                redis_query(pool, *timeout, cmd).await
            }
            Cache::Memory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| CacheError::Pool("poisoned".into()))?;
                match map.get(key) {
                    Some(entry) if entry.expires_at > Instant::now() => {
                        Ok(Some(entry.value.clone()))
                    }
                    Some(_) => {
                        map.remove(key);
                        Ok(None)
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// Stores `value` for `ttl` (rounded up to whole milliseconds, at least 1 ms).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        match self {
            Cache::Redis { pool, timeout } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64);
                redis_query::<()>(pool, *timeout, cmd).await
            }
            Cache::Memory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| CacheError::Pool("poisoned".into()))?;
                map.insert(
                    key.to_owned(),
                    Entry {
                        value: value.to_vec(),
                        expires_at: Instant::now() + ttl,
                    },
                );
                Ok(())
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        match self {
            Cache::Redis { pool, timeout } => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(key);
                redis_query::<()>(pool, *timeout, cmd).await
            }
            Cache::Memory(map) => {
                map.lock()
                    .map_err(|_| CacheError::Pool("poisoned".into()))?
                    .remove(key);
                Ok(())
            }
        }
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        match self {
            Cache::Redis { pool, timeout } => {
                redis_query::<String>(pool, *timeout, redis::cmd("PING")).await?;
                Ok(())
            }
            Cache::Memory(_) => Ok(()),
        }
    }
}

async fn redis_query<T: redis::FromRedisValue>(
    pool: &Pool,
    timeout: Duration,
    cmd: redis::Cmd,
) -> Result<T, CacheError> {
    let work = async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| CacheError::Pool(e.to_string()))?;
        Ok(cmd.query_async::<T>(&mut conn).await?)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CacheError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_url() -> String {
        std::env::var("SWITCHYARD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    async fn exercise(cache: Cache) {
        let key = format!("switchyard-test:{}", uuid::Uuid::new_v4());
        assert_eq!(cache.get(&key).await.expect("get"), None);
        let value = [0u8, 159, 146, 150, 255];
        cache
            .set(&key, &value, Duration::from_secs(30))
            .await
            .expect("set");
        assert_eq!(cache.get(&key).await.expect("get"), Some(value.to_vec()));
        cache.delete(&key).await.expect("delete");
        assert_eq!(cache.get(&key).await.expect("get"), None);

        cache
            .set(&key, b"short", Duration::from_millis(50))
            .await
            .expect("set");
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.get(&key).await.expect("get").is_some() {
            assert!(Instant::now() < deadline, "entry never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn memory_cache_round_trips_and_expires() {
        exercise(Cache::memory()).await;
    }

    #[tokio::test]
    async fn redis_cache_round_trips_and_expires() {
        let config = RedisConfig {
            url: Some(redis_url()),
            ..RedisConfig::default()
        };
        let cache = Cache::from_config(&config).expect("pool");
        assert_eq!(cache.kind(), "redis");
        cache
            .ping()
            .await
            .expect("redis answers (start it: see README)");
        exercise(cache).await;
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_not_a_hang() {
        let config = RedisConfig {
            url: Some("redis://127.0.0.1:1".into()),
            timeout: Duration::from_millis(300),
            ..RedisConfig::default()
        };
        let cache = Cache::from_config(&config).expect("pool is lazy");
        let started = Instant::now();
        assert!(cache.get("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
