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

/// ARGV: prefix, tombstone ttl (ms), then three groups, each its count followed by its
/// records: puts (`project field value`), ends (`project field`) and removes (`project
/// field`). Returns 1 when the epoch key exists.
///
/// A call names each attempt at most once (ingest folds a batch per attempt; reconciliation
/// lists each once), so the groups can be applied one after the other, and each as a few
/// variadic commands per project rather than a few commands per attempt: the tombstone
/// checks of all puts are two SMISMEMBERs, their adds one HSET per project, the removals one
/// HDEL per project and the tombstones one SADD. Calls from Lua cost more than the commands
/// themselves (in a run of 20,000 tasks, the per-attempt script spent 5.6 ms per call, 60% of
/// it outside the commands). Lua's `unpack` is bounded, so long lists go 1,000 at a time.
///
/// Tombstones are kept per period of one ttl, as members of one set per period
/// (`{prefix}:ended:{period}`), and a put checks the current and the previous period's set: an
/// ending is remembered for at least one ttl and at most two. One set per period rather than
/// a key with its own expiry per ending: an ending costs a set member instead of creating
/// (and later expiring) a key, and a period's tombstones expire together.
const APPLY: &str = r"
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local projects = prefix .. ':active:projects'
local time = redis.call('TIME')
local period = math.floor((tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)) / ttl)
local ended = prefix .. ':ended:' .. period
local ended_before = prefix .. ':ended:' .. (period - 1)
local function hash(project)
  return prefix .. ':active:' .. project
end
-- `command key ...list`, 1,000 elements at a time; the array replies concatenated.
local function chunked(command, key, list)
  local replies = {}
  for first = 1, #list, 1000 do
    local reply = redis.call(command, key, unpack(list, first, math.min(first + 999, #list)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do
        replies[#replies + 1] = value
      end
    end
  end
  return replies
end
-- The `n` records of `width` arguments from ARGV[at]: by project (in first-seen order), the
-- rest of each record appended to its project's list.
local function by_project(at, n, width, keep)
  local lists, order = {}, {}
  for k = 0, n - 1 do
    local record = at + k * width
    if keep == nil or keep(k) then
      local project = ARGV[record]
      local list = lists[project]
      if not list then
        list = {}
        lists[project] = list
        order[#order + 1] = project
      end
      for w = 1, width - 1 do
        list[#list + 1] = ARGV[record + w]
      end
    end
  end
  return lists, order
end
-- Removes the fields of `n` (project, field) records from ARGV[at]; a project whose hash is
-- left empty leaves the project set.
local function drop(at, n)
  local lists, order = by_project(at, n, 2)
  for _, project in ipairs(order) do
    local key = hash(project)
    chunked('HDEL', key, lists[project])
    if redis.call('HLEN', key) == 0 then
      redis.call('SREM', projects, project)
    end
  end
end
local function fields(at, n, width)
  local list = {}
  for k = 0, n - 1 do
    list[#list + 1] = ARGV[at + k * width + 1]
  end
  return list
end
local at = 3
-- The count that opens the next group.
local function count()
  at = at + 1
  return tonumber(ARGV[at - 1])
end
local puts = count()
if puts > 0 then
  local names = fields(at, puts, 3)
  local now, before = chunked('SMISMEMBER', ended, names), chunked('SMISMEMBER', ended_before, names)
  local lists, order = by_project(at, puts, 3, function(k)
    return now[k + 1] == 0 and before[k + 1] == 0
  end)
  for _, project in ipairs(order) do
    chunked('HSET', hash(project), lists[project])
  end
  if #order > 0 then
    chunked('SADD', projects, order)
  end
  at = at + puts * 3
end
local ends = count()
if ends > 0 then
  drop(at, ends)
  chunked('SADD', ended, fields(at, ends, 2))
  -- Outlives the next period, the last in which a put looks at this one.
  redis.call('PEXPIRE', ended, 2 * ttl)
  at = at + ends * 2
end
local removes = count()
if removes > 0 then
  drop(at, removes)
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
        let (mut puts, mut ends, mut removes) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Put(task) => puts.push(&**task),
                Op::End {
                    project_id,
                    task_id,
                    attempt,
                } => ends.push((project_id, codec::field(task_id, *attempt))),
                Op::Remove {
                    project_id,
                    task_id,
                    attempt,
                } => removes.push((project_id, codec::field(task_id, *attempt))),
            }
        }
        invocation.arg(puts.len());
        for task in puts {
            invocation
                .arg(&task.project_id)
                .arg(codec::field_of(task))
                .arg(codec::encode(task));
        }
        for records in [ends, removes] {
            invocation.arg(records.len());
            for (project, field) in records {
                invocation.arg(project).arg(field);
            }
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
