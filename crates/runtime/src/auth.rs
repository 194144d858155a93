//! The caller of a gRPC call, as the gateway authenticated it, and the one authorization rule
//! every service applies to it.
//!
//! The gateway resolves a bearer token to a [`Principal`] (through control-plane) and forwards
//! it, with where the request came from, in binary metadata. Services trust that metadata: only
//! the gateway and sibling services can reach their gRPC ports (network policy / mutual TLS in
//! a deployment). A service never re-implements the scope rules: it calls [`authorize`].

use prost::Message;
use switchyard_proto::common::v1::{Actor, ActorType, RequestOrigin};
use switchyard_proto::controlplane::v1::{Principal, Role};
use tonic::metadata::{BinaryMetadataValue, MetadataMap, MetadataValue};

use crate::ErrorCode;

pub const PRINCIPAL_KEY: &str = "x-switchyard-principal-bin";
pub const ORIGIN_KEY: &str = "x-switchyard-origin-bin";
pub const REQUEST_ID_KEY: &str = "x-request-id";

/// Who is calling and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallContext {
    pub principal: Option<Principal>,
    pub origin: RequestOrigin,
}

impl CallContext {
    /// Reads the forwarded principal and origin. Malformed metadata is refused rather than
    /// treated as anonymous, so a broken hop is loud.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<CallContext, tonic::Status> {
        let principal = match metadata.get_bin(PRINCIPAL_KEY) {
            Some(value) => Some(decode::<Principal>(value, PRINCIPAL_KEY)?),
            None => None,
        };
        let mut origin = match metadata.get_bin(ORIGIN_KEY) {
            Some(value) => decode::<RequestOrigin>(value, ORIGIN_KEY)?,
            None => RequestOrigin::default(),
        };
        if origin.request_id.is_empty()
            && let Some(id) = metadata.get(REQUEST_ID_KEY).and_then(|v| v.to_str().ok())
        {
            origin.request_id = id.to_owned();
        }
        Ok(CallContext { principal, origin })
    }

    /// Writes this context into outgoing metadata (gateway → service, service → service).
    pub fn write_to(&self, metadata: &mut MetadataMap) {
        if let Some(principal) = &self.principal {
            metadata.insert_bin(
                PRINCIPAL_KEY,
                BinaryMetadataValue::from_bytes(&principal.encode_to_vec()),
            );
        }
        metadata.insert_bin(
            ORIGIN_KEY,
            BinaryMetadataValue::from_bytes(&self.origin.encode_to_vec()),
        );
        if let Ok(value) = MetadataValue::try_from(self.origin.request_id.as_str()) {
            metadata.insert(REQUEST_ID_KEY, value);
        }
    }

    /// The actor for audit records: the principal's, or anonymous.
    pub fn actor(&self) -> Actor {
        self.principal
            .as_ref()
            .and_then(|p| p.actor.clone())
            .unwrap_or(Actor {
                r#type: ActorType::Anonymous as i32,
                // Audit requires an actor id; the origin says where an anonymous call came from.
                id: "anonymous".to_owned(),
                display_name: "anonymous".to_owned(),
            })
    }
}

fn decode<T: Message + Default>(
    value: &BinaryMetadataValue,
    key: &str,
) -> Result<T, tonic::Status> {
    let bytes = value
        .to_bytes()
        .map_err(|_| tonic::Status::invalid_argument(format!("metadata {key} is not base64")))?;
    T::decode(bytes.as_ref())
        .map_err(|_| tonic::Status::invalid_argument(format!("metadata {key} does not decode")))
}

/// What a call needs. A `write` scope implies its `read`; `admin` implies every scope but
/// `agents`, which only agent tokens carry (an admin token must not be usable as an agent by
/// accident, and vice versa).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    RunsRead,
    RunsWrite,
    WorkflowsRead,
    WorkflowsWrite,
    SuitesRead,
    SuitesWrite,
    Agents,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::WorkflowsRead,
        Scope::WorkflowsWrite,
        Scope::SuitesRead,
        Scope::SuitesWrite,
        Scope::Agents,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::WorkflowsRead => "workflows:read",
            Scope::WorkflowsWrite => "workflows:write",
            Scope::SuitesRead => "suites:read",
            Scope::SuitesWrite => "suites:write",
            Scope::Agents => "agents",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        if self == wanted {
            return true;
        }
        match self {
            Scope::Admin => wanted != Scope::Agents,
            Scope::RunsWrite => wanted == Scope::RunsRead,
            Scope::WorkflowsWrite => wanted == Scope::WorkflowsRead,
            Scope::SuitesWrite => wanted == Scope::SuitesRead,
            _ => false,
        }
    }

    /// The scopes a user's organization role carries.
    pub fn for_role(role: Role) -> &'static [Scope] {
        match role {
            Role::Admin => &[Scope::Admin],
            Role::Maintainer => &[Scope::RunsWrite, Scope::WorkflowsWrite, Scope::SuitesWrite],
            Role::Viewer => &[Scope::RunsRead, Scope::WorkflowsRead, Scope::SuitesRead],
            Role::Unspecified => &[],
        }
    }
}

