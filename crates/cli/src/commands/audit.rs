//! `switchyard audit`: read the audit trail and verify its hash chain over gRPC.

use std::process::ExitCode;

use clap::Subcommand;
use switchyard_proto::audit::v1::audit_service_client::AuditServiceClient;
use switchyard_proto::audit::v1::{EventFilter, ListEventsRequest, VerifyChainRequest};
use switchyard_proto::common::v1::PageRequest;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List recent audit events, newest first.
    Events {
        #[arg(
            long,
            default_value = "http://127.0.0.1:7040",
            env = "SWITCHYARD_AUDIT_ENDPOINT"
        )]
        endpoint: String,
        /// Only this action (e.g. service.started).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Recompute the hash chain; exits 1 when it is broken.
    Verify {
        #[arg(
            long,
            default_value = "http://127.0.0.1:7040",
            env = "SWITCHYARD_AUDIT_ENDPOINT"
        )]
        endpoint: String,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Events {
            endpoint,
            action,
            limit,
        } => {
            let mut client = AuditServiceClient::new(switchyard_runtime::grpc::channel(&endpoint)?);
            let response = client
                .list_events(ListEventsRequest {
                    filter: Some(EventFilter {
                        action: action.unwrap_or_default(),
                        ..EventFilter::default()
                    }),
                    page: Some(PageRequest {
                        limit,
                        cursor: String::new(),
                    }),
                })
                .await?
                .into_inner();
            for event in response.events {
                let actor = event.actor.map(|a| a.id).unwrap_or_default();
                let at = event
                    .occurred_at
                    .as_ref()
                    .and_then(switchyard_runtime::time::from_proto)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!(
                    "{:>6}  {at}  {:<14} {:<24} {}/{}  {}",
                    event.seq,
                    actor,
                    event.action,
                    event.resource_type,
                    event.resource_id,
                    event.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { endpoint } => {
            let mut client = AuditServiceClient::new(switchyard_runtime::grpc::channel(&endpoint)?);
            let outcome = client
                .verify_chain(VerifyChainRequest {})
                .await?
                .into_inner();
            println!(
                "{}",
                serde_json::json!({
                    "ok": outcome.ok,
                    "checked": outcome.checked,
                    "first_bad_seq": outcome.first_bad_seq,
                    "problem": outcome.problem,
                    "checkpoint_seq": outcome.checkpoint_seq,
                })
            );
            Ok(if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
