//! `AuditService`: query, export, chain verification and retention.

use std::pin::Pin;

use switchyard_proto::audit::v1::audit_service_server::AuditService;
use switchyard_proto::audit::v1::{
    ApplyRetentionRequest, ApplyRetentionResponse, ExportEventsRequest, ExportEventsResponse,
    ListEventsRequest, ListEventsResponse, VerifyChainRequest, VerifyChainResponse,
};
use switchyard_proto::common::v1::{PageRequest, PageResponse};
use switchyard_runtime::error::violation;
use switchyard_runtime::time::from_proto;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::{filter_from_proto, to_json_line, to_proto_event};
use crate::error::AuditError;
use crate::retention;
use crate::store::{AuditStore, WALK_PAGE};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

pub struct AuditApi {
    store: AuditStore,
}

impl AuditApi {
    pub fn new(store: AuditStore) -> Self {
        AuditApi { store }
    }
}

fn page(page: Option<PageRequest>) -> Result<(Option<u64>, u64), AuditError> {
    let page = page.unwrap_or_default();
    let limit = match page.limit {
        0 => DEFAULT_LIMIT,
        n => u64::from(n).min(MAX_LIMIT),
    };
    let cursor = if page.cursor.is_empty() {
        None
    } else {
        Some(page.cursor.parse::<u64>().map_err(|_| {
            AuditError::Invalid(vec![violation(
                "page.cursor",
                "invalid_cursor",
                "cursor is not one this service issued",
            )])
        })?)
    };
    Ok((cursor, limit))
}

// With default stubs generated, streaming RPCs return this boxed stream type.
type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let request = request.into_inner();
        let filter = filter_from_proto(request.filter)?;
        let (cursor, limit) = page(request.page)?;
        let (records, next) = self.store.list(&filter, cursor, limit).await?;
        Ok(Response::new(ListEventsResponse {
            events: records.into_iter().map(to_proto_event).collect(),
            page: Some(PageResponse {
                next_cursor: next.map(|n| n.to_string()).unwrap_or_default(),
            }),
        }))
    }

    async fn export_events(
        &self,
        request: Request<ExportEventsRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let filter = filter_from_proto(request.into_inner().filter)?;
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let page = match store.page_ascending(&filter, after, WALK_PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = tx.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let mut jsonl = Vec::with_capacity(page.len() * 512);
                for record in &page {
                    to_json_line(record, &mut jsonl);
                }
                if !jsonl.is_empty() && tx.send(Ok(ExportEventsResponse { jsonl })).await.is_err() {
                    return; // the client went away
                }
                match page.last() {
                    Some(last) if page.len() as u64 == WALK_PAGE => after = last.seq,
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn verify_chain(
        &self,
        _request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        let outcome = self.store.verify().await?;
        if let Some(broke) = &outcome.first_bad {
            tracing::warn!(seq = broke.seq, problem = %broke.problem, "audit chain verification failed");
        }
        Ok(Response::new(VerifyChainResponse {
            ok: outcome.first_bad.is_none(),
            checked: outcome.checked,
            first_bad_seq: outcome.first_bad.as_ref().map(|b| b.seq),
            problem: outcome.first_bad.map(|b| b.problem).unwrap_or_default(),
            checkpoint_seq: outcome.checkpoint_seq,
        }))
    }

    async fn apply_retention(
        &self,
        request: Request<ApplyRetentionRequest>,
    ) -> Result<Response<ApplyRetentionResponse>, Status> {
        let cutoff = request
            .into_inner()
            .older_than
            .as_ref()
            .and_then(from_proto)
            .ok_or_else(|| {
                AuditError::Invalid(vec![violation(
                    "older_than",
                    "required",
                    "older_than must be a valid timestamp",
                )])
            })?;
        if cutoff > chrono::Utc::now() {
            return Err(AuditError::Invalid(vec![violation(
                "older_than",
                "in_future",
                "older_than must not be in the future",
            )])
            .into());
        }
        let outcome = retention::apply(&self.store, cutoff, "request").await?;
        Ok(Response::new(ApplyRetentionResponse {
            deleted: outcome.deleted,
            checkpoint_seq: outcome.checkpoint_seq,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_clamp_and_reject_foreign_cursors() {
        assert_eq!(page(None).ok(), Some((None, 50)));
        let big = PageRequest {
            limit: 10_000,
            cursor: "42".into(),
        };
        assert_eq!(page(Some(big)).ok(), Some((Some(42), 500)));
        let bad = PageRequest {
            limit: 1,
            cursor: "abc".into(),
        };
        assert!(page(Some(bad)).is_err());
    }
}