/// The tenant a resource lives in. `project_id` is `None` for organization-level resources.
#[derive(Debug, Clone, Copy)]
pub struct Tenant<'a> {
    pub org_id: &'a str,
    pub project_id: Option<&'a str>,
}

/// Why a call was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Unauthenticated,
    OtherOrganization,
    OtherProject,
    MissingScope(Scope),
    PlatformAdminOnly,
}

impl Denial {
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Unauthenticated => "unauthenticated",
            Denial::OtherOrganization => "other_organization",
            Denial::OtherProject => "other_project",
            Denial::MissingScope(_) => "missing_scope",
            Denial::PlatformAdminOnly => "platform_admin_only",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Denial::Unauthenticated => "a valid bearer token is required".to_owned(),
            Denial::OtherOrganization => {
                "the token does not grant access to this organization".to_owned()
            }
            Denial::OtherProject => "the token does not grant access to this project".to_owned(),
            Denial::MissingScope(scope) => {
                format!("the token lacks the `{}` scope", scope.as_str())
            }
            Denial::PlatformAdminOnly => "only a platform administrator may do this".to_owned(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Denial::Unauthenticated => ErrorCode::Unauthenticated,
            _ => ErrorCode::PermissionDenied,
        }
    }

    pub fn status(&self) -> tonic::Status {
        self.code().status(self.message(), Vec::new())
    }
}

/// The project `project_id` as the control plane shows it to the caller: the caller's own
/// credentials travel with the call, so an answer also proves they may see it (the control
/// plane refuses, and audits, anyone outside its organization or project). For services that
/// do not own projects but authorize on them.
pub async fn project_as_caller(
    tenancy: &switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient<
        crate::grpc::GrpcChannel,
    >,
    ctx: &CallContext,
    project_id: &str,
) -> Result<switchyard_proto::controlplane::v1::Project, tonic::Status> {
    if uuid::Uuid::parse_str(project_id).is_err() {
        return Err(tonic::Status::invalid_argument("project_id is not an id"));
    }
    let mut request = tonic::Request::new(switchyard_proto::controlplane::v1::GetProjectRequest {
        project_id: project_id.to_owned(),
    });
    ctx.write_to(request.metadata_mut());
    tenancy
        .clone()
        .get_project(request)
        .await?
        .into_inner()
        .project
        .ok_or_else(|| tonic::Status::not_found("project not found"))
}

/// The authorization rule: the principal must be a platform admin, or belong to the
/// resource's organization (and project, when the principal is project-scoped) and hold a
/// scope that grants `scope`.
pub fn authorize(
    principal: Option<&Principal>,
    scope: Scope,
    tenant: Tenant<'_>,
) -> Result<(), Denial> {
    let principal = authorize_member(principal, tenant)?;
    if principal.platform_admin || held_scopes(principal).any(|held| held.grants(scope)) {
        Ok(())
    } else {
        Err(Denial::MissingScope(scope))
    }
}

/// Membership without a scope: enough to read a project's or organization's own record.
pub fn authorize_member<'p>(
    principal: Option<&'p Principal>,
    tenant: Tenant<'_>,
) -> Result<&'p Principal, Denial> {
    let principal = principal.ok_or(Denial::Unauthenticated)?;
    if principal.platform_admin {
        return Ok(principal);
    }
    if principal.org_id.is_empty() || principal.org_id != tenant.org_id {
        return Err(Denial::OtherOrganization);
    }
    if !principal.project_id.is_empty() {
        match tenant.project_id {
            Some(project) if project == principal.project_id => {}
            // A project-scoped token cannot act on organization-level resources.
            _ => return Err(Denial::OtherProject),
        }
    }
    Ok(principal)
}

/// Platform-level operations (creating organizations).
pub fn authorize_platform_admin(principal: Option<&Principal>) -> Result<(), Denial> {
    match principal {
        None => Err(Denial::Unauthenticated),
        Some(p) if p.platform_admin => Ok(()),
        Some(_) => Err(Denial::PlatformAdminOnly),
    }
}

/// The principal of a call a service makes on its own behalf (a background job, not a
/// request): actor type `Service`, no organization, no platform admin, only `scopes`. It never
/// comes from outside: the gateway builds principals only from control-plane's Authenticate
/// (users and tokens) and refuses a `Service` actor should one ever come back
/// ([`is_service_principal`]).
pub fn service_principal(service: &str, scopes: &[Scope]) -> Principal {
    Principal {
        actor: Some(Actor {
            r#type: ActorType::Service as i32,
            id: service.to_owned(),
            display_name: format!("switchyard-{service}"),
        }),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        ..Principal::default()
    }
}

