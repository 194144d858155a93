//! Who may read which executions. Monitoring does not own projects: a listing that names a
//! project is authorized on that project's tenancy, which the handler asks the control plane
//! for. A listing that names none shows what the caller's own tenancy covers — a platform
//! admin everything, a project-scoped token its project, an organization member their
//! organization's projects — never more, whatever the other filters say.

use switchyard_proto::controlplane::v1::Principal;
use switchyard_runtime::auth::{Denial, Scope, held_scopes};

/// What reading needs.
pub const READ: Scope = Scope::RunsRead;

/// How to find the projects a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The caller named this project: resolve its tenancy and authorize on it.
    Named(String),
    /// Every project (platform admins).
    All,
    /// The caller's own project (project-scoped principals).
    OwnProject(String),
    /// Every project of the caller's organization.
    Organization(String),
}

/// The access a listing for `project_id` (empty: none named) has, or why it has none.
pub fn access(principal: Option<&Principal>, project_id: &str) -> Result<Access, Denial> {
    let principal = principal.ok_or(Denial::Unauthenticated)?;
    if !project_id.is_empty() {
        return Ok(Access::Named(project_id.to_owned()));
    }
    if principal.platform_admin {
        return Ok(Access::All);
    }
    if principal.org_id.is_empty() {
        return Err(Denial::OtherOrganization);
    }
    if !held_scopes(principal).any(|s| s.grants(READ)) {
        return Err(Denial::MissingScope(READ));
    }
    Ok(if principal.project_id.is_empty() {
        Access::Organization(principal.org_id.clone())
    } else {
        Access::OwnProject(principal.project_id.clone())
    })
}

/// The rows a listing may return: every project's, or these projects' only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    Projects(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(org: &str, project: &str, scopes: &[&str]) -> Principal {
        Principal {
            org_id: org.into(),
            project_id: project.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Principal::default()
        }
    }

    #[test]
    fn monitoring_access_follows_the_callers_tenancy() {
        let admin = Principal {
            platform_admin: true,
            ..Principal::default()
        };
        assert_eq!(access(Some(&admin), ""), Ok(Access::All));
        assert_eq!(
            access(Some(&principal("o", "p", &["runs:read"])), ""),
            Ok(Access::OwnProject("p".into()))
        );
        assert_eq!(
            access(Some(&principal("o", "", &["runs:write"])), ""),
            Ok(Access::Organization("o".into()))
        );
        // A named project is authorized on its own tenancy, whoever asks.
        assert_eq!(
            access(Some(&principal("o", "p", &["runs:read"])), "q"),
            Ok(Access::Named("q".into()))
        );
    }

    #[test]
    fn monitoring_access_is_refused_without_token_scope_or_organization() {
        assert_eq!(access(None, ""), Err(Denial::Unauthenticated));
        assert_eq!(access(None, "p"), Err(Denial::Unauthenticated));
        assert_eq!(
            access(Some(&principal("o", "p", &["workflows:write"])), ""),
            Err(Denial::MissingScope(Scope::RunsRead))
        );
        assert_eq!(
            access(Some(&principal("", "", &["runs:read"])), ""),
            Err(Denial::OtherOrganization)
        );
    }
}
