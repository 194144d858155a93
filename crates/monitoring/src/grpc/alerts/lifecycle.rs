//! Alerts over gRPC: the listing (project and state filters, newest first, cursor = the last
//! alert id), acknowledging (firing → acknowledged) and resolving by hand (open → resolved,
//! `resolved_by` = the caller). A state already left is a FAILED_PRECONDITION naming the state,
//! an unknown id NOT_FOUND. A condition that still holds after a manual resolution fires a new
//! alert at the next evaluation; acknowledging is how to keep one quiet while it is worked on.

use chrono::Utc;
use switchyard_proto::common::v1::PageResponse;
use switchyard_proto::monitoring::v1::{Alert, ListAlertsRequest, ListAlertsResponse};
use switchyard_runtime::auth::CallContext;
use tonic::Status;

use super::convert::alert_message;
use crate::alerts::notify::{self, By};
use crate::domain::alert::State;
use crate::error::Error;
use crate::grpc::MonitoringApi;
use crate::store::alert_entity::alert;
use crate::store::alerts::{open, rules};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

fn db_status(error: sea_orm::DbErr) -> Status {
    Error::from(error).into()
}

fn not_open(row: Option<alert::Model>, wanted: &str) -> Status {
    match row {
        None => Status::not_found("alert not found"),
        Some(row) if row.state == State::Resolved.as_str() => {
            Status::failed_precondition("the alert is already resolved")
        }
        Some(row) => {
            Status::failed_precondition(format!("the alert is {}, not {wanted}", row.state))
        }
    }
}

impl MonitoringApi {
    pub(super) async fn alerts_page(
        &self,
        ctx: &CallContext,
        req: ListAlertsRequest,
    ) -> Result<ListAlertsResponse, Status> {
        let state = match req.state {
            0 => None,
            value => Some(State::from_proto(value).ok_or_else(|| {
                Status::invalid_argument("state must be firing, acknowledged or resolved")
            })?),
        };
        let page = req.page.unwrap_or_default();
        let limit = match u64::from(page.limit) {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let before = match page.cursor.as_str() {
            "" => None,
            cursor if uuid::Uuid::parse_str(cursor).is_ok() => Some(cursor.to_owned()),
            _ => {
                return Err(Status::invalid_argument(
                    "cursor is not one this API returned",
                ));
            }
        };
        let who = self.visible(ctx, &req.project_id, "alert.list").await?;
        let mut rows = open::list(&self.db, &who, state, before.as_deref(), limit + 1).await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListAlertsResponse {
            alerts: rows.iter().map(alert_message).collect(),
            page: Some(PageResponse { next_cursor }),
        })
    }

    pub(super) async fn acknowledge(&self, ctx: &CallContext, id: &str) -> Result<Alert, Status> {
        let Some(found) = open::get(&self.db, id).await? else {
            return Err(Status::not_found("alert not found"));
        };
        self.authorize_alerting(ctx, &found.project_id, "alert.acknowledge")
            .await?;
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(db_status)?;
        let by = By::Caller(ctx);
        let Some(row) = open::acknowledge(&txn, id, &by.id(), Utc::now()).await? else {
            return Err(not_open(open::get(&txn, id).await?, "firing"));
        };
        notify::audit(&txn, by, "alert.acknowledged", &row).await?;
        txn.commit().await.map_err(db_status)?;
        Ok(alert_message(&row))
    }

    pub(super) async fn resolve(&self, ctx: &CallContext, id: &str) -> Result<Alert, Status> {
        let Some(found) = open::get(&self.db, id).await? else {
            return Err(Status::not_found("alert not found"));
        };
        self.authorize_alerting(ctx, &found.project_id, "alert.resolve")
            .await?;
        let now = Utc::now();
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(db_status)?;
        let by = By::Caller(ctx);
        let Some(row) = open::resolve(&txn, id, &by.id(), now).await? else {
            return Err(not_open(open::get(&txn, id).await?, "open"));
        };
        let rule = rules::get(&txn, &row.rule_id).await?;
        notify::changed(&txn, by, "resolved", rule.as_ref(), &row, now).await?;
        txn.commit().await.map_err(db_status)?;
        Ok(alert_message(&row))
    }
}