/// Whether `principal` is a service's own ([`service_principal`]).
pub fn is_service_principal(principal: &Principal) -> bool {
    principal
        .actor
        .as_ref()
        .is_some_and(|a| a.r#type == ActorType::Service as i32)
}

/// Scopes the principal holds: its token's scopes, or its role's for users.
pub fn held_scopes(principal: &Principal) -> impl Iterator<Item = Scope> + '_ {
    let from_role = Role::try_from(principal.role)
        .map(Scope::for_role)
        .unwrap_or(&[]);
    principal
        .scopes
        .iter()
        .filter_map(|s| Scope::parse(s))
        .chain(from_role.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(org: &str, project: &str, scopes: &[Scope]) -> Principal {
        Principal {
            org_id: org.into(),
            project_id: project.into(),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            ..Principal::default()
        }
    }

    const P1: Tenant<'static> = Tenant {
        org_id: "o1",
        project_id: Some("p1"),
    };

    #[test]
    fn write_implies_read_and_admin_implies_all_but_agents() {
        assert!(Scope::RunsWrite.grants(Scope::RunsRead));
        assert!(!Scope::RunsRead.grants(Scope::RunsWrite));
        for scope in Scope::ALL {
            assert_eq!(Scope::Admin.grants(scope), scope != Scope::Agents);
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    #[test]
    fn project_token_reaches_only_its_project() {
        let t = token("o1", "p1", &[Scope::RunsWrite]);
        assert_eq!(authorize(Some(&t), Scope::RunsRead, P1), Ok(()));
        let other = Tenant {
            org_id: "o1",
            project_id: Some("p2"),
        };
        assert_eq!(
            authorize(Some(&t), Scope::RunsRead, other),
            Err(Denial::OtherProject)
        );
        let org_level = Tenant {
            org_id: "o1",
            project_id: None,
        };
        assert_eq!(
            authorize(Some(&t), Scope::RunsRead, org_level),
            Err(Denial::OtherProject)
        );
    }

    #[test]
    fn org_token_reaches_every_project_of_its_org_only() {
        let t = token("o1", "", &[Scope::WorkflowsWrite]);
        assert_eq!(authorize(Some(&t), Scope::WorkflowsRead, P1), Ok(()));
        let foreign = Tenant {
            org_id: "o2",
            project_id: Some("p9"),
        };
        assert_eq!(
            authorize(Some(&t), Scope::WorkflowsRead, foreign),
            Err(Denial::OtherOrganization)
        );
        assert_eq!(
            authorize(Some(&t), Scope::RunsWrite, P1),
            Err(Denial::MissingScope(Scope::RunsWrite))
        );
    }

    #[test]
    fn roles_carry_scopes_and_platform_admin_passes() {
        let viewer = Principal {
            org_id: "o1".into(),
            role: Role::Viewer as i32,
            ..Principal::default()
        };
        assert_eq!(authorize(Some(&viewer), Scope::RunsRead, P1), Ok(()));
        assert_eq!(
            authorize(Some(&viewer), Scope::RunsWrite, P1),
            Err(Denial::MissingScope(Scope::RunsWrite))
        );
        let admin = Principal {
            platform_admin: true,
            ..Principal::default()
        };
        assert_eq!(authorize(Some(&admin), Scope::Admin, P1), Ok(()));
        assert_eq!(authorize_platform_admin(Some(&admin)), Ok(()));
        assert_eq!(
            authorize_platform_admin(Some(&viewer)),
            Err(Denial::PlatformAdminOnly)
        );
        assert_eq!(
            authorize(None, Scope::RunsRead, P1),
            Err(Denial::Unauthenticated)
        );
    }

    #[test]
    fn service_principals_hold_only_their_scopes_and_no_tenancy() {
        let principal = service_principal("monitoring", &[Scope::Admin]);
        assert!(is_service_principal(&principal));
        assert!(!principal.platform_admin);
        assert_eq!(
            authorize(Some(&principal), Scope::RunsRead, P1),
            Err(Denial::OtherOrganization)
        );
        assert!(held_scopes(&principal).eq([Scope::Admin]));
        assert!(!is_service_principal(&token("o1", "p1", &[Scope::Admin])));
    }

    #[test]
    fn context_round_trips_through_metadata() {
        let context = CallContext {
            principal: Some(token("o1", "p1", &[Scope::RunsRead])),
            origin: RequestOrigin {
                client_ip: "10.0.0.1".into(),
                user_agent: "curl/8".into(),
                request_id: "req-1".into(),
                trace_id: String::new(),
            },
        };
        let mut metadata = MetadataMap::new();
        context.write_to(&mut metadata);
        assert_eq!(CallContext::from_metadata(&metadata).ok(), Some(context));
    }

    #[test]
    fn garbage_principal_metadata_is_refused() {
        let mut metadata = MetadataMap::new();
        metadata.insert_bin(
            PRINCIPAL_KEY,
            BinaryMetadataValue::from_bytes(&[0xff, 0x01]),
        );
        assert!(CallContext::from_metadata(&metadata).is_err());
    }
}
