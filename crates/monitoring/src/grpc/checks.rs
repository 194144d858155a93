//! ApiCheckService: registering and removing API checks (a project admin's act: a check makes
//! the platform send requests into the network, so it needs the `admin` scope on the project,
//! and every change is audited in the transaction that makes it), the checks' health with
//! 24-hour availability (what the caller may read), and the API usage the gateway reported
//! (platform admins: it spans every tenant's traffic).

use std::time::Duration;

use chrono::Utc;
use switchyard_proto::events::v1::Outcome;
use switchyard_proto::monitoring::v1::api_check_service_server::ApiCheckService;
use switchyard_proto::monitoring::v1::*;
use switchyard_runtime::auth::{self, CallContext, Scope, Tenant};
use switchyard_runtime::outbox::{self, AuditFact};
use switchyard_runtime::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::checks::cleanup::PROBE_WINDOW;
use crate::domain::checks::{self, CheckSpec, Protocol};
use crate::domain::usage::Histogram;
use crate::error::Error;
use crate::store::checks::{self as store, Check};
use crate::store::usage::{self, RouteTotals};

/// Registering checks needs this on the project.
const WRITE: Scope = Scope::Admin;
/// GetApiUsage without `since` covers the last hour.
const DEFAULT_USAGE_WINDOW: chrono::Duration = chrono::Duration::hours(1);

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

fn std_duration(
    field: &str,
    d: Option<&prost_types::Duration>,
) -> Result<Option<Duration>, Status> {
    match d {
        None => Ok(None),
        Some(d) if d.seconds == 0 && d.nanos == 0 => Ok(None),
        Some(d) => {
            let seconds = u64::try_from(d.seconds).ok();
            let nanos = u32::try_from(d.nanos).ok();
            match (seconds, nanos) {
                (Some(s), Some(n)) if n < 1_000_000_000 => Ok(Some(Duration::new(s, n))),
                _ => Err(Status::invalid_argument(format!(
                    "{field} must be positive"
                ))),
            }
        }
    }
}

fn proto_duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn protocol_of(value: i32) -> Option<Protocol> {
    match CheckProtocol::try_from(value) {
        Ok(CheckProtocol::Http) => Some(Protocol::Http),
        Ok(CheckProtocol::Grpc) => Some(Protocol::Grpc),
        _ => None,
    }
}

fn check_message(check: &Check) -> ApiCheck {
    let protocol = match Protocol::parse(&check.protocol) {
        Some(Protocol::Http) => CheckProtocol::Http,
        Some(Protocol::Grpc) => CheckProtocol::Grpc,
        None => CheckProtocol::Unspecified,
    };
    ApiCheck {
        id: check.id.clone(),
        project_id: check.project_id.clone(),
        name: check.name.clone(),
        protocol: protocol as i32,
        target: check.target.clone(),
        interval: Some(proto_duration(check.interval_ms)),
        timeout: Some(proto_duration(check.timeout_ms)),
    }
}

/// `passed / total`, or 0 before the first probe.
fn availability(total: u64, passed: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        passed as f64 / total as f64
    }
}

fn route_message(t: &RouteTotals) -> RouteUsage {
    let q = |h: &Histogram, q: f64| h.quantile(q).unwrap_or(0.0);
    RouteUsage {
        route: t.route.clone(),
        method: t.method.clone(),
        requests: t.requests,
        errors: t.errors,
        error_rate: if t.requests == 0 {
            0.0
        } else {
            t.errors as f64 / t.requests as f64
        },
        p50_ms: q(&t.latency, 0.5),
        p95_ms: q(&t.latency, 0.95),
        p99_ms: q(&t.latency, 0.99),
    }
}

impl MonitoringApi {
    /// The definition in a request, validated (the target against the address policy too).
    fn check_spec(&self, check: &ApiCheck) -> Result<CheckSpec, Status> {
        let spec = checks::validate(
            &check.name,
            protocol_of(check.protocol),
            &check.target,
            std_duration("interval", check.interval.as_ref())?,
            std_duration("timeout", check.timeout.as_ref())?,
        )
        .map_err(|invalid| Status::invalid_argument(invalid.message))?;
        self.check_policy
            .check_url(spec.url.as_str())
            .map_err(|rejection| {
                Status::invalid_argument(format!("target refused: {rejection}"))
            })?;
        Ok(spec)
    }

