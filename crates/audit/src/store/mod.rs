//! Persistence of the audit chain. The only module that talks SQL.
//!
//! Appends are serialised twice over: an in-process mutex (SQLite has one writer anyway, and
//! this avoids busy retries) and, on PostgreSQL, a row lock on the chain head, so replicas of
//! the audit service can ingest concurrently and still produce one gapless chain.

mod convert;
pub mod entity;
mod query;

use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use switchyard_runtime::db::is_postgres;

use crate::domain::chain::{self, Chained, GENESIS, Verifier};
use crate::domain::record::Record;
use crate::error::AuditError;
use entity::{audit_event, chain_head, checkpoint};
pub use query::Filter;

/// How many rows one INSERT carries (21 parameters a row, well under PostgreSQL's limit).
const INSERT_CHUNK: usize = 500;
/// Page size for verification and export walks.
pub const WALK_PAGE: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    pub accepted: u32,
    pub duplicates: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub checked: u64,
    pub checkpoint_seq: u64,
    pub first_bad: Option<chain::Break>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted: u64,
    pub checkpoint_seq: u64,
}

#[derive(Clone)]
pub struct AuditStore {
    db: DatabaseConnection,
    append_lock: Arc<tokio::sync::Mutex<()>>,
}

impl AuditStore {
    pub fn new(db: DatabaseConnection) -> Self {
        AuditStore {
            db,
            append_lock: Arc::default(),
        }
    }

    /// Appends the records whose event ids are new, in order, in one transaction.
    pub async fn append(&self, records: Vec<Record>) -> Result<AppendOutcome, AuditError> {
        let _guard = self.append_lock.lock().await;
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let outcome = self.append_in(&txn, records).await?;
        txn.commit().await?;
        Ok(outcome)
    }

