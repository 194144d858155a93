//! AGENT_POOL_EMPTY: fewer live agents than the threshold. Agents are the platform's, not a
//! project's, so the scheduler is asked once per round (`AgentRegistryService.ListAgents`)
//! under monitoring's own service principal: a background job has no caller to borrow
//! credentials from, and listing agents needs the `admin` scope.

use switchyard_proto::common::v1::PageRequest;
use switchyard_proto::scheduler::v1::ListAgentsRequest;
use switchyard_proto::scheduler::v1::agent_registry_service_client::AgentRegistryServiceClient;
use switchyard_runtime::auth::{CallContext, Scope, service_principal};
use switchyard_runtime::time::from_proto;

use super::Inputs;
use crate::domain::alert::{self, Finding};
use crate::store::alert_entity::alert_rule;

/// The scheduler lists at most this many agents, most recently seen first: enough to count
/// the live ones for any sensible threshold.
const PAGE: u32 = 500;

pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Option<Finding>, String> {
    let live = inputs
        .live_agents
        .get_or_init(|| live_agents(inputs))
        .await
        .clone()?;
    Ok(alert::agent_pool(live, rule.threshold))
}

async fn live_agents(inputs: &Inputs<'_>) -> Result<u64, String> {
    let ctx = CallContext {
        principal: Some(service_principal(crate::SERVICE, &[Scope::Admin])),
        ..CallContext::default()
    };
    let mut request = tonic::Request::new(ListAgentsRequest {
        page: Some(PageRequest {
            limit: PAGE,
            cursor: String::new(),
        }),
    });
    ctx.write_to(request.metadata_mut());
    request.set_timeout(inputs.config.scheduler_timeout);
    let mut client = AgentRegistryServiceClient::new(inputs.scheduler.clone());
    let call = client.list_agents(request);
    let agents = tokio::time::timeout(inputs.config.scheduler_timeout, call)
        .await
        .map_err(|_| "the scheduler did not answer in time".to_owned())?
        .map_err(|status| format!("the scheduler refused to list agents: {}", status.message()))?
        .into_inner()
        .agents;
    let since =
        inputs.now - chrono::Duration::from_std(inputs.config.agent_liveness).unwrap_or_default();
    Ok(agents
        .iter()
        .filter(|a| {
            a.last_heartbeat_at
                .as_ref()
                .and_then(from_proto)
                .is_some_and(|t| t >= since)
        })
        .count() as u64)
}
