//! The view in Redis. Changes go in one Lua script per batch: one round trip, and atomic, so
//! an ending cannot slip between a LEASED's tombstone check and its add (which would leave a
//! finished attempt listed as running). The script names no KEYS: every key it touches is
//! derived from the prefix, i.e. belongs to one deployment's view (single-node Redis, or a
//! cluster with the prefix in a hash tag).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;

use super::{Op, ViewError, codec};

/// ARGV: prefix, tombstone ttl (ms), then per op `P project field value`, `E project field`
/// or `R project field`. Returns 1 when the epoch key exists.
///
/// Tombstones are kept per period of one ttl, as members of one set per period
/// (`{prefix}:ended:{period}`), and a put checks the current and the previous period's set: an
/// ending is remembered for at least one ttl and at most two. One set per period rather than
/// a key with its own expiry per ending: an ending costs one SADD instead of creating (and
/// later expiring) a key, and a period's tombstones expire together.
const APPLY: &str = r"
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local projects = prefix .. ':active:projects'
local time = redis.call('TIME')
local period = math.floor((tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)) / ttl)
local ended = prefix .. ':ended:' .. period
local ended_before = prefix .. ':ended:' .. (period - 1)
local function drop(project, field)
  local hash = prefix .. ':active:' .. project
  -- Most endings find nothing to remove (their LEASED folded away in the same batch).
  if redis.call('HDEL', hash, field) == 1 and redis.call('HLEN', hash) == 0 then
    redis.call('SREM', projects, project)
  end
end
local tombstoned = false
local i = 3
while i <= #ARGV do
  local op, project, field = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'P' then
    if redis.call('SISMEMBER', ended, field) == 0
      and redis.call('SISMEMBER', ended_before, field) == 0 then
      redis.call('HSET', prefix .. ':active:' .. project, field, ARGV[i + 3])
      redis.call('SADD', projects, project)
    end
    i = i + 4
  elseif op == 'E' then
    drop(project, field)
    redis.call('SADD', ended, field)
    tombstoned = true
    i = i + 3
  else
    drop(project, field)
    i = i + 3
  end
end
if tombstoned then
  -- Outlives the next period, the last in which a put looks at this one.
  redis.call('PEXPIRE', ended, 2 * ttl)
end
return redis.call('EXISTS', prefix .. ':active:epoch')
";

#[derive(Clone)]
pub(super) struct RedisView {
    pool: Pool,
    timeout: Duration,
    prefix: Arc<str>,
    tombstone_ms: u64,
}

impl RedisView {
    pub(super) fn new(pool: Pool, timeout: Duration, prefix: &str, ttl: Duration) -> RedisView {
        RedisView {
            pool,
            timeout,
            prefix: prefix.into(),
            tombstone_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    fn project_key(&self, project: &str) -> String {
        format!("{}:active:{project}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}:active:epoch", self.prefix)
    }

    /// Runs `work` on a pooled connection within the deadline.
    async fn with_conn<T, F, Fut>(&self, work: F) -> Result<T, ViewError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = Result<T, ViewError>>,
    {
        let run = async {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| ViewError::Redis(e.to_string()))?;
            work(conn).await
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ViewError::Timeout(self.timeout))?
    }

    pub(super) async fn apply(&self, ops: &[Op]) -> Result<bool, ViewError> {
        // EVAL, not EVALSHA: Redis caches the compiled script by its hash either way, and
        // the text is a few hundred bytes per batch (not per step).
        let mut invocation = redis::cmd("EVAL");
        invocation
            .arg(APPLY)
            .arg(0)
            .arg(&*self.prefix)
            .arg(self.tombstone_ms);
        for op in ops {
            match op {
                Op::Put(task) => invocation
                    .arg("P")
                    .arg(&task.project_id)
                    .arg(codec::field_of(task))
                    .arg(codec::encode(task)),
                Op::End {
                    project_id,
                    task_id,
                    attempt,
                } => invocation
                    .arg("E")
                    .arg(project_id)
                    .arg(codec::field(task_id, *attempt)),
                Op::Remove {
                    project_id,
                    task_id,
                    attempt,
                } => invocation
                    .arg("R")
                    .arg(project_id)
                    .arg(codec::field(task_id, *attempt)),
            };
        }
        self.with_conn(|mut conn| async move {
            let epoch: i64 = invocation
                .query_async(&mut conn)
                .await
                .map_err(|e| ViewError::Redis(e.to_string()))?;
            Ok(epoch == 1)
        })
        .await
    }

    /// `(key, bytes)` of every entry of these projects (`None`: of all): the project set, then
    /// every project's hash in one pipeline.
    pub(super) async fn entries(
        &self,
        projects: Option<&[String]>,
    ) -> Result<Vec<(String, Vec<u8>)>, ViewError> {
        let projects_key = format!("{}:active:projects", self.prefix);
        let keys: Vec<String> = match projects {
            Some(ids) => ids.iter().map(|p| self.project_key(p)).collect(),
            None => self
                .with_conn(|mut conn| async move {
                    let ids: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(&projects_key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| ViewError::Redis(e.to_string()))?;
                    Ok(ids)
                })
                .await?
                .iter()
                .map(|p| self.project_key(p))
                .collect(),
        };
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HGETALL").arg(key);
        }
        let hashes: Vec<HashMap<String, Vec<u8>>> = self
            .with_conn(|mut conn| async move {
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|e| ViewError::Redis(e.to_string()))
            })
            .await?;
        Ok(keys
            .iter()
            .zip(hashes)
            .flat_map(|(key, fields)| {
                fields
                    .into_iter()
                    .map(move |(field, bytes)| (format!("{key}/{field}"), bytes))
            })
            .collect())
    }

    pub(super) async fn epoch_present(&self) -> Result<bool, ViewError> {
        let key = self.epoch_key();
        self.with_conn(|mut conn| async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| ViewError::Redis(e.to_string()))?;
            Ok(n == 1)
        })
        .await
    }

    pub(super) async fn set_epoch(&self) -> Result<(), ViewError> {
        let key = self.epoch_key();
        let value = uuid::Uuid::now_v7().to_string();
        self.with_conn(|mut conn| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| ViewError::Redis(e.to_string()))
        })
        .await
    }
}