    /// Checks that `ctx` may change checks of the project (org, project); refusals audited.
    async fn authorize_write(
        &self,
        ctx: &CallContext,
        org_id: &str,
        project_id: &str,
        action: &str,
        resource_id: &str,
    ) -> Result<(), Status> {
        let tenant = Tenant {
            org_id,
            project_id: Some(project_id),
        };
        if let Err(denial) = auth::authorize(ctx.principal.as_ref(), WRITE, tenant) {
            let fact = AuditFact {
                action,
                resource_type: "api_check",
                resource_id,
                org_id,
                project_id,
                outcome: Outcome::Denied,
            };
            return Err(self.deny(ctx, fact, denial).await);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ApiCheckService for MonitoringApi {
    async fn put_api_check(
        &self,
        request: Request<PutApiCheckRequest>,
    ) -> Result<Response<PutApiCheckResponse>, Status> {
        let (ctx, req) = context(request)?;
        let wanted = req
            .check
            .ok_or_else(|| Status::invalid_argument("check is required"))?;
        let spec = self.check_spec(&wanted)?;
        let existing = match wanted.id.as_str() {
            "" => None,
            id if uuid::Uuid::parse_str(id).is_err() => {
                return Err(Status::invalid_argument("check id is not an id"));
            }
            id => Some(
                store::find(&self.db, id)
                    .await?
                    .ok_or_else(|| Status::not_found("api check not found"))?,
            ),
        };
        let project_id = match (&existing, wanted.project_id.as_str()) {
            (Some(e), "") => e.project_id.clone(),
            (Some(e), named) if named != e.project_id => {
                return Err(Status::invalid_argument(
                    "project_id cannot change: delete the check and register it again",
                ));
            }
            (_, "") => return Err(Status::invalid_argument("project_id is required")),
            (_, named) => named.to_owned(),
        };
        let action = if existing.is_some() {
            "api_check.updated"
        } else {
            "api_check.created"
        };
        // The caller's own credentials prove the project exists and is theirs to see.
        let project = auth::project_as_caller(&self.tenancy, &ctx, &project_id).await?;
        let id = existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        self.authorize_write(&ctx, &project.org_id, &project.id, action, &id)
            .await?;
        if let Some(other) = store::find_by_name(&self.db, &project.id, &spec.name).await?
            && other.id != id
        {
            return Err(Status::already_exists(format!(
                "the project already has an api check named {:?}",
                spec.name
            )));
        }
        let now = Utc::now();
        let check = Check {
            id: id.clone(),
            org_id: project.org_id.clone(),
            project_id: project.id.clone(),
            name: spec.name.clone(),
            protocol: spec.protocol.as_str().to_owned(),
            target: spec.target.clone(),
            interval_ms: millis(spec.interval),
            timeout_ms: millis(spec.timeout),
            created_at: existing.as_ref().map(|e| e.created_at).unwrap_or(now),
            updated_at: now,
            next_probe_at: now,
            last_checked_at: None,
            last_ok: false,
            last_latency_ms: None,
            last_error: String::new(),
        };
        let details = serde_json::json!({
            "name": check.name,
            "protocol": check.protocol,
            "target": check.target,
            "interval_ms": check.interval_ms,
            "timeout_ms": check.timeout_ms,
        });
        let fact = AuditFact {
            action,
            resource_type: "api_check",
            resource_id: &id,
            org_id: &project.org_id,
            project_id: &project.id,
            outcome: Outcome::Success,
        };
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(Error::from)?;
        if let Err(error) = store::save(&txn, &check, existing.is_none()).await {
            if let Error::Database(db) = &error
                && crate::store::is_unique_violation(db)
            {
                return Err(Status::already_exists(format!(
                    "the project already has an api check named {:?}",
                    spec.name
                )));
            }
            return Err(error.into());
        }
        outbox::enqueue_audit(
            &txn,
            crate::SERVICE,
            outbox::request_record(&ctx, fact, &details),
        )
        .await
        .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        tracing::info!(check_id = %id, project_id = %project.id, action, "api check saved");
        Ok(Response::new(PutApiCheckResponse {
            check: Some(check_message(&check)),
        }))
    }

    async fn delete_api_check(
        &self,
        request: Request<DeleteApiCheckRequest>,
    ) -> Result<Response<DeleteApiCheckResponse>, Status> {
        let (ctx, req) = context(request)?;
        if uuid::Uuid::parse_str(&req.check_id).is_err() {
            return Err(Status::invalid_argument("check_id is not an id"));
        }
        if ctx.principal.is_none() {
            return Err(auth::Denial::Unauthenticated.status());
        }
        let check = store::find(&self.db, &req.check_id)
            .await?
            .ok_or_else(|| Status::not_found("api check not found"))?;
        let action = "api_check.deleted";
        self.authorize_write(&ctx, &check.org_id, &check.project_id, action, &check.id)
            .await?;
        let details = serde_json::json!({ "name": check.name, "target": check.target });
        let fact = AuditFact {
            action,
            resource_type: "api_check",
            resource_id: &check.id,
            org_id: &check.org_id,
            project_id: &check.project_id,
            outcome: Outcome::Success,
        };
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(Error::from)?;
        if !store::delete(&txn, &check.id).await? {
            return Err(Status::not_found("api check not found"));
        }
        outbox::enqueue_audit(
            &txn,
            crate::SERVICE,
            outbox::request_record(&ctx, fact, &details),
        )
        .await
        .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(DeleteApiCheckResponse {}))
    }

    async fn get_api_health(
        &self,
        request: Request<GetApiHealthRequest>,
    ) -> Result<Response<GetApiHealthResponse>, Status> {
        let (ctx, req) = context(request)?;
        let who = self
            .visible(&ctx, &req.project_id, "api_check.health")
            .await?;
        let rows = store::list(&self.db, &who).await?;
        let ids: Vec<String> = rows.iter().map(|c| c.id.clone()).collect();
        let tallies = store::availability(&self.db, &ids, Utc::now() - PROBE_WINDOW).await?;
        let checks = rows
            .iter()
            .map(|c| {
                let (total, passed) = tallies.get(&c.id).copied().unwrap_or((0, 0));
                ApiCheckStatus {
                    check: Some(check_message(c)),
                    healthy: c.last_checked_at.is_some() && c.last_ok,
                    last_checked_at: c.last_checked_at.map(to_proto),
                    last_latency: c.last_latency_ms.map(proto_duration),
                    last_error: c.last_error.clone(),
                    availability: availability(total, passed),
                }
            })
            .collect();
        Ok(Response::new(GetApiHealthResponse { checks }))
    }

    async fn get_api_usage(
        &self,
        request: Request<GetApiUsageRequest>,
    ) -> Result<Response<GetApiUsageResponse>, Status> {
        let (ctx, req) = context(request)?;
        if let Err(denial) = auth::authorize_platform_admin(ctx.principal.as_ref()) {
            let principal = ctx.principal.clone().unwrap_or_default();
            let fact = AuditFact {
                action: "api.usage",
                resource_type: "platform",
                resource_id: "api-usage",
                org_id: &principal.org_id,
                project_id: &principal.project_id,
                outcome: Outcome::Denied,
            };
            return Err(self.deny(&ctx, fact, denial).await);
        }
        let since = match &req.since {
            None => Utc::now() - DEFAULT_USAGE_WINDOW,
            Some(t) => from_proto(t)
                .ok_or_else(|| Status::invalid_argument("since is not a valid time"))?,
        };
        let totals = usage::totals(&self.db, since).await?;
        Ok(Response::new(GetApiUsageResponse {
            routes: totals.iter().map(route_message).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_check_durations_are_read_and_written_exactly() {
        let d = prost_types::Duration {
            seconds: 5,
            nanos: 500_000_000,
        };
        assert_eq!(
            std_duration("interval", Some(&d)).ok().flatten(),
            Some(Duration::from_millis(5_500))
        );
        assert_eq!(std_duration("interval", None).ok().flatten(), None);
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(std_duration("interval", Some(&negative)).is_err());
        assert_eq!(proto_duration(5_500), d);
    }

    #[test]
    fn route_usage_reads_rates_and_percentiles() {
        let mut latency = Histogram::default();
        latency.0[6] = 10;
        let usage = route_message(&RouteTotals {
            route: "/api/v1/runs/{run_id}".into(),
            method: "GET".into(),
            requests: 10,
            errors: 2,
            latency,
        });
        assert_eq!(usage.error_rate, 0.2);
        assert_eq!(usage.p50_ms, 75.0);
        assert_eq!(usage.p99_ms, 100.0);
        assert_eq!(availability(0, 0), 0.0);
        assert_eq!(availability(4, 3), 0.75);
    }
}
