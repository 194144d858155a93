//! The control plane's periodic maintenance: service tokens past their expiry are deactivated
//! (marked revoked, their cached authentications dropped, each audited as the service). An
//! expired token is already refused at authentication; this makes the record say so and keeps
//! the token list honest. Runs once across replicas (a transaction-scoped advisory lock).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use switchyard_runtime::outbox;
use switchyard_runtime::shutdown::Shutdown;

use crate::SERVICE;
use crate::error::Result;
use crate::state::{State, auth_cache_key};
use crate::store::entity::service_token;

/// Deactivates expired tokens; `None` when another replica holds the job this round.
pub async fn deactivate_expired_tokens(state: &State) -> Result<Option<u64>> {
    let txn = switchyard_runtime::db::write_txn(&state.db).await?;
    if !switchyard_runtime::db::try_job_lock(&txn, "control-plane.token-expiry").await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let now = Utc::now();
    let expired = service_token::Entity::find()
        .filter(service_token::Column::ExpiresAt.lt(now))
        .filter(service_token::Column::RevokedAt.is_null())
        .limit(1000)
        .all(&txn)
        .await?;
    let mut hashes = Vec::with_capacity(expired.len());
    for token in &expired {
        let mut active: service_token::ActiveModel = token.clone().into();
        active.revoked_at = Set(Some(now));
        active.update(&txn).await?;
        let details = serde_json::json!({ "name": token.name, "expired_at": token.expires_at });
        let record = outbox::service_record(SERVICE, "token.deactivated", &token.id, &details);
        let record = switchyard_proto::events::v1::AuditRecord {
            resource_type: "service_token".into(),
            org_id: token.org_id.clone(),
            project_id: token.project_id.clone(),
            ..record
        };
        outbox::enqueue_audit(&txn, SERVICE, record).await?;
        hashes.push(token.token_hash.clone());
    }
    txn.commit().await?;
    for hash in hashes {
        if let Err(error) = state.cache.delete(&auth_cache_key(&hash)).await {
            tracing::warn!(%error, "cached authentication of an expired token not dropped");
        }
    }
    if !expired.is_empty() {
        tracing::info!(tokens = expired.len(), "expired service tokens deactivated");
    }
    Ok(Some(expired.len() as u64))
}

pub fn spawn(
    state: Arc<State>,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) = deactivate_expired_tokens(&state).await {
                tracing::warn!(%error, "token expiry round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