    async fn append_in(
        &self,
        txn: &DatabaseTransaction,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, AuditError> {
        let total = records.len() as u32;
        let head = lock_head(txn).await?;
        let fresh = self.only_new(txn, records).await?;
        let accepted = fresh.len() as u32;
        if fresh.is_empty() {
            return Ok(AppendOutcome {
                accepted: 0,
                duplicates: total,
            });
        }
        let chained = chain::link(head.last_seq as u64, &head.last_hash, fresh);
        let (last_seq, last_hash) = chained
            .last()
            .map(|c| (c.seq as i64, c.hash.clone()))
            .unwrap_or((head.last_seq, head.last_hash.clone()));
        for chunk in chained.chunks(INSERT_CHUNK) {
            let rows = chunk.iter().map(convert::to_active);
            audit_event::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
        }
        chain_head::Entity::update(chain_head::ActiveModel {
            id: Set(1),
            last_seq: Set(last_seq),
            last_hash: Set(last_hash),
        })
        .exec(txn)
        .await?;
        Ok(AppendOutcome {
            accepted,
            duplicates: total - accepted,
        })
    }

    /// Drops records already stored, and repeats within the batch (first one wins).
    async fn only_new(
        &self,
        txn: &DatabaseTransaction,
        records: Vec<Record>,
    ) -> Result<Vec<Record>, AuditError> {
        let ids: Vec<String> = records.iter().map(|r| r.event_id.clone()).collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for chunk in ids.chunks(INSERT_CHUNK) {
            let existing: Vec<String> = audit_event::Entity::find()
                .select_only()
                .column(audit_event::Column::EventId)
                .filter(audit_event::Column::EventId.is_in(chunk.to_vec()))
                .into_tuple()
                .all(txn)
                .await?;
            seen.extend(existing);
        }
        Ok(records
            .into_iter()
            .filter(|r| seen.insert(r.event_id.clone()))
            .collect())
    }

    /// Newest first, after `cursor` (a seq), at most `limit`; plus the next cursor.
    pub async fn list(
        &self,
        filter: &Filter,
        cursor: Option<u64>,
        limit: u64,
    ) -> Result<(Vec<Chained>, Option<u64>), AuditError> {
        let mut query = filter.apply(audit_event::Entity::find());
        if let Some(cursor) = cursor {
            query = query.filter(audit_event::Column::Seq.lt(cursor as i64));
        }
        let mut rows = query
            .order_by_desc(audit_event::Column::Seq)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.seq as u64)
        } else {
            None
        };
        Ok((rows.into_iter().map(convert::from_model).collect(), next))
    }

    /// Oldest first, records with seq greater than `after`, at most `limit`.
    pub async fn page_ascending(
        &self,
        filter: &Filter,
        after: u64,
        limit: u64,
    ) -> Result<Vec<Chained>, AuditError> {
        let rows = filter
            .apply(audit_event::Entity::find())
            .filter(audit_event::Column::Seq.gt(after as i64))
            .order_by_asc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(convert::from_model).collect())
    }

    /// Recomputes the whole chain from the latest checkpoint, up to the chain head.
    pub async fn verify(&self) -> Result<VerifyOutcome, AuditError> {
        let (checkpoint_seq, checkpoint_hash) = self.latest_checkpoint(&self.db).await?;
        let head = chain_head::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or(AuditError::MissingChainHead)?;
        let mut verifier = Verifier::after(checkpoint_seq, &checkpoint_hash);
        let mut after = checkpoint_seq;
        let everything = Filter::default();
        loop {
            let page = self.page_ascending(&everything, after, WALK_PAGE).await?;
            for record in &page {
                if let Err(broke) = verifier.check(record) {
                    return Ok(VerifyOutcome {
                        checked: verifier.checked(),
                        checkpoint_seq,
                        first_bad: Some(broke),
                    });
                }
            }
            match page.last() {
                Some(last) if page.len() as u64 == WALK_PAGE => after = last.seq,
                _ => break,
            }
        }
        let first_bad = verifier.finish(head.last_seq as u64, &head.last_hash).err();
        Ok(VerifyOutcome {
            checked: verifier.checked(),
            checkpoint_seq,
            first_bad,
        })
    }

    async fn latest_checkpoint(
        &self,
        conn: &impl ConnectionTrait,
    ) -> Result<(u64, String), AuditError> {
        let latest = checkpoint::Entity::find()
            .order_by_desc(checkpoint::Column::Seq)
            .one(conn)
            .await?;
        Ok(latest
            .map(|c| (c.seq as u64, c.hash))
            .unwrap_or((0, GENESIS.to_owned())))
    }

    /// Deletes the oldest contiguous run of records that occurred before `cutoff`, writes a
    /// checkpoint with the last deleted record's hash, and appends `record_of(outcome)` (the
    /// audit event about this deletion) in the same transaction.
    pub async fn apply_retention(
        &self,
        cutoff: chrono::DateTime<Utc>,
        record_of: impl FnOnce(RetentionOutcome) -> Record,
    ) -> Result<RetentionOutcome, AuditError> {
        let _guard = self.append_lock.lock().await;
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let head = lock_head(&txn).await?;
        let (previous_checkpoint, _) = self.latest_checkpoint(&txn).await?;
        // Records are deleted only as a prefix of the chain, so verification can start at one
        // checkpoint: stop before the first record that is recent enough to keep.
        let first_kept: Option<i64> = audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::Seq)
            .filter(audit_event::Column::OccurredAt.gte(cutoff))
            .order_by_asc(audit_event::Column::Seq)
            .limit(1)
            .into_tuple()
            .one(&txn)
            .await?;
        let last_deleted = first_kept.map_or(head.last_seq, |seq| seq - 1);
        if last_deleted <= previous_checkpoint as i64 {
            txn.commit().await?;
            return Ok(RetentionOutcome {
                deleted: 0,
                checkpoint_seq: 0,
            });
        }
        let boundary = audit_event::Entity::find_by_id(last_deleted)
            .one(&txn)
            .await?
            .ok_or(AuditError::MissingRecord(last_deleted as u64))?;
        let deleted = audit_event::Entity::delete_many()
            .filter(audit_event::Column::Seq.lte(last_deleted))
            .exec(&txn)
            .await?
            .rows_affected;
        checkpoint::Entity::insert(checkpoint::ActiveModel {
            seq: Set(last_deleted),
            hash: Set(boundary.hash),
            deleted: Set(deleted as i64),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(checkpoint::Column::Seq)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let outcome = RetentionOutcome {
            deleted,
            checkpoint_seq: last_deleted as u64,
        };
        self.append_in(&txn, vec![record_of(outcome)]).await?;
        txn.commit().await?;
        Ok(outcome)
    }
}

/// Reads the chain head, locking its row on PostgreSQL until the transaction ends.
async fn lock_head(txn: &DatabaseTransaction) -> Result<chain_head::Model, AuditError> {
    let mut query = chain_head::Entity::find_by_id(1);
    if is_postgres(txn) {
        query = query.lock(LockType::Update);
    }
    query.one(txn).await?.ok_or(AuditError::MissingChainHead)
}
